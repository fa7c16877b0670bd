"""Evaluation of a training workdir's latest checkpoint (``experiments/evaluate.py``,
``experiments/compare.py``)."""
from __future__ import annotations

import json
import os
import re
import time

import jax
import numpy as np

from hermite_vae import data, evaluation
from hermite_vae import workdir as workdir_lib
from hermite_vae import state as state_lib


def evaluate_workdir(workdir, split="", num_importance_samples=5000, batch_size=100,
                     chunk=500,
                     max_examples=0, au_samples=100, mi_paths=100, seed=0, data_dir=""):
  """Evaluates the original model of ``workdir`` (a training workdir or a release) on
  ``split`` (default: the run's eval_split): ELBO, L_1, L_100, L_K, active units,
  I(x; z_i), bits/dim. ``data_dir`` replaces the run's (a release has none). Writes
  ``workdir/eval_<split>.json`` and returns the metrics."""
  config = workdir_lib.load_run_config(workdir)
  config.data_dir = data_dir or config.data_dir
  split = split or config.eval_split
  loaded = data.load_config(config, split)
  images = loaded.eval
  num_pixels = int(np.prod(images.shape[1:]))
  model, params, step = workdir_lib.restore_params(workdir, config, num_pixels)
  mesh = state_lib.make_mesh()
  ks = sorted({1, min(100, num_importance_samples), num_importance_samples})
  t0 = time.time()
  result = evaluation.evaluate_dataset(
      model, params, data.eval_batches(images, batch_size, mesh, max_examples), jax.random.PRNGKey(seed),
      au_samples=au_samples, au_threshold=config.au_threshold, iw_samples=ks, iw_chunk=chunk,
      mi_paths=mi_paths, share_threshold=config.x_share_threshold)
  result.update(seconds=time.time() - t0, step=step, split=split or loaded.info["eval_split"],
                data=loaded.info, device=str(jax.devices()[0].platform))
  # 'test' -> eval_test.json, 'train[4500:]' -> eval_train_4500-.json
  name = re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9.:-]", "_", result["split"]).replace(":", "-"))
  name = name.strip("_")
  with open(os.path.join(workdir, f"eval_{name}.json"), "w") as f:
    json.dump(result, f, indent=2, default=str)
  return result
