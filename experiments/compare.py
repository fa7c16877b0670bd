"""Method comparison (paper Tables 3–4): train (or collect) one workdir per method and write
a Markdown table: validation ELBO (L100), reconstruction, KL, top-layer KL, active units
top-to-bottom (x-based and conditional), I(x; z_i).

Paper budget: 1M steps per method (``--config.num_train_steps=1000000``, the default).
Reduced budget (< 1 hour on 2 CPU cores), MNIST from ``mnist.pkl.gz`` (docs/data.md says
how to extract it to /tmp/mnist_pkl; ``--config.data_source=embedded`` needs nothing):

    python experiments/compare.py --workdir=/tmp/compare --config=configs/mnist_mlp.py \
      --config.dataset=binarized_mnist --config.data_source=files \
      --config.data_dir=/tmp/mnist_pkl --config.num_train_steps=4000 \
      --methods=vae,iwae,vae+kl,vae+freebits,hvae,hvae_ratio,hvae+rho_anneal \
      --kl_warmup=500,2000 --seeds=0,1,2

One workdir per method and seed (``<workdir>/<method>/seed_<s>``), resumable. The table
gives mean ± sd over seeds with every seed's value; ``compare.json`` and ``compare.csv``
hold each seed's evaluation. Or only collect existing runs: ``--collect=/path/a,/path/b``,
each a training workdir or a folder of ``seed_<s>`` workdirs (aggregated over its seeds),
optionally labelled: ``--collect='hvae rho 0.7=/tmp/abl_07/hvae'``.

A method may carry config overrides after ``@``: ``--methods=vae,hvae,hvae@rho=0.8@num_ou_samples=2``
(workdir ``<workdir>/hvae@rho=0.8@num_ou_samples=2/seed_<s>``). ``--parallel=K`` trains K
runs at once, one process each (``lab/sweeps.train_many``), seed by seed: every method's
seed 0 is trained before any seed 1.
"""
import json
import os
import sys

from absl import app, flags, logging  # pylint: disable=g-multiple-import
import numpy as np
from ml_collections import config_flags

from hermite_vae import config_lib
from hermite_vae import workdir as workdir_lib
from lab import sweeps
from lab.workdir_eval import evaluate_workdir

config_flags.DEFINE_config_file("config", "configs/mnist_mlp.py", "Base training config.")
flags.DEFINE_string("workdir", None, "Root directory: one sub-workdir per method.")
flags.DEFINE_list("methods", ["vae", "iwae", "vae+kl", "vae+freebits", "hvae", "hvae_ratio",
                              "hvae+rho_anneal"], f"Presets from {config_lib.METHOD_PRESETS}.")
flags.DEFINE_list("collect", [], "Existing workdirs (or folders of seed_<s> workdirs) to "
                  "tabulate instead of training.")
flags.DEFINE_list("seeds", ["0"], "Seeds: one workdir each (<workdir>/<method>/seed_<s>).")
flags.DEFINE_list("kl_warmup", [], "start,steps for +kl presets (default 10000,500000).")
flags.DEFINE_integer("num_importance_samples", 100, "K of the reported bound (paper: L100).")
flags.DEFINE_integer("max_examples", 0, "Evaluate only the first N validation examples.")
sweeps.define_parallel_flag()
flags.DEFINE_bool("train_only", False, "Train (or resume) every run, skip the table.")
flags.mark_flag_as_required("workdir")
FLAGS = flags.FLAGS


def bound_key(result) -> str:
  return next(key for key in result if key.startswith("iw_bound_k") and key != "iw_bound_k1")


def markdown_table(groups) -> str:
  """``groups``: [(name, [evaluation per seed])]. Mean ± sd over seeds, every seed's value
  in parentheses; per-layer columns as means, active units per seed."""
  head = ("| method | seeds | V. ELBO (L{k}) | ELBO | reconstruction | KL | top KL | "
          "KL per layer (top→bottom, mean) | active units x-based (top→bottom) per seed | "
          "active units conditional (top→bottom) per seed | I(x; z_i) (top→bottom, mean) | "
          "seeds with x-info above z1 | seeds with x-info in z_L |")
  lines = [head.format(k=FLAGS.num_importance_samples), "|" + "---|" * 13]
  for name, results in groups:
    k = bound_key(results[0])
    col = lambda key: sweeps.fmt_mean_sd([r[key] for r in results], 2)
    mean_layers = lambda key: ",".join(
        f"{v:.2f}" for v in np.mean([r[key] for r in results], axis=0)[::-1])
    units = lambda key: "; ".join(",".join(str(v) for v in r[key][::-1]) for r in results)
    hits, n = sweeps.seeds_informative_above_z1(results)
    top, _ = sweeps.seeds_informative_top(results)
    mi = mean_layers("mutual_information_nats") if all(
        "mutual_information_nats" in r for r in results) else ""
    lines.append(
        f"| {name} | {n} | {col(k)} | {col('elbo_nats')} | {col('reconstruction_nats')} | "
        f"{col('kl_nats')} | {sweeps.fmt_mean_sd([r['kl_per_layer_nats'][-1] for r in results], 2)} | "
        f"{mean_layers('kl_per_layer_nats')} | {units('active_units_x')} | "
        f"{units('active_units_conditional')} | {mi} | {hits}/{n} | {top}/{n} |")
  return "\n".join(lines)


def seed_workdirs(path: str) -> list[str]:
  """A training workdir itself, or the ``seed_<s>`` workdirs inside ``path``."""
  if os.path.exists(os.path.join(path, "config.json")):
    return [path]
  found = sorted((int(d[5:]), os.path.join(path, d)) for d in os.listdir(path)
                 if d.startswith("seed_") and d[5:].isdigit())
  if not found:
    raise ValueError(f"{path} is neither a training workdir nor a folder of seed_<s> ones")
  return [w for _, w in found]


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  os.makedirs(FLAGS.workdir, exist_ok=True)
  seeds = sweeps.parse_seeds(FLAGS.seeds)
  runs = []
  for spec in FLAGS.collect:          # path, or label=path
    label, _, path = spec.rpartition("=")
    runs.append((label or os.path.basename(os.path.normpath(path)), seed_workdirs(path)))
  if not runs:
    configs = {}
    for spec in FLAGS.methods:
      name, c = sweeps.method_config(FLAGS.config, spec)
      if FLAGS.kl_warmup and name.endswith("+kl"):
        c.kl_warmup_start, c.kl_warmup_steps = (int(v) for v in FLAGS.kl_warmup)
      configs[spec] = c
    jobs = {spec: sweeps.seed_jobs(c, os.path.join(FLAGS.workdir, spec), seeds)
            for spec, c in configs.items()}
    order = [jobs[spec][i] for i in range(len(seeds)) for spec in FLAGS.methods]
    sweeps.train_many(order, FLAGS.parallel)
    runs = [(spec, [w for _, w in jobs[spec]]) for spec in FLAGS.methods]
    if FLAGS.train_only:
      return
  groups, rows = [], []
  for name, workdirs in runs:
    results = []
    for workdir in workdirs:
      result = evaluate_workdir(workdir, num_importance_samples=FLAGS.num_importance_samples,
                                chunk=FLAGS.num_importance_samples,
                                max_examples=FLAGS.max_examples)
      seed = workdir_lib.load_run_config(workdir).seed
      results.append(result)
      rows.append({"method": name, "seed": seed, "workdir": workdir,
                   **{k: v for k, v in result.items() if k not in ("data",)}})
    groups.append((name, results))
  table = markdown_table(groups)
  with open(os.path.join(FLAGS.workdir, "compare.md"), "w") as f:
    f.write(table + "\n")
  with open(os.path.join(FLAGS.workdir, "compare.json"), "w") as f:
    json.dump(rows, f, indent=2, default=str)
  sweeps.write_csv(os.path.join(FLAGS.workdir, "compare.csv"), rows)
  print(table)


if __name__ == "__main__":
  config_lib.check_override_flags(sys.argv)
  app.run(main)
