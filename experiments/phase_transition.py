"""Phase transition (paper Fig. 1): train one model per rho, evaluate the original model,
plot top-layer KL, both active-unit counts, I(x; z_i) and the ELBO against rho, and
estimate the critical rho of each curve.

Paper budget (default): 100k steps per rho, rho in {0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 1}.
Reduced budget (< 1 hour on 2 CPU cores), MNIST from ``mnist.pkl.gz`` (docs/data.md says
how to extract it to /tmp/mnist_pkl; ``--datasets=mnist_embedded`` needs nothing):

    python experiments/phase_transition.py --workdir=/tmp/phase \
      --config=configs/mnist_mlp.py --config.num_train_steps=3000 \
      --config.eval_max_examples=1000 --rhos=0.5,0.7,0.8,0.9,0.95,1.0 \
      --datasets='binarized_mnist|/tmp/mnist_pkl'

``--datasets`` overlays several datasets (``name|data_dir|train_split|eval_split``, the
last three optional). ``--refine_rounds=R`` adds ``--refine_points`` rhos inside the
interval of the sharpest drop of the seed-mean top-layer KL, R times (coarse to fine).
``--seeds=0,1,2`` trains one model per (rho, seed) in ``<dataset>/rho_<r>/seed_<s>``: the
CSV/JSON hold one row per seed, the critical-rho estimates use the mean over seeds, the
plot shows the mean and every seed, and the printed table mean ± sd. Re-running resumes:
finished runs are read back, interrupted ones continue from their checkpoints.

``--num_ou_samples=1,2,5,20`` adds an axis n: one model per (n, rho, seed) in
``<dataset>/n_<n>/rho_<r>/seed_<s>``; every row carries ``num_ou_samples`` and
``kappa`` = (1 - rho^2)(1 - 1/n) (docs/theory.md), the critical rho is estimated per n,
and ``phase_transition_kappa.png`` plots the top KL against kappa. ``--vae`` adds the VAE
(``<dataset>/vae/seed_<s>``, kappa = 0). ``--parallel=K`` trains K models at once, each in
its own process on its own CPUs (``lab/sweeps.train_many``).
"""
import json
import os
import sys

from absl import app, flags, logging  # pylint: disable=g-multiple-import
import numpy as np
from ml_collections import config_flags

from hermite_vae import config_lib, ou
from lab import plots, sweeps

config_flags.DEFINE_config_file("config", "configs/mnist_mlp.py", "Base training config.")
flags.DEFINE_string("workdir", None, "Root directory: one sub-workdir per (dataset, rho).")
flags.DEFINE_list("rhos", ["0.5", "0.6", "0.7", "0.8", "0.85", "0.9", "0.95", "1.0"], "rho grid.")
flags.DEFINE_list("datasets", [], "Datasets to overlay: name|data_dir|train_split|eval_split. "
                  "Empty: the config's dataset.")
flags.DEFINE_integer("refine_rounds", 0, "Coarse-to-fine rounds around the sharpest drop.")
flags.DEFINE_integer("refine_points", 3, "New rhos per refinement round.")
flags.DEFINE_list("seeds", ["0"], "Seeds: one model per (rho, seed).")
flags.DEFINE_list("num_ou_samples", [], "OU sample counts n: one model per (n, rho, seed). "
                  "Empty: the config's num_ou_samples, without an n level in the workdirs.")
flags.DEFINE_bool("vae", False, "Also train the VAE (kappa = 0) per seed.")
sweeps.define_parallel_flag()
flags.mark_flag_as_required("workdir")
FLAGS = flags.FLAGS

CURVES = ("top_kl", "active_units_x_total", "active_units_conditional_total", "top_mi")


def parse_dataset(spec: str, base):
  parts = spec.split("|")
  c = base.copy_and_resolve_references()
  c.dataset = parts[0]
  if len(parts) > 1 and parts[1]:
    c.data_dir, c.data_source = parts[1], "files"
  c.train_split = parts[2] if len(parts) > 2 else ""
  c.eval_split = parts[3] if len(parts) > 3 else ""
  return parts[0], c


def _row(result, name, rho, n=None):
  # The data the run actually trained on (a fallback to the embedded digits says so).
  row = {"dataset": result.get("data_used", name), "rho": float(rho), "seed": result["seed"],
         "workdir": result["workdir"]}
  if n is not None:
    row["num_ou_samples"] = int(n)
    row["kappa"] = ou.kappa(float(rho), int(n)) if n else 0.0
    row["method"] = "hvae" if n else "vae"
  row.update({k: result[k] for k in ("elbo_nats", "reconstruction_nats", "kl_nats",
                                     "kl_per_layer_nats", "active_units_x",
                                     "active_units_conditional") if k in result})
  if "mutual_information_nats" in result:
    row["mutual_information_nats"] = result["mutual_information_nats"]
    row["top_mi"] = result["mutual_information_nats"][-1]
  row["top_kl"] = row["kl_per_layer_nats"][-1]
  row["active_units_x_total"] = int(sum(row["active_units_x"]))
  row["active_units_conditional_total"] = int(sum(row["active_units_conditional"]))
  return row


def point_jobs(config, root, name, rho, seeds, n=None):
  """The (config, workdir) of every seed at this rho (and n: 0 = the VAE)."""
  c = config.copy_and_resolve_references()
  if n == 0:
    c.method, c.rho = "vae", 1.0
    return sweeps.seed_jobs(c, os.path.join(root, name, "vae"), seeds)
  c.method, c.rho = "hvae", float(rho)
  where = os.path.join(root, name)
  if n is not None:
    c.num_ou_samples = int(n)
    where = os.path.join(where, f"n_{int(n)}")
  return sweeps.seed_jobs(c, os.path.join(where, f"rho_{sweeps.fmt_rho(rho)}"), seeds)


def run_points(config, root, name, points, seeds, parallel):
  """{(rho, n): rows} for every (rho, n) of ``points``, all trained in one pool."""
  jobs = {p: point_jobs(config, root, name, p[0], seeds, p[1]) for p in points}
  flat = [j for p in points for j in jobs[p]]
  results = iter(sweeps.with_seeds(flat, sweeps.train_many(flat, parallel)))
  return {p: [_row(next(results), name, p[0], p[1]) for _ in jobs[p]] for p in points}


def seed_mean(rows, key):
  return float(np.mean([r[key] for r in rows]))


def sweep(config, root, name, rhos, refine_rounds, refine_points, seeds, ns=(None,),
          vae=False, parallel=1):
  points = ([(1.0, 0)] if vae else []) + [(float(r), n) for n in ns for r in rhos]
  rows = run_points(config, root, name, points, seeds, parallel)
  for _ in range(refine_rounds):
    new = []
    for n in ns:
      at = {r: v for (r, m), v in rows.items() if m == n}
      est = sweeps.critical_rho(list(at), [seed_mean(at[r], "top_kl") for r in at])
      lo, hi = est["interval"]
      new += [(round(float(r), 4), n) for r in np.linspace(lo, hi, refine_points + 2)[1:-1]
              if (round(float(r), 4), n) not in rows]
    rows.update(run_points(config, root, name, new, seeds, parallel))
  return [row for p in sorted(rows, key=lambda p: (p[1] or 0, p[0])) for row in rows[p]]


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  os.makedirs(FLAGS.workdir, exist_ok=True)
  specs = FLAGS.datasets or [FLAGS.config.dataset]
  seeds = sweeps.parse_seeds(FLAGS.seeds)
  results, estimates = {}, {}
  for spec in specs:
    name, config = parse_dataset(spec, FLAGS.config) if FLAGS.datasets else (
        FLAGS.config.dataset, FLAGS.config)
    ns = [int(n) for n in FLAGS.num_ou_samples] or [None]
    if any(n is not None and n < 1 for n in ns):
      raise ValueError(f"--num_ou_samples={FLAGS.num_ou_samples}: every n must be >= 1")
    rows = sweep(config, FLAGS.workdir, name, [float(r) for r in FLAGS.rhos],
                 FLAGS.refine_rounds, FLAGS.refine_points, seeds, ns, FLAGS.vae,
                 FLAGS.parallel)
    results[name] = rows
    estimates[name] = {}
    for n in ns:
      at = [r for r in rows if r.get("num_ou_samples") == n and r.get("method") != "vae"]
      rhos = sorted({r["rho"] for r in at})
      est = {c: sweeps.critical_rho(rhos, [seed_mean([r for r in at if r["rho"] == rho], c)
                                           for rho in rhos])
             for c in CURVES if c in at[0]}
      if n is None:
        estimates[name] = est
      else:
        estimates[name][f"n_{n}"] = est
  all_rows = [r for rows in results.values() for r in rows]
  sweeps.write_csv(os.path.join(FLAGS.workdir, "phase_transition.csv"), all_rows)
  with open(os.path.join(FLAGS.workdir, "phase_transition.json"), "w") as f:
    json.dump({"config": json.loads(FLAGS.config.to_json_best_effort()), "rows": all_rows,
               "critical_rho": estimates}, f, indent=2)
  title = (f"{FLAGS.config.num_train_steps} steps per rho, "
           f"latents {tuple(FLAGS.config.latent_dims)}")
  if FLAGS.num_ou_samples:
    plots.rho_n_curves(results, os.path.join(FLAGS.workdir, "phase_transition.png"),
                       os.path.join(FLAGS.workdir, "phase_transition_kappa.png"), title=title)
  else:
    plots.phase_transition(results, os.path.join(FLAGS.workdir, "phase_transition.png"),
                           title=title)
  for name, rows in results.items():
    print(f"\n{name} (mean ± sd over seeds {seeds}; x-based units per seed)")
    cells = sorted({(r.get("num_ou_samples") or 0, r["rho"]) for r in rows})
    for n, rho in cells:
      at = [r for r in rows if r["rho"] == rho and (r.get("num_ou_samples") or 0) == n]
      mi = " ".join(f"{v:.2f}" for v in np.mean([r["mutual_information_nats"] for r in at],
                                                  axis=0)) if "top_mi" in at[0] else ""
      label = "" if FLAGS.num_ou_samples == [] else (f"n {n:>2}  " if n else "vae   ")
      print(f"{label}rho {rho:.3f}  ELBO {sweeps.fmt_mean_sd([r['elbo_nats'] for r in at])}  "
            f"top KL {sweeps.fmt_mean_sd([r['top_kl'] for r in at], 2)}  AU x-based "
            f"{'; '.join(','.join(map(str, r['active_units_x'])) for r in at)}  "
            f"I(x; z_i) {mi}")
    for curve, est in estimates[name].items():
      print(f"critical rho ({curve}): {est}")


if __name__ == "__main__":
  config_lib.check_override_flags(sys.argv)
  app.run(main)
