"""Helpers shared by the experiment scripts: train-or-collect a run (resumable), several
runs at once (``train_many``: one process per run, ``--parallel=K``), and the critical-rho
estimate of a phase-transition curve."""
from __future__ import annotations

import ast
import concurrent.futures
import contextlib
import csv
import json
import logging
import math
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from typing import Sequence

import numpy as np

from hermite_vae import config_lib, evaluation, metrics_io, train

from .fmt import fmt_mean_sd, mean_sd  # noqa: F401  pylint: disable=unused-import

log = logging.getLogger(__name__)

FINAL = "final_eval.json"
REQUEST = "requested_config.json"   # what a parallel sweep asks its worker process to train
# The repository root: put on a worker's PYTHONPATH so that ``-m experiments.lab.run_one``
# imports this checkout (and its hermite_vae) from any working directory.
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUN_ONE = "experiments.lab.run_one"


def method_config(base, spec: str):
  """``name`` or ``name@key=value@key=value``: the preset ``name`` applied to ``base``,
  then each override (parsed as a Python literal when it is one)."""
  name, *overrides = spec.split("@")
  c = config_lib.apply_method(base.copy_and_resolve_references(), name)
  for item in overrides:
    key, sep, value = item.partition("=")
    if not sep or key not in c:
      raise ValueError(f"--methods={spec!r}: {item!r} is not key=value of a config key")
    try:
      value = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      pass
    c[key] = value
  config_lib.apply_kappa(c, rho_given=any(i.partition("=")[0] == "rho" for i in overrides))
  config_lib.validate(c)
  return name, c


def train_or_collect(config, workdir: str) -> dict:
  """Trains ``config`` in ``workdir`` unless it already finished; returns its last eval.

  Interrupted runs resume from their checkpoint, finished ones are read back, so every
  script built on this is resumable by re-running it.
  """
  path = os.path.join(workdir, FINAL)
  result = _finished(config, workdir)
  if result is not None:
    return result
  result = dict(train.train_and_evaluate(config, workdir))
  result["step"] = config.num_train_steps
  with open(path, "w") as f:
    json.dump(result, f, indent=2, default=str)
  return result


def _finished(config, workdir: str):
  """The final evaluation of a run that finished ``config`` in ``workdir``, or None. A run
  finished with another config (a key a resume may not change) is refused, naming the
  keys, rather than returned as this config's result."""
  path = os.path.join(workdir, FINAL)
  if os.path.exists(path):
    with open(path) as f:
      result = json.load(f)
    if result.get("step") == config.num_train_steps:
      with open(os.path.join(workdir, "config.json")) as f:
        config_lib.check_resume(json.load(f)["config"], config, workdir)
      return result
  return None


def worker_env(threads: int) -> dict:
  """The environment of a worker process limited to ``threads`` CPU threads. XLA:CPU
  sizes its thread pools from the CPUs the process may run on (its affinity, which
  ``taskset`` sets for pinned workers); one thread also turns off Eigen's multi-threading
  (``--xla_cpu_multi_thread_eigen=false``, an XLA flag). The BLAS/OpenMP pools get
  ``threads`` through their variables."""
  env = dict(os.environ)
  if threads == 1:
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false"
                        ).strip()
  for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    env[var] = str(threads)
  return env


class Workers:
  """The worker processes of a sweep: started only while not stopping, all terminated at
  once by :meth:`stop` (SIGTERM, which a trainer answers by finishing its pending
  checkpoint; SIGKILL after ``grace`` seconds)."""

  def __init__(self):
    self._lock = threading.Lock()
    self._procs = set()
    self.stopping = threading.Event()

  def call(self, cmd, **kwargs) -> int:
    with self._lock:
      if self.stopping.is_set():
        raise Stopped("the sweep is stopping")
      proc = subprocess.Popen(cmd, **kwargs)
      self._procs.add(proc)
    try:
      return proc.wait()
    finally:
      with self._lock:
        self._procs.discard(proc)

  def stop(self, grace: float = 20.0) -> None:
    self.stopping.set()
    with self._lock:
      procs = list(self._procs)
    for proc in procs:
      if proc.poll() is None:
        proc.terminate()
    deadline = time.time() + grace
    for proc in procs:
      try:
        proc.wait(max(0.0, deadline - time.time()))
      except subprocess.TimeoutExpired:
        proc.kill()


class Stopped(RuntimeError):
  """A run was not started because its sweep is stopping."""


@contextlib.contextmanager
def stop_on_signals(workers: Workers):
  """Within the block, SIGTERM raises KeyboardInterrupt like Ctrl-C (main thread only);
  on either, or any other exception, the pending runs are not started and the running
  workers are terminated before the exception propagates."""
  previous = None
  if threading.current_thread() is threading.main_thread():
    def interrupt(signum, frame):
      del frame
      raise KeyboardInterrupt(f"signal {signum}")
    previous = signal.signal(signal.SIGTERM, interrupt)
  try:
    yield workers
  except BaseException:
    workers.stop()
    raise
  finally:
    if previous is not None:
      signal.signal(signal.SIGTERM, previous)


def last_error_line(log_path: str) -> str:
  """The last line of a worker's log that looks like an error (else its last line)."""
  try:
    with open(log_path, errors="replace") as f:
      lines = [l.strip() for l in f if l.strip()]
  except OSError:
    return ""
  errors = [l for l in lines if "Error" in l or "error:" in l or "Exception" in l]
  return (errors or lines or [""])[-1][:300]


def cpu_sets(parallel: int) -> list:
  """``parallel`` disjoint sets of this process's CPUs (None where pinning is not
  possible: no ``taskset``, or fewer CPUs than workers)."""
  try:
    cpus = sorted(os.sched_getaffinity(0))
  except AttributeError:
    return [None] * parallel
  if shutil.which("taskset") is None or len(cpus) < parallel:
    return [None] * parallel
  per = len(cpus) // parallel
  return [cpus[i * per:(i + 1) * per] for i in range(parallel)]


def define_parallel_flag():
  """The ``--parallel`` flag of every sweep script (read it with :func:`resolve_parallel`)."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_integer("parallel", 0, "Trainings at once, one process each; 0: one per CPU "
                       "core on a CPU, 1 on an accelerator (lab/sweeps.resolve_parallel).",
                       module_name=sys.argv[0])   # listed by the script's own --help


def resolve_parallel(parallel: int) -> int:
  """``--parallel``: 0 (the default) means one training per CPU core, each pinned to its
  core, when JAX runs on the CPU (the fastest way to run a sweep there:
  docs/performance.md), and 1 on an accelerator; any other value is used as it is."""
  if parallel < 0:
    raise ValueError(f"--parallel={parallel}: must be >= 0 (0: automatic)")
  if parallel:
    return parallel
  import jax  # pylint: disable=g-import-not-at-top
  if jax.default_backend() != "cpu":
    return 1
  try:
    return max(1, len(os.sched_getaffinity(0)))
  except AttributeError:
    return max(1, os.cpu_count() or 1)


def train_many(jobs: Sequence[tuple], parallel: int = 1, pin: bool = True,
               limit_threads: bool = True) -> list[dict]:
  """``train_or_collect`` for every ``(config, workdir)`` of ``jobs``, in order.

  ``parallel=1``: one after another in this process. ``parallel=K > 1``: up to K at once,
  each in its own process (``run_one.py``) limited to ``cpus // K`` threads and, with
  ``pin``, pinned to its own CPUs with ``taskset`` (``limit_threads=False`` with
  ``pin=False``: workers with XLA's default threads, competing for every CPU). Each run
  trains from its own config
  and seed whatever runs beside it: the same workdir files, resumable the same way.
  Returns each job's last evaluation. A worker that fails raises ``RuntimeError`` naming
  its workdir and log (``workdir/worker.log``) after the other workers finish.
  """
  parallel = resolve_parallel(parallel)
  if parallel == 1 or len(jobs) <= 1:
    return [train_or_collect(c, w) for c, w in jobs]
  results = [_finished(c, w) for c, w in jobs]
  workers = Workers()
  todo = [i for i, r in enumerate(results) if r is None]
  slots = queue.Queue()
  for cpus in cpu_sets(parallel):
    slots.put(cpus)
  threads = max(1, (os.cpu_count() or parallel) // parallel)

  def run(i):
    config, workdir = jobs[i]
    cpus = slots.get()
    try:
      env = (worker_env(len(cpus) if pin and cpus else threads) if limit_threads
             else dict(os.environ))
      code = run_worker(config, workdir, cpus if pin else None, env, workers)
    finally:
      slots.put(cpus)
    if code:
      log_path = os.path.join(workdir, "worker.log")
      raise RuntimeError(f"training in {workdir} failed (exit {code}): "
                         f"{last_error_line(log_path)} (full log: {log_path})")
    return _finished(config, workdir)

  errors = []
  pool = concurrent.futures.ThreadPoolExecutor(parallel)
  try:
    with stop_on_signals(workers):
      futures = {pool.submit(run, i): i for i in todo}
      for future in concurrent.futures.as_completed(futures):
        try:
          results[futures[future]] = future.result()
        except (RuntimeError, ValueError) as e:
          errors.append(str(e))
  finally:
    pool.shutdown(wait=True, cancel_futures=True)
  if errors:
    raise RuntimeError("; ".join(errors))
  return results


def run_worker(config, workdir: str, cpus=None, env=None, workers=None) -> int:
  """Trains ``config`` in ``workdir`` in a process of its own (``run_one.py``), pinned to
  ``cpus`` with ``taskset`` when given, its output appended to ``workdir/worker.log``,
  registered with ``workers`` (so that stopping the sweep stops it). Returns the
  process's exit code."""
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, REQUEST), "w") as f:
    f.write(config.to_json_best_effort())
  cmd = [sys.executable, "-m", RUN_ONE, workdir]
  env = dict(os.environ if env is None else env)
  env["PYTHONPATH"] = os.pathsep.join([ROOT] + [p for p in env.get("PYTHONPATH", "").split(
      os.pathsep) if p])
  if cpus:
    cmd = ["taskset", "-c", ",".join(map(str, cpus))] + cmd
  workers = workers or Workers()
  with open(os.path.join(workdir, "worker.log"), "a") as log_file:
    return workers.call(cmd, env=env, stdout=log_file, stderr=subprocess.STDOUT)


def curves(workdir: str, split: str, key: str):
  """(steps, values) of metric ``key`` in ``workdir/metrics.jsonl`` for ``split``."""
  steps, values = [], []
  for r in metrics_io.read_metrics(workdir):
    if r["split"] == split and key in r:
      steps.append(r["step"])
      values.append(r[key])
  return np.asarray(steps), np.asarray(values, dtype=float)


def critical_rho(rhos: Sequence[float], values: Sequence[float]) -> dict:
  """Locates the sharpest change of a curve y(rho).

  ``rho_c``: midpoint of the adjacent pair with the largest |Delta y| (grid estimate);
  ``jump``: that |Delta y|; ``relative_jump``: jump / range of y;
  ``slope``: jump / Delta rho (sharpness). With >= 5 points, also a logistic fit
  y = a + b / (1 + exp((rho - rho_c) / width)): ``rho_c_fit`` and ``width_fit`` (the
  transition width: smaller = sharper), or None when the fit fails.
  """
  order = np.argsort(rhos)
  r = np.asarray(rhos, float)[order]
  y = np.asarray(values, float)[order]
  if len(r) < 2:
    return {"rho_c": None}
  dy = np.abs(np.diff(y))
  j = int(np.argmax(dy))
  span = float(np.ptp(y)) or 1.0
  out = {"rho_c": float((r[j] + r[j + 1]) / 2), "interval": [float(r[j]), float(r[j + 1])],
         "jump": float(dy[j]), "relative_jump": float(dy[j] / span),
         "slope": float(dy[j] / max(r[j + 1] - r[j], 1e-12)),
         "rho_c_fit": None, "width_fit": None}
  if len(r) >= 5:
    try:
      from scipy.optimize import curve_fit  # pylint: disable=g-import-not-at-top

      def logistic(x, a, b, c, w):
        return a + b / (1 + np.exp(np.clip((x - c) / w, -50, 50)))

      sign = 1.0 if y[0] >= y[-1] else -1.0
      p0 = [y.min() if sign > 0 else y.max(), sign * span, out["rho_c"],
            max((r[-1] - r[0]) / 20, 1e-3)]
      params, _ = curve_fit(logistic, r, y, p0=p0, maxfev=20000)
      if r[0] <= params[2] <= r[-1]:
        out["rho_c_fit"], out["width_fit"] = float(params[2]), float(abs(params[3]))
    except Exception:  # pylint: disable=broad-except
      pass
  return out


def write_csv(path: str, rows: list[dict]) -> None:
  keys = sorted({k for row in rows for k in row})
  with open(path, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=keys)
    writer.writeheader()
    for row in rows:
      writer.writerow({k: json.dumps(v) if isinstance(v, (list, dict)) else v
                       for k, v in row.items()})


def fmt_rho(rho: float) -> str:
  return f"{rho:.4f}".rstrip("0").rstrip(".") if not math.isnan(rho) else "nan"


# ------------------------------------------------------------------- seeds

def parse_seeds(values) -> list[int]:
  """``--seeds=0,1,2`` (absl list flag values or a string) -> [0, 1, 2]; at least one,
  no repeats."""
  if isinstance(values, str):
    values = values.split(",")
  seeds = [int(v) for v in values if str(v).strip()]
  if not seeds or len(set(seeds)) != len(seeds):
    raise ValueError(f"--seeds={values!r}: give distinct integers, e.g. --seeds=0,1,2")
  return seeds


def seed_workdir(root: str, seed: int) -> str:
  return os.path.join(root, f"seed_{seed}")


def seed_jobs(config, root: str, seeds: Sequence[int]) -> list[tuple]:
  """One ``(config, workdir)`` per seed, in ``root/seed_<s>``."""
  jobs = []
  for seed in seeds:
    c = config.copy_and_resolve_references()
    c.seed = int(seed)
    jobs.append((c, seed_workdir(root, seed)))
  return jobs


def data_used(workdir: str, requested: str) -> str:
  """The dataset a run actually trained on, as tables and legends should name it:
  ``requested``, or e.g. ``mnist_embedded (fallback for binarized_mnist)`` when it fell
  back to the embedded digits (warned in the sweep's own log too)."""
  try:
    with open(os.path.join(workdir, "config.json")) as f:
      used = json.load(f)["data"]
  except (OSError, KeyError, ValueError):
    return requested
  if used.get("data_used", requested) == requested:
    return requested
  log.warning("%s trained on %s, not the requested %s (data fallback: %s)", workdir,
              used["data_used"], requested, used.get("warning") or used.get("source"))
  return f"{used['data_used']} (fallback for {requested})"


def with_seeds(jobs: Sequence[tuple], results: Sequence[dict]) -> list[dict]:
  """Each result with its job's ``seed``, ``workdir`` and ``data_used`` (the dataset the
  run actually trained on, :func:`data_used`) added."""
  out = []
  for (c, workdir), result in zip(jobs, results):
    r = dict(result)
    r.update(seed=int(c.seed), workdir=workdir, data_used=data_used(workdir, c.dataset))
    out.append(r)
  return out


def train_seeds(config, root: str, seeds: Sequence[int], parallel: int = 1) -> list[dict]:
  """``train_or_collect`` once per seed, in ``root/seed_<s>`` (resumable per seed;
  ``parallel``: see ``train_many``). Returns each seed's last evaluation, with ``seed``
  and ``workdir`` added."""
  jobs = seed_jobs(config, root, seeds)
  return with_seeds(jobs, train_many(jobs, parallel))


def seeds_informative_above_z1(results: Sequence[dict]) -> tuple[int, int]:
  """(number of seeds in which some layer above z_1 is informative about x, seeds), by
  ``evaluation.informative_layers``."""
  hits = sum(any(evaluation.informative_layers(r)[1:]) for r in results)
  return hits, len(results)


def seeds_informative_top(results: Sequence[dict]) -> tuple[int, int]:
  """(number of seeds in which the top layer z_L is informative about x, seeds)."""
  return sum(evaluation.informative_layers(r)[-1] for r in results), len(results)


def per_layer(results: Sequence[dict], key: str, digits: int = 1) -> str:
  """One 'mean ± sd' per layer (bottom to top) of a per-layer metric over seeds."""
  cols = np.asarray([r[key] for r in results], dtype=float)
  return " / ".join(f"{c.mean():.{digits}f}±{(c.std(ddof=1) if len(c) > 1 else 0.0):.{digits}f}"
                    for c in cols.T)
