"""The run summaries of ``docs/runs/`` (``experiments/summarize_runs.py``) and the numbers
that every study's tables show of them."""
from __future__ import annotations

import contextlib
import glob
import json
import os
from typing import Iterator, Optional

import numpy as np

from hermite_vae import evaluation, ou

try:  # imported as experiments.docs_tables
  from ..lab import fmt
except ImportError:  # imported as docs_tables: experiments/ is on sys.path
  from lab import fmt  # pylint: disable=g-import-not-at-top

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUNS = os.path.join(ROOT, "docs", "runs")
DATA = os.path.join(ROOT, "docs", "data")

# {(runs_dir, group): summaries} while a ``one_load_per_group`` block is open, else None.
_loaded: Optional[dict] = None


@contextlib.contextmanager
def one_load_per_group() -> Iterator[None]:
  """A block within which ``load`` reads each run group from disk once (the first call)
  and then hands out the same summaries; nested blocks share the outermost cache, and
  after the outermost one ``load`` reads the files again."""
  global _loaded
  outer = _loaded
  if outer is None:
    _loaded = {}
  try:
    yield
  finally:
    _loaded = outer


def load(group: str, runs_dir: str = RUNS) -> list[dict]:
  """The summaries ``runs_dir/group/*.json`` in file-name order (a new list; inside
  ``one_load_per_group`` its dicts are shared between calls, so callers do not modify
  them)."""
  key = (runs_dir, group)
  if _loaded is not None and key in _loaded:
    return list(_loaded[key])
  out = []
  for path in sorted(glob.glob(os.path.join(runs_dir, group, "*.json"))):
    with open(path) as f:
      out.append(json.load(f))
  if _loaded is not None:
    _loaded[key] = out
  return list(out)


# 'm ± sd (v1, v2, ...)' of ``values`` with ``digits`` decimals: lab/fmt.py's, shared with
# the experiment scripts' own tables.
mean_sd = fmt.fmt_mean_sd


def per_layer_mean(runs, key: str, digits: int = 1) -> str:
  """The seed mean of the per-layer list ``final[key]``, bottom layer first, one number
  per layer separated by spaces."""
  cols = np.asarray([r["final"][key] for r in runs], float)
  return " ".join(f"{c:.{digits}f}" for c in cols.mean(0))


def informative(run) -> list[bool]:
  """Per layer, bottom first: whether the run's final evaluation finds it informative
  about x (``evaluation.informative_layers``, the one rule of every table)."""
  return evaluation.informative_layers(run["final"])


def kappa(rho, n) -> float:
  """The cell's discount kappa(rho, n); 0 for n = 0 (the VAE), which has none."""
  return ou.kappa(rho, n) if n else 0.0


def num_layers(runs) -> int:
  """The number of latent layers of the summaries ``runs`` (non-empty), from the first
  one's per-layer KL."""
  return len(runs[0]["final"]["kl_per_layer_nats"])


def seeds(runs) -> str:
  """The runs' seeds, 'a,b,c'."""
  return ",".join(str(r["seed"]) for r in runs)


def per_seed(lists) -> str:
  """One per-layer list of integers per seed: 'a,b,c; d,e,f'."""
  return "; ".join(",".join(map(str, v)) for v in lists)
