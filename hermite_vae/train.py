"""Training: ``train_and_evaluate(config, workdir)``, the one tested entry point.

Data parallel with ``jax.sharding``: a 1-D device mesh with axis ``data`` over every
device of every process; the global batch is sharded along it, parameters and optimizer
state replicated; XLA inserts the gradient all-reduce. Several processes: the process
group is joined first (``distributed.initialize``); each process computes its rows of
each global batch (``data.batches``), which do not depend on the number of processes or
devices, so a run's numbers do not either (up to float reduction order).

Randomness: ``rng.run_keys(seed)`` names the run's four keys (data, init, train, eval);
the step key is ``fold_in(train_key, step)`` and batches depend only on
(seed, step), so a run restored from a checkpoint continues exactly like an uninterrupted
one (checkpoints: orbax ``CheckpointManager`` in ``workdir/checkpoints``).

Non-finite loss or gradients: the update is not applied (parameters keep their last
finite values). With ``skip_nonfinite=False`` (default) training stops at the next log or
checkpoint point with an error naming the first bad step, before anything is saved;
with ``skip_nonfinite=True`` such updates are skipped and counted in the metrics.
"""
from __future__ import annotations

import functools
import json
import logging
import os
import signal
import threading
import time
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from hermite_vae import config_lib, data, diagnostics, distributed, evaluation, metrics_io
from hermite_vae import objectives, rng
from hermite_vae import workdir as workdir_lib
from hermite_vae.models.mlp import count_params
from hermite_vae.state import (TrainState, create_model, create_optimizer,
                               create_train_state, make_mesh)

log = logging.getLogger(__name__)


def train_step(state: TrainState, x, base_key, *, model, tx, cfg: objectives.ObjectiveConfig,
               stop_on_nonfinite: bool, grad_clip_norm: float = 0.0,
               grad_skip_norm: float = 0.0):
  """One optimizer step. Pure; jit it with ``donate_argnums=0``.

  The gradient's global norm is computed once and serves four purposes: the finiteness
  test (it is non-finite iff some gradient is), skipping an update whose norm exceeds
  ``grad_skip_norm`` (0: off; VDVAE's gradient skipping), global-norm clipping to
  ``grad_clip_norm`` (0: off) and the ``grad_norm`` metric. The update runs under
  ``lax.cond``, so a non-finite or skipped step leaves parameters and optimizer state
  (Adam's moments included) untouched without an extra pass over them; the step counter
  advances either way. ``update_skipped`` is 1 for a finite step skipped by its norm.
  """
  key = jax.random.fold_in(base_key, state.step)
  grad_fn = jax.value_and_grad(objectives.loss_and_metrics, has_aux=True)
  (loss, metrics), grads = grad_fn(state.params, model, x, key, state.step, cfg)
  grad_norm = optax.tree_utils.tree_norm(grads)  # non-finite iff some gradient is
  finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
  ok = finite & (state.first_nonfinite_step < 0) if stop_on_nonfinite else finite
  skipped = finite & (grad_norm > grad_skip_norm) if grad_skip_norm else jnp.zeros((), bool)
  ok = ok & ~skipped

  def update(operands):
    params, opt_state, grads = operands
    if grad_clip_norm:
      factor = jnp.minimum(1.0, grad_clip_norm / grad_norm)
      grads = jax.tree_util.tree_map(lambda g: g * factor, grads)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  params, opt_state = jax.lax.cond(ok, update, lambda o: (o[0], o[1]),
                                   (state.params, state.opt_state, grads))
  new_state = TrainState(
      step=state.step + 1, params=params, opt_state=opt_state,
      nonfinite_count=state.nonfinite_count + (~finite).astype(jnp.int32),
      first_nonfinite_step=jnp.where(~finite & (state.first_nonfinite_step < 0), state.step,
                                     state.first_nonfinite_step))
  metrics["grad_norm"] = grad_norm
  metrics["update_skipped"] = skipped.astype(jnp.float32)
  return new_state, metrics


def train_steps(state: TrainState, xs, base_key, **step_kwargs):
  """``len(xs)`` optimizer steps in one dispatch: ``lax.scan`` of :func:`train_step` over
  the stacked batches ``xs`` ([k, B, ...]). Same arithmetic as k calls of ``train_step``;
  the metrics come back stacked ([k, ...]). Jit it with ``donate_argnums=0``.

  ``k = 1`` calls the step without a loop. XLA:CPU runs convolutions inside a loop body
  on a slow generic path (jax-ml/jax#12868; measured in docs/performance.md), so the
  ResNet presets dispatch one step at a time (``steps_per_dispatch = 1``)."""
  step = lambda s, x: train_step(s, x, base_key, **step_kwargs)
  if xs.shape[0] == 1:
    state, metrics = step(state, xs[0])
    return state, jax.tree_util.tree_map(lambda m: m[None], metrics)
  return jax.lax.scan(step, state, xs)


def make_train_steps(model, tx, config, mesh: Mesh):
  """The jitted training dispatch the trainer runs: ``(state, xs [k, B, ...], key) ->
  (state, metrics [k, ...])``, state donated and replicated over ``mesh``."""
  replicated = NamedSharding(mesh, P())
  return jax.jit(
      functools.partial(train_steps, model=model, tx=tx, cfg=objectives.ObjectiveConfig.from_config(config),
                        stop_on_nonfinite=not config.skip_nonfinite,
                        grad_clip_norm=float(config.grad_clip_norm),
                        grad_skip_norm=float(config.grad_skip_norm)),
      donate_argnums=0, out_shardings=(replicated, replicated))


def _steps_until_boundary(step: int, config) -> int:
  """Steps to run from ``step`` in one dispatch: at most ``steps_per_dispatch``, ending on
  the next log, eval, checkpoint or diagnostics step (so chunking never changes what is
  recorded)."""
  k = min(config.steps_per_dispatch, config.num_train_steps - step)
  for every in (config.log_every, config.eval_every, config.checkpoint_every,
                config.diagnostics_every):
    if every:
      k = min(k, every - step % every)
  return k


def _live_diagnostics(model, params, eval_images, config, key, step) -> dict:
  """``diagnostics.live_metrics`` at the run's rho (1 for vae/iwae: the VAE's gradient)."""
  x = eval_images[:16].reshape(min(16, len(eval_images)), -1).astype(np.float32)
  rho = float(objectives.rho_at(step, config.rho, int(config.rho_anneal_fraction *
                                                      config.num_train_steps)))
  return diagnostics.live_metrics(
      model, params, x, jax.random.fold_in(key, 10_000_000 + step),
      rho=rho if config.method == "hvae" else 1.0, num_ou_samples=config.num_ou_samples,
      gradient=config.hvae_gradient, num_draws=config.diagnostics_draws,
      smooth_target=config.smooth_target)


def _check_finite(state: TrainState, skip: bool):
  count = int(jax.device_get(state.nonfinite_count))
  if count and not skip:
    step = int(jax.device_get(state.first_nonfinite_step))
    raise FloatingPointError(
        f"Non-finite loss or gradient at step {step}: training stopped; parameters are "
        f"those before step {step} and no checkpoint was written after it. Resume with "
        f"skip_nonfinite=True to skip such steps, or train in a new workdir with a lower "
        f"learning_rate or a grad_clip_norm (they define the run, so a resume refuses them).")
  return count


def _save_json(path, obj):
  with open(path, "w") as f:
    json.dump(obj, f, indent=2, sort_keys=True, default=str)


def evaluate(model, params, images, config, mesh, key):
  # A fixed batch size (the last batch padded and masked): the metrics, including their
  # random draws, do not depend on the number of devices.
  return evaluation.evaluate_dataset(
      model, params, data.eval_batches(images, config.eval_batch_size, mesh,
                                      config.eval_max_examples), key,
      au_samples=config.au_samples, au_threshold=config.au_threshold,
      iw_samples=config.eval_iw_samples, mi_paths=config.mi_paths,
      share_threshold=config.x_share_threshold)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains (resuming from ``workdir`` if it holds a checkpoint) and evaluates.

  Returns the last evaluation's metrics.
  """
  config_lib.validate(config)
  distributed.initialize(config)
  for key in ("batch_size", "eval_batch_size"):
    if config[key] % jax.device_count():
      raise ValueError(f"config.{key}={config[key]} must be divisible by the number of "
                       f"devices ({jax.device_count()}).")
  is_chief = distributed.is_chief()
  workdir_lib.prepare(workdir)
  lock = workdir_lib.WorkdirLock(workdir) if is_chief else None
  try:
    return _train_and_evaluate(config, workdir, is_chief)
  finally:
    if lock is not None:
      lock.release()


# What a resumed run's data must equal: the dataset actually read, from where, which
# examples, binarized how.
DATA_RECORD_KEYS = ("data_used", "source", "train_split", "eval_split", "num_train",
                    "num_eval", "binarization", "static_draw")


def _saved_run(workdir: str, config, has_checkpoint: bool):
  """The run's ``config.json`` (None for a new run), after refusing a resume that would
  continue the checkpoint as another run: no config.json to check against, another config
  (``config_lib.check_resume``) or another key scheme."""
  path = os.path.join(workdir, "config.json")
  if not has_checkpoint:
    return None
  if not os.path.exists(path):
    raise ValueError(
        f"{workdir!r} holds checkpoints but no config.json: nothing tells which config "
        "trained them, so a resume cannot be checked. Put the run's config.json back, or "
        "use a new workdir.")
  with open(path) as f:
    saved = json.load(f)
  config_lib.check_resume(saved["config"], config, workdir)
  scheme = rng.saved_key_scheme(saved)
  if scheme != rng.KEY_SCHEME:
    raise ValueError(
        f"{workdir!r} was trained under key scheme {scheme} and this version derives the "
        f"run's keys under scheme {rng.KEY_SCHEME} (hermite_vae.rng): resuming would change "
        "the data order and step keys mid-run. Use a new workdir (or the version that "
        "trained it).")
  return saved


def _check_same_data(saved, loaded, workdir):
  old = saved.get("data", {})
  changed = [k for k in DATA_RECORD_KEYS
             if k in old and old.get(k) != loaded.info.get(k)]
  if changed:
    what = ", ".join(f"{k}={loaded.info.get(k)!r} (saved {old.get(k)!r})" for k in changed)
    raise ValueError(
        f"{workdir!r} was trained on other data than this config loads: {what}. Resuming "
        "would continue the run on another data set; give the same data_dir and "
        "data_source, or use a new workdir.")


class Terminated(Exception):
  """SIGTERM or Ctrl-C received: the trainer stopped between two dispatches."""


class _StopSignals:
  """SIGTERM and SIGINT set a flag that the training loop checks between dispatches, so a
  signal never lands inside a checkpoint save; a second signal stops at once (the default
  action). Installed only in the main thread (signal handlers can live nowhere else)."""

  def __init__(self):
    self.received, self._previous = None, {}

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for sig in (signal.SIGTERM, signal.SIGINT):
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def _handle(self, signum, frame):
    del frame
    if self.received is not None:  # the second one: stop now
      self.__exit__()
      raise KeyboardInterrupt
    self.received = "SIGTERM" if signum == signal.SIGTERM else "Ctrl-C"

  def check(self):
    if self.received is not None:
      raise Terminated(self.received)

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    self._previous = {}


def _train_and_evaluate(config, workdir, is_chief):
  saved_run = _saved_run(workdir, config, workdir_lib.has_checkpoint(workdir))
  loaded = data.load_config(config)
  if saved_run is not None:
    _check_same_data(saved_run, loaded, workdir)
  if loaded.info.get("static_draw"):
    log.info("Data: %s", loaded.info["static_draw"])
  num_pixels = int(np.prod(loaded.train.shape[1:]))
  mesh = make_mesh()
  replicated = NamedSharding(mesh, P())
  keys = rng.run_keys(config.seed)
  train_batches = data.TrainBatches(loaded.train, config.batch_size,
                                    loaded.info["binarization"], config.seed, mesh)

  model = create_model(config, num_pixels)
  tx = create_optimizer(config)
  train_key, eval_key = keys["train"], keys["eval"]
  state = create_train_state(model, tx, keys["init"], num_pixels)
  state = jax.device_put(state, replicated)

  checkpoints = workdir_lib.checkpoint_manager(workdir, config.keep_checkpoints)
  writer = metrics_io.MetricsWriter(workdir, enabled=is_chief)
  state, restored_step = workdir_lib.restore_or_keep(checkpoints, state)
  if restored_step is not None:
    log.info("Restored checkpoint at step %d from %s", restored_step, workdir)
  # Points logged after the restored step (0: none restored) are redone by this run.
  writer.truncate_after(restored_step or 0)
  start_step = int(jax.device_get(state.step))
  if start_step > config.num_train_steps:
    log.warning("%s is already at step %d, past num_train_steps=%d: nothing to train; "
                "evaluating the step-%d model (config.json unchanged).", workdir,
                start_step, config.num_train_steps, start_step)
    writer.close()
    return evaluate(model, state.params, loaded.eval, config, mesh,
                    jax.random.fold_in(eval_key, start_step))

  saved = json.loads(config.to_json_best_effort())
  if saved["data_dir"] and "://" not in saved["data_dir"]:
    saved["data_dir"] = os.path.abspath(saved["data_dir"])  # evaluable from anywhere
  run_info = {"config": saved, "data": loaded.info, "key_scheme": rng.KEY_SCHEME,
              "num_params": count_params(state.params), "devices": [str(d) for d in jax.devices()],
              "process_count": jax.process_count(), "jax_version": jax.__version__}
  if is_chief:
    _save_json(os.path.join(workdir, "config.json"), run_info)
  log.info("Model %s %s with %d parameters; data %s", type(model).__name__, model.latent_dims,
               run_info["num_params"], loaded.info)

  if (config.architecture == "resnet" and config.steps_per_dispatch > 1
      and jax.default_backend() == "cpu"):
    log.warning("steps_per_dispatch=%d runs the ResNet's convolutions inside a loop, which "
                "XLA:CPU executes many times slower (jax-ml/jax#12868); "
                "--config.steps_per_dispatch=1 avoids the loop.", config.steps_per_dispatch)
  steps_fn = make_train_steps(model, tx, config, mesh)
  progress = metrics_io.Progress(config.num_train_steps, start_step,
                                 config.progress_bar and is_chief)
  pending, t_last, last_eval = [], time.time(), {}
  done = start_step
  stop = _StopSignals().__enter__()
  try:
    while done < config.num_train_steps:
      stop.check()
      k = _steps_until_boundary(done, config)
      # The batches are drawn on device from the state's own step counter: a dispatch
      # copies nothing from the host, on one process or several (tested with
      # jax.transfer_guard).
      xs = train_batches.stack(done, k, state.step)
      state, metrics = steps_fn(state, xs, train_key)
      pending.append(metrics)
      done += k
      if done - k == start_step:   # the first dispatch includes tracing and compiling
        jax.block_until_ready(metrics)
        log.info("step %d: first dispatch of %d steps, compile included, took %.1f s",
                 done, k, time.time() - t_last)
      progress.advance(done)
      if done % config.log_every == 0 or done == config.num_train_steps:
        skipped = _check_finite(state, config.skip_nonfinite)
        host = jax.device_get(pending)
        summary = jax.tree_util.tree_map(lambda *v: np.mean(np.concatenate(v), axis=0), *host)
        # A spike of a few steps hides in the interval's mean: the interval's largest
        # per-step loss and gradient norm are logged beside it.
        for key in ("loss", "grad_norm"):
          summary[f"{key}_max"] = float(np.max(np.concatenate([m[key] for m in host])))
        now = time.time()
        num_steps = sum(len(m["loss"]) for m in pending)
        summary["steps_per_sec"] = num_steps / max(now - t_last, 1e-9)
        # Steps averaged: log_every, except in an interval cut by a resume from a
        # checkpoint that is not on a log step (then only the steps since it).
        summary["interval_steps"] = num_steps
        summary["skipped_nonfinite"] = skipped
        pending, t_last = [], now
        writer.write(done, "train", summary)
        progress.update(done, f"elbo {summary['elbo_nats']:.2f}")
      if config.diagnostics_every and done % config.diagnostics_every == 0:
        writer.write(done, "diagnostics", _live_diagnostics(model, state.params, loaded.eval,
                                                            config, eval_key, done))
      if done % config.eval_every == 0 or done == config.num_train_steps:
        last_eval = evaluate(model, state.params, loaded.eval, config, mesh,
                             jax.random.fold_in(eval_key, done))
        writer.write(done, "eval", last_eval)
        log.info("eval at step %d: %s", done, last_eval)
        t_last = time.time()
      if done % config.checkpoint_every == 0 or done == config.num_train_steps:
        _check_finite(state, config.skip_nonfinite)
        checkpoints.save(done, args=ocp.args.StandardSave(state))
  except (KeyboardInterrupt, Terminated) as e:
    checkpoints.wait_until_finished()
    latest = checkpoints.latest_step()
    log.warning("Stopped (%s) at step %d. %s", e if isinstance(e, Terminated) else "Ctrl-C",
                done,
                f"Rerun the same command to resume from step {latest}." if latest is not None
                else "No checkpoint was written: a rerun starts from step 0.")
    raise
  finally:  # also on errors: finish pending checkpoint writes, flush logs
    checkpoints.wait_until_finished()
    progress.close()
    writer.close()
    stop.__exit__()
  if not last_eval:  # nothing left to train: evaluate the restored model
    last_eval = evaluate(model, state.params, loaded.eval, config, mesh,
                         jax.random.fold_in(eval_key, start_step))
  return last_eval
