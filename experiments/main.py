"""Trains a (Hermite) hierarchical VAE.

    python experiments/main.py --config=configs/mnist_mlp.py --workdir=/tmp/hvae
    python experiments/main.py --config=configs/mnist_mlp.py --config.rho=0.95 ...

Several processes: run the same command in each with ``--config.distributed=True`` (TPU
pod slices, SLURM, Open MPI) or ``--config.coordinator_address=HOST:PORT
--config.num_processes=N --config.process_id=I`` (see experiments/launch_local.py).
"""
import logging as std_logging
import os
import sys

from absl import app, flags, logging  # pylint: disable=g-multiple-import
from ml_collections import config_flags

from hermite_vae import config_lib, train

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
  # The process group (config.distributed / coordinator_address) is joined inside
  # train_and_evaluate, before any JAX computation.
  # --config.kappa=K sets rho; an explicit --config.rho must then agree with it.
  rho_given = any(a.split("=")[0] == "--config.rho" for a in sys.argv[1:])
  config_lib.apply_kappa(FLAGS.config, rho_given)
  if FLAGS.config.kappa is not None:
    std_logging.getLogger("hermite_vae").info(
        "kappa=%g with num_ou_samples=%d: rho=%.6g", FLAGS.config.kappa,
        FLAGS.config.num_ou_samples, FLAGS.config.rho)
  train.train_and_evaluate(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
  config_lib.check_override_flags(sys.argv)
  app.run(main)
