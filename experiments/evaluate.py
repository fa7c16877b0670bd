"""Evaluates a trained workdir on the original (unsmoothed) model.

    python experiments/evaluate.py --workdir=/tmp/hvae --split=test --num_importance_samples=5000

Writes ``workdir/eval_<split>.json`` and prints a table: ELBO, the IW bounds L_1, L_100,
L_K, reconstruction, KL per layer, both active-unit counts, I(x; z_i), bits/dim.
"""
import os

from absl import app, flags, logging  # pylint: disable=g-multiple-import
from lab.workdir_eval import evaluate_workdir

flags.DEFINE_string("workdir", None, "A training workdir (config.json + checkpoints/).")
flags.DEFINE_string("split", "", "Split to evaluate (TFDS syntax); '' = the run's eval_split.")
flags.DEFINE_integer("num_importance_samples", 5000, "K of the largest IW bound.")
flags.DEFINE_integer("batch_size", 100, "Examples per batch.")
flags.DEFINE_integer("chunk", 500, "IW samples per chunk (memory ~ chunk x batch_size).")
flags.DEFINE_integer("max_examples", 0, "Evaluate only the first N examples (0: all).")
flags.DEFINE_integer("au_samples", 100, "Sample paths for E_q[z_i|x] (active units).")
flags.DEFINE_integer("mi_paths", 10, "Sample paths for q(z_i|x) in the I(x; z_i) estimate.")
flags.DEFINE_integer("seed", 0, "Evaluation randomness.")
flags.DEFINE_string("data_dir", "", "Replaces the run's data_dir (a release has none).")
flags.DEFINE_bool("verbose", False, "Show the INFO logs of orbax and the other libraries.")
flags.mark_flag_as_required("workdir")
FLAGS = flags.FLAGS


def format_table(result: dict) -> str:
  rows = [("examples", result["num_examples"]), ("checkpoint step", result["step"]),
          ("ELBO (nats)", f"{result['elbo_nats']:.3f} ± {result['elbo_std_err']:.3f}")]
  for key in sorted((k for k in result if k.startswith("iw_bound_k")),
                    key=lambda k: int(k[len("iw_bound_k"):])):
    rows.append((f"L_{key[len('iw_bound_k'):]} (nats)", f"{result[key]:.3f}"))
  rows += [("reconstruction (nats)", f"{result['reconstruction_nats']:.3f}"),
           ("KL per layer z1..zL", " ".join(f"{v:.2f}" for v in result["kl_per_layer_nats"])),
           ("active units x-based", result.get("active_units_x")),
           ("active units conditional", result.get("active_units_conditional")),
           ("I(x; z_i) (nats)", " ".join(f"{v:.2f}" for v in
                                         result.get("mutual_information_nats", []))),
           ("bits/dim (ELBO)", f"{result['bits_per_dim_elbo']:.4f}"),
           ("seconds", f"{result['seconds']:.1f}")]
  width = max(len(r[0]) for r in rows)
  return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def main(argv):
  del argv
  logging.set_verbosity(logging.INFO if FLAGS.verbose else logging.WARNING)
  result = evaluate_workdir(FLAGS.workdir, FLAGS.split, FLAGS.num_importance_samples, FLAGS.batch_size,
               FLAGS.chunk, FLAGS.max_examples, FLAGS.au_samples, FLAGS.mi_paths, FLAGS.seed,
               FLAGS.data_dir)
  print(format_table(result))


if __name__ == "__main__":
  app.run(main)
