"""Runs per hour on this machine: the same trainings one at a time in one process with
every thread, one at a time pinned to one CPU with one thread (what one core does
alone), two at once pinned to one CPU and one thread each, and two at once unpinned with
XLA's default threads. Aggregate steps/s = steps of all runs / wall time
(compilation and the final evaluation included, as a sweep sees them).

    python experiments/parallel_benchmark.py --steps=3000 --out=/tmp/parallel.json

Uses the 4 x 40 MLP (configs/mnist_mlp.py) on the embedded digits unless --config says
otherwise; each mode trains one run per method in --methods, twice (seeds 0 and 1).
"""
import json
import os
import shutil
import tempfile
import sys
import time

from absl import app, flags, logging  # pylint: disable=g-multiple-import
from ml_collections import config_flags

from hermite_vae import config_lib
from lab import sweeps

config_flags.DEFINE_config_file("config", "configs/mnist_mlp.py", "Base training config.")
flags.DEFINE_integer("steps", 3000, "Training steps per run.")
flags.DEFINE_list("methods", ["vae", "hvae"], "Methods to time (hvae: the config's rho, n).")
flags.DEFINE_string("out", None, "JSON file for the results.")
FLAGS = flags.FLAGS

MODES = {"1 process, all threads": dict(parallel=1),
         "serial, pinned to one CPU, 1 thread": "serial_pinned",
         "2 processes, pinned, 1 thread each": dict(parallel=2, pin=True),
         "2 processes, unpinned, default threads": dict(parallel=2, pin=False,
                                                         limit_threads=False)}


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  results = []
  for method in FLAGS.methods:
    c = FLAGS.config.copy_and_resolve_references()
    c.method, c.num_train_steps = method, FLAGS.steps
    c.log_every = c.eval_every = c.checkpoint_every = FLAGS.steps
    c.eval_max_examples, c.mi_paths, c.au_samples, c.progress_bar = 100, 0, 0, False
    for mode, kw in MODES.items():
      root = tempfile.mkdtemp()
      jobs = sweeps.seed_jobs(c, root, [0, 1])
      t0 = time.time()
      if kw == "serial_pinned":   # one core alone: the per-core rate without a neighbour
        for config, workdir in jobs:
          if sweeps.run_worker(config, workdir, [0], sweeps.worker_env(1)):
            raise RuntimeError(f"the pinned run in {workdir} failed")
      else:
        sweeps.train_many(jobs, **kw)
      wall = time.time() - t0
      shutil.rmtree(root)
      row = {"method": method, "mode": mode, "runs": 2, "steps": FLAGS.steps,
             "wall_s": round(wall, 1),
             "aggregate_steps_per_s": round(2 * FLAGS.steps / wall, 1),
             "cpus": os.cpu_count()}
      print(row, flush=True)
      results.append(row)
  if FLAGS.out:
    with open(FLAGS.out, "w") as f:
      json.dump(results, f, indent=1)
  print("\n| method | mode | aggregate steps/s | wall (2 runs of %d steps) |" % FLAGS.steps)
  print("|---|---|---|---|")
  for r in results:
    print(f"| {r['method']} | {r['mode']} | {r['aggregate_steps_per_s']} | {r['wall_s']} s |")


if __name__ == "__main__":
  config_lib.check_override_flags(sys.argv)
  app.run(main)
