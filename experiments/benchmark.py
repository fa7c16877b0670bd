"""Benchmark: training throughput, achieved matmul FLOP/s, memory and compile time of the
paper's MLP presets for vae, iwae (k = 5) and hvae (n = 1, 5, 10), plus the throughput of
the L5000 evaluation bound. Not part of the tests.

    python experiments/benchmark.py --out=benchmark.json

The practical limit is a large float32 matmul timed in the same run on the same device;
each method's achieved FLOP/s counts the matmul FLOPs of its training step (from the
jaxpr: forward, backward and the OU samples). A second, shape-aware limit is the time the
step's own matmuls take alone (same shapes and count, nothing else, one executable): the
step cannot be faster than that on this device and library, whatever the overhead.

Step times are medians over ``--repeats`` timings of ``--steps`` steps after compilation,
with fixed on-device batches (the data pipeline draws batches on device too), for each
``--steps_per_dispatch`` value k, of the trainer's own dispatch
(``train.make_train_steps``: a lax.scan over k steps with donated state). Methods are the
presets of ``hermite_vae.config_lib.METHOD_PRESETS`` and the hvae schedules
``hvae_sequential`` / ``hvae_chained`` (``lab.presets.HVAE_SCHEDULES``); ``hvae n=5`` is
the ``hvae`` preset with 5 OU samples.
"""
import functools
import json
import os
import statistics
import time

from absl import app, flags  # pylint: disable=g-multiple-import
import jax
import jax.numpy as jnp

from hermite_vae import evaluation, objectives, train
from hermite_vae import state as state_lib
from lab.flops import compiled_memory_mib, matmul_flops, matmul_ops, matmuls_alone
from lab.presets import METHODS, load_config, method_config

flags.DEFINE_list("presets", ["mnist_mlp"], "Model configs of configs/ (MLP presets).")
flags.DEFINE_list("methods", ["vae", "iwae", "hvae"],
                  f"Methods of {METHODS}.")
flags.DEFINE_list("ou_samples", ["1", "5", "10"], "n of the hvae rows (one row each).")
flags.DEFINE_integer("batch_size", 100, "Batch size.")
flags.DEFINE_integer("steps", 100, "Steps per timing.")
flags.DEFINE_list("steps_per_dispatch", ["1", "10"], "Steps per dispatch to time (each divides "
                  "--steps).")
flags.DEFINE_integer("repeats", 5, "Timings per method (the median is reported).")
flags.DEFINE_integer("eval_k", 5000, "K of the evaluation bound (0: skip).")
flags.DEFINE_integer("eval_batch", 100, "Examples per evaluation batch.")
flags.DEFINE_integer("eval_chunk", 500, "IW samples per chunk.")
flags.DEFINE_integer("matmul_size", 2048, "Size of the reference square matmul.")
flags.DEFINE_string("out", "benchmark.json", "Output JSON.")
FLAGS = flags.FLAGS


def _median_time(fn, repeats):
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t0)
  return statistics.median(times)


def reference_matmul_flops(n, repeats):
  a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
  b = jax.random.normal(jax.random.PRNGKey(1), (n, n), jnp.float32)
  mm = jax.jit(lambda a, b: a @ b)
  jax.block_until_ready(mm(a, b))
  return 2 * n**3 / _median_time(lambda: mm(a, b), max(repeats, 5))


def method_rows():
  """(label, preset, n) per benchmarked method: hvae once per --ou_samples value."""
  rows = []
  for name in FLAGS.methods:
    if method_config(FLAGS.presets[0], name).method == "hvae":
      rows += [(f"{name} n={n}", name, int(n)) for n in FLAGS.ou_samples]
    else:
      rows.append((name, name, None))
  return rows


def _config(preset, method, n, batch_size, k=1):
  config = method_config(preset, method)
  config.batch_size, config.steps_per_dispatch = batch_size, k
  if n is not None:
    config.num_ou_samples = n
  return config


def _setup(config, num_pixels=784):
  model = state_lib.create_model(config, num_pixels)
  tx = state_lib.create_optimizer(config)
  state = state_lib.create_train_state(model, tx, jax.random.PRNGKey(0), num_pixels)
  return model, tx, state


def matmul_limit(config, repeats):
  """(matmul FLOPs, seconds) of one training step's matmuls, run alone."""
  model, tx, state = _setup(config)
  x = jnp.zeros((config.batch_size, 28, 28, 1), jnp.float32)
  step = functools.partial(train.train_step, model=model, tx=tx,
                           cfg=objectives.ObjectiveConfig.from_config(config),
                           stop_on_nonfinite=not config.skip_nonfinite,
                           grad_clip_norm=float(config.grad_clip_norm))
  ops = matmul_ops(step, state, x, jax.random.PRNGKey(2))
  fn, operands = matmuls_alone(ops)
  jax.block_until_ready(fn(operands))
  inner = 20
  seconds = _median_time(lambda: [fn(operands) for _ in range(inner)][-1], repeats) / inner
  return sum(op.flops * n for op, n in ops.items()), seconds


def prepare_method(config, label, steps):
  """Compiles the trainer's own dispatch (``train.make_train_steps``: a scan over
  ``config.steps_per_dispatch`` steps, state donated) for ``config``.

  Returns (info, run): ``run()`` executes ``steps`` steps and blocks on the result."""
  k, batch_size = config.steps_per_dispatch, config.batch_size
  model, tx, state = _setup(config)
  mesh = state_lib.make_mesh()
  state = jax.device_put(state, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))
  xs = (jax.random.uniform(jax.random.PRNGKey(1), (k, batch_size, 28, 28, 1)) < 0.3).astype(
      jnp.float32)
  key = jax.random.PRNGKey(2)
  t0 = time.perf_counter()
  compiled = train.make_train_steps(model, tx, config, mesh).lower(state, xs, key).compile()
  info = {"preset": FLAGS.presets[0], "method": label, "steps_per_dispatch": k,
          "compile_s": time.perf_counter() - t0}
  mem = compiled_memory_mib(compiled)
  if mem is not None:
    info["temp_mib"], info["peak_mib"] = mem["temp_mib"], mem["peak_mib"]
  holder = {"state": state}

  def run():
    s = holder["state"]
    for _ in range(steps // k):
      s, metrics = compiled(s, xs, key)
    holder["state"] = s
    return jax.block_until_ready(metrics["loss"])

  run()  # warm up
  return info, run


def time_interleaved(runs, repeats):
  """Median seconds of each run, timed round-robin so that drifts of a shared machine
  affect every configuration alike."""
  times = [[] for _ in runs]
  for _ in range(repeats):
    for i, run in enumerate(runs):
      t0 = time.perf_counter()
      run()
      times[i].append(time.perf_counter() - t0)
  return [statistics.median(t) for t in times]


def bench_eval(preset, k, batch, chunk, repeats):
  model = state_lib.create_model(load_config(preset), 784)
  params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 784)), jax.random.PRNGKey(1))["params"]
  x = (jax.random.uniform(jax.random.PRNGKey(1), (batch, 28, 28, 1)) < 0.3).astype(jnp.float32)
  fn = lambda: evaluation.iw_bound_batch(model, params, x, jax.random.PRNGKey(3), k, chunk)
  t0 = time.perf_counter()
  jax.block_until_ready(fn())
  first = time.perf_counter() - t0
  sec = _median_time(fn, max(1, repeats // 2))
  flops = matmul_flops(fn)
  return {"preset": preset, "k": k, "examples_per_sec": batch / sec,
          "seconds_per_10k_examples": 1e4 * sec / batch, "first_call_s": first,
          "achieved_gflops": flops / sec / 1e9}


def markdown(results) -> str:
  lines = [f"Device: {results['device']} ({results['platform']}, {results['num_devices']} "
           f"device), JAX {results['jax']}, batch {results['batch_size']}, float32. "
           f"Reference {FLAGS.matmul_size}³ matmul: "
           f"{results['reference_matmul_gflops']:.1f} GFLOP/s. 'matmuls alone': the step's "
           "own matmuls run without anything else.", "",
           "| preset | method | steps/dispatch | ms/step | steps/s | examples/s | "
           "matmul GFLOP/step | GFLOP/s | % of matmul peak | time vs vae | matmuls alone ms | "
           "step / matmuls alone | peak MiB | memory vs vae | compile s |",
           "|" + "---|" * 15]
  nan = float("nan")
  for r in results["train"]:
    lines.append(
        f"| {r['preset']} | {r['method']} | {r['steps_per_dispatch']} | {r['step_ms']:.2f} | "
        f"{r['steps_per_sec']:.1f} | {r['examples_per_sec']:.0f} | "
        f"{r['matmul_gflop_per_step']:.3f} | {r['achieved_gflops']:.1f} | "
        f"{100 * r['fraction_of_matmul_peak']:.0f}% | {r.get('time_vs_vae', nan):.2f} | "
        f"{r['matmuls_alone_ms']:.2f} | {r['step_ms'] / r['matmuls_alone_ms']:.2f} | "
        f"{r.get('peak_mib', nan):.1f} | {r.get('memory_vs_vae', nan):.2f} | "
        f"{r['compile_s']:.1f} |")
  for e in results["eval"]:
    lines += ["", f"L{e['k']} evaluation bound ({e['preset']}): {e['examples_per_sec']:.1f} "
              f"examples/s, {e['seconds_per_10k_examples'] / 60:.1f} min per 10,000 examples, "
              f"{e['achieved_gflops']:.1f} matmul GFLOP/s "
              f"({100 * e['fraction_of_matmul_peak']:.0f}% of the reference matmul)."]
  return "\n".join(lines)


def main(argv):
  del argv
  for k in FLAGS.steps_per_dispatch:
    if not k.isdigit() or int(k) < 1 or FLAGS.steps % int(k):
      raise app.UsageError(f"--steps_per_dispatch={k}: each value must be a positive "
                           f"integer dividing --steps={FLAGS.steps}")
  peak = reference_matmul_flops(FLAGS.matmul_size, FLAGS.repeats)
  results = {"device": str(jax.devices()[0].device_kind), "platform": jax.devices()[0].platform,
             "num_devices": jax.device_count(), "jax": jax.__version__,
             "batch_size": FLAGS.batch_size,
             "reference_matmul_gflops": peak / 1e9, "train": [], "eval": []}
  print(f"reference {FLAGS.matmul_size}^3 float32 matmul: {peak / 1e9:.1f} GFLOP/s "
        f"on {results['device']}")
  header = (f"{'preset':<17}{'method':<12}{'k':>4}{'ms/step':>9}{'steps/s':>9}{'ex/s':>9}"
            f"{'GFLOP/s':>9}{'% peak':>8}{'x vae':>7}{'mm ms':>7}{'peak MiB':>10}"
            f"{'compile s':>10}")
  print(header)
  dispatch = [int(k) for k in FLAGS.steps_per_dispatch]
  rows = method_rows()
  for preset in FLAGS.presets:
    limits = {label: matmul_limit(_config(preset, name, n, FLAGS.batch_size), FLAGS.repeats)
              for label, name, n in rows}
    prepared = []
    for k in dispatch:
      for label, name, n in rows:
        info, run = prepare_method(_config(preset, name, n, FLAGS.batch_size, k), label,
                                   FLAGS.steps)
        info["preset"] = preset
        prepared.append((info, run))
    seconds = time_interleaved([run for _, run in prepared], FLAGS.repeats)
    timed = iter(zip([info for info, _ in prepared], seconds))
    for k in dispatch:
      base = None
      for label, name, _ in rows:
        r, sec = next(timed)
        step_s = sec / FLAGS.steps
        r.update(step_ms=step_s * 1e3, steps_per_sec=1 / step_s,
                 examples_per_sec=FLAGS.batch_size / step_s)
        flops, alone_s = limits[label]
        r.update(matmul_gflop_per_step=flops / 1e9,
                 achieved_gflops=flops / r["step_ms"] * 1e3 / 1e9,
                 matmuls_alone_ms=alone_s * 1e3)
        r["fraction_of_matmul_peak"] = r["achieved_gflops"] * 1e9 / peak
        if name == "vae":
          base = r
        if base is not None:
          r["time_vs_vae"] = r["step_ms"] / base["step_ms"]
          if "peak_mib" in r:
            r["memory_vs_vae"] = r["peak_mib"] / base["peak_mib"]
        results["train"].append(r)
        print(f"{preset:<17}{label:<12}{k:>4}{r['step_ms']:>9.2f}{r['steps_per_sec']:>9.1f}"
              f"{r['examples_per_sec']:>9.0f}{r['achieved_gflops']:>9.1f}"
              f"{100 * r['fraction_of_matmul_peak']:>7.0f}%"
              f"{r.get('time_vs_vae', float('nan')):>7.2f}{r['matmuls_alone_ms']:>7.2f}"
              f"{r.get('peak_mib', float('nan')):>10.1f}{r['compile_s']:>10.1f}")
    if FLAGS.eval_k:
      e = bench_eval(preset, FLAGS.eval_k, FLAGS.eval_batch, FLAGS.eval_chunk, FLAGS.repeats)
      e["fraction_of_matmul_peak"] = e["achieved_gflops"] * 1e9 / peak
      results["eval"].append(e)
      print(f"{preset}: L{FLAGS.eval_k} bound {e['examples_per_sec']:.1f} examples/s "
            f"({e['seconds_per_10k_examples'] / 60:.1f} min per 10k examples)")
  with open(FLAGS.out, "w") as f:
    json.dump(results, f, indent=2)
  table = markdown(results)
  with open(os.path.splitext(FLAGS.out)[0] + ".md", "w") as f:
    f.write(table + "\n")
  print(table)
  print(f"wrote {FLAGS.out} and {os.path.splitext(FLAGS.out)[0]}.md")


if __name__ == "__main__":
  app.run(main)
