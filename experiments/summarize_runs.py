"""One small JSON per finished run, for committing under ``docs/runs/``.

    python experiments/summarize_runs.py --root=/tmp/grid --group=rho_n_grid \
      --out_dir=docs/runs [--num_importance_samples=100] [--mi_paths=100] [--split=...]

Finds every finished workdir under ``--root`` (a ``final_eval.json`` at the run's last
step), re-evaluates its final checkpoint with today's evaluation (ELBO, L_1, L_K, KL per
layer, both active-unit counts, the x-explained variance share, I(x; z_i) with
``--mi_paths`` paths), measures the surrogate gap of an HVAE at its own (rho, n)
(``diagnostics.surrogate_gap``), and writes ``<out_dir>/<group>/<name>.json`` with the
run's config essentials, seed, those final numbers, every evaluation the trainer logged,
skipped non-finite updates and the training time. ``<name>`` is the workdir's path under
the root with ``/`` replaced by ``__``. Runs whose summary exists for the same step are
skipped (unless written by another ``VERSION`` of this script), so re-running after more
runs finish adds only theirs; ``--print_new`` lists
the files written (one per line) so that each can be committed on its own.
"""
import json
import os

from absl import app, flags, logging  # pylint: disable=g-multiple-import
import jax
import numpy as np

from hermite_vae import data, diagnostics, metrics_io
from hermite_vae import workdir as workdir_lib
from lab import sweeps
from lab.workdir_eval import evaluate_workdir

flags.DEFINE_string("root", None, "Folder holding the workdirs (searched recursively).")
flags.DEFINE_string("group", None, "Sub-folder of --out_dir for these runs.")
flags.DEFINE_string("out_dir", "docs/runs", "Where the summaries go.")
flags.DEFINE_string("split", "", "Split to evaluate on ('' : the run's eval_split).")
flags.DEFINE_integer("max_examples", 1000, "Examples of the split evaluated (0: all).")
flags.DEFINE_integer("num_importance_samples", 100, "K of the reported IW bound L_K.")
flags.DEFINE_integer("mi_paths", 100, "Sample paths in the I(x; z_i) estimate.")
flags.DEFINE_integer("batch_size", 500, "Evaluation batch (I(x; z_i) <= log of it).")
flags.DEFINE_integer("gap_draws", 16, "Draws of the surrogate-gap estimate.")
flags.DEFINE_integer("gap_examples", 500, "Examples of the surrogate-gap estimate.")
flags.DEFINE_bool("print_new", False, "Print the path of every summary written.")
flags.DEFINE_list("extra", [], "Further evaluations, each SPLIT:K on the whole split "
                  "(SPLIT 'eval': the run's own eval_split, e.g. eval:100 for the paper's "
                  "V. ELBO (L100) on the validation digits), kept under 'extra_evals' as "
                  "'<SPLIT>_L<K>'.")
flags.DEFINE_list("only", [], "Summarize only these runs (their names: the workdir's path "
                  "under --root with '/' replaced by '__').")
flags.mark_flags_as_required(["root", "group"])
FLAGS = flags.FLAGS

# Bumped when what a summary holds or how it is measured changes: summaries of another
# version are recomputed.
VERSION = 3

CONFIG_KEYS = ("method", "rho", "num_ou_samples", "hvae_gradient", "seed", "dataset",
               "data_source", "train_split", "eval_split", "num_train_steps", "latent_dims",
               "hidden_dims", "batch_size", "learning_rate", "initialization", "free_bits",
               "skip_connections", "compute_dtype", "grad_clip_norm", "grad_skip_norm")
FINAL_KEYS = ("elbo_nats", "elbo_std_err", "reconstruction_nats", "kl_nats",
              "kl_per_layer_nats", "active_units_x", "active_units_conditional",
              "x_share_units", "x_share_layer", "x_share_threshold",
              "mutual_information_nats", "mutual_information_paths", "num_examples",
              "bits_per_dim_elbo")
EVAL_KEYS = ("step", "elbo_nats", "kl_per_layer_nats", "active_units_x",
             "active_units_conditional", "x_share_units", "x_share_layer",
             "mutual_information_nats", "iw_bound_k100")

TRAIN_KEYS = ("step", "loss", "loss_max", "grad_norm", "grad_norm_max", "update_skipped")


def finished_workdirs(root: str):
  for d, _, files in sorted(os.walk(root)):
    if sweeps.FINAL in files and "config.json" in files:
      yield d


def _train_seconds(records) -> float:
  """Training time from the logged steps/s of each train record (evaluation excluded)."""
  total, last = 0.0, 0
  for r in records:
    if r["split"] == "train" and r.get("steps_per_sec"):
      total += (r["step"] - last) / r["steps_per_sec"]
      last = r["step"]
  return total


def summarize(workdir: str) -> dict:
  config = workdir_lib.load_run_config(workdir)
  records = metrics_io.read_metrics(workdir)
  final = evaluate_workdir(workdir, split=FLAGS.split,
                           num_importance_samples=FLAGS.num_importance_samples,
                           batch_size=FLAGS.batch_size, chunk=FLAGS.num_importance_samples,
                           max_examples=FLAGS.max_examples, mi_paths=FLAGS.mi_paths)
  k = FLAGS.num_importance_samples
  out = {
         "config": {key: config[key] for key in CONFIG_KEYS},
         "seed": int(config.seed), "step": int(final["step"]),
         "final": {key: final[key] for key in FINAL_KEYS if key in final},
         "final_split": final["split"],
         f"iw_bound_k{k}": final.get(f"iw_bound_k{k}"),
         "iw_bound_k1": final.get("iw_bound_k1"),
         "trainer_evals": [{key: r[key] for key in EVAL_KEYS if key in r}
                           for r in records if r["split"] == "eval"],
         # The logged training records (means over log_every steps; the max over the
         # interval where the trainer logs it): what a loss spike is judged from.
         "train_curve": {key: [r[key] for r in records if r["split"] == "train"]
                         for key in TRAIN_KEYS
                         if all(key in r for r in records if r["split"] == "train")},
         "skipped_nonfinite": int(sum(r.get("skipped_nonfinite", 0) for r in records
                                      if r["split"] == "train")),
         "train_seconds": round(_train_seconds(records), 1),
         "eval_seconds": round(final["seconds"], 1),
         "data": final["data"],
         # Every key of the run's config: what a campaign compares before reusing it.
         "run_config": workdir_lib.saved_config(workdir)}
  for spec in FLAGS.extra:
    split, _, k = spec.partition(":")
    k = int(k or 100)
    extra = evaluate_workdir(workdir, split="" if split == "eval" else split,
                             num_importance_samples=k,
                             batch_size=FLAGS.batch_size, chunk=k, max_examples=0,
                             mi_paths=FLAGS.mi_paths)
    out.setdefault("extra_evals", {})[f"{split}_L{k}"] = {
        **{key: extra[key] for key in FINAL_KEYS if key in extra},
        f"iw_bound_k{k}": extra.get(f"iw_bound_k{k}"), "iw_bound_k1": extra.get("iw_bound_k1"),
        "split": extra["split"], "seconds": round(extra["seconds"], 1)}
  if config.method == "hvae":
    loaded = data.load_config(config)
    x = loaded.eval[:FLAGS.gap_examples]
    x = np.asarray(x, np.float32).reshape(len(x), -1)
    model, params, _ = workdir_lib.restore_params(workdir, config, x.shape[-1])
    out["surrogate_gap"] = diagnostics.surrogate_gap(
        model, params, x, jax.random.PRNGKey(0), rho=float(config.rho),
        num_ou_samples=int(config.num_ou_samples), num_draws=FLAGS.gap_draws,
        smooth_target=config.smooth_target)
  return out


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  root = os.path.abspath(FLAGS.root)
  out_dir = os.path.join(FLAGS.out_dir, FLAGS.group)
  os.makedirs(out_dir, exist_ok=True)
  for workdir in finished_workdirs(root):
    name = os.path.relpath(workdir, root).replace(os.sep, "__")
    if FLAGS.only and name not in FLAGS.only:
      continue
    path = os.path.join(out_dir, f"{name}.json")
    with open(os.path.join(workdir, sweeps.FINAL)) as f:
      step = json.load(f).get("step")
    if os.path.exists(path):
      with open(path) as f:
        old = json.load(f)
      if old.get("step") == step and old.get("version") == VERSION:
        continue
    summary = summarize(workdir)
    summary["name"], summary["group"], summary["version"] = name, FLAGS.group, VERSION
    with open(path, "w") as f:
      json.dump(summary, f, indent=1, sort_keys=True, default=float)
      f.write("\n")
    if FLAGS.print_new:
      print(path)


if __name__ == "__main__":
  app.run(main)
