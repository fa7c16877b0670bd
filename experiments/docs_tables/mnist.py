"""The paper's MNIST tables (Tables 3 and 4) at 100k steps, from ``docs/runs/mnist_100k``
(``experiments/campaign.py --plan=mnist_100k``): our numbers beside the paper's, and each
comparison of two methods paired by seed with a 95% interval and its verdict."""
from __future__ import annotations

import math

import numpy as np

from . import common
from . import render as markdown

GROUP = "mnist_100k"

# The free-bits values of the paper's baseline, one seed-0 run each (the plan's
# vae+freebits@free_bits=<value>).
FREE_BITS = (0.5, 1.0, 2.0, 3.0)
# The paper's numbers (its Tables 3 and 4: validation L100, 1M steps), by run name.
PAPER = {
    "vae": ("Table 4, static MNIST 40-40-40-40", -86.4),
    "hvae": ("Table 4", -85.5),
    "hvae@rho=0.85": ("Table 4", -85.2),
    "vae+kl": ("Table 4", -84.5),
    "hvae+kl@rho=0.95": ("Table 4", -84.2),
    "t3_vae+kl": ("Table 3, dynamic MNIST 64-32-16-8", -84.6),
    "t3_hvae@rho=0.95": ("Table 3", -81.6),
    "t3_iwae": ("Table 3", -84.46),
    "t3_hvae@rho=0.9": ("Table 3", -81.7),
    "iwae": ("Table 4", -84.9),
    # Table 4's VAE+Freebits; the paper does not say which of {0.5, 1, 2, 3} it is.
    **{f"vae+freebits@free_bits={fb}": ("Table 4, value not stated", -87.0)
       for fb in FREE_BITS},
}
# The paper's active units of its Table 4 VAE, top to bottom.
PAPER_VAE_UNITS = "1, 3, 9, 17"
# Comparisons (method, baseline), each paired by seed.
PAIRS = (("hvae", "vae"), ("hvae@rho=0.85", "vae"), ("hvae+kl@rho=0.95", "vae+kl"),
         ("t3_hvae@rho=0.95", "t3_vae+kl"), ("vae", "vae_1layer"), ("vae+skip", "vae"),
         ("hvae", "vae+skip"), ("iwae", "vae"), ("t3_hvae@rho=0.9", "t3_vae+kl"),
         # Equal kappa, lower cost: n = 2 against n = 5 at the same kappa.
         ("hvae@kappa=0.152@n=2", "hvae"), ("hvae@kappa=0.408@n=2", "hvae@rho=0.7"),
         # The larger discount against the VAE and against the 1-layer VAE.
         ("hvae@rho=0.7", "vae"), ("hvae@rho=0.7", "vae_1layer"),
         ("hvae@kappa=0.408@n=2", "vae"), ("hvae@kappa=0.408@n=2", "vae_1layer"),
         # What KL warm-up does to the VAE, and against the 1-layer VAE.
         ("vae+kl", "vae"), ("vae+kl", "vae_1layer"))
LABELS = {
    "vae": "vae", "hvae": "hvae ρ = 0.9, n = 5",
    "vae+skip": "vae, updates above norm 1,000 skipped",
    "hvae@rho=0.85": "hvae ρ = 0.85, n = 5", "vae+kl": "vae + KL annealing",
    "hvae+kl@rho=0.95": "hvae ρ = 0.95 + KL annealing",
    "hvae@kappa=0.152@n=2": "hvae κ = 0.152, n = 2", "hvae@rho=0.7": "hvae ρ = 0.7, n = 5",
    "hvae@kappa=0.408@n=2": "hvae κ = 0.408, n = 2",
    "t3_vae+kl": "Table 3: vae + KL annealing", "t3_hvae@rho=0.95": "Table 3: hvae ρ = 0.95",
    "vae_1layer": "vae, 1 layer of 40 (baseline)",
    "hvae@rho=0.8": "hvae ρ = 0.8, n = 5", "hvae@rho=0.95": "hvae ρ = 0.95, n = 5",
    "hvae@rho=0.98": "hvae ρ = 0.98, n = 5", "iwae": "iwae (5 samples)",
    "t3_hvae@rho=0.9": "Table 3: hvae ρ = 0.9", "t3_iwae": "Table 3: iwae (5 samples)",
    **{f"vae+freebits@free_bits={fb}": f"vae + free bits {fb} (every layer)"
       for fb in FREE_BITS},
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


# The seed-0 pair continued past 100k (the 100k workdirs resumed with a longer budget,
# validation every 50k): docs/runs/mnist_300k, the same summary flags as the campaign.
CONTINUATION = "mnist_300k"
# The reference VAE outside the package (experiments/reference/torch_vae.py --data=pkl),
# each run's --json record with its name and seed added: docs/runs/mnist_reference.
REFERENCE = "mnist_reference"


def continuation(cont=None, base=None) -> str:
  """The seed-0 pair's learning curve past 100k: validation L100 (1,000 digits) at every
  evaluation of each method's longest run, the HVAE's lead, and each run's final numbers
  at 100k (the campaign's summary) and at its last step (test L1000, validation L100 on
  all 10,000 digits, top KL, Burda units), beside the paper's 1M-step numbers."""
  cont = runs(CONTINUATION) if cont is None else cont
  base = runs() if base is None else base
  if not cont:
    return "The continuation has not finished yet.\n"
  names = [n for n in ("vae", "hvae") if n in cont]
  curve = {}
  for n in names:
    r = next((r for r in cont[n] if r["seed"] == 0), None)
    if r is not None:
      curve[n] = {e["step"]: e["iw_bound_k100"] for e in r["trainer_evals"]}
  steps = sorted(set().union(*curve.values())) if curve else []
  rows = []
  for s in steps:
    vals = [curve[n].get(s) for n in names]
    lead = (f"{vals[1] - vals[0]:+.1f}" if len(vals) == 2 and None not in vals else "—")
    rows.append([f"{s:,}"] + ["—" if v is None else f"{v:.1f}" for v in vals] + [lead])
  out = markdown.table(["step"] + [f"{LABELS.get(n, n)}: validation L100 (1,000 digits)"
                                   for n in names] + ["hvae − vae"], rows)
  rows = []
  for n in names:
    for label, r in (("100k", next((r for r in base.get(n, []) if r["seed"] == 0), None)),
                     ("last", next((r for r in cont[n] if r["seed"] == 0), None))):
      if r is None:
        continue
      val = _val_l100(r)
      rows.append([LABELS.get(n, n), f"{r['step']:,}", f"{_l1000(r):.1f}",
                   "—" if val is None else f"{val:.1f}",
                   f"{PAPER[n][1]:.1f}" if n in PAPER else "—",
                   f"{r['final']['kl_per_layer_nats'][-1]:.2f}", _units(r)])
  return out + "\n" + markdown.table(
      ["run (seed 0)", "step", "test L1000", "validation L100 (10,000 digits)",
       "paper (1M steps)", "top KL", "Burda units (top → bottom)"], rows)


# Test L5000 of the seed-0 runs (Tables 1-2: the paper's test numbers are L5000):
# ``experiments/evaluate.py --split=test --num_importance_samples=5000`` on a copy of
# releases/mnist_100k/<name>_seed_0 (or, for a run without a release, of its campaign
# workdir's config.json and 100k checkpoint), its eval_test.json with "name", "seed" and
# "release" (null without one) added: docs/runs/mnist_l5000.
L5000 = "mnist_l5000"
# The paper's test L5000 (its Tables 1 and 2), by run name.
PAPER_L5000 = {"hvae": ("Table 1, static MNIST, HVAE L = 4", -83.42),
               "t3_hvae@rho=0.95": ("Table 2, dynamic MNIST, HVAE L = 4", -81.2)}


def l5000(records=None, base=None) -> str:
  """Test L5000 of each evaluated release beside the same run's test L1000 (the campaign's
  summary: other draws of the same bound with K = 1000) and the paper's L5000."""
  records = common.load(L5000) if records is None else records
  base = runs() if base is None else base
  if not records:
    return "No L5000 evaluation has finished yet.\n"
  rows = []
  for r in sorted(records, key=lambda r: (list(LABELS).index(r["name"])
                                          if r["name"] in LABELS else len(LABELS), r["seed"])):
    run = next((b for b in base.get(r["name"], []) if b["seed"] == r["seed"]), None)
    paper = PAPER_L5000.get(r["name"])
    rows.append([LABELS.get(r["name"], r["name"]), str(r["seed"]), f"{r['step']:,}",
                 f"{r['num_examples']:,}", f"{r['iw_bound_k5000']:.2f}",
                 "—" if run is None else f"{_l1000(run):.2f}", f"{r['elbo_nats']:.2f}",
                 "—" if paper is None else f"{paper[1]:.2f} ({paper[0]})"])
  return markdown.table(["run", "seed", "step", "test digits", "test L5000",
                         "test L1000 (summary)", "test ELBO", "paper's L5000 (1M steps)"],
                        rows)


def _reference_label(r) -> str:
  a = r["args"]
  latent = [int(v) for v in str(a["latent"]).split(",")]
  shape = f"{len(latent)} × {latent[0]}" if len(set(latent)) == 1 else "-".join(
      map(str, latent))
  scale = ("softplus scales, unbounded" if a["scale"] == "softplus"
           else "scales bounded as the library's")
  clip = f"clip {a['clip']:g}" if a["clip"] else "no clipping"
  method = (f"hvae ρ = {a['rho']:g}, n = {a['n']}, " if a.get("method") == "hvae" else "")
  return f"PyTorch reference, {shape}: {method}init {a['init']}, {scale}, {clip}"


def reference(refs=None, library=None) -> str:
  """The reference VAE outside the package beside the library's VAE of the same shape on
  the same data and budget: validation L100 (1,000 digits) along the way, and on all 10,000
  validation digits and the test digits (L_K) at the end; every seed."""
  refs = common.load(REFERENCE) if refs is None else refs
  library = runs() if library is None else library
  if not refs:
    return "No reference run has finished yet.\n"
  rows = []
  for r in sorted(refs, key=lambda r: (_reference_label(r), r["args"]["seed"])):
    curve = {p["step"]: p for p in r["curve"]}
    k = r["args"]["eval_k"]
    pts = ", ".join(f"{s // 1000}k: {curve[s][f'iw_k{k}']:.1f}" for s in sorted(curve)
                    if s % 20_000 == 0 or s == 10_000)
    test = r.get("final_test", {})
    test_txt = ", ".join(f"L{kk[4:]} {v:.1f}" for kk, v in test.items() if kk.startswith("iw_k"))
    rows.append([_reference_label(r), str(r["args"]["seed"]),
                 f"{r['step']:,}" + (f" ({r['stopped']})" if r.get("stopped") else ""),
                 pts or "—", f"{r['final_eval'][f'iw_k{k}']:.1f}", test_txt or "—",
                 str(r.get("active_units_z1", "—"))])
  for name, label in (("vae", "library vae, 4 × 40"),
                      ("vae_1layer", "library vae, 1 layer of 40")):
    for r in library.get(name, []):
      ev = {e["step"]: e for e in r["trainer_evals"]}
      pts = ", ".join(f"{s // 1000}k: {ev[s]['iw_bound_k100']:.1f}" for s in sorted(ev)
                      if s % 20_000 == 0 or s == 10_000)
      val = _val_l100(r)
      rows.append([label, str(r["seed"]), f"{r['step']:,}", pts,
                   "—" if val is None else f"{val:.1f}", f"L1000 {_l1000(r):.1f}",
                   str(r["final"]["active_units_x"][0])])
  return markdown.table(["run", "seed", "steps", "validation L100 (1,000 digits) along the way",
                         "validation L100 (10,000)", "test", "Burda units z1"], rows)


# A logged interval "has a spike" when its largest per-step training loss exceeds this
# (nats; a 4 x 40 model's typical batch loss is 90-140 after 10k steps).
SPIKE_LOSS = 1_000.0


def spikes(by_group=None) -> str:
  """Per run of the campaign and the continuation: how many logged intervals (1,000 steps)
  hold a batch loss above SPIKE_LOSS, the first such step, the largest batch loss and
  gradient norm, the median interval-mean gradient norm (the clipping threshold is 100)
  and, for runs with gradient skipping, the fraction of updates skipped."""
  by_group = ({GROUP: runs(), CONTINUATION: runs(CONTINUATION)} if by_group is None
              else by_group)
  rows = []
  for group, by_name in by_group.items():
    for name, at in by_name.items():
      for r in at:
        tc = r.get("train_curve") or {}
        if "loss_max" not in tc:
          continue
        steps, loss_max = np.asarray(tc["step"]), np.asarray(tc["loss_max"], float)
        hot = steps[loss_max > SPIKE_LOSS]
        skipped = tc.get("update_skipped")
        rows.append([
            f"{LABELS.get(name, name)}{' (300k)' if group == CONTINUATION else ''}",
            str(r["seed"]), f"{len(hot)} / {len(steps)}",
            f"{int(hot[0]):,}" if len(hot) else "—", f"{loss_max.max():.3g}",
            f"{max(tc['grad_norm_max']):.3g}", f"{np.median(tc['grad_norm']):.0f}",
            "—" if skipped is None else f"{np.mean(skipped):.2%}"])
  if not rows:
    return "No run has a logged training curve yet.\n"
  return markdown.table(
      ["run", "seed", f"intervals with a batch loss > {SPIKE_LOSS:,.0f} nats",
       "first such step", "largest batch loss (nats)", "largest gradient norm",
       "median gradient norm (interval means)", "updates skipped"], rows)


# experiments/gap_decomposition.py's records: docs/runs/gap_decomposition/<run>.json.
GAP_DECOMPOSITION = "gap_decomposition"


def gap_decomposition(records=None) -> str:
  """Per record, (ρ, n) cell and generator layer: the measured surrogate gap (both mean and
  scale smoothed, ± its standard error), the gap with only the mean smoothed, the κ
  (degree-1) term, the Hermite sum's bracket and the κ term's share of the mean-only gap."""
  if records is None:
    import glob, json, os  # noqa: E401  pylint: disable=g-import-not-at-top,multiple-imports
    records = [dict(json.load(open(p)), name=os.path.basename(p)[:-5]) for p in sorted(
        glob.glob(os.path.join(common.RUNS, GAP_DECOMPOSITION, "*.json")))]
  rows = []
  for rec in records:
    for cell in rec["cells"]:
      for layer in cell["layers"]:
        mean_only, kterm = layer["measured_mean_only"], layer["kappa_term"]
        share = f"{kterm / mean_only:.0%}" if abs(mean_only) > 3 * max(
            layer["measured_mean_only_se"], 1e-12) else "—"
        low, high = layer["hermite_sum"]
        rows.append([
            f"{rec['name']} ({rec['step']:,} steps)", f"{cell['rho']:g}", str(cell["n"]),
            f"{cell['kappa']:.3f}", f"z{layer['layer'] + 1} → z{layer['layer']}",
            f"{layer['measured']:.3f} ± {layer['measured_se']:.3f}",
            f"{mean_only:.3f} ± {layer['measured_mean_only_se']:.3f}", f"{kterm:.3f}",
            f"[{low:.3f}, {high:.3f}]", share])
  if not rows:
    return "No gap decomposition has been recorded yet.\n"
  return markdown.table(
      ["trained model", "ρ", "n", "κ", "generator (parent → layer)", "measured gap (nats)",
       "mean only smoothed", "κ term", "Hermite sum", "κ term / mean-only gap"], rows)


def fig1_points(by_name=None) -> list[dict]:
  """The paper's Fig. 1 at its own budget: every finished static 4 x 40 run of the
  campaign that differs from the VAE only by rho and n (``vae``, ``hvae``,
  ``hvae@rho=R``, ``hvae@kappa=K@n=N``), one row per seed with rho (1 for the VAE, as the
  paper draws it), num_ou_samples (0 for the VAE), kappa, seed and the final evaluation."""
  by_name = runs() if by_name is None else by_name
  rows = []
  for name, at in by_name.items():
    if not (name in ("vae", "hvae") or name.startswith(("hvae@rho=", "hvae@kappa="))):
      continue
    for r in at:
      c = r["run_config"]
      n = int(c["num_ou_samples"]) if c["method"] == "hvae" else 0
      rho = float(c["rho"]) if n else 1.0
      rows.append({"name": name, "rho": rho, "num_ou_samples": n,
                   "kappa": common.kappa(rho, n), "seed": r["seed"],
                   "l1000": _l1000(r), **r["final"]})
  # The VAE and n = 5 (the paper's) first, then other n; rho falling, then seed.
  return sorted(rows, key=lambda r: (r["num_ou_samples"] not in (0, 5), r["num_ou_samples"],
                                     -r["rho"], r["seed"]))


def fig1(points=None) -> str:
  """One row per (n, rho) of :func:`fig1_points`: the top layer's KL, z4's share of the
  x-information (the layer's x-share and its units with share >= 0.1), z4's Burda units
  and test L1000, each as mean ± sd with every seed's value."""
  points = fig1_points() if points is None else points
  if not points:
    return "No run of this campaign has finished yet.\n"
  cells = {}
  for p in points:
    cells.setdefault((p["num_ou_samples"], p["rho"]), []).append(p)
  rows = []
  for (n, rho), at in cells.items():
    rows.append([
        "vae" if not n else str(n), f"{rho:.4g}", f"{at[0]['kappa']:.3f}",
        ",".join(str(p["seed"]) for p in at),
        common.mean_sd([p["kl_per_layer_nats"][-1] for p in at], 2),
        common.mean_sd([p["x_share_layer"][-1] for p in at], 3),
        ", ".join(str(p["x_share_units"][-1]) for p in at),
        ", ".join(str(p["active_units_x"][-1]) for p in at),
        common.mean_sd([p["l1000"] for p in at], 1)])
  header = ["n", "ρ", "κ", "seeds", "top KL (nats)", "z4 x-share", "z4 units, x-share ≥ 0.1",
            "z4 units, Burda", "test L1000"]
  return markdown.table(header, rows)
