"""Method comparison (paper Tables 3–4): train (or collect) one workdir per method and write
a Markdown table: validation ELBO (L100), reconstruction, KL, top-layer KL, active units
top-to-bottom (x-based and conditional), I(x; z_i).

Paper budget: 1M steps per method (``--config.num_train_steps=1000000``, the default).
Reduced budget (< 1 hour on 2 CPU cores), real MNIST test set as data:

    python experiments/compare.py --workdir=/tmp/compare --config=configs/mnist_mlp.py \
      --config.dataset=mnist --config.data_source=files \
      --config.data_dir=../shared/data/mnist --config.train_split='test[:9000]' \
      --config.eval_split='test[9000:]' --config.num_train_steps=4000 \
      --methods=vae,iwae,vae+kl,vae+freebits,hvae,hvae_ratio,hvae+rho_anneal \
      --kl_warmup=500,2000

Or only collect existing workdirs: ``--collect=/path/run_a,/path/run_b``.
"""
import json
import os

from absl import app, flags, logging  # pylint: disable=g-multiple-import
from ml_collections import config_flags

from hermite_vae import config_lib
from lab import sweeps
from lab.workdir_eval import evaluate_workdir

config_flags.DEFINE_config_file("config", "configs/mnist_mlp.py", "Base training config.")
flags.DEFINE_string("workdir", None, "Root directory: one sub-workdir per method.")
flags.DEFINE_list("methods", ["vae", "iwae", "vae+kl", "vae+freebits", "hvae", "hvae_ratio",
                              "hvae+rho_anneal"], f"Presets from {config_lib.METHOD_PRESETS}.")
flags.DEFINE_list("collect", [], "Existing workdirs to tabulate instead of training.")
flags.DEFINE_list("kl_warmup", [], "start,steps for +kl presets (default 10000,500000).")
flags.DEFINE_integer("num_importance_samples", 100, "K of the reported bound (paper: L100).")
flags.DEFINE_integer("max_examples", 0, "Evaluate only the first N validation examples.")
flags.mark_flag_as_required("workdir")
FLAGS = flags.FLAGS


def markdown_table(rows) -> str:
  head = ("| method | V. ELBO (L{k}) | ELBO | reconstruction | KL | top KL | "
          "active units x-based (top→bottom) | active units conditional (top→bottom) | "
          "I(x; z_i) (top→bottom) |")
  lines = [head.format(k=FLAGS.num_importance_samples),
           "|" + "---|" * 9]
  for name, r in rows:
    k = next(key for key in r if key.startswith("iw_bound_k") and key != "iw_bound_k1")
    mi = r.get("mutual_information_nats", [])
    lines.append(
        f"| {name} | {r[k]:.2f} | {r['elbo_nats']:.2f} | {r['reconstruction_nats']:.2f} | "
        f"{r['kl_nats']:.2f} | {r['kl_per_layer_nats'][-1]:.2f} | "
        f"{','.join(str(v) for v in r['active_units_x'][::-1])} | "
        f"{','.join(str(v) for v in r['active_units_conditional'][::-1])} | "
        f"{','.join(f'{v:.2f}' for v in mi[::-1])} |")
  return "\n".join(lines)


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  os.makedirs(FLAGS.workdir, exist_ok=True)
  workdirs = [(os.path.basename(os.path.normpath(w)), w) for w in FLAGS.collect]
  if not workdirs:
    for name in FLAGS.methods:
      c = config_lib.apply_method(FLAGS.config.copy_and_resolve_references(), name)
      if FLAGS.kl_warmup and name.endswith("+kl"):
        c.kl_warmup_start, c.kl_warmup_steps = (int(v) for v in FLAGS.kl_warmup)
      workdir = os.path.join(FLAGS.workdir, name)
      sweeps.train_or_collect(c, workdir)
      workdirs.append((name, workdir))
  rows = []
  for name, workdir in workdirs:
    result = evaluate_workdir(workdir, num_importance_samples=FLAGS.num_importance_samples,
                          chunk=FLAGS.num_importance_samples, max_examples=FLAGS.max_examples)
    rows.append((name, result))
  table = markdown_table(rows)
  with open(os.path.join(FLAGS.workdir, "compare.md"), "w") as f:
    f.write(table + "\n")
  with open(os.path.join(FLAGS.workdir, "compare.json"), "w") as f:
    json.dump({n: r for n, r in rows}, f, indent=2, default=str)
  print(table)


if __name__ == "__main__":
  app.run(main)
