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
``--steps_per_dispatch`` value (1: one jitted step per call; k: ``train.train_steps``,
a lax.scan over k steps, as the training loop runs with ``config.steps_per_dispatch``).
"""
import functools
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # pylint: disable=g-import-not-at-top,g-multiple-import
import jax
import jax.numpy as jnp

from configs import mnist_mlp, mnist_mlp_64, mnist_mlp_5layer
from hermite_vae import evaluation, train
from hermite_vae.flops import matmul_flops, matmul_ops, matmuls_alone

PRESETS = {"mnist_mlp": mnist_mlp, "mnist_mlp_64": mnist_mlp_64,
           "mnist_mlp_5layer": mnist_mlp_5layer}
METHODS = {"vae": dict(method="vae"), "iwae5": dict(method="iwae", num_iw_samples=5),
           "hvae1": dict(method="hvae", num_ou_samples=1),
           "hvae5": dict(method="hvae", num_ou_samples=5),
           "hvae10": dict(method="hvae", num_ou_samples=10)}

flags.DEFINE_list("presets", ["mnist_mlp"], f"Model presets: {sorted(PRESETS)}.")
flags.DEFINE_list("methods", list(METHODS), f"Methods: {list(METHODS)}.")
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


def _setup(preset, method, batch_size):
  c = PRESETS[preset].get_config()
  c.update(METHODS[method])
  model = train.create_model(c, 784)
  tx = train.create_optimizer(c)
  cfg = train.ObjectiveConfig.from_config(c)
  state = train.create_train_state(model, tx, jax.random.PRNGKey(0), 784)
  kwargs = dict(model=model, tx=tx, cfg=cfg, stop_on_nonfinite=True,
                grad_clip_norm=float(c.grad_clip_norm))
  return state, kwargs


def matmul_limit(preset, method, batch_size, repeats):
  """(matmul FLOPs, seconds) of one training step's matmuls, run alone."""
  state, kwargs = _setup(preset, method, batch_size)
  x = jnp.zeros((batch_size, 28, 28, 1), jnp.float32)
  ops = matmul_ops(functools.partial(train.train_step, **kwargs), state, x,
                   jax.random.PRNGKey(2))
  fn, operands = matmuls_alone(ops)
  jax.block_until_ready(fn(operands))
  inner = 20
  seconds = _median_time(lambda: [fn(operands) for _ in range(inner)][-1], repeats) / inner
  return sum(op.flops * n for op, n in ops.items()), seconds


def prepare_method(preset, method, batch_size, steps, k):
  """Compiles a training step with k steps per dispatch (k = 1: a jitted train_step).

  Returns (info, run): ``run()`` executes ``steps`` steps and blocks on the result."""
  state, kwargs = _setup(preset, method, batch_size)
  xs = (jax.random.uniform(jax.random.PRNGKey(1), (k, batch_size, 28, 28, 1)) < 0.3).astype(
      jnp.float32)
  key = jax.random.PRNGKey(2)
  if k == 1:
    fn, data = functools.partial(train.train_step, **kwargs), xs[0]
  else:
    fn, data = functools.partial(train.train_steps, **kwargs), xs
  t0 = time.perf_counter()
  compiled = jax.jit(fn, donate_argnums=0).lower(state, data, key).compile()
  info = {"preset": preset, "method": method, "steps_per_dispatch": k,
          "compile_s": time.perf_counter() - t0}
  mem = compiled.memory_analysis()
  if mem is not None:
    info["temp_mib"] = mem.temp_size_in_bytes / 2**20
    info["peak_mib"] = (mem.argument_size_in_bytes + mem.output_size_in_bytes -
                        mem.alias_size_in_bytes + mem.temp_size_in_bytes) / 2**20
  holder = {"state": state}

  def run():
    s = holder["state"]
    for _ in range(steps // k):
      s, metrics = compiled(s, data, key)
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
  c = PRESETS[preset].get_config()
  model = train.create_model(c, 784)
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
  header = (f"{'preset':<17}{'method':<8}{'k':>4}{'ms/step':>9}{'steps/s':>9}{'ex/s':>9}"
            f"{'GFLOP/s':>9}{'% peak':>8}{'x vae':>7}{'mm ms':>7}{'peak MiB':>10}"
            f"{'compile s':>10}")
  print(header)
  dispatch = [int(k) for k in FLAGS.steps_per_dispatch]
  for preset in FLAGS.presets:
    limits = {m: matmul_limit(preset, m, FLAGS.batch_size, FLAGS.repeats)
              for m in FLAGS.methods}
    prepared = [prepare_method(preset, m, FLAGS.batch_size, FLAGS.steps, k)
                for k in dispatch for m in FLAGS.methods]
    seconds = time_interleaved([run for _, run in prepared], FLAGS.repeats)
    rows = iter(zip([info for info, _ in prepared], seconds))
    for k in dispatch:
      base = None
      for method in FLAGS.methods:
        r, sec = next(rows)
        step_s = sec / FLAGS.steps
        r.update(step_ms=step_s * 1e3, steps_per_sec=1 / step_s,
                 examples_per_sec=FLAGS.batch_size / step_s)
        flops, alone_s = limits[method]
        r.update(matmul_gflop_per_step=flops / 1e9,
                 achieved_gflops=flops / r["step_ms"] * 1e3 / 1e9,
                 matmuls_alone_ms=alone_s * 1e3)
        r["fraction_of_matmul_peak"] = r["achieved_gflops"] * 1e9 / peak
        if method == "vae":
          base = r
        if base is not None:
          r["time_vs_vae"] = r["step_ms"] / base["step_ms"]
          if "peak_mib" in r:
            r["memory_vs_vae"] = r["peak_mib"] / base["peak_mib"]
        results["train"].append(r)
        print(f"{preset:<17}{method:<8}{k:>4}{r['step_ms']:>9.2f}{r['steps_per_sec']:>9.1f}"
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
