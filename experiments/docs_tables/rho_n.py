"""The (rho, n) law: the grid of cells (n OU samples, smoothing rho), the logistic fit of
the top-layer KL against kappa(rho, n), the pairs of cells with the same kappa, and the
critical-rho predictions recorded before their runs."""
from __future__ import annotations

import json
import os

import numpy as np

from hermite_vae import ou

from . import common
from .common import kappa, mean_sd, per_layer_mean
from .render import layers, table

PREDICTIONS = os.path.join(common.RUNS, "predictions")


def cell_of(run) -> tuple[int, float]:
  """The run's cell (n, rho): n = 0 and rho = 1 for the VAE."""
  c = run["config"]
  n = int(c["num_ou_samples"]) if c["method"] == "hvae" else 0
  return n, float(c["rho"]) if n else 1.0


def cells(runs) -> dict:
  """{(n, rho): [runs sorted by seed]} in increasing (n, rho); n = 0 for the VAE."""
  out = {}
  for r in runs:
    out.setdefault(cell_of(r), []).append(r)
  return {k: sorted(v, key=lambda r: r["seed"]) for k, v in sorted(out.items())}


def fitted_runs() -> list[dict]:
  """The runs the kappa law is fitted to and tested on: the grid and the n = 10 cells."""
  return common.load("rho_n_grid") + common.load("rho_n_10")


def all_runs() -> list[dict]:
  """Every (rho, n) run: the fitted ones and the n = 2 / n = 3 fine grids that test them."""
  return fitted_runs() + common.load("rho_n_2") + common.load("rho_n_3")


def _top_kl(run) -> float:
  return run["final"]["kl_per_layer_nats"][-1]


def _fmt_gap(v) -> str:
  """A surrogate gap in nats, two significant digits (exponent form from 1e4)."""
  return f"{v:.2g}" if abs(v) < 1e4 else f"{v:.1e}"


def rho_n_table(runs, vae_runs=None) -> str:
  """One Markdown row per cell of ``runs``: its seeds' ELBO, L100 and its difference to
  the VAE run of the same seed (from ``vae_runs``, else from ``runs``), KLs, x-based and
  x-share units, mutual information, surrogate gaps and informative top layers."""
  if not runs:
    return "No run of this grid has finished yet.\n"
  vae = {r["seed"]: r["iw_bound_k100"] for r in (vae_runs or runs)
         if r["config"]["method"] == "vae"}
  depth = common.num_layers(runs)
  header = ["n", "ρ", "κ", "seeds", "ELBO", "L100", "L100 − the VAE's, same seed", "top KL",
            f"KL per layer {layers(depth)} (mean)", f"x-based AU {layers(depth)} per seed",
            f"x-share units (≥ 0.1) {layers(depth)} per seed", "I(x; z_i) (mean)",
            f"surrogate gap {layers(depth - 1)} (mean, nats)", f"seeds: z{depth} informative"]
  rows = []
  for (n, rho), at in cells(runs).items():
    delta = ("—" if not n or not all(r["seed"] in vae for r in at) else
             ", ".join(f"{r['iw_bound_k100'] - vae[r['seed']]:+.1f}" for r in at))
    gap = ("—" if not n else " ".join(
        _fmt_gap(np.mean([r["surrogate_gap"]["gap"][i] for r in at]))
        for i in range(len(at[0]["surrogate_gap"]["gap"]))))
    rows.append([
        n or "vae", f"{rho:g}", f"{kappa(rho, n):.3f}", common.seeds(at),
        mean_sd([r["final"]["elbo_nats"] for r in at]),
        mean_sd([r["iw_bound_k100"] for r in at]), delta,
        mean_sd([_top_kl(r) for r in at], 2), per_layer_mean(at, "kl_per_layer_nats"),
        common.per_seed(r["final"]["active_units_x"] for r in at),
        common.per_seed(r["final"]["x_share_units"] for r in at),
        per_layer_mean(at, "mutual_information_nats", 2), gap,
        f"{sum(common.informative(r)[-1] for r in at)}/{len(at)}"])
  return table(header, rows)


def n_table(n: int) -> str:
  """The rho_n_table of the n-sample runs (group ``rho_n_{n}``), paired with the grid's
  VAE runs, or a line saying that none has finished."""
  runs = common.load(f"rho_n_{n}")
  if not runs:
    return f"No n = {n} run has finished yet.\n"
  return rho_n_table(runs, common.load("rho_n_grid"))


def _logistic(x, a, b, c, w):
  return a + b / (1 + np.exp(np.clip(-(x - c) / w, -50, 50)))


def linear_discount(rho, n) -> float:
  """(1 - rho)(1 - 1/n): the rival law the n = 2 / 3 grid tests against kappa."""
  return (1 - rho) * (1 - 1 / n)


def kappa_fit(runs, discount=kappa) -> dict:
  """Seed-mean top-layer KL against kappa (or another ``discount(rho, n)``) over every
  hvae cell with n > 1 (and the n = 1 cells, discount 0): a logistic fit
  y = a + b / (1 + exp(-(kappa - kappa_c) / w)), its residual RMS against the seed sd.

  Returns {"cells", "kappa_c", "width", "low", "high", "rms_residual", "median_seed_sd",
  "worst": [discount, |residual|]}, or {"cells", "kappa_c": None} if the fit fails."""
  from scipy.optimize import curve_fit  # pylint: disable=g-import-not-at-top
  fitted = {k: v for k, v in cells(runs).items() if k[0] >= 1}
  xs = np.array([discount(rho, n) for n, rho in fitted])
  ys = np.array([np.mean([_top_kl(r) for r in v]) for v in fitted.values()])
  sds = np.array([np.std([_top_kl(r) for r in v], ddof=1) if len(v) > 1 else 0.0
                  for v in fitted.values()])
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
  """The kappa fit of ``runs`` in words, and the rho_c it implies for each n > 1."""
  fit = kappa_fit(runs)
  if fit.get("kappa_c") is None:
    return "The logistic fit in κ did not converge.\n"
  lines = [f"Logistic fit of the seed-mean top-layer KL against κ over the {fit['cells']} "
           f"hvae cells: κ_c = {fit['kappa_c']:.4f}, width {fit['width']:.4f}, from "
           f"{fit['low']:.2f} to {fit['high']:.2f} nats; residual RMS "
           f"{fit['rms_residual']:.2f} nats against a median seed sd of "
           f"{fit['median_seed_sd']:.2f} (largest residual {fit['worst'][1]:.2f} nats at "
           f"κ = {fit['worst'][0]:.3f})."]
  for n in sorted({k[0] for k in cells(runs) if k[0] > 1}):
    rho_c = ou.rho_for_kappa(fit["kappa_c"], n)
    lines.append(f"* n = {n}: κ_c corresponds to ρ_c = {rho_c:.3f}.")
  return "\n".join(lines) + "\n"


def same_kappa_table(runs, tol=0.01) -> str:
  """Pairs of cells with (almost) the same kappa but different n: the direct test of the
  kappa law (the law says their outcomes agree). A Markdown table, two rows per pair, or
  a line saying there is no such pair."""
  by_cell = {k: v for k, v in cells(runs).items() if k[0] >= 2}
  keys = sorted(by_cell, key=lambda k: kappa(k[1], k[0]))
  pairs = []
  for a in range(len(keys)):
    for b in range(a + 1, len(keys)):
      (n1, r1), (n2, r2) = keys[a], keys[b]
      if n1 != n2 and abs(kappa(r1, n1) - kappa(r2, n2)) < tol:
        pairs.append((keys[a], keys[b]))
  if not pairs:
    return "No two cells with different n have κ within 0.01 of each other yet.\n"
  depth = common.num_layers(by_cell[keys[0]])
  header = ["cell", "κ", "top KL", f"x-share units in z{depth} per seed",
            f"z{depth - 1} term (mean)"]
  rows = []
  for pair in pairs:
    for n, rho in pair:
      at = by_cell[(n, rho)]
      rows.append([f"n = {n}, ρ = {rho:g}", f"{kappa(rho, n):.4f}",
                   mean_sd([_top_kl(r) for r in at], 2),
                   ", ".join(str(r["final"]["x_share_units"][-1]) for r in at),
                   f"{np.mean([r['final']['kl_per_layer_nats'][-2] for r in at]):.2f}"])
    rows.append(None)
  return table(header, rows[:-1])


def measured_rho_c(runs, n, level):
  """(rho, [(rho, seed-mean top KL), ...]): where the seed-mean top-layer KL of the
  n-sample cells crosses ``level`` (linear interpolation in rho between the bracketing
  cells; None if it does not), and the curve it was read from."""
  at = sorted((rho, np.mean([_top_kl(r) for r in v]))
              for (m, rho), v in cells(runs).items() if m == n)
  for (r0, y0), (r1, y1) in zip(at, at[1:]):
    if (y0 - level) * (y1 - level) <= 0 and y0 != y1:
      return r0 + (level - y0) * (r1 - r0) / (y1 - y0), at
  return None, at


def predict(n: int, runs) -> dict:
  """The critical rho for ``n`` OU samples predicted from ``runs`` under three hypotheses:
  the kappa law (``rho_c_predicted``: kappa(rho_c, n) = kappa_c of the logistic fit, i.e.
  rho_c = sqrt(1 - kappa_c / (1 - 1/n))), the linear law (the same fit in
  (1 - rho)(1 - 1/n)) and an n-independent rho_c (the mean of the measured crossings of
  the fit's midpoint by the n >= 5 cells). Returns the record of
  ``docs/runs/predictions/n{n}.json``."""
  fit = kappa_fit(runs)
  rho_c = ou.rho_for_kappa(fit["kappa_c"], n)
  level = (fit["low"] + fit["high"]) / 2
  linear = kappa_fit(runs, linear_discount)
  by_cell = cells(runs)
  crossings = {m: measured_rho_c(runs, m, level)[0]
               for m in sorted({k[0] for k in by_cell}) if m >= 5}
  crossings = {m: r for m, r in crossings.items() if r is not None}
  fitted = sorted({(k[0], k[1]) for k in by_cell if k[0] >= 1})
  return {"n": n, "rho_c_predicted": rho_c, "fit": fit, "midpoint_top_kl": level,
          "rho_c_linear_law": 1 - linear["kappa_c"] / (1 - 1 / n), "linear_fit": linear,
          "rho_c_n_independent": float(np.mean(list(crossings.values()))),
          "n_independent_from": {str(m): r for m, r in crossings.items()},
          "from_cells": [list(c) for c in fitted]}


def prediction_text(n: int) -> str:
  """The recorded prediction for n (``PREDICTIONS/n{n}.json``) and what the n-sample runs
  measured, in words; or a line saying no prediction is recorded."""
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
  rivals = {"κ law": pred["rho_c_predicted"]}
  if "rho_c_linear_law" in pred:
    rivals.update({"linear law (1 − ρ)(1 − 1/n)": pred["rho_c_linear_law"],
                   "n-independent ρ_c": pred["rho_c_n_independent"]})
    lines.append(
        f"Recorded with it, the rival hypotheses: the linear law, the same fit in "
        f"(1 − ρ)(1 − 1/n), predicts ρ_c = {pred['rho_c_linear_law']:.3f}; an "
        f"n-independent ρ_c, the mean of the n ≥ 5 cells' crossings ("
        + ", ".join(f"n = {m}: {r:.3f}" for m, r in pred["n_independent_from"].items())
        + f"), predicts ρ_c = {pred['rho_c_n_independent']:.3f}.")
  runs = common.load("rho_n_grid") + common.load(f"rho_n_{n}")
  rho_c, at = measured_rho_c(runs, n, pred["midpoint_top_kl"])
  if at:
    lines.append("")
    lines.append(f"**Measured** (n = {n}, seed-mean top KL per ρ: " +
                 ", ".join(f"{r:g}: {y:.2f}" for r, y in at) + "): " +
                 (f"the curve crosses {pred['midpoint_top_kl']:.2f} nats at "
                  f"**ρ = {rho_c:.3f}** (linear interpolation between the cells)."
                  if rho_c is not None else "the curve does not cross the midpoint "
                  "within the measured ρ."))
    if rho_c is not None and len(rivals) > 1:
      below = max(r for r, y in at if r <= rho_c)
      above = min(r for r, y in at if r >= rho_c)
      near = min(rivals, key=lambda k: abs(rivals[k] - rho_c))
      lines.append("")
      lines.append(
          f"Against the predictions (bracket of cells [{below:g}, {above:g}]): " +
          "; ".join(f"{k} {v:.3f} ({v - rho_c:+.3f})" for k, v in rivals.items()) +
          f". Closest: the {near}." +
          (" The n-independent prediction lies outside the bracket."
           if not below <= rivals["n-independent ρ_c"] <= above else ""))
  return "\n".join(lines) + "\n"


def pooled_bound_table(runs) -> str:
  """Each n > 1 cell's L100 against the pooled VAE-equivalent runs (the VAE and every
  n = 1 cell, which train like the VAE: docs/theory.md): Welch's t and p, and whether p
  is below 0.05 / (number of cells) (Bonferroni). The n > 1 cells lose their seed
  correlation with the VAE, so this, not the same-seed difference, is the fair band."""
  from scipy import stats  # pylint: disable=g-import-not-at-top
  pool = [r["iw_bound_k100"] for r in runs
          if r["config"]["method"] == "vae" or int(r["config"]["num_ou_samples"]) == 1]
  grid = {k: v for k, v in cells(runs).items() if k[0] > 1}
  if len(pool) < 2 or not grid:
    return "Not enough runs for the pooled comparison.\n"
  rows = []
  for (n, rho), at in grid.items():
    values = [r["iw_bound_k100"] for r in at]
    test = stats.ttest_ind(values, pool, equal_var=False)
    rows.append([f"n = {n}, ρ = {rho:g}", ", ".join(f"{v:.1f}" for v in values),
                 f"{np.mean(values):.1f}", f"{np.mean(values) - np.mean(pool):+.1f}",
                 f"{test.statistic:.2f}", f"{test.pvalue:.2g}",
                 "yes" if test.pvalue < 0.05 / len(grid) else "no"])
  head = (f"Pooled VAE-equivalent runs (the VAE and every n = 1 cell, {len(pool)} runs): "
          f"L100 {np.mean(pool):.1f} ± {np.std(pool, ddof=1):.1f}.\n\n")
  return head + table(
      ["cell", "L100 per seed", "mean", "− pooled mean", "Welch t", "p",
       f"p < 0.05/{len(grid)}"], rows)


def equal_kappa_test(group: str) -> str:
  """'Where the law could break' (docs/runs/predictions/where_the_law_could_break.json):
  per kappa of the group, the n = 2 and n = 5 cells' top-layer KL (every seed), their
  difference with a 95% Welch interval, 1 - rho of each, the 4 x 40 grid's fitted top KL
  at that kappa, and whether the two cells agree (the interval contains 0)."""
  from scipy.stats import ttest_ind  # pylint: disable=g-import-not-at-top
  runs = common.load(group)
  if not runs:
    return f"No run of `{group}` has finished yet.\n"
  with open(os.path.join(PREDICTIONS, "where_the_law_could_break.json")) as f:
    fit = json.load(f)["kappa_fit_of_the_4x40_grid"]
  by_cell = cells(runs)
  by_kappa = {}
  for (n, rho), at in by_cell.items():
    if n >= 2:
      by_kappa.setdefault(round(kappa(rho, n), 3), {})[n] = (rho, at)
  rows = []
  for k in sorted(by_kappa):
    got = by_kappa[k]
    fitted = _logistic(k, fit["low"], fit["high"] - fit["low"], fit["kappa_c"], fit["width"])
    tops = {n: [_top_kl(r) for r in at] for n, (_, at) in got.items()}
    cell_txt = lambda n: (mean_sd(tops[n], 2) + f" (1 − ρ = {1 - got[n][0]:.3f})"
                          if n in got else "—")
    diff, verdict = "—", "—"
    if 2 in tops and 5 in tops and len(tops[2]) > 1 and len(tops[5]) > 1:
      a, b = np.array(tops[2]), np.array(tops[5])
      res = ttest_ind(a, b, equal_var=False)
      low, high = res.confidence_interval(0.95)
      diff = f"{a.mean() - b.mean():+.2f} [{low:+.2f}, {high:+.2f}]"
      verdict = "agree" if low <= 0 <= high else "differ"
    rows.append([f"{k:.3f}", cell_txt(2), cell_txt(5), diff, f"{fitted:.2f}", verdict])
  vae = by_cell.get((0, 1.0))
  note = ("" if not vae else
          f"\nThe VAE of the same model: top KL {mean_sd([_top_kl(r) for r in vae], 2)}.\n")
  return table(["κ", "n = 2: top KL", "n = 5: top KL", "n = 2 − n = 5 (95% Welch interval)",
                "4 × 40 fit at κ (no skips)", "equal-κ cells"], rows) + note
