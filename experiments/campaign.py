"""Run a long campaign (``lab/campaigns.PLANS``) so that it outlives the machine.

    python experiments/campaign.py --plan=mnist_100k --data_dir=/tmp/mnist_pkl \
      --root=/tmp/mnist100k --hours=2.5 --commit

(``--out_dir`` may lie in another checkout than the code: run the campaign from a clone
of a fixed commit, ``PYTHONPATH=<clone>``, while you edit this one.)

For every run of the plan, in order:

* its summary is already in ``docs/runs/<group>/<name>__seed_<s>.json``: the summary's
  saved config is compared with the one the plan asks for (every key a resume may not
  change, ``config_lib.check_resume``); equal, the run is done and is not retrained;
  different, the campaign stops before any compute, naming the keys;
* otherwise it is trained in ``<root>/<name>/seed_<s>`` (resuming that workdir's
  checkpoint if this machine has one), ``--parallel`` runs at a time, each a process pinned
  to its own core, then summarized (``summarize_runs.py`` with the plan's flags) and, with
  ``--commit``, its summary committed on its own;
* a run starts only if its expected time (the plan's minutes, scaled by what is left of a
  resumed run, plus its evaluation) ends before ``--hours`` from the start. A run that
  does not fit is left for the next machine; a smaller one after it may still start.

Rerun the same command on any machine to continue: finished runs are read from
``docs/runs/``, the rest train. ``--dry_run`` prints the plan's state and exits.
"""
import importlib.util
import json
import os
import subprocess
import sys
import threading
import time

from absl import app, flags, logging  # pylint: disable=g-multiple-import

from hermite_vae import config_lib
from hermite_vae import workdir as workdir_lib
from lab import campaigns, sweeps

flags.DEFINE_enum("plan", None, sorted(campaigns.PLANS), "Which campaign.")
flags.DEFINE_string("root", None, "Where the workdirs go (outside the repository).")
flags.DEFINE_string("data_dir", "", "config.data_dir of every run.")
flags.DEFINE_string("out_dir", "docs/runs", "Where the summaries are read and written.")
flags.DEFINE_float("hours", 1e9, "Start a run only if it is expected to end within this "
                   "many hours of the campaign's start.")
sweeps.define_parallel_flag()
flags.DEFINE_bool("commit", False, "git-commit each run's summary as it is written.")
flags.DEFINE_bool("dry_run", False, "Print each run's state and expected minutes; train "
                  "nothing.")
flags.DEFINE_list("only", [], "Run only these names (as in the plan).")
flags.mark_flags_as_required(["plan", "root"])
FLAGS = flags.FLAGS

HERE = os.path.dirname(os.path.abspath(__file__))
SUMMARIZE = os.path.join(HERE, "summarize_runs.py")


def run_config(run: campaigns.Run, plan: campaigns.Plan, data_dir: str):
  """The full training config of one run of the plan."""
  path = os.path.join(os.path.dirname(HERE), run.config)
  spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  base = module.get_config()
  for key, value in plan.overrides.items():
    base[key] = value
  base.data_dir = data_dir
  _, config = sweeps.method_config(base, run.spec)
  config.seed = run.seed
  config_lib.validate(config)
  return config


def summary_path(plan, run, out_dir) -> str:
  return os.path.join(out_dir, plan.group, f"{run.name}__seed_{run.seed}.json")


def committed(plan, run, config, out_dir) -> bool:
  """True if the run's summary exists and was trained with ``config`` (ValueError naming
  the keys when it was trained with another)."""
  path = summary_path(plan, run, out_dir)
  if not os.path.exists(path):
    return False
  with open(path) as f:
    saved = json.load(f).get("run_config")
  if saved is None:
    raise ValueError(f"{path} has no 'run_config' (an older summary): cannot tell which "
                     "config it was trained with; move it aside to retrain the run")
  config_lib.check_resume(saved, config, path)
  return True


def trained_fraction(workdir: str, num_steps: int) -> float:
  """The share of ``num_steps`` that ``workdir``'s newest checkpoint holds (0 if none)."""
  return min(1.0, max(workdir_lib.checkpoint_steps(workdir), default=0) / num_steps)


def expected_minutes(run, workdir, num_steps) -> float:
  return run.minutes * (1.0 - trained_fraction(workdir, num_steps)) + run.eval_minutes


def commit_summary(path: str, message: str) -> None:
  """Commits the one file ``path`` in the repository that holds it (which need not be the
  one the campaign's code runs from)."""
  where = os.path.dirname(os.path.abspath(path))
  for args in (["add", "--", path], ["commit", "-q", "-m", message, "--", path]):
    out = subprocess.run(["git", "-C", where, *args], capture_output=True, text=True,
                         check=False)
    if out.returncode:
      print(f"git {args[0]} of {path} failed: {out.stderr.strip()}", flush=True)
      return


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  plan = campaigns.PLANS[FLAGS.plan]
  runs = [r for r in plan.runs if not FLAGS.only or r.name in FLAGS.only]
  start, deadline = time.time(), time.time() + FLAGS.hours * 3600
  todo = []
  for run in runs:   # every config is built and checked before anything trains
    config = run_config(run, plan, FLAGS.data_dir)
    workdir = sweeps.seed_workdir(os.path.join(FLAGS.root, run.name), run.seed)
    if committed(plan, run, config, FLAGS.out_dir):
      print(f"done     {run.name} seed {run.seed}: {summary_path(plan, run, FLAGS.out_dir)}")
      continue
    todo.append((run, config, workdir))
    print(f"to run   {run.name} seed {run.seed}: about "
          f"{expected_minutes(run, workdir, config.num_train_steps):.0f} min")
  if FLAGS.dry_run or not todo:
    return
  parallel = sweeps.resolve_parallel(FLAGS.parallel)
  free = list(sweeps.cpu_sets(parallel))
  lock, running, failed = threading.Condition(), [], []
  workers = sweeps.Workers()

  def work(run, config, workdir, cpus):
    name = f"{run.name}__seed_{run.seed}"
    try:
      env = sweeps.worker_env(len(cpus) if cpus else 1)
      code = sweeps.run_worker(config, workdir, cpus, env, workers)
      if code:
        log_path = os.path.join(workdir, "worker.log")
        raise RuntimeError(f"training exit {code}: {sweeps.last_error_line(log_path)} "
                           f"(full log: {log_path})")
      cmd = [sys.executable, SUMMARIZE, f"--root={FLAGS.root}", f"--group={plan.group}",
             f"--out_dir={FLAGS.out_dir}", f"--only={name}", *plan.summary_flags]
      if cpus:
        cmd = ["taskset", "-c", ",".join(map(str, cpus))] + cmd
      with open(os.path.join(workdir, "summary.log"), "a") as log_file:
        code = workers.call(cmd, env=env, stdout=log_file, stderr=subprocess.STDOUT)
      if code:
        raise RuntimeError(f"summary exit {code}: {workdir}/summary.log")
      path = summary_path(plan, run, FLAGS.out_dir)
      print(f"finished {run.name} seed {run.seed} at +{(time.time() - start) / 60:.0f} min: "
            f"{path}", flush=True)
      if FLAGS.commit:
        with lock:
          commit_summary(os.path.abspath(path), f"Run summary: {plan.group}/{name}")
    except Exception as e:  # pylint: disable=broad-except
      failed.append(f"{name}: {e}")
      print(f"FAILED   {name}: {e}", flush=True)
    finally:
      with lock:
        running.remove(name)
        free.append(cpus)
        lock.notify_all()

  threads = []
  with sweeps.stop_on_signals(workers), lock:
    while todo:
      now = time.time()
      fits = [t for t in todo
              if now + 60 * expected_minutes(t[0], t[2], t[1].num_train_steps) <= deadline]
      if not fits:
        if not running:
          break
        lock.wait()
        continue
      if not free:
        lock.wait()
        continue
      run, config, workdir = item = fits[0]
      todo.remove(item)
      cpus = free.pop(0)
      name = f"{run.name}__seed_{run.seed}"
      running.append(name)
      print(f"start    {run.name} seed {run.seed} at +{(now - start) / 60:.0f} min on cpus "
            f"{cpus}: {workdir}", flush=True)
      thread = threading.Thread(target=work, args=(run, config, workdir, cpus), daemon=True)
      thread.start()
      threads.append(thread)
  for thread in threads:
    thread.join()
  for run, _, _ in todo:
    print(f"left     {run.name} seed {run.seed}: does not fit the time left")
  if failed:
    raise SystemExit("failed runs: " + "; ".join(failed))


if __name__ == "__main__":
  app.run(main)
