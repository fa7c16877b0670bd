"""A trained run's parameters alone, as a small directory to evaluate and sample from
without training (``hermite_vae.workdir``'s release format):

    python experiments/release.py --workdir=/tmp/mnist100k/hvae/seed_0 \
      --out=releases/mnist_100k/hvae_seed_0
    python experiments/evaluate.py --workdir=releases/mnist_100k/hvae_seed_0 \
      --data_dir=/tmp/mnist_pkl --split=test
    python experiments/samples.py --workdir=releases/mnist_100k/hvae_seed_0 --out_dir=/tmp/s \
      --data_dir=/tmp/mnist_pkl

Writes ``config.json`` (the run's, its ``data_dir`` emptied: give yours with
``--data_dir``), ``params.msgpack`` (the latest checkpoint's parameters, float32, without
the optimizer state) and ``release.json`` (step, sha256 and size of the parameters, the
source workdir's name).
"""
import hashlib
import json
import os

from absl import app, flags, logging  # pylint: disable=g-multiple-import
import flax.serialization
import jax
import numpy as np

from hermite_vae import data
from hermite_vae import workdir as workdir_lib

flags.DEFINE_string("workdir", None, "A training workdir.")
flags.DEFINE_string("out", None, "The release directory to write.")
flags.mark_flags_as_required(["workdir", "out"])
FLAGS = flags.FLAGS


def release(workdir: str, out: str) -> dict:
  """Writes the release of ``workdir``'s latest checkpoint to ``out``; returns release.json's
  content."""
  workdir_lib.require_trained(workdir)
  with open(os.path.join(workdir, "config.json")) as f:
    info = json.load(f)
  config = workdir_lib.load_run_config(workdir)
  num_pixels = int(np.prod(data.get_spec(config.dataset).image_shape))
  _, params, step = workdir_lib.restore_params(workdir, config, num_pixels)
  params = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float32), params)
  blob = flax.serialization.msgpack_serialize(flax.serialization.to_state_dict(params))
  os.makedirs(out, exist_ok=True)
  info["config"]["data_dir"] = ""
  info["data"]["data_dir"] = ""
  with open(os.path.join(out, "config.json"), "w") as f:
    json.dump(info, f, indent=2, sort_keys=True)
  with open(os.path.join(out, workdir_lib.RELEASE_PARAMS), "wb") as f:
    f.write(blob)
  meta = {"step": int(step), "sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob),
          "num_params": int(sum(np.size(a) for a in jax.tree_util.tree_leaves(params))),
          "source": os.path.relpath(workdir, os.path.dirname(os.path.dirname(workdir)))}
  with open(os.path.join(out, "release.json"), "w") as f:
    json.dump(meta, f, indent=2, sort_keys=True)
  return meta


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  print(release(FLAGS.workdir, FLAGS.out))


if __name__ == "__main__":
  app.run(main)
