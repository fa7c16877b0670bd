"""Helpers shared by the experiment scripts: train-or-collect a run (resumable), several
runs at once (``train_many``: one process per run, ``--parallel=K``), and the critical-rho
estimate of a phase-transition curve."""
from __future__ import annotations

import ast
import concurrent.futures
import csv
import json
import logging
import math
import os
import queue
import shutil
import subprocess
import sys
from typing import Sequence

import numpy as np

from hermite_vae import config_lib, metrics_io, train

log = logging.getLogger(__name__)

FINAL = "final_eval.json"
REQUEST = "requested_config.json"   # what a parallel sweep asks its worker process to train
RUN_ONE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "run_one.py")


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
  path = os.path.join(workdir, FINAL)
  if os.path.exists(path):
    with open(path) as f:
      result = json.load(f)
    if result.get("step") == config.num_train_steps:
      return result
  return None


def worker_env(threads: int) -> dict:
  """The environment of a worker process limited to ``threads`` CPU threads: XLA's CPU
  client and Eigen's thread pool (``XLA_FLAGS``) and the BLAS/OpenMP pools."""
  env = dict(os.environ)
  flags = env.get("XLA_FLAGS", "")
  if threads == 1:
    flags += " --xla_cpu_multi_thread_eigen=false"
  env["XLA_FLAGS"] = (flags + f" intra_op_parallelism_threads={threads}").strip()
  for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    env[var] = str(threads)
  return env


def _cpu_sets(parallel: int) -> list:
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
  todo = [i for i, r in enumerate(results) if r is None]
  slots = queue.Queue()
  cpu_sets = _cpu_sets(parallel)
  for cpus in cpu_sets:
    slots.put(cpus)
  threads = max(1, (os.cpu_count() or parallel) // parallel)

  def run(i):
    config, workdir = jobs[i]
    cpus = slots.get()
    try:
      env = (worker_env(len(cpus) if pin and cpus else threads) if limit_threads
             else dict(os.environ))
      code = run_worker(config, workdir, cpus if pin else None, env)
    finally:
      slots.put(cpus)
    if code:
      raise RuntimeError(f"training in {workdir} failed (exit {code}); see "
                         f"{os.path.join(workdir, 'worker.log')}")
    return _finished(config, workdir)

  errors = []
  with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
    futures = {pool.submit(run, i): i for i in todo}
    for future in concurrent.futures.as_completed(futures):
      try:
        results[futures[future]] = future.result()
      except RuntimeError as e:
        errors.append(str(e))
  if errors:
    raise RuntimeError("; ".join(errors))
  return results


def run_worker(config, workdir: str, cpus=None, env=None) -> int:
  """Trains ``config`` in ``workdir`` in a process of its own (``run_one.py``), pinned to
  ``cpus`` with ``taskset`` when given, its output appended to ``workdir/worker.log``.
  Returns the process's exit code."""
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, REQUEST), "w") as f:
    f.write(config.to_json_best_effort())
  cmd = [sys.executable, RUN_ONE, workdir]
  if cpus:
    cmd = ["taskset", "-c", ",".join(map(str, cpus))] + cmd
  with open(os.path.join(workdir, "worker.log"), "a") as log_file:
    return subprocess.call(cmd, env=env, stdout=log_file, stderr=subprocess.STDOUT)


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


def with_seeds(jobs: Sequence[tuple], results: Sequence[dict]) -> list[dict]:
  """Each result with its job's ``seed`` and ``workdir`` added."""
  out = []
  for (c, workdir), result in zip(jobs, results):
    r = dict(result)
    r.update(seed=int(c.seed), workdir=workdir)
    out.append(r)
  return out


def train_seeds(config, root: str, seeds: Sequence[int], parallel: int = 1) -> list[dict]:
  """``train_or_collect`` once per seed, in ``root/seed_<s>`` (resumable per seed;
  ``parallel``: see ``train_many``). Returns each seed's last evaluation, with ``seed``
  and ``workdir`` added."""
  jobs = seed_jobs(config, root, seeds)
  return with_seeds(jobs, train_many(jobs, parallel))


def mean_sd(values) -> tuple[float, float]:
  """Mean and sample standard deviation (ddof = 1; 0 for a single value)."""
  v = np.asarray(values, dtype=float)
  return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def fmt_mean_sd(values, digits: int = 1) -> str:
  """'m ± sd (v1, v2, v3)': the mean, the sample sd and every seed's value."""
  m, s = mean_sd(values)
  each = ", ".join(f"{float(v):.{digits}f}" for v in values)
  return f"{m:.{digits}f} ± {s:.{digits}f} ({each})"


def informative_layers(result: dict, min_units: int = 1) -> list[bool]:
  """Per layer (bottom to top): does z_i carry information about x in this run? True when
  its x-based active-unit count (Burda's criterion applied to E_q[z_i|x] averaged over
  paths from x, threshold ``config.au_threshold``) is at least ``min_units``. The
  conditional count is deliberately not used: a layer can be conditionally active while
  encoding only the noise of the layer below."""
  return [int(u) >= min_units for u in result["active_units_x"]]


def seeds_informative_above_z1(results: Sequence[dict]) -> tuple[int, int]:
  """(number of seeds in which some layer above z_1 is informative about x, seeds)."""
  hits = sum(any(informative_layers(r)[1:]) for r in results)
  return hits, len(results)


def seeds_informative_top(results: Sequence[dict]) -> tuple[int, int]:
  """(number of seeds in which the top layer z_L is informative about x, seeds)."""
  return sum(informative_layers(r)[-1] for r in results), len(results)


def per_layer(results: Sequence[dict], key: str, digits: int = 1) -> str:
  """One 'mean ± sd' per layer (bottom to top) of a per-layer metric over seeds."""
  cols = np.asarray([r[key] for r in results], dtype=float)
  return " / ".join(f"{c.mean():.{digits}f}±{(c.std(ddof=1) if len(c) > 1 else 0.0):.{digits}f}"
                    for c in cols.T)
