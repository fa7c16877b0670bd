"""The paper's MNIST tables (Tables 3 and 4) at 100k steps, from ``docs/runs/mnist_100k``
(``experiments/campaign.py --plan=mnist_100k``): our numbers beside the paper's, and each
comparison of two methods paired by seed with a 95% interval and its verdict."""
from __future__ import annotations

import math

import numpy as np

from . import common
from . import render as markdown

GROUP = "mnist_100k"

# The paper's numbers (its Tables 3 and 4: validation L100, 1M steps), by run name.
PAPER = {
    "vae": ("Table 4, static MNIST 40-40-40-40", -86.4),
    "hvae": ("Table 4", -85.5),
    "hvae@rho=0.85": ("Table 4", -85.2),
    "vae+kl": ("Table 4", -84.5),
    "hvae+kl@rho=0.95": ("Table 4", -84.2),
    "t3_hvae@rho=0.95": ("Table 3, dynamic MNIST 64-32-16-8", -81.6),
    "t3_vae+kl": ("Table 3", -84.6),
    "t3_iwae": ("Table 3", -84.46),
}
# The paper's active units of its Table 4 VAE, top to bottom.
PAPER_VAE_UNITS = "1, 3, 9, 17"
# Comparisons (method, baseline), each paired by seed.
PAIRS = (("hvae", "vae"), ("hvae@rho=0.85", "vae"), ("hvae+kl@rho=0.95", "vae+kl"),
         ("t3_hvae@rho=0.95", "t3_vae+kl"), ("vae", "vae_1layer"))
LABELS = {
    "vae": "vae", "hvae": "hvae ρ = 0.9, n = 5",
    "hvae@rho=0.85": "hvae ρ = 0.85", "vae+kl": "vae + KL annealing",
    "hvae+kl@rho=0.95": "hvae ρ = 0.95 + KL annealing",
    "hvae@kappa=0.152@n=2": "hvae κ = 0.152, n = 2", "hvae@rho=0.7": "hvae ρ = 0.7, n = 5",
    "hvae@kappa=0.408@n=2": "hvae κ = 0.408, n = 2",
    "t3_vae+kl": "Table 3: vae + KL annealing", "t3_hvae@rho=0.95": "Table 3: hvae ρ = 0.95",
    "vae_1layer": "vae, 1 layer of 40 (baseline)",
}


def runs(group: str = GROUP) -> dict:
  """{run name: [summaries sorted by seed]}, in the order of LABELS (then by name)."""
  out = {}
  for r in common.load(group):
    out.setdefault(r["name"].rsplit("__seed_", 1)[0], []).append(r)
  order = list(LABELS)
  rank = lambda name: (order.index(name) if name in order else len(order), name)
  return {k: sorted(out[k], key=lambda r: r["seed"]) for k in sorted(out, key=rank)}


def _l1000(r) -> float:
  return float(r["iw_bound_k1000"])


def _val_l100(r):
  extra = r.get("extra_evals", {}).get("eval_L100")
  return None if extra is None else float(extra["iw_bound_k100"])


def paired_interval(diffs) -> tuple:
  """(mean, low, high) of the 95% t-interval of the mean of paired differences; None
  bounds with fewer than 2 pairs."""
  d = np.asarray(diffs, float)
  if d.size < 2:
    return float(d.mean()) if d.size else math.nan, None, None
  from scipy.stats import t  # pylint: disable=g-import-not-at-top
  half = float(t.ppf(0.975, d.size - 1) * d.std(ddof=1) / math.sqrt(d.size))
  return float(d.mean()), float(d.mean() - half), float(d.mean() + half)


def verdict(low, high, paper_gap) -> str:
  """The verdict on a claimed gap from a 95% interval: reproduced (excludes 0, same sign
  as the paper's gap), consistent but unresolved (contains 0 and the paper's gap),
  contradicted (excludes the paper's gap), or, with no interval, 'one seed: no interval'."""
  if low is None:
    return "one seed: no interval"
  contains = lambda v: low <= v <= high
  if not contains(0.0) and (low > 0) == (paper_gap > 0):
    return "reproduced"
  if contains(0.0) and contains(paper_gap):
    return "consistent but unresolved"
  if not contains(paper_gap):
    return "contradicted"
  return "consistent (interval excludes 0 and contains the paper's gap)"


def _units(r) -> str:
  return ", ".join(str(u) for u in r["final"]["active_units_x"][::-1])


def table(by_name=None) -> str:
  """One row per run name: the paper's number, our test L1000 (mean ± sd, every seed),
  validation L100 on all 10,000 validation digits (the paper's column), their difference
  to the paper, test ELBO, top-layer KL, the paper's active units (Burda's count: the
  library's x-based units, top to bottom as the paper lists them) and the x-share units."""
  by_name = runs() if by_name is None else by_name
  if not by_name:
    return "No run of this campaign has finished yet.\n"
  rows = []
  for name, at in by_name.items():
    paper = PAPER.get(name)
    val = [_val_l100(r) for r in at]
    val_txt = common.mean_sd(val, 1) if all(v is not None for v in val) else "—"
    diff = (f"{np.mean(val) - paper[1]:+.1f}" if paper and all(v is not None for v in val)
            else "—")
    rows.append([
        LABELS.get(name, name), ", ".join(str(r["seed"]) for r in at),
        f"{paper[1]:.2f} ({paper[0]})" if paper else "—",
        common.mean_sd([_l1000(r) for r in at], 1), val_txt, diff,
        common.mean_sd([r["final"]["elbo_nats"] for r in at], 1),
        common.mean_sd([r["final"]["kl_per_layer_nats"][-1] for r in at], 2),
        "; ".join(_units(r) for r in at) + (f" (paper's VAE: {PAPER_VAE_UNITS})"
                                            if name == "vae" else ""),
        "; ".join(",".join(map(str, r["final"]["x_share_units"][::-1])) for r in at)])
  header = ["run", "seeds", "paper (V. L100, 1M steps)", "test L1000", "validation L100",
            "validation L100 − paper", "test ELBO", "top KL",
            "active units (Burda, top → bottom) per seed",
            "x-share units ≥ 0.1 (top → bottom) per seed"]
  return markdown.table(header, rows)


def paired(by_name=None) -> str:
  """Each comparison of PAIRS with runs on common seeds: test L1000 of the method minus the
  baseline's, per seed, the mean with its 95% interval, the paper's gap and the verdict."""
  by_name = runs() if by_name is None else by_name
  rows = []
  for method, base in PAIRS:
    if method not in by_name or base not in by_name:
      continue
    base_seed = {r["seed"]: _l1000(r) for r in by_name[base]}
    diffs = [(r["seed"], _l1000(r) - base_seed[r["seed"]]) for r in by_name[method]
             if r["seed"] in base_seed]
    if not diffs:
      continue
    mean, low, high = paired_interval([d for _, d in diffs])
    gap = (PAPER[method][1] - PAPER[base][1]) if method in PAPER and base in PAPER else None
    rows.append([f"{LABELS.get(method, method)} − {LABELS.get(base, base)}",
                 ", ".join(f"seed {s}: {d:+.2f}" for s, d in diffs), f"{mean:+.2f}",
                 "—" if low is None else f"[{low:+.2f}, {high:+.2f}]",
                 "—" if gap is None else f"{gap:+.1f}",
                 "—" if gap is None else verdict(low, high, gap)])
  if not rows:
    return "No pair of methods has a common seed yet.\n"
  return markdown.table(["comparison (test L1000)", "per seed", "mean", "95% interval",
                         "paper's gap", "verdict"], rows)
