"""One training of a parallel sweep, in its own process:
``python -m experiments.lab.run_one WORKDIR`` (the repository root on ``PYTHONPATH``,
which ``sweeps.run_worker`` sets) trains the config that ``sweeps.train_many`` wrote to
``WORKDIR/requested_config.json`` through ``sweeps.train_or_collect`` (resumable, the
same files as an in-process run)."""
import json
import os
import sys

from absl import logging

from experiments.lab import sweeps
from hermite_vae import config_lib


def main(workdir: str) -> None:
  logging.set_verbosity(logging.WARNING)
  with open(os.path.join(workdir, sweeps.REQUEST)) as f:
    config = config_lib.from_saved(json.load(f))
  sweeps.train_or_collect(config, workdir)


if __name__ == "__main__":
  main(sys.argv[1])
