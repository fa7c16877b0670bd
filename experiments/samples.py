"""Sample and reconstruction grids (PNG) from a trained workdir's original model.

    python experiments/samples.py --workdir=/tmp/hvae --out_dir=/tmp/hvae

Samples: ancestral z_L ~ N(0, I), z_i ~ p(z_i|z_{i+1}), then the pixel probabilities of
p(x|z_1) (Bernoulli) or its per-pixel location (discretized logistic, 8-bit images).
Reconstructions: evaluation images (odd rows) and the same for z ~ q(z|x) (even rows).
"""
import os

from absl import app, flags, logging  # pylint: disable=g-multiple-import
import jax
import numpy as np

from hermite_vae import data
from hermite_vae import workdir as workdir_lib
from hermite_vae.models import sampling
from lab import plots

flags.DEFINE_string("workdir", None, "A training workdir.")
flags.DEFINE_string("out_dir", "", "Where to write samples.png, reconstructions.png.")
flags.DEFINE_integer("num", 50, "Images per grid.")
flags.DEFINE_integer("seed", 0, "Sampling seed.")
flags.DEFINE_string("data_dir", "", "Replaces the run's data_dir (a release has none).")
flags.DEFINE_bool("verbose", False, "Show the INFO logs of orbax and the other libraries.")
flags.mark_flag_as_required("workdir")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  logging.set_verbosity(logging.INFO if FLAGS.verbose else logging.WARNING)
  workdir_lib.require_trained(FLAGS.workdir)
  out_dir = FLAGS.out_dir or FLAGS.workdir
  os.makedirs(out_dir, exist_ok=True)
  config = workdir_lib.load_run_config(FLAGS.workdir)
  config.data_dir = FLAGS.data_dir or config.data_dir
  loaded = data.load_config(config)
  shape = loaded.eval.shape[1:]
  model, params, step = workdir_lib.restore_params(FLAGS.workdir, config, int(np.prod(shape)))
  key = jax.random.PRNGKey(FLAGS.seed)
  probs = np.asarray(sampling.ancestral_samples(model, params, key, FLAGS.num)).reshape((-1,) + shape)
  plots.image_grid(probs, os.path.join(out_dir, "samples.png"),
                   title=f"samples, step {step}")
  x = loaded.eval[:FLAGS.num // 2].astype(np.float32)
  rec = np.asarray(sampling.reconstructions(model, params, x.reshape(len(x), -1), key)).reshape(x.shape)
  if model.likelihood != "bernoulli":
    x = x / 255.0
  rows = []
  for a in range(0, len(x), 10):
    rows += [x[a:a + 10], rec[a:a + 10]]
  plots.image_grid(np.concatenate(rows), os.path.join(out_dir, "reconstructions.png"),
                   title=f"data / reconstruction, step {step}")
  print(f"wrote {out_dir}/samples.png and reconstructions.png")


if __name__ == "__main__":
  app.run(main)
