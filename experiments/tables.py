"""The tables of ``docs/`` generated from the run summaries in ``docs/runs/``.

    python experiments/tables.py            # rewrite every generated block
    python experiments/tables.py --check    # exit 1 if a block differs from its data
    python experiments/tables.py --figures  # also redraw docs/figures/ from the data

A generated block of a Markdown page sits between ``<!-- BEGIN GENERATED: name -->`` and
``<!-- END GENERATED: name -->``; everything between them is replaced by ``TABLES[name]``
computed from the JSON summaries (``experiments/summarize_runs.py``). Nothing in such a
block is typed by hand, so a table cannot drift from its data
(``tests/test_tables.py`` regenerates them from the committed files).
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import re
import sys

import numpy as np

from hermite_vae import evaluation, ou

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNS = os.path.join(ROOT, "docs", "runs")
PAGES = [os.path.join(ROOT, "docs", "results.md"), os.path.join(ROOT, "docs", "performance.md")]
BLOCK = re.compile(r"(<!-- BEGIN GENERATED: (?P<name>[\w-]+) -->\n)(?P<body>.*?)"
                   r"(<!-- END GENERATED: (?P=name) -->)", re.S)

def load(group: str, runs_dir: str = RUNS) -> list[dict]:
  out = []
  for path in sorted(glob.glob(os.path.join(runs_dir, group, "*.json"))):
    with open(path) as f:
      out.append(json.load(f))
  return out


def mean_sd(values, digits=1) -> str:
  v = np.asarray(values, float)
  sd = v.std(ddof=1) if v.size > 1 else 0.0
  each = ", ".join(f"{x:.{digits}f}" for x in v)
  return f"{v.mean():.{digits}f} ± {sd:.{digits}f} ({each})"


def per_layer_mean(runs, key, digits=1) -> str:
  cols = np.asarray([r["final"][key] for r in runs], float)
  return " ".join(f"{c:.{digits}f}" for c in cols.mean(0))


def informative(run) -> list[bool]:
  return evaluation.informative_layers(run["final"])


def kappa(rho, n):
  """The cell's discount; n = 0 (the VAE) has none."""
  return ou.kappa(rho, n) if n else 0.0


def _cells(runs):
  """{(n, rho): [runs sorted by seed]}; n = 0 for the VAE."""
  cells = {}
  for r in runs:
    c = r["config"]
    n = int(c["num_ou_samples"]) if c["method"] == "hvae" else 0
    rho = float(c["rho"]) if n else 1.0
    cells.setdefault((n, rho), []).append(r)
  return {k: sorted(v, key=lambda r: r["seed"]) for k, v in sorted(cells.items())}


def rho_n_table(runs, vae_runs=None) -> str:
  cells = _cells(runs)
  vae = {r["seed"]: r["iw_bound_k100"] for r in (vae_runs or runs)
         if r["config"]["method"] == "vae"}
  head = ("| n | ρ | κ | seeds | ELBO | L100 | L100 − the VAE's, same seed | top KL | KL per layer z1..z4 (mean) | "
          "x-based AU z1..z4 per seed | x-share units (≥ 0.1) z1..z4 per seed | "
          "I(x; z_i) (mean) | surrogate gap z1..z3 (mean, nats) | seeds: z4 informative |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
  lines = []
  for (n, rho), at in cells.items():
    delta = ("—" if not n or not all(r["seed"] in vae for r in at) else
             ", ".join(f"{r['iw_bound_k100'] - vae[r['seed']]:+.1f}" for r in at))
    gap = ("—" if not n else " ".join(
        _fmt_gap(np.mean([r["surrogate_gap"]["gap"][i] for r in at]))
        for i in range(len(at[0]["surrogate_gap"]["gap"]))))
    lines.append(
        f"| {n or 'vae'} | {rho:g} | {kappa(rho, n):.3f} | "
        f"{','.join(str(r['seed']) for r in at)} | "
        f"{mean_sd([r['final']['elbo_nats'] for r in at])} | "
        f"{mean_sd([r['iw_bound_k100'] for r in at])} | {delta} | "
        f"{mean_sd([r['final']['kl_per_layer_nats'][-1] for r in at], 2)} | "
        f"{per_layer_mean(at, 'kl_per_layer_nats')} | "
        f"{'; '.join(','.join(map(str, r['final']['active_units_x'])) for r in at)} | "
        f"{'; '.join(','.join(map(str, r['final']['x_share_units'])) for r in at)} | "
        f"{per_layer_mean(at, 'mutual_information_nats', 2)} | {gap} | "
        f"{sum(informative(r)[-1] for r in at)}/{len(at)} |")
  return head + "\n".join(lines) + "\n"


def _fmt_gap(v):
  return f"{v:.2g}" if abs(v) < 1e4 else f"{v:.1e}"


def _logistic(x, a, b, c, w):
  return a + b / (1 + np.exp(np.clip(-(x - c) / w, -50, 50)))


def linear_discount(rho, n):
  """(1 - rho)(1 - 1/n): the rival law the n = 2 / 3 grid tests against kappa."""
  return (1 - rho) * (1 - 1 / n)


def kappa_fit(runs, discount=kappa) -> dict:
  """Seed-mean top-layer KL against kappa (or another ``discount(rho, n)``) over every
  hvae cell with n > 1 (and the n = 1 cells, discount 0): a logistic fit
  y = a + b / (1 + exp(-(kappa - kappa_c) / w)), its residual RMS against the seed sd."""
  from scipy.optimize import curve_fit  # pylint: disable=g-import-not-at-top
  cells = {k: v for k, v in _cells(runs).items() if k[0] >= 1}
  xs = np.array([discount(rho, n) for n, rho in cells])
  ys = np.array([np.mean([r["final"]["kl_per_layer_nats"][-1] for r in v])
                 for v in cells.values()])
  sds = np.array([np.std([r["final"]["kl_per_layer_nats"][-1] for r in v], ddof=1)
                  if len(v) > 1 else 0.0 for v in cells.values()])
  out = {"cells": len(xs)}
  try:
    p, _ = curve_fit(_logistic, xs, ys, p0=[ys.min(), np.ptp(ys), np.median(xs), 0.02],
                     maxfev=20000)
    resid = ys - _logistic(xs, *p)
    out.update(kappa_c=float(p[2]), width=float(abs(p[3])), low=float(p[0]),
               high=float(p[0] + p[1]), rms_residual=float(np.sqrt(np.mean(resid**2))),
               median_seed_sd=float(np.median(sds)),
               worst=[float(xs[np.argmax(np.abs(resid))]), float(np.abs(resid).max())])
  except (RuntimeError, ValueError):
    out["kappa_c"] = None
  return out


def kappa_fit_text(runs) -> str:
  fit = kappa_fit(runs)
  if fit.get("kappa_c") is None:
    return "The logistic fit in κ did not converge.\n"
  lines = [f"Logistic fit of the seed-mean top-layer KL against κ over the {fit['cells']} "
           f"hvae cells: κ_c = {fit['kappa_c']:.4f}, width {fit['width']:.4f}, from "
           f"{fit['low']:.2f} to {fit['high']:.2f} nats; residual RMS "
           f"{fit['rms_residual']:.2f} nats against a median seed sd of "
           f"{fit['median_seed_sd']:.2f} (largest residual {fit['worst'][1]:.2f} nats at "
           f"κ = {fit['worst'][0]:.3f})."]
  for n in sorted({k[0] for k in _cells(runs) if k[0] > 1}):
    rho_c = ou.rho_for_kappa(fit["kappa_c"], n)
    lines.append(f"* n = {n}: κ_c corresponds to ρ_c = {rho_c:.3f}.")
  return "\n".join(lines) + "\n"


def same_kappa_table(runs, tol=0.01) -> str:
  """Pairs of cells with (almost) the same kappa but different (rho, n): the direct test
  of the kappa law (the law says their outcomes agree)."""
  cells = {k: v for k, v in _cells(runs).items() if k[0] >= 2}
  keys = sorted(cells, key=lambda k: kappa(k[1], k[0]))
  rows = []
  for a in range(len(keys)):
    for b in range(a + 1, len(keys)):
      (n1, r1), (n2, r2) = keys[a], keys[b]
      if n1 != n2 and abs(kappa(r1, n1) - kappa(r2, n2)) < tol:
        rows.append((keys[a], keys[b]))
  if not rows:
    return "No two cells with different n have κ within 0.01 of each other yet.\n"
  head = ("| cell | κ | top KL | x-share units in z4 per seed | z3 term (mean) |\n"
          "|---|---|---|---|---|\n")
  lines = []
  for pair in rows:
    for n, rho in pair:
      at = cells[(n, rho)]
      lines.append(f"| n = {n}, ρ = {rho:g} | {kappa(rho, n):.4f} | "
                   f"{mean_sd([r['final']['kl_per_layer_nats'][-1] for r in at], 2)} | "
                   f"{', '.join(str(r['final']['x_share_units'][-1]) for r in at)} | "
                   f"{np.mean([r['final']['kl_per_layer_nats'][-2] for r in at]):.2f} |")
    lines.append("| | | | | |")
  return head + "\n".join(lines[:-1]) + "\n"


PREDICTIONS = os.path.join(RUNS, "predictions")


def predict(n: int, runs) -> dict:
  """The critical rho for ``n`` OU samples predicted from ``runs`` under three hypotheses:
  the kappa law (``rho_c_predicted``: kappa(rho_c, n) = kappa_c of the logistic fit, i.e.
  rho_c = sqrt(1 - kappa_c / (1 - 1/n))), the linear law (the same fit in
  (1 - rho)(1 - 1/n)) and an n-independent rho_c (the mean of the measured crossings of
  the fit's midpoint by the n >= 5 cells)."""
  fit = kappa_fit(runs)
  rho_c = ou.rho_for_kappa(fit["kappa_c"], n)
  level = (fit["low"] + fit["high"]) / 2
  linear = kappa_fit(runs, linear_discount)
  crossings = {m: measured_rho_c(runs, m, level)[0]
               for m in sorted({k[0] for k in _cells(runs)}) if m >= 5}
  crossings = {m: r for m, r in crossings.items() if r is not None}
  cells = sorted({(k[0], k[1]) for k in _cells(runs) if k[0] >= 1})
  return {"n": n, "rho_c_predicted": rho_c, "fit": fit, "midpoint_top_kl": level,
          "rho_c_linear_law": 1 - linear["kappa_c"] / (1 - 1 / n), "linear_fit": linear,
          "rho_c_n_independent": float(np.mean(list(crossings.values()))),
          "n_independent_from": {str(m): r for m, r in crossings.items()},
          "from_cells": [list(c) for c in cells]}


def measured_rho_c(runs, n, level):
  """Where the seed-mean top-layer KL of the n-sample cells crosses ``level`` (linear
  interpolation in rho between the bracketing cells), or None."""
  at = sorted((rho, np.mean([r["final"]["kl_per_layer_nats"][-1] for r in v]))
              for (m, rho), v in _cells(runs).items() if m == n)
  for (r0, y0), (r1, y1) in zip(at, at[1:]):
    if (y0 - level) * (y1 - level) <= 0 and y0 != y1:
      return r0 + (level - y0) * (r1 - r0) / (y1 - y0), at
  return None, at


def prediction_text(n: int) -> str:
  path = os.path.join(PREDICTIONS, f"n{n}.json")
  if not os.path.exists(path):
    return f"No prediction for n = {n} has been recorded.\n"
  with open(path) as f:
    pred = json.load(f)
  fit = pred["fit"]
  lines = [f"**Prediction** (recorded in `docs/runs/predictions/n{n}.json` before any "
           f"n = {n} run, from the κ fit of the cells "
           f"{', '.join(f'(n = {c[0]}, ρ = {c[1]:g})' for c in pred['from_cells'])}): "
           f"κ_c = {fit['kappa_c']:.4f}, so the seed-mean top-layer KL of n = {n} crosses "
           f"the fit's midpoint, {pred['midpoint_top_kl']:.2f} nats, at "
           f"**ρ_c = {pred['rho_c_predicted']:.3f}**."]
  runs = load("rho_n_grid") + load(f"rho_n_{n}")
  rho_c, at = measured_rho_c(runs, n, pred["midpoint_top_kl"])
  if at:
    lines.append("")
    lines.append(f"**Measured** (n = {n}, seed-mean top KL per ρ: " +
                 ", ".join(f"{r:g}: {y:.2f}" for r, y in at) + "): " +
                 (f"the curve crosses {pred['midpoint_top_kl']:.2f} nats at "
                  f"**ρ = {rho_c:.3f}** (linear interpolation between the cells)."
                  if rho_c is not None else "the curve does not cross the midpoint "
                  "within the measured ρ."))
  return "\n".join(lines) + "\n"


def parallel_table(path=os.path.join(ROOT, "docs", "data", "parallel_cpu.json")) -> str:
  with open(path) as f:
    rows = json.load(f)
  base = {r["method"]: r["aggregate_steps_per_s"] for r in rows
          if r["mode"].startswith("1 process")}
  lines = ["| method | mode | aggregate steps/s | against 1 process | wall, 2 runs |",
           "|---|---|---|---|---|"]
  for r in rows:
    lines.append(f"| {r['method']} | {r['mode']} | {r['aggregate_steps_per_s']:.1f} | "
                 f"{r['aggregate_steps_per_s'] / base[r['method']]:.2f}× | "
                 f"{r['wall_s']:.1f} s ({r['steps']:,} steps each) |")
  return "\n".join(lines) + "\n"


def legacy_phase_table(path: str, label: str) -> str:
  """The format of results.md sections 2 (phase transition, width) from a list of rows
  (phase_transition.py's JSON rows): a layer is informative on >= 1 x-based unit, the
  rule of the time."""
  with open(path) as f:
    rows = json.load(f)
  rows = rows["rows"] if isinstance(rows, dict) else rows
  head = (f"| {label} ρ | seeds | ELBO mean ± sd (seeds) | top KL mean ± sd (seeds) | "
          "KL per layer z1..zL (mean) | AU x-based z1..zL per seed | I(x; z_i) z1..zL (mean) | "
          "seeds with x-info above z1 | seeds with x-info in z_L |\n"
          "|---|---|---|---|---|---|---|---|---|\n")
  lines = []
  for name, rho in sorted({(r["dataset"], r["rho"]) for r in rows}):
    at = sorted((r for r in rows if r["dataset"] == name and r["rho"] == rho),
                key=lambda r: r["seed"])
    mean = lambda key, d: " ".join(f"{v:.{d}f}" for v in np.mean([r[key] for r in at], 0))
    above = sum(any(u >= 1 for u in r["active_units_x"][1:]) for r in at)
    top = sum(r["active_units_x"][-1] >= 1 for r in at)
    lines.append(
        f"| {name} {rho:g} | {','.join(str(r['seed']) for r in at)} | "
        f"{mean_sd([r['elbo_nats'] for r in at])} | "
        f"{mean_sd([r['kl_per_layer_nats'][-1] for r in at], 2)} | "
        f"{mean('kl_per_layer_nats', 2)} | "
        f"{'; '.join(','.join(map(str, r['active_units_x'])) for r in at)} | "
        f"{mean('mutual_information_nats', 2)} | {above}/{len(at)} | {top}/{len(at)} |")
  return head + "\n".join(lines) + "\n"


DATA = os.path.join(ROOT, "docs", "data")


def read_csv(path: str, json_keys) -> list[dict]:
  """The rows of a CSV written by ``sweeps.write_csv``: ``json_keys`` decoded from JSON
  (lists), ``seed`` as an int."""
  import csv  # pylint: disable=g-import-not-at-top
  with open(path) as f:
    rows = list(csv.DictReader(f))
  for r in rows:
    for key in json_keys:
      r[key] = json.loads(r[key])
    r["seed"] = int(r["seed"])
  return rows


def legacy_compare_table(path: str) -> str:
  """results.md section 3's skip table from compare.py's CSV (one row per method and
  seed): per-layer columns bottom to top, informative on >= 1 x-based unit."""
  rows = read_csv(path, ("active_units_x", "active_units_conditional", "kl_per_layer_nats",
                         "mutual_information_nats"))
  head = ("| run (4 × 40, 20k steps) | L100 mean ± sd (seeds 0, 1, 2) | ELBO | KL per layer "
          "z1..z4 (mean) | AU x-based z1..z4 per seed | AU conditional z1..z4 per seed | "
          "I(x; z_i) z1..z4 (mean) | seeds with x-info above z1 | seeds with x-info in z4 |\n"
          "|---|---|---|---|---|---|---|---|---|\n")
  lines = []
  for method in dict.fromkeys(r["method"] for r in rows):
    at = sorted((r for r in rows if r["method"] == method), key=lambda r: r["seed"])
    mean = lambda key, d: " / ".join(f"{v:.{d}f}" for v in np.mean([r[key] for r in at], 0))
    units = lambda key: "; ".join(",".join(map(str, r[key])) for r in at)
    above = sum(any(u >= 1 for u in r["active_units_x"][1:]) for r in at)
    top = sum(r["active_units_x"][-1] >= 1 for r in at)
    lines.append(f"| {method} | {mean_sd([float(r['iw_bound_k100']) for r in at])} | "
                 f"{mean_sd([float(r['elbo_nats']) for r in at])} | "
                 f"{mean('kl_per_layer_nats', 2)} | {units('active_units_x')} | "
                 f"{units('active_units_conditional')} | "
                 f"{mean('mutual_information_nats', 2)} | {above}/{len(at)} | {top}/{len(at)} |")
  return head + "\n".join(lines) + "\n"

def legacy_init_table(path: str) -> str:
  """results.md section 0's tables from init_study.py's CSV, in its format and order."""
  rows = read_csv(path, ("active_units_x", "initial_kl_per_layer_nats", "kl_per_layer_nats",
                         "mutual_information_nats"))
  per_layer = lambda at, key, d=1: " / ".join(
      f"{c.mean():.{d}f}±{(c.std(ddof=1) if len(c) > 1 else 0.0):.{d}f}"
      for c in np.asarray([r[key] for r in at], float).T)
  lines = []
  for cell in dict.fromkeys((r["width"], r["depth"], r["method"], r["steps"], r["init"])
                            for r in rows):
    at = sorted((r for r in rows if (r["width"], r["depth"], r["method"], r["steps"],
                                     r["init"]) == cell), key=lambda r: r["seed"])
    above = sum(any(u >= 1 for u in r["active_units_x"][1:]) for r in at)
    top = sum(r["active_units_x"][-1] >= 1 for r in at)
    w, d, m, steps, init = cell
    lines.append(f"| {w}x{d} | {m} | {steps} | {init} | "
                 f"{per_layer(at, 'initial_kl_per_layer_nats')} | "
                 f"{mean_sd([float(r['elbo_nats']) for r in at])} | "
                 f"{per_layer(at, 'kl_per_layer_nats')} | "
                 f"{'; '.join(','.join(map(str, r['active_units_x'])) for r in at)} | "
                 f"{per_layer(at, 'mutual_information_nats', 2)} | {above}/{len(at)} | "
                 f"{top}/{len(at)} |")
  head = ("| model | method | steps | init | initial KL z1..zL | ELBO mean ± sd (seeds) | "
          "KL z1..zL | AU x-based z1..zL per seed | I(x; z_i) z1..zL | seeds with x-info "
          "above z1 | seeds with x-info in z_L |\n|" + "---|" * 11 + "\n")
  return head + "\n".join(lines) + "\n"


TABLES = {
    "init_main": lambda: legacy_init_table(os.path.join(DATA, "init_study_main.csv")),
    "init_others": lambda: legacy_init_table(os.path.join(DATA,
                                                          "init_study_others_wide.csv")),
    "skips_20k": lambda: legacy_compare_table(os.path.join(DATA, "skips_mnist_20k.csv")),
    "phase_4x40": lambda: legacy_phase_table(os.path.join(DATA, "phase_transition.json"),
                                             "4 × 40"),
    "width_3x40": lambda: legacy_phase_table(os.path.join(DATA, "width_3x40.json"), "3 × 40"),
    "width_3x200": lambda: legacy_phase_table(os.path.join(DATA, "width_3x200.json"),
                                              "3 × 200"),
    "parallel_cpu": parallel_table,
    "rho_n_grid": lambda: rho_n_table(load("rho_n_grid")),
    "rho_n_fit": lambda: kappa_fit_text(load("rho_n_grid")),
    "rho_n_same_kappa": lambda: same_kappa_table(load("rho_n_grid") + load("rho_n_10")),
    "rho_n_10_table": lambda: rho_n_table(load("rho_n_10"), load("rho_n_grid"))
                              if load("rho_n_10") else
                              "No n = 10 run has finished yet.\n",
    "rho_n_prediction": lambda: prediction_text(10),
    "campaign_table": lambda: campaign_table(load(CAMPAIGN)),
    "campaign_vs_vae": lambda: campaign_vs_vae(load(CAMPAIGN)),
    "campaign_stability": lambda: campaign_stability(load(CAMPAIGN)),
}


CAMPAIGN = "fashion_mnist_100k"
# A logged interval (log_every = 1,000 steps) counts as a gradient spike when its mean
# gradient norm exceeds this multiple of the run's median interval mean.
SPIKE_FACTOR = 3.0


def _method_label(config) -> str:
  if config["method"] != "hvae":
    return config["method"]
  return f"hvae ρ = {float(config['rho']):g}, n = {int(config['num_ou_samples'])}"


def _by_method(runs):
  """{label: [runs sorted by seed]}, the VAE first, then by decreasing rho."""
  out = {}
  for r in runs:
    out.setdefault(_method_label(r["config"]), []).append(r)
  order = lambda kv: (kv[0] != "vae", -float(kv[1][0]["config"]["rho"]))
  return {k: sorted(v, key=lambda r: r["seed"]) for k, v in sorted(out.items(), key=order)}


def spikes(run) -> dict:
  """What the logged training curve shows of instabilities: the intervals whose mean
  gradient norm exceeds SPIKE_FACTOR x the run's median (their steps), and the largest
  rise of the interval-mean training loss from one interval to the next after the first
  10% of training (nats)."""
  c = run.get("train_curve") or {}
  if not c.get("grad_norm"):
    return {"steps": None, "loss_rise": None}
  g = np.asarray(c["grad_norm"], float)
  steps = [int(s) for s, v in zip(c["step"], g) if v > SPIKE_FACTOR * np.median(g)]
  loss, st = np.asarray(c["loss"], float), np.asarray(c["step"])
  late = st[1:] > 0.1 * st[-1]
  rise = float(np.max(np.diff(loss)[late])) if late.any() else 0.0
  return {"steps": steps, "loss_rise": rise}


def campaign_table(runs) -> str:
  if not runs:
    return "No run of the campaign has finished yet.\n"
  head = ("| method | seeds | test L1000 | test ELBO | KL per layer z1..z4 (mean) | top KL | "
          "x-based AU z1..z4 per seed | x-share units (≥ 0.1) z1..z4 per seed | "
          "x-share of the layer's variance z4 per seed | I(x; z_i) z1..z4 (mean) | "
          "seeds: z4 informative | training minutes per run |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|\n")
  lines = []
  for label, at in _by_method(runs).items():
    f = lambda r: r["final"]
    share = ", ".join(f"{f(r)['x_share_layer'][-1]:.3f}" for r in at)
    minutes = ", ".join(f"{r['train_seconds'] / 60:.0f}" for r in at)
    lines.append(
        f"| {label} | {','.join(str(r['seed']) for r in at)} | "
        f"{mean_sd([r['iw_bound_k1000'] for r in at])} | "
        f"{mean_sd([f(r)['elbo_nats'] for r in at])} | "
        f"{per_layer_mean(at, 'kl_per_layer_nats')} | "
        f"{mean_sd([f(r)['kl_per_layer_nats'][-1] for r in at], 2)} | "
        f"{'; '.join(','.join(map(str, f(r)['active_units_x'])) for r in at)} | "
        f"{'; '.join(','.join(map(str, f(r)['x_share_units'])) for r in at)} | "
        f"{share} | "
        f"{per_layer_mean(at, 'mutual_information_nats', 2)} | "
        f"{sum(informative(r)[-1] for r in at)}/{len(at)} | "
        f"{minutes} |")
  return head + "\n".join(lines) + "\n"


def campaign_vs_vae(runs) -> str:
  """Each hvae run's test L1000 minus the same seed's VAE, and the count of seeds where
  the HVAE is ahead."""
  by = _by_method(runs)
  vae = {r["seed"]: r["iw_bound_k1000"] for r in by.get("vae", [])}
  lines = []
  for label, at in by.items():
    if label == "vae":
      continue
    paired = [r for r in at if r["seed"] in vae]
    if not paired:
      continue
    d = [r["iw_bound_k1000"] - vae[r["seed"]] for r in paired]
    lines.append(f"* {label}: test L1000 − the same seed's VAE: " +
                 ", ".join(f"seed {r['seed']}: {x:+.2f}" for r, x in zip(paired, d)) +
                 f" nats; ahead in {sum(x > 0 for x in d)}/{len(d)} seeds.")
  if not lines:
    return "No seed has both a VAE and an HVAE run yet.\n"
  if len(vae) > 1:
    lines.append(f"* For scale: the VAE's test L1000 varies by "
                 f"{np.std(list(vae.values()), ddof=1):.2f} nats (sd) across its "
                 f"{len(vae)} seeds.")
  else:
    lines.append("* For scale: one VAE seed so far, so no seed-to-seed sd yet.")
  return "\n".join(lines) + "\n"


def campaign_stability(runs) -> str:
  if not runs:
    return "No run of the campaign has finished yet.\n"
  head = ("| run | skipped non-finite updates | intervals with mean gradient norm > "
          f"{SPIKE_FACTOR:g}× the run's median (steps) | largest rise of the 1,000-step mean "
          "training loss after 10% of training (nats) | median gradient norm |\n"
          "|---|---|---|---|---|\n")
  lines = []
  for label, at in _by_method(runs).items():
    for r in at:
      sp = spikes(r)
      g = (r.get("train_curve") or {}).get("grad_norm")
      where = ("not logged" if sp["steps"] is None else
               ", ".join(f"{s:,}" for s in sp["steps"]) or "none")
      rise = "not logged" if sp["loss_rise"] is None else f"{sp['loss_rise']:+.2f}"
      median = "—" if not g else f"{np.median(g):.1f}"
      lines.append(f"| {label}, seed {r['seed']} | {r['skipped_nonfinite']} | "
                   f"{where} | {rise} | {median} |")
  return head + "\n".join(lines) + "\n"


def render(text: str) -> str:
  def sub(m):
    name = m.group("name")
    if name not in TABLES:
      raise KeyError(f"generated block {name!r} has no entry in experiments/tables.py")
    return m.group(1) + TABLES[name]() + m.group(4)
  return BLOCK.sub(sub, text)


def figures(out_dir=os.path.join(ROOT, "docs", "figures")):
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  from lab import plots  # pylint: disable=g-import-not-at-top
  os.makedirs(out_dir, exist_ok=True)
  runs = load("rho_n_grid") + load("rho_n_10")
  if runs:
    rows = []
    for r in runs:
      c = r["config"]
      n = int(c["num_ou_samples"]) if c["method"] == "hvae" else 0
      rho = float(c["rho"]) if n else 1.0
      rows.append({"rho": rho, "num_ou_samples": n, "kappa": kappa(rho, n),
                   "seed": r["seed"], **r["final"]})
    plots.rho_n_curves({"mnist": rows}, os.path.join(out_dir, "rho_n_top_kl_vs_rho.png"),
                       os.path.join(out_dir, "rho_n_top_kl_vs_kappa.png"),
                       title="4 x 40 MLP, 8,000 steps, 9k MNIST digits, 3 seeds")
  campaign = load(CAMPAIGN)
  if campaign:
    colours = ["tab:gray", "tab:red", "tab:blue", "tab:green"]
    styles = ["-", "--", ":"]
    curves = {}
    for m, (label, at) in enumerate(_by_method(campaign).items()):
      for r in at:
        ev = sorted(r["trainer_evals"], key=lambda e: e["step"])
        steps = np.array([e["step"] for e in ev])
        curves[f"{label}, seed {r['seed']}"] = {
            "elbo": (steps, np.array([e["elbo_nats"] for e in ev])),
            "top_kl": (steps, np.array([e["kl_per_layer_nats"][-1] for e in ev])),
            "style": {"color": colours[m % len(colours)],
                      "linestyle": styles[r["seed"] % len(styles)], "marker": "."}}
    plots.training_curves(
        curves, os.path.join(out_dir, "fashion_mnist_100k_curves.png"),
        title="Fashion-MNIST, 4 x 40 MLP: validation (1,000 images) every 10,000 steps")


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--check", action="store_true")
  parser.add_argument("--figures", action="store_true")
  parser.add_argument("--predict", type=int, default=0,
                      help="record the critical-rho prediction for this n from the grid")
  args = parser.parse_args(argv)
  if args.predict:
    os.makedirs(PREDICTIONS, exist_ok=True)
    path = os.path.join(PREDICTIONS, f"n{args.predict}.json")
    if os.path.exists(path):
      print(f"{path} exists: a prediction is recorded once")
      return 1
    with open(path, "w") as f:
      json.dump(predict(args.predict, load("rho_n_grid") + load("rho_n_10")), f, indent=1)
      f.write("\n")
  stale = []
  for page in PAGES:
    with open(page) as f:
      text = f.read()
    new = render(text)
    if new != text:
      stale.append(page)
      if not args.check:
        with open(page, "w") as f:
          f.write(new)
  if args.figures:
    figures()
  if args.check and stale:
    print("generated blocks differ from their data: " + ", ".join(stale))
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
