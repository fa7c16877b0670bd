"""The trainer's guarantees, each by a test that fails when it is breached: exact resume
after SIGKILL, results independent of steps per dispatch (checkpointed parameters too),
no host-to-device copy in a training dispatch, data errors before any compilation, and
memory that stays flat as the number of OU samples (sequential) or IW samples grows."""
import logging
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import smoke
from hermite_vae import state as state_lib
from hermite_vae import data, evaluation, metrics_io, objectives, train
from hermite_vae import workdir as workdir_lib
from hermite_vae.models.mlp import MLPHierarchicalVAE

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


_config = smoke.with_overrides


def _leaves(tree):
  return [np.asarray(v) for v in jax.tree_util.tree_leaves(tree)]


def _strip(records):
  return [{k: v for k, v in r.items() if k != "steps_per_sec"} for r in records]


# ------------------------------------------------------------- exact resume

_KILL_SCRIPT = """
import logging, os, signal, sys
logging.basicConfig(level=logging.INFO)
sys.path.insert(0, {root!r})
from hermite_vae import data, train
from hermite_vae import state as state_lib
from tests.test_guarantees import RESUME_CONFIG
kill_at = int(sys.argv[2])
original = data.TrainBatches.stack
def stack(self, step, k, *args):
  if (kill_at < 0) or (kill_at and step >= kill_at):  # < 0: before the first dispatch
    os.kill(os.getpid(), signal.SIGKILL)     # no finally, no flush, no checkpoint wait
  return original(self, step, k, *args)
data.TrainBatches.stack = stack
train.train_and_evaluate(RESUME_CONFIG(), sys.argv[1])
"""


def RESUME_CONFIG():  # pylint: disable=invalid-name
  return _config(num_train_steps=12, log_every=2, eval_every=12, checkpoint_every=4,
                 steps_per_dispatch=2)


@pytest.mark.parametrize("kill_at", [10, -1])
def test_exact_resume_after_sigkill(tmp_path, caplog, kill_at):
  """Killed mid-training (step 10, after the step-8 checkpoint) or before the first
  dispatch (-1: config.json and the lock file written, nothing compiled or logged): the
  rerun ends with the uninterrupted run's metrics, parameters and optimizer state."""
  full = str(tmp_path / "full")
  train.train_and_evaluate(RESUME_CONFIG(), full)

  killed = str(tmp_path / "killed")
  script = _KILL_SCRIPT.format(root=ROOT)
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  first = subprocess.run([sys.executable, "-c", script, killed, str(kill_at)], env=env,
                         capture_output=True, text=True, timeout=300)
  assert first.returncode == -9, first.stderr[-2000:]           # died by SIGKILL
  if kill_at > 0:
    assert max(r["step"] for r in metrics_io.read_metrics(killed)) < 12
    assert os.path.isdir(os.path.join(killed, "checkpoints", "4"))  # finalized before it
  with caplog.at_level(logging.INFO, logger="hermite_vae.train"):   # restart, in-process
    train.train_and_evaluate(RESUME_CONFIG(), killed)
  assert ("Restored checkpoint at step" in caplog.text) == (kill_at > 0)

  assert _strip(metrics_io.read_metrics(full)) == _strip(metrics_io.read_metrics(killed))
  _, state_full, _ = workdir_lib.restore_state(full, RESUME_CONFIG(), 784)
  _, state_killed, step = workdir_lib.restore_state(killed, RESUME_CONFIG(), 784)
  assert step == 12
  for a, b in zip(_leaves(state_full), _leaves(state_killed)):
    np.testing.assert_array_equal(a, b)


def test_resume_refuses_a_changed_run_and_continues_a_longer_one(tmp_path):
  workdir = str(tmp_path / "run")
  train.train_and_evaluate(_config(num_train_steps=4, log_every=2, eval_every=4,
                                   checkpoint_every=4), workdir)
  for key, value in (("rho", 0.7), ("method", "vae"), ("latent_dims", (8, 4, 3)),
                     ("seed", 1)):
    with pytest.raises(ValueError, match=f"config.{key}="):
      train.train_and_evaluate(_config(num_train_steps=6, log_every=2, eval_every=6,
                                       checkpoint_every=6, **{key: value}), workdir)
  assert max(r["step"] for r in metrics_io.read_metrics(workdir)) == 4   # nothing ran
  # Training longer and evaluating differently are the same run, continued.
  train.train_and_evaluate(_config(num_train_steps=6, log_every=2, eval_every=6,
                                   checkpoint_every=6, eval_max_examples=50), workdir)
  assert max(r["step"] for r in metrics_io.read_metrics(workdir)) == 6


def test_steps_per_dispatch_changes_neither_metrics_nor_checkpoints(tmp_path):
  runs = {}
  for k in (1, 4):
    cfg = _config(method="hvae", num_train_steps=9, log_every=3, eval_every=9,
                  checkpoint_every=9, steps_per_dispatch=k)
    train.train_and_evaluate(cfg, str(tmp_path / str(k)))
    runs[k] = (metrics_io.read_metrics(str(tmp_path / str(k))),
               workdir_lib.restore_state(str(tmp_path / str(k)), cfg, 784)[1])
  (one, state_one), (four, state_four) = runs[1], runs[4]
  assert [r["step"] for r in one] == [r["step"] for r in four] == [3, 6, 9, 9]
  for a, b in zip(one, four):
    for key in ("elbo_nats", "loss", "grad_norm"):
      if key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-5, err_msg=key)
  assert int(state_one.step) == int(state_four.step) == 9
  for a, b in zip(_leaves(state_one), _leaves(state_four)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


# ------------------------------------------------------- no host transfers

def test_a_training_dispatch_copies_nothing_from_the_host():
  config = _config(method="hvae", steps_per_dispatch=3)
  loaded = data.load(config.dataset, config.data_source)
  mesh = state_lib.make_mesh()
  batches = data.TrainBatches(loaded.train, config.batch_size, "dynamic", 0, mesh)
  model = state_lib.create_model(config, 784)
  tx = state_lib.create_optimizer(config)
  state = jax.device_put(state_lib.create_train_state(model, tx, jax.random.PRNGKey(0), 784),
                         jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))
  key = jax.random.PRNGKey(1)
  steps_fn = train.make_train_steps(model, tx, config, mesh)
  state, _ = steps_fn(state, batches.stack(0, 3, state.step), key)   # compile, epoch 0
  with jax.transfer_guard("disallow_explicit"):
    for step in (3, 6):
      state, metrics = steps_fn(state, batches.stack(step, 3, state.step), key)
  assert int(state.step) == 9 and np.all(np.isfinite(np.asarray(metrics["loss"])))
  # The guard is live: passing the step from the host is caught.
  with jax.transfer_guard("disallow_explicit"), pytest.raises(Exception, match="host-to-device"):
    batches.stack(9, 3, None)


# ------------------------------------------------------ errors before work

@pytest.mark.parametrize("overrides,error,match", [
    ({"dataset": "mnist", "data_source": "files", "data_dir": "EMPTY"},
     data.DataUnavailableError, "Missing data file"),
    ({"train_split": "train[::2]"}, ValueError, "train_split.*Invalid split"),
    ({"eval_split": "train[5000:]"}, ValueError, "selects no examples"),
    ({"batch_size": 6000}, ValueError, "batch_size=6000 exceeds"),
])
def test_data_errors_come_through_train_and_evaluate_before_any_step(
    tmp_path, monkeypatch, overrides, error, match):
  def no_compile(*args, **kwargs):
    raise AssertionError("compiled a training step before the data error")

  monkeypatch.setattr(train, "make_train_steps", no_compile)
  if overrides.get("data_dir") == "EMPTY":
    overrides = dict(overrides, data_dir=str(tmp_path / "empty"))
  workdir = tmp_path / "run"
  with pytest.raises(error, match=match):
    train.train_and_evaluate(_config(**overrides), str(workdir))
  assert not (workdir / "checkpoints").exists() and not (workdir / "metrics.jsonl").exists()


# ------------------------------------------------------------ memory bounds

def _temp_bytes(fn, *args):
  return jax.jit(fn).lower(*args).compile().memory_analysis().temp_size_in_bytes


MEM_MODEL = MLPHierarchicalVAE((16, 16, 16), (128, 128, 128), num_pixels=784)
MEM_X = jnp.zeros((64, 784))
MEM_PARAMS = jax.jit(MEM_MODEL.init)(jax.random.PRNGKey(0), MEM_X, jax.random.PRNGKey(1))["params"]


def _hvae_grad_bytes(n, sequential):
  cfg = objectives.ObjectiveConfig(method="hvae", rho=0.9, rho_anneal_steps=0, num_ou_samples=n,
                              smooth_target="mean_std", num_iw_samples=1, kl_warmup_start=0,
                              kl_warmup_steps=0, free_bits=0.0, ou_sequential=sequential)
  grad = jax.grad(lambda p: objectives.loss_and_metrics(p, MEM_MODEL, MEM_X,
                                                        jax.random.PRNGKey(0), 0, cfg)[0])
  return _temp_bytes(grad, MEM_PARAMS)


def test_sequential_ou_memory_grows_only_with_the_noise():
  # Ceiling: from n = 2 to n = 32 the sequential gradient's scratch memory grows by at
  # most 8x the bytes of the extra OU noise eps [n, B, d_i] of the two smoothed layers
  # (the noise and its generator's temporaries), not with the n samples' activations
  # [n, B, 128]; evaluating the samples at once grows well past that.
  noise = lambda n: n * MEM_X.shape[0] * sum(MEM_MODEL.latent_dims[:-1]) * 4
  ceiling = 8 * (noise(32) - noise(2))
  seq2, seq32 = _hvae_grad_bytes(2, True), _hvae_grad_bytes(32, True)
  assert seq32 - seq2 <= ceiling, (seq2, seq32, ceiling)
  assert _hvae_grad_bytes(32, False) - _hvae_grad_bytes(2, False) > 2 * ceiling


def test_iw_bound_memory_does_not_grow_with_k():
  # Ceiling: L_K in chunks of 10 needs no more scratch memory at K = 1000 than at K = 20;
  # one chunk of K samples grows with K.
  def bytes_for(k, chunk):
    return _temp_bytes(lambda p, x: evaluation.iw_bound_batch(
        MEM_MODEL, p, x, jax.random.PRNGKey(0), k, chunk), MEM_PARAMS, MEM_X)
  small, large = bytes_for(20, 10), bytes_for(1000, 10)
  assert large <= 1.1 * small, (small, large)
  assert bytes_for(200, 200) > 5 * small
