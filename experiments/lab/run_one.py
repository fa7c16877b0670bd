"""One training of a parallel sweep, in its own process: ``python run_one.py WORKDIR``
trains the config that ``sweeps.train_many`` wrote to ``WORKDIR/requested_config.json``
through ``sweeps.train_or_collect`` (resumable, the same files as an in-process run)."""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from absl import logging  # noqa: E402  pylint: disable=wrong-import-position

from hermite_vae import config_lib  # noqa: E402  pylint: disable=wrong-import-position
from lab import sweeps  # noqa: E402  pylint: disable=wrong-import-position


def main(workdir: str) -> None:
  logging.set_verbosity(logging.WARNING)
  with open(os.path.join(workdir, sweeps.REQUEST)) as f:
    config = config_lib.from_saved(json.load(f))
  sweeps.train_or_collect(config, workdir)


if __name__ == "__main__":
  main(sys.argv[1])
