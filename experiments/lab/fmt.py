"""Formatting of per-seed numbers, shared by the experiment scripts (through ``sweeps``)
and the generated tables of ``docs/`` (``experiments/docs_tables``). numpy only, so the
tables import it without the training code that ``sweeps`` needs."""
from __future__ import annotations

import numpy as np


def mean_sd(values) -> tuple[float, float]:
  """Mean and sample standard deviation (ddof = 1; 0 for a single value)."""
  v = np.asarray(values, dtype=float)
  return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def fmt_mean_sd(values, digits: int = 1) -> str:
  """'m ± sd (v1, v2, v3)': the mean, the sample sd and every seed's value."""
  m, s = mean_sd(values)
  each = ", ".join(f"{float(v):.{digits}f}" for v in values)
  return f"{m:.{digits}f} ± {s:.{digits}f} ({each})"
