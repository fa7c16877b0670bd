"""README promises, each under a test that fails on the bug it names: layout errors
before compiling, fresh binarization of every training batch, the learning-rate
schedules' formulas, the active-unit threshold actually applied, the resolved data in
config.json, and only process 0 writing the run's files."""
import json
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import smoke
from hermite_vae import state as state_lib
from hermite_vae import distributed, evaluation, train
from hermite_vae.data import batches
from hermite_vae.models.mlp import MLPHierarchicalVAE

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


_config = smoke.with_overrides


_LAYOUT_SCRIPT = r"""
import sys, os
sys.path.insert(0, {root!r})
from configs import smoke
from hermite_vae import train
from hermite_vae import state as state_lib
c = smoke.get_config()
c[sys.argv[2]] = int(sys.argv[3])
try:
  train.train_and_evaluate(c, sys.argv[1])
except ValueError as e:
  print("ERROR", e)
print("FILES", sorted(os.listdir(sys.argv[1])))
"""


@pytest.mark.parametrize("key", ["batch_size", "eval_batch_size"])
def test_a_batch_that_does_not_divide_the_devices_fails_before_compiling(tmp_path, key):
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
             JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, "-c", _LAYOUT_SCRIPT.format(root=ROOT),
                         str(tmp_path), key, "6"], env=env, capture_output=True, text=True,
                        timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert (f"ERROR config.{key}=6 must be divisible by the number of devices (4)"
          in proc.stdout), proc.stdout
  assert "FILES []" in proc.stdout            # nothing trained, compiled state or written


def test_every_training_batch_gets_a_fresh_binarization():
  """All images the same grey (p = 0.5): rows within a batch, consecutive batches and
  the same example in the next epoch are independent Bernoulli draws, not one reused
  binarization."""
  grey = np.full((20, 6, 6, 1), 128, np.uint8)
  tb = batches.TrainBatches(grey, 10, "dynamic", seed=0, mesh=state_lib.make_mesh())
  b0, b1, b2 = (np.asarray(tb(s)).reshape(10, -1) for s in (0, 1, 2))   # 2 steps per epoch
  assert len({row.tobytes() for row in b0}) == 10
  for a, b in ((b0, b1), (b0, b2), (b1, b2)):
    agree = float(np.mean(a == b))
    assert 0.4 < agree < 0.6, agree     # independent p = 0.5 draws agree half the time
  assert abs(float(b0.mean()) - 128 / 255) < 0.1


def _learning_rates(config, steps):
  """The learning rate of each of the first ``steps`` Adam updates under a constant unit
  gradient (Adam's first moments then give updates of exactly -lr(t))."""
  tx = state_lib.create_optimizer(config)
  params = {"w": jnp.zeros(())}
  state = tx.init(params)
  out = []
  for _ in range(steps):
    updates, state = tx.update({"w": jnp.ones(())}, state, params)
    out.append(-float(updates["w"]))
  return np.array(out)


def test_learning_rate_schedules_follow_their_formulas():
  lr, warmup, total = 1e-3, 4, 12
  t = np.arange(total)
  constant = _learning_rates(_config(learning_rate=lr), total)
  np.testing.assert_allclose(constant, lr, rtol=1e-4)
  linear = _learning_rates(_config(learning_rate=lr, warmup_steps=warmup), total)
  np.testing.assert_allclose(linear, lr * np.minimum(t / warmup, 1.0), rtol=1e-4, atol=1e-9)
  cosine = _learning_rates(_config(learning_rate=lr, warmup_steps=warmup, lr_schedule="cosine",
                                   num_train_steps=total), total)
  want = np.where(t < warmup, lr * t / warmup,
                  lr * 0.5 * (1 + np.cos(math.pi * (t - warmup) / (total - warmup))))
  np.testing.assert_allclose(cosine, want, rtol=1e-4, atol=1e-9)
  assert cosine[-1] < 0.05 * lr and cosine[warmup] == pytest.approx(lr, rel=1e-4)


def test_the_configured_active_unit_threshold_is_the_one_applied():
  model = MLPHierarchicalVAE((6, 4), (8, 8), num_pixels=10, initialization="lecun_normal")
  x = (jax.random.uniform(jax.random.PRNGKey(0), (40, 10)) < 0.5).astype(jnp.float32)
  params = model.init(jax.random.PRNGKey(1), x, jax.random.PRNGKey(2))["params"]
  key = jax.random.PRNGKey(3)
  means = evaluation.posterior_means(model, params, x, 7, jax.random.fold_in(
      jax.random.fold_in(key, 0), 1))
  var_x = [np.var(np.asarray(m), axis=0) - np.mean(np.asarray(n), axis=0)
           for m, _, n, _, _ in means]
  var_c = [np.var(np.asarray(c), axis=0) for _, c, _, _, _ in means]
  for threshold in (float(np.median(var_x[0])), float(np.median(var_c[1])), 0.01):
    out = evaluation.evaluate_dataset(model, params, [(x, jnp.ones(40))], key, au_samples=7,
                                      au_threshold=threshold)
    assert out["active_units_x"] == [int((v > threshold).sum()) for v in var_x]
    assert out["active_units_conditional"] == [int((v > threshold).sum()) for v in var_c]
  # The trainer's evaluation passes config.au_threshold on.
  config = _config(au_threshold=1e9, au_samples=3, mi_paths=0)
  smoke_model = state_lib.create_model(config, 784)
  state = state_lib.create_train_state(smoke_model, state_lib.create_optimizer(config),
                                   jax.random.PRNGKey(0), 784)
  images = (np.arange(40 * 784) % 256).astype(np.uint8).reshape(40, 28, 28, 1) // 128
  result = train.evaluate(smoke_model, state.params, images, config, state_lib.make_mesh(), key)
  assert result["active_units_x"] == result["active_units_conditional"] == [0, 0, 0]


def test_config_json_holds_the_resolved_data(tmp_path):
  import gzip  # pylint: disable=g-import-not-at-top
  data_dir = tmp_path / "mnist"
  data_dir.mkdir()
  for name, n in (("train-images-idx3-ubyte.gz", 30), ("t10k-images-idx3-ubyte.gz", 12)):
    raw = (2051).to_bytes(4, "big") + b"".join(v.to_bytes(4, "big") for v in (n, 28, 28))
    with gzip.open(str(data_dir / name), "wb") as f:
      f.write(raw + np.random.default_rng(n).integers(0, 256, n * 784, np.uint8).tobytes())
  os.chdir(tmp_path)                                  # a relative data_dir is resolved
  config = _config(dataset="mnist", data_source="auto", data_dir="mnist", train_split="train",
                   eval_split="test[:10]", num_train_steps=2, eval_max_examples=10,
                   eval_batch_size=10)
  train.train_and_evaluate(config, str(tmp_path / "run"))
  info = json.load(open(tmp_path / "run" / "config.json"))
  assert info["config"]["data_dir"] == str(data_dir)           # absolute
  assert info["data"]["source"] == "files"                       # 'auto' resolved
  assert info["data"]["train_split"] == "train"
  assert info["data"]["eval_split"] == "test[:10]"
  assert (info["data"]["num_train"], info["data"]["num_eval"]) == (30, 10)


def test_only_process_0_writes_metrics_events_and_progress(tmp_path, monkeypatch, capsys):
  monkeypatch.setattr(distributed, "is_chief", lambda: False)
  train.train_and_evaluate(_config(num_train_steps=2, progress_bar=True), str(tmp_path / "w"))
  files = sorted(os.listdir(tmp_path / "w"))
  assert files == ["checkpoints"], files          # no metrics.jsonl, tensorboard, config.json
  captured = capsys.readouterr()
  assert "elbo" not in captured.err and "elbo" not in captured.out
  monkeypatch.setattr(distributed, "is_chief", lambda: True)
  train.train_and_evaluate(_config(num_train_steps=2, progress_bar=True), str(tmp_path / "c"))
  assert {"checkpoints", "config.json", "metrics.jsonl", "tensorboard"} <= set(
      os.listdir(tmp_path / "c"))
  assert "elbo" in capsys.readouterr().err
