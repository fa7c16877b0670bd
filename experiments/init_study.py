"""Initialization study: for each initialization (``config.initialization``), model shape
and method, the initial KL per layer and the outcome of training (ELBO, KL per layer,
x-based active units, I(x; z_i)) over several seeds. MNIST from ``mnist.pkl.gz``
(docs/data.md says how to extract it to /tmp/mnist_pkl; ``--config.data_source=embedded``
needs nothing):

    python experiments/init_study.py --workdir=/tmp/init --config=configs/mnist_mlp.py \
      --config.dataset=binarized_mnist --config.data_source=files \
      --config.data_dir=/tmp/mnist_pkl --config.eval_max_examples=1000 \
      --inits=zero_heads,lecun_normal,torch --seeds=0,1,2 \
      --cells=200x3:vae:3000,40x4:vae:8000,40x4:hvae:8000

A cell is ``<latent width>x<stochastic layers>:<method preset>:<steps>`` (hidden layers
keep the config's width, 200 for the paper's MLP). Writes ``init_study.{csv,json,md}``:
one CSV row per (init, cell, seed), the Markdown table as mean ± sd with every seed's
value (``--table`` names them, so several studies can share one workdir and its runs).
Resumable: finished runs are read back.
"""
import json
import os
import sys

from absl import app, flags, logging  # pylint: disable=g-multiple-import
import jax
import jax.numpy as jnp
import numpy as np
from ml_collections import config_flags

from hermite_vae import config_lib, data, objectives, rng
from hermite_vae.models import layers
from hermite_vae import state as state_lib
from lab import sweeps
from lab.workdir_eval import evaluate_workdir

config_flags.DEFINE_config_file("config", "configs/mnist_mlp.py", "Base training config.")
flags.DEFINE_string("workdir", None, "Root directory: one sub-workdir per (init, cell, seed).")
flags.DEFINE_list("inits", list(layers.INITS), f"Initializations from {layers.INITS}.")
flags.DEFINE_list("cells", ["200x3:vae:3000", "40x4:vae:8000", "40x4:hvae:8000"],
                  "width x depth : method preset : steps.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds (one workdir each).")
sweeps.define_parallel_flag()
flags.DEFINE_integer("initial_kl_examples", 500, "Eval examples for the initial KL.")
flags.DEFINE_string("table", "init_study", "Name of the output files (<table>.csv/json/md).")
flags.DEFINE_bool("reevaluate", False, "Evaluate every run's final checkpoint again with "
                  "today's evaluation instead of reading its final_eval.json.")
flags.mark_flag_as_required("workdir")
FLAGS = flags.FLAGS


def parse_cell(cell: str):
  shape, method, steps = cell.split(":")
  width, depth = (int(v) for v in shape.split("x"))
  if method not in config_lib.METHOD_PRESETS:
    raise ValueError(f"cell {cell!r}: unknown method preset {method!r}")
  return width, depth, method, int(steps)


def cell_config(base, init, width, depth, method, steps):
  c = config_lib.apply_method(base.copy_and_resolve_references(), method)
  c.initialization = init
  c.latent_dims = (width,) * depth
  c.hidden_dims = (tuple(base.hidden_dims)[0],) * depth
  c.num_train_steps = steps
  c.eval_every = c.checkpoint_every = steps
  c.log_every = min(c.log_every, steps)
  return c


def initial_kl(config, images, seed: int) -> list[float]:
  """KL per layer (bottom to top, nats, one posterior path) of the initial model of
  ``config`` at ``seed`` on ``images`` (binarized at 0.5)."""
  x = jnp.asarray(images.reshape(len(images), -1), jnp.float32)
  if config_lib.likelihood(config) == "bernoulli" and float(x.max()) > 1:
    x = (x > 127).astype(jnp.float32)
  model = state_lib.create_model(config, x.shape[-1])
  key = rng.run_keys(seed)["init"]   # the trainer's init key
  params = state_lib.create_train_state(model, state_lib.create_optimizer(config), key,
                                    x.shape[-1]).params
  terms = objectives.layer_terms(model, params, x, jax.random.PRNGKey(1))
  return [float(v) for v in np.asarray(jnp.mean(terms.kl, axis=1))]


def _reevaluate(workdir, config):
  """The final checkpoint evaluated with today's evaluation, cached in
  ``workdir/reeval.json`` for the checkpoint's step."""
  path = os.path.join(workdir, "reeval.json")
  if os.path.exists(path):
    with open(path) as f:
      cached = json.load(f)
    if cached.get("step") == config.num_train_steps:
      return cached
  result = evaluate_workdir(workdir, num_importance_samples=1,
                            max_examples=config.eval_max_examples, batch_size=500,
                            au_samples=config.au_samples, mi_paths=config.mi_paths)
  result = {k: v for k, v in result.items() if k != "data"}
  with open(path, "w") as f:
    json.dump(result, f, default=str)
  return result


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  seeds = sweeps.parse_seeds(FLAGS.seeds)
  cells = [parse_cell(c) for c in FLAGS.cells]
  for init in FLAGS.inits:
    layers.check_init(init)
  base = FLAGS.config
  images = data.load_config(base).eval[:FLAGS.initial_kl_examples]
  rows, table = [], []
  root_of = lambda width, depth, method, steps, init: os.path.join(
      FLAGS.workdir, f"{width}x{depth}_{method}_{steps}", init)
  if sweeps.resolve_parallel(FLAGS.parallel) > 1:   # train every run first, K at a time; the loop below collects
    sweeps.train_many([j for (w, d, m, s) in cells for init in FLAGS.inits
                       for j in sweeps.seed_jobs(cell_config(base, init, w, d, m, s),
                                                 root_of(w, d, m, s, init), seeds)],
                      FLAGS.parallel)
  for (width, depth, method, steps) in cells:
    for init in FLAGS.inits:
      c = cell_config(base, init, width, depth, method, steps)
      root = root_of(width, depth, method, steps, init)
      results = sweeps.train_seeds(c, root, seeds)
      if FLAGS.reevaluate:
        for r in results:
          r.update(_reevaluate(r["workdir"], c))
      for r in results:
        r["initial_kl_per_layer_nats"] = initial_kl(c, images, r["seed"])
        rows.append({"init": init, "width": width, "depth": depth, "method": method,
                     "steps": steps, "seed": r["seed"], "workdir": r["workdir"],
                     **{k: r[k] for k in ("initial_kl_per_layer_nats", "elbo_nats",
                                          "kl_per_layer_nats", "active_units_x",
                                          "active_units_conditional",
                                          "mutual_information_nats") if k in r}})
      hits, n = sweeps.seeds_informative_above_z1(results)
      top, _ = sweeps.seeds_informative_top(results)
      table.append(
          f"| {width}x{depth} | {method} | {steps} | {init} | "
          f"{sweeps.per_layer(results, 'initial_kl_per_layer_nats')} | "
          f"{sweeps.fmt_mean_sd([r['elbo_nats'] for r in results])} | "
          f"{sweeps.per_layer(results, 'kl_per_layer_nats')} | "
          f"{'; '.join(','.join(str(u) for u in r['active_units_x']) for r in results)} | "
          f"{sweeps.per_layer(results, 'mutual_information_nats', 2)} | {hits}/{n} | "
          f"{top}/{n} |")
  head = ("| model | method | steps | init | initial KL z1..zL | ELBO mean ± sd (seeds) | "
          "KL z1..zL | AU x-based z1..zL per seed | I(x; z_i) z1..zL | seeds with x-info "
          "above z1 | seeds with x-info in z_L |\n|" + "---|" * 11)
  md = head + "\n" + "\n".join(table)
  sweeps.write_csv(os.path.join(FLAGS.workdir, f"{FLAGS.table}.csv"), rows)
  with open(os.path.join(FLAGS.workdir, f"{FLAGS.table}.json"), "w") as f:
    json.dump({"config": json.loads(base.to_json_best_effort()), "rows": rows}, f, indent=2)
  with open(os.path.join(FLAGS.workdir, f"{FLAGS.table}.md"), "w") as f:
    f.write(md + "\n")
  print(md)


if __name__ == "__main__":
  config_lib.check_override_flags(sys.argv)
  app.run(main)
