"""Training curves (paper Fig. 2): validation ELBO and top-layer KL against steps, several
runs in one plot, from their ``metrics.jsonl``.

    python experiments/curves.py --workdirs=/tmp/compare/vae,/tmp/compare/hvae --out=curves.png
"""
import os

from absl import app, flags  # pylint: disable=g-multiple-import
import numpy as np

from lab import plots, sweeps

flags.DEFINE_list("workdirs", None, "Training workdirs (name = last path component).")
flags.DEFINE_string("out", "curves.png", "Output PNG.")
flags.DEFINE_string("split", "eval", "'eval' (validation) or 'train'.")
flags.mark_flag_as_required("workdirs")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  runs = {}
  for w in FLAGS.workdirs:
    steps, elbo = sweeps.curves(w, FLAGS.split, "elbo_nats")
    _, kl = sweeps.curves(w, FLAGS.split, "kl_per_layer_nats")
    top = kl[:, -1] if kl.ndim == 2 else np.asarray([])
    runs[os.path.basename(os.path.normpath(w))] = {"elbo": (steps, elbo), "top_kl": (steps, top)}
  plots.training_curves(runs, FLAGS.out)
  print(f"wrote {FLAGS.out}")


if __name__ == "__main__":
  app.run(main)
