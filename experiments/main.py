"""Trains a (Hermite) hierarchical VAE.

    python experiments/main.py --config=configs/mnist_mlp.py --workdir=/tmp/hvae
    python experiments/main.py --config=configs/mnist_mlp.py --config.rho=0.95 ...
"""
import logging as std_logging
import os

from absl import app, flags, logging  # pylint: disable=g-multiple-import
import jax
from ml_collections import config_flags

from hermite_vae import train

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and logs.")
config_flags.DEFINE_config_file("config", None, "Training configuration file.",
                                lock_config=True)
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError("Too many command-line arguments.")
  # Library messages (progress, evaluation, data warnings) at INFO; third-party
  # libraries (orbax, TFDS) only from WARNING up.
  logging.set_verbosity(logging.WARNING)
  std_logging.getLogger("hermite_vae").setLevel(std_logging.INFO)
  if FLAGS.config.distributed:
    jax.distributed.initialize()
  std_logging.getLogger("hermite_vae").info("JAX process %d / %d; local devices: %s", jax.process_index(),
               jax.process_count(), jax.local_devices())
  train.train_and_evaluate(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
  app.run(main)
