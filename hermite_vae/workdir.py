"""A training workdir: its checkpoints (orbax ``CheckpointManager``, made here only), the
config it was trained with, and its restored state.

    workdir/config.json      resolved config, data source and splits, devices
    workdir/metrics.jsonl    one JSON object per logged point (train and eval)
    workdir/tensorboard/     event files
    workdir/checkpoints/     orbax checkpoints of the TrainState, by step
"""
from __future__ import annotations

import json
import os

import jax
import ml_collections
import orbax.checkpoint as ocp

from hermite_vae import config_lib, state as state_lib


def checkpoint_manager(workdir: str, max_to_keep=None) -> ocp.CheckpointManager:
  """The orbax manager of ``workdir/checkpoints`` (created if missing)."""
  return ocp.CheckpointManager(
      os.path.abspath(os.path.join(workdir, "checkpoints")),
      options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True))


def has_checkpoint(workdir: str) -> bool:
  """Whether ``workdir/checkpoints`` holds a saved step (orbax names them by step)."""
  path = os.path.join(workdir, "checkpoints")
  return os.path.isdir(path) and any(name.isdigit() for name in os.listdir(path))


def restore_or_keep(manager: ocp.CheckpointManager, state, step=None):
  """(state restored from ``step`` (default: the latest), that step), or ``(state, None)``
  unchanged when there is no checkpoint. ``state`` gives the structure, shapes, dtypes
  and shardings to restore into (arrays or ``jax.ShapeDtypeStruct``s)."""
  step = manager.latest_step() if step is None else step
  if step is None:
    return state, None
  abstract = jax.tree_util.tree_map(
      lambda x: ocp.utils.to_shape_dtype_struct(x) if isinstance(x, jax.Array) else x, state)
  return manager.restore(step, args=ocp.args.StandardRestore(abstract)), step


def saved_config(workdir: str) -> dict:
  """The ``config`` record of ``workdir/config.json`` as saved (JSON values)."""
  with open(os.path.join(workdir, "config.json")) as f:
    return json.load(f)["config"]


def load_run_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a run saved in ``workdir/config.json``, read over today's defaults, with
  the data it actually trained on (e.g. the embedded digits after a fallback)."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} not found: {workdir!r} is not a training workdir")
  with open(path) as f:
    info = json.load(f)
  config = config_lib.from_saved(info["config"])
  config.dataset = info["data"]["data_used"]
  if info["data"]["source"] == "embedded":
    config.data_source = "embedded"
  return config


def restore_state(workdir: str, config, num_pixels: int, step=None):
  """(model, TrainState, step) from the latest (or given) checkpoint of ``workdir``."""
  model = state_lib.create_model(config, num_pixels)
  tx = state_lib.create_optimizer(config)
  abstract = jax.eval_shape(
      lambda: state_lib.create_train_state(model, tx, jax.random.PRNGKey(0), num_pixels))
  # Restored replicated on this process's mesh, whatever the layout it was saved from.
  replicated = jax.sharding.NamedSharding(state_lib.make_mesh(), jax.sharding.PartitionSpec())
  abstract = jax.tree_util.tree_map(
      lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=replicated), abstract)
  manager = checkpoint_manager(workdir)
  try:
    state, step = restore_or_keep(manager, abstract, step)
  finally:
    manager.close()
  if step is None:
    raise FileNotFoundError(f"no checkpoint in {workdir}/checkpoints")
  return model, state, step


def restore_params(workdir: str, config, num_pixels: int, step=None):
  """(model, params, step) from the latest (or given) checkpoint of ``workdir``."""
  model, state, step = restore_state(workdir, config, num_pixels, step)
  return model, state.params, step
