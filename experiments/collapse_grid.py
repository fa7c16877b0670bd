"""Collapse grid (paper Fig. 3): stochastic depth x latent width, vae vs hvae, heat maps of
active units (x-based and conditional).

Paper budget: ``--config.num_train_steps=100000``. Reduced budget (< 1 hour on 2 CPU
cores), MNIST from ``mnist.pkl.gz`` (docs/data.md says how to extract it to
/tmp/mnist_pkl; ``--config.data_source=embedded`` needs nothing):

    python experiments/collapse_grid.py --workdir=/tmp/grid --config=configs/mnist_mlp.py \
      --config.dataset=binarized_mnist --config.data_source=files \
      --config.data_dir=/tmp/mnist_pkl --config.num_train_steps=2000 \
      --config.eval_max_examples=1000 --depths=2,3,4 --widths=10,40

Each layer gets ``hidden_width`` deterministic units. ``--seeds=0,1,2``: one run per cell
and seed (``<method>_L<depth>_d<width>/seed_<s>``); the heat maps show the mean over
seeds, the CSV/JSON one row per seed. Resumable like the other sweeps.
"""
import json
import os
import sys

from absl import app, flags, logging  # pylint: disable=g-multiple-import
import numpy as np
from ml_collections import config_flags

from hermite_vae import config_lib
from lab import plots, sweeps

config_flags.DEFINE_config_file("config", "configs/mnist_mlp.py", "Base training config.")
flags.DEFINE_string("workdir", None, "Root directory: one sub-workdir per grid cell.")
flags.DEFINE_list("depths", ["2", "3", "4", "5"], "Numbers of stochastic layers.")
flags.DEFINE_list("widths", ["10", "20", "40", "80"], "Latent units per layer.")
flags.DEFINE_list("methods", ["vae", "hvae"], "Training methods.")
flags.DEFINE_integer("hidden_width", 200, "Deterministic units per layer.")
flags.DEFINE_list("seeds", ["0"], "Seeds: one run per cell and seed.")
sweeps.define_parallel_flag()
flags.mark_flag_as_required("workdir")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  depths = [int(d) for d in FLAGS.depths]
  widths = [int(w) for w in FLAGS.widths]
  seeds = sweeps.parse_seeds(FLAGS.seeds)
  grid, rows = {}, []

  def cell(method, depth, width):
    c = FLAGS.config.copy_and_resolve_references()
    c.method = method
    c.latent_dims = (width,) * depth
    c.hidden_dims = (FLAGS.hidden_width,) * depth
    return c, os.path.join(FLAGS.workdir, f"{method}_L{depth}_d{width}")

  if sweeps.resolve_parallel(FLAGS.parallel) > 1:   # train every run first, K at a time; the loop below collects
    sweeps.train_many([j for m in FLAGS.methods for d in depths for w in widths
                       for j in sweeps.seed_jobs(*cell(m, d, w), seeds)], FLAGS.parallel)
  for method in FLAGS.methods:
    for depth in depths:
      for width in widths:
        results = sweeps.train_seeds(*cell(method, depth, width), seeds)
        grid[(method, depth, width)] = (
            float(np.mean([sum(r["active_units_x"]) for r in results])),
            float(np.mean([sum(r["active_units_conditional"]) for r in results])),
            depth * width)
        rows.extend({"method": method, "depth": depth, "width": width, "seed": r["seed"],
                     "elbo_nats": r["elbo_nats"], "kl_per_layer_nats": r["kl_per_layer_nats"],
                     "active_units_x": r["active_units_x"],
                     "active_units_conditional": r["active_units_conditional"],
                     "mutual_information_nats": r.get("mutual_information_nats")}
                    for r in results)
  sweeps.write_csv(os.path.join(FLAGS.workdir, "collapse_grid.csv"), rows)
  with open(os.path.join(FLAGS.workdir, "collapse_grid.json"), "w") as f:
    json.dump(rows, f, indent=2)
  plots.heatmaps(grid, depths, widths, os.path.join(FLAGS.workdir, "collapse_grid.png"),
                 title=f"Active units after {FLAGS.config.num_train_steps} steps")
  for r in rows:
    print(r["method"], r["depth"], r["width"], "seed", r["seed"], "AU x-based",
          r["active_units_x"], "conditional", r["active_units_conditional"],
          f"ELBO {r['elbo_nats']:.2f}")


if __name__ == "__main__":
  config_lib.check_override_flags(sys.argv)
  app.run(main)
