"""Phase transition (paper Fig. 1): train one model per rho, evaluate the original model,
plot top-layer KL, both active-unit counts, I(x; z_i) and the ELBO against rho, and
estimate the critical rho of each curve.

Paper budget (default): 100k steps per rho, rho in {0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 1}.
Reduced budget (< 1 hour on 2 CPU cores), real MNIST test set as data:

    python experiments/phase_transition.py --workdir=/tmp/phase \
      --config=configs/mnist_mlp.py --config.num_train_steps=3000 \
      --config.eval_max_examples=1000 --rhos=0.5,0.7,0.8,0.9,0.95,1.0 \
      --datasets='mnist|../shared/data/mnist|test[:9000]|test[9000:]'

``--datasets`` overlays several datasets (``name|data_dir|train_split|eval_split``, the
last three optional). ``--refine_rounds=R`` adds ``--refine_points`` rhos inside the
interval of the sharpest drop of the seed-mean top-layer KL, R times (coarse to fine).
``--seeds=0,1,2`` trains one model per (rho, seed) in ``<dataset>/rho_<r>/seed_<s>``: the
CSV/JSON hold one row per seed, the critical-rho estimates use the mean over seeds, the
plot shows the mean and every seed, and the printed table mean ± sd. Re-running resumes:
finished runs are read back, interrupted ones continue from their checkpoints.
"""
import json
import os

from absl import app, flags, logging  # pylint: disable=g-multiple-import
import numpy as np
from ml_collections import config_flags

from lab import plots, sweeps

config_flags.DEFINE_config_file("config", "configs/mnist_mlp.py", "Base training config.")
flags.DEFINE_string("workdir", None, "Root directory: one sub-workdir per (dataset, rho).")
flags.DEFINE_list("rhos", ["0.5", "0.6", "0.7", "0.8", "0.85", "0.9", "0.95", "1.0"], "rho grid.")
flags.DEFINE_list("datasets", [], "Datasets to overlay: name|data_dir|train_split|eval_split. "
                  "Empty: the config's dataset.")
flags.DEFINE_integer("refine_rounds", 0, "Coarse-to-fine rounds around the sharpest drop.")
flags.DEFINE_integer("refine_points", 3, "New rhos per refinement round.")
flags.DEFINE_list("seeds", ["0"], "Seeds: one model per (rho, seed).")
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


def _row(result, name, rho):
  row = {"dataset": name, "rho": float(rho), "seed": result["seed"],
         "workdir": result["workdir"]}
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


def run_point(config, root, name, rho, seeds):
  """One row per seed at this rho."""
  c = config.copy_and_resolve_references()
  c.method, c.rho = "hvae", float(rho)
  results = sweeps.train_seeds(c, os.path.join(root, name, f"rho_{sweeps.fmt_rho(rho)}"),
                               seeds)
  return [_row(r, name, rho) for r in results]


def seed_mean(rows, key):
  return float(np.mean([r[key] for r in rows]))


def sweep(config, root, name, rhos, refine_rounds, refine_points, seeds):
  rows = {float(r): run_point(config, root, name, r, seeds) for r in rhos}
  for _ in range(refine_rounds):
    est = sweeps.critical_rho(list(rows), [seed_mean(rows[r], "top_kl") for r in rows])
    lo, hi = est["interval"]
    for r in np.linspace(lo, hi, refine_points + 2)[1:-1]:
      r = round(float(r), 4)
      if r not in rows:
        rows[r] = run_point(config, root, name, r, seeds)
  return [row for r in sorted(rows) for row in rows[r]]


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
    rows = sweep(config, FLAGS.workdir, name, [float(r) for r in FLAGS.rhos],
                 FLAGS.refine_rounds, FLAGS.refine_points, seeds)
    results[name] = rows
    rhos = sorted({r["rho"] for r in rows})
    estimates[name] = {
        c: sweeps.critical_rho(rhos, [seed_mean([r for r in rows if r["rho"] == rho], c)
                                      for rho in rhos])
        for c in CURVES if c in rows[0]}
  all_rows = [r for rows in results.values() for r in rows]
  sweeps.write_csv(os.path.join(FLAGS.workdir, "phase_transition.csv"), all_rows)
  with open(os.path.join(FLAGS.workdir, "phase_transition.json"), "w") as f:
    json.dump({"config": json.loads(FLAGS.config.to_json_best_effort()), "rows": all_rows,
               "critical_rho": estimates}, f, indent=2)
  plots.phase_transition(results, os.path.join(FLAGS.workdir, "phase_transition.png"),
                         title=f"{FLAGS.config.num_train_steps} steps per rho, "
                               f"latents {tuple(FLAGS.config.latent_dims)}")
  for name, rows in results.items():
    print(f"\n{name} (mean ± sd over seeds {seeds}; x-based units per seed)")
    for rho in sorted({r["rho"] for r in rows}):
      at = [r for r in rows if r["rho"] == rho]
      mi = " ".join(f"{v:.2f}" for v in np.mean([r["mutual_information_nats"] for r in at],
                                                  axis=0)) if "top_mi" in at[0] else ""
      print(f"rho {rho:.3f}  ELBO {sweeps.fmt_mean_sd([r['elbo_nats'] for r in at])}  "
            f"top KL {sweeps.fmt_mean_sd([r['top_kl'] for r in at], 2)}  AU x-based "
            f"{'; '.join(','.join(map(str, r['active_units_x'])) for r in at)}  "
            f"I(x; z_i) {mi}")
    for curve, est in estimates[name].items():
      print(f"critical rho ({curve}): {est}")


if __name__ == "__main__":
  app.run(main)
