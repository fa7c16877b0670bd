"""A training workdir: its checkpoints (orbax ``CheckpointManager``, made here only), the
config it was trained with, and its restored state.

    workdir/config.json      resolved config, data source and splits, devices
    workdir/metrics.jsonl    one JSON object per logged point (train and eval)
    workdir/tensorboard/     event files
    workdir/checkpoints/     orbax checkpoints of the TrainState, by step
    workdir/.lock            held (flock) by the one process training in the workdir

A *release* (``experiments/release.py``) is a directory with the run's ``config.json`` and
its parameters alone, ``params.msgpack`` (float32, ``flax.serialization``) beside
``release.json`` (step, sha256): ``restore_params`` reads it like a workdir, so evaluation
and sampling run on it without training.
"""
from __future__ import annotations

import errno
import json
import logging
import os
import socket

import jax
import ml_collections
import orbax.checkpoint as ocp
from etils import epath

from hermite_vae import config_lib, state as state_lib


def checkpoint_manager(workdir: str, max_to_keep=None) -> ocp.CheckpointManager:
  """The orbax manager of ``workdir/checkpoints`` (created if missing)."""
  return ocp.CheckpointManager(
      os.path.abspath(os.path.join(workdir, "checkpoints")),
      options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True))


log = logging.getLogger(__name__)


def _local(path: str) -> bool:
  return "://" not in str(path)


def prepare(workdir: str) -> None:
  """Creates ``workdir`` (and its parents), or raises ValueError naming the path that is a
  file where a directory is needed."""
  if _local(workdir):
    path = os.path.abspath(workdir)
    probe = path
    while probe and not os.path.exists(probe):
      probe = os.path.dirname(probe)
    if probe and not os.path.isdir(probe):
      raise ValueError(f"--workdir={workdir!r}: {probe!r} is a file, not a directory"
                       + ("" if probe == path else " (the workdir would lie under it)"))
  epath.Path(workdir).mkdir(parents=True, exist_ok=True)


class WorkdirLock:
  """One training process per workdir: an exclusive ``flock`` on ``workdir/.lock``, which
  the kernel releases when the process ends, however it ends (a killed process leaves no
  stale lock). The file keeps the holder's pid and host for the message of a second
  process, which is refused. Local workdirs only (remote file systems have no flock)."""

  def __init__(self, workdir: str):
    self.path, self._file = os.path.join(workdir, ".lock"), None
    if not _local(workdir):
      return
    import fcntl  # pylint: disable=g-import-not-at-top
    f = open(self.path, "a+")
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      if e.errno not in (errno.EAGAIN, errno.EACCES):   # e.g. ENOLCK on some NFS mounts
        log.warning("Cannot lock %s (%s): a second training on this workdir would not be "
                    "refused.", self.path, e)
        f.close()
        return
      f.seek(0)
      holder = f.read().strip() or "another process"
      f.close()
      raise RuntimeError(f"{workdir!r} is in use by {holder}: two trainings would write "
                         "the same checkpoints and metrics. Wait for it, stop it, or use "
                         "another workdir.") from None
    f.seek(0)
    f.truncate()
    f.write(f"process {os.getpid()} on {socket.gethostname()}")
    f.flush()
    self._file = f

  def release(self):
    if self._file is not None:
      self._file.close()  # closing the descriptor drops the flock
      self._file = None


def checkpoint_steps(workdir: str) -> list[int]:
  """The finished checkpoint steps of ``workdir``, as its checkpoint manager sees them."""
  path = epath.Path(workdir) / "checkpoints"
  if not path.exists():
    return []
  manager = ocp.CheckpointManager(
      path, options=ocp.CheckpointManagerOptions(create=False))
  return sorted(manager.all_steps())


def has_checkpoint(workdir: str) -> bool:
  """Whether ``workdir/checkpoints`` holds a finished step, as the checkpoint manager sees
  it (also on ``gs://`` and other remote workdirs)."""
  return bool(checkpoint_steps(workdir))


def restore_or_keep(manager: ocp.CheckpointManager, state, step=None):
  """(state restored from ``step`` (default: the newest intact checkpoint), that step), or
  ``(state, None)`` unchanged when there is no checkpoint. ``state`` gives the structure,
  shapes, dtypes and shardings to restore into (arrays or ``jax.ShapeDtypeStruct``s).

  A damaged newest checkpoint (partly deleted, truncated, overwritten) is skipped with a
  warning naming its step and the damage, and the next older one is restored; when none
  can be, the error names every step tried."""
  abstract = jax.tree_util.tree_map(
      lambda x: ocp.utils.to_shape_dtype_struct(x) if isinstance(x, jax.Array) else x, state)
  steps = [step] if step is not None else sorted(manager.all_steps(), reverse=True)
  if not steps:
    return state, None
  damaged = []
  for s in steps:
    try:
      restored = manager.restore(s, args=ocp.args.StandardRestore(abstract))
    except Exception as e:  # pylint: disable=broad-except
      why = _last_line(e)
      damaged.append(f"step {s} ({why})")
      log.warning("Checkpoint at step %d in %s cannot be restored: %s", s,
                  manager.directory, why)
      continue
    if damaged:
      log.warning("Resuming from step %d: newer checkpoints are damaged: %s", s,
                  "; ".join(damaged))
    return restored, s
  raise RuntimeError(
      f"No checkpoint in {manager.directory} can be restored: {'; '.join(damaged)}. "
      "Delete the damaged step directories to start from the newest intact one (or from "
      "step 0 when none is left).")


def _last_line(error: BaseException) -> str:
  """The innermost cause of ``error`` in one line (orbax wraps tensorstore's errors)."""
  while error.__cause__ is not None or error.__context__ is not None:
    error = error.__cause__ or error.__context__
  text = str(error).strip().splitlines()
  return f"{type(error).__name__}: {text[-1] if text else ''}"[:300]


def saved_config(workdir: str) -> dict:
  """The ``config`` record of ``workdir/config.json`` as saved (JSON values)."""
  with open(os.path.join(workdir, "config.json")) as f:
    return json.load(f)["config"]


RELEASE_PARAMS = "params.msgpack"


def is_release(workdir: str) -> bool:
  return os.path.exists(os.path.join(workdir, RELEASE_PARAMS))


def require_trained(workdir: str) -> None:
  """Raises FileNotFoundError unless ``workdir`` holds a config.json and a checkpoint, or
  is a release (what evaluating, sampling and reporting need); creates nothing."""
  if not os.path.exists(os.path.join(workdir, "config.json")) or not (
      is_release(workdir) or has_checkpoint(workdir)):
    raise FileNotFoundError(f"no checkpoint in {workdir!r}: not a trained workdir (train "
                            "one with experiments/main.py --workdir=...)")


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
  # The splits it actually used (a fallback to the embedded digits changes them).
  config.train_split = info["data"].get("train_split", config.train_split)
  config.eval_split = info["data"].get("eval_split", config.eval_split)
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
  require_trained(workdir)
  manager = checkpoint_manager(workdir)
  try:
    state, step = restore_or_keep(manager, abstract, step)
  finally:
    manager.close()
  if step is None:
    raise FileNotFoundError(f"no checkpoint in {workdir}/checkpoints")
  return model, state, step


def restore_params(workdir: str, config, num_pixels: int, step=None):
  """(model, params, step) from the latest (or given) checkpoint of ``workdir``, or from a
  release's ``params.msgpack`` (``step`` must then be None)."""
  if is_release(workdir):
    import flax.serialization  # pylint: disable=g-import-not-at-top
    if step is not None:
      raise ValueError(f"{workdir!r} is a release of one step; step={step} cannot be chosen")
    model = state_lib.create_model(config, num_pixels)
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0),
                            jax.numpy.zeros((1, num_pixels)), jax.random.PRNGKey(1))["params"]
    with open(os.path.join(workdir, RELEASE_PARAMS), "rb") as f:
      state = flax.serialization.msgpack_restore(f.read())
    params = flax.serialization.from_state_dict(shapes, state)
    got = jax.tree_util.tree_map(lambda a: (tuple(a.shape), str(a.dtype)), params)
    want = jax.tree_util.tree_map(lambda a: (tuple(a.shape), str(a.dtype)), shapes)
    if got != want:
      raise ValueError(f"{workdir!r}: {RELEASE_PARAMS} does not fit the model of its "
                       "config.json")
    with open(os.path.join(workdir, "release.json")) as f:
      return model, jax.tree_util.tree_map(jax.numpy.asarray, params), json.load(f)["step"]
  model, state, step = restore_state(workdir, config, num_pixels, step)
  return model, state.params, step
