"""train_and_evaluate end to end: every method, config errors, exact resume, devices."""
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import smoke
from hermite_vae import state as state_lib
from hermite_vae import metrics_io, objectives, rng, train
from hermite_vae import workdir as workdir_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


_config = smoke.with_overrides


@pytest.mark.parametrize("method,extra", [
    pytest.param("vae", {}, marks=pytest.mark.slow),   # the plain vae runs in test_guarantees
    ("iwae", {"num_iw_samples": 3}), ("hvae", {}),
    ("hvae", {"smooth_target": "ratio", "rho_anneal_fraction": 0.5}),
    ("vae", {"free_bits": 0.5, "kl_warmup_start": 2, "kl_warmup_steps": 4}),
])
def test_end_to_end(tmp_path, method, extra):
  workdir = str(tmp_path)
  result = train.train_and_evaluate(_config(method=method, **extra), workdir)
  assert np.isfinite(result["elbo_nats"]) and result["elbo_nats"] < 0
  assert len(result["kl_per_layer_nats"]) == 3
  assert len(result["active_units_x"]) == len(result["active_units_conditional"]) == 3
  records = metrics_io.read_metrics(workdir)
  train_rec = [r for r in records if r["split"] == "train"]
  assert [r["step"] for r in train_rec] == [2, 4, 6]
  assert all("steps_per_sec" in r and len(r["kl_per_layer_nats"]) == 3 for r in train_rec)
  # Each record's largest per-step loss and gradient norm bound the interval's means.
  assert all(r["loss_max"] >= r["loss"] - 1e-4 and r["grad_norm_max"] >= r["grad_norm"] - 1e-4
             for r in train_rec)
  assert os.listdir(os.path.join(workdir, "tensorboard"))
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints")))[-1] == "6"
  info = json.load(open(os.path.join(workdir, "config.json")))
  assert info["config"]["method"] == method and info["data"]["embedded"]
  if method == "iwae":
    assert "iw_bound_k3" in train_rec[-1]
  # Every layer's parameters moved away from their initial values.
  config = _config(method=method, **extra)
  model = state_lib.create_model(config, 784)
  init = state_lib.create_train_state(model, state_lib.create_optimizer(config),
                                  rng.run_keys(config.seed)["init"], 784)
  _, state, _ = workdir_lib.restore_state(workdir, config, 784)
  assert int(state.step) == 6
  for layer in init.params:
    before, after = init.params[layer], state.params[layer]
    assert any(not np.allclose(a, b) for a, b in zip(jax.tree_util.tree_leaves(before),
                                                     jax.tree_util.tree_leaves(after))), layer
  # Logged schedules follow state.step: each record is the mean over its 2 steps.
  mean_over = lambda fn, s: (float(fn(s - 2)) + float(fn(s - 1))) / 2
  if method == "hvae":
    anneal = int(extra.get("rho_anneal_fraction", 0) * config.num_train_steps)
    rho_at = lambda t: objectives.rho_at(t, config.rho, anneal)
    np.testing.assert_allclose([r["rho"] for r in train_rec],
                               [mean_over(rho_at, s) for s in (2, 4, 6)], rtol=1e-6)
    if anneal:
      assert train_rec[0]["rho"] < train_rec[-1]["rho"] == 1.0
  if method == "vae":
    weight = lambda t: objectives.kl_weight(t, config.kl_warmup_start, config.kl_warmup_steps)
    want = [mean_over(weight, s) for s in (2, 4, 6)]
    np.testing.assert_allclose([r["kl_weight"] for r in train_rec], want, rtol=1e-6)
    if config.kl_warmup_steps:
      assert want == [0.0, 0.125, 0.625]


# Slow: the same equality of the objective's value is checked by default in
# test_objectives (test_smoothing_only_on_intermediate_generator_layers).
@pytest.mark.slow
def test_hvae_training_loss_is_original_elbo(tmp_path):
  # Same seed, same data: the first logged training ELBO of hvae (computed before any
  # update) equals the vae's, since smoothing changes gradients only.
  train.train_and_evaluate(_config(method="vae", log_every=1, num_train_steps=1), str(tmp_path / "v"))
  train.train_and_evaluate(_config(method="hvae", log_every=1, num_train_steps=1), str(tmp_path / "h"))
  v = metrics_io.read_metrics(str(tmp_path / "v"))[0]
  h = metrics_io.read_metrics(str(tmp_path / "h"))[0]
  assert v["elbo_nats"] == h["elbo_nats"] and v["kl_per_layer_nats"] == h["kl_per_layer_nats"]


@pytest.mark.parametrize("key,value,match", [
    ("rho", 1.5, "config.rho=1.5"),
    ("rho", -0.1, "config.rho=-0.1"),
    ("method", "vqvae", "config.method='vqvae'.*unknown method"),
    ("hidden_dims", (16, 8), "config.hidden_dims.*one hidden width per stochastic layer"),
    ("num_ou_samples", 0, "config.num_ou_samples=0"),
    ("dataset", "imagenet", "config.dataset='imagenet'.*known"),
    ("smooth_target", "mean", "config.smooth_target"),
    ("data_source", "web", "config.data_source"),
    ("likelihood", "discretized_logistic", "binary pixels; use 'bernoulli'"),
    ("likelihood", "poisson", "config.likelihood='poisson'"),
])
def test_config_errors_before_training(tmp_path, key, value, match):
  with pytest.raises(ValueError, match=match):
    train.train_and_evaluate(_config(**{key: value}), str(tmp_path))
  assert not os.path.exists(os.path.join(str(tmp_path), "checkpoints"))


def _dispatch(cfg, steps=2):
  """The trainer's compiled dispatch: ``steps`` steps from the initial state on the
  embedded digits' first batches. Returns (state, metrics)."""
  from hermite_vae import data
  mesh = state_lib.make_mesh()
  model, tx = state_lib.create_model(cfg, 784), state_lib.create_optimizer(cfg)
  state = state_lib.create_train_state(model, tx, jax.random.PRNGKey(0), 784)
  batches = data.TrainBatches(data.load("mnist_embedded", "embedded").train, cfg.batch_size,
                              "dynamic", 0, mesh)
  return train.make_train_steps(model, tx, cfg, mesh)(state, batches.stack(0, steps),
                                                      jax.random.PRNGKey(1))


def test_resnet_hierarchy_end_to_end(tmp_path):
  resnet = dict(architecture="resnet", latent_channels=(2, 1), resnet_channels=4,
                resnet_blocks=1)
  # The trainer smooths the ResNet's generator: at rho = 1 its steps are the VAE's (to
  # float rounding); at rho = 0.5 the generator p(z1|z2) and, through the OU points'
  # dependence on q(z2|z1)'s sample, loc and scale, the encoder of z2 move differently,
  # while the decoder p(x|z1), which is never smoothed, takes the VAE's first step (no
  # smoothing, or smoothing of the decoder, fails). Adam's first step is lr * g / (|g| +
  # eps), about lr * sign(g): a parameter moves differently where smoothing flips the
  # sign of its gradient (or the gradient is near eps), so count those.
  runs = {name: _dispatch(_config(**resnet, **kw), steps=1) for name, kw in (
      ("vae", {"method": "vae"}), ("at_1", {"method": "hvae", "rho": 1.0}),
      ("at_half", {"method": "hvae", "rho": 0.5}))}
  vae, at_1, at_half = (runs[k][0].params for k in ("vae", "at_1", "at_half"))
  metric = lambda run, key: float(runs[run][1][key][0])
  assert metric("at_half", "loss") == pytest.approx(metric("vae", "loss"), rel=1e-6)
  assert metric("at_half", "grad_norm") != pytest.approx(metric("vae", "grad_norm"), rel=1e-3)
  assert metric("at_1", "grad_norm") == pytest.approx(metric("vae", "grad_norm"), rel=1e-5)
  moved = lambda a, b, name: float(np.mean(np.concatenate([
      np.abs(np.ravel(u) - np.ravel(v)) > 1e-7 for u, v in zip(
          jax.tree_util.tree_leaves(a[name]), jax.tree_util.tree_leaves(b[name]))])))
  for name in vae:
    assert moved(vae, at_1, name) < 0.02, name
  assert moved(vae, at_half, "p_z1") > 0.02 and moved(vae, at_half, "q_z2") > 0.02
  assert moved(vae, at_half, "p_x") < 0.005
  cfg = _config(method="hvae", num_train_steps=4, log_every=2, eval_every=4,
                checkpoint_every=4, **resnet)
  result = train.train_and_evaluate(cfg, str(tmp_path))
  assert np.isfinite(result["elbo_nats"]) and result["elbo_nats"] < 0
  assert len(result["active_units_x"]) == 2 and result["active_units_x"][1] <= 14 * 14
  info = json.load(open(tmp_path / "config.json"))
  assert info["config"]["architecture"] == "resnet"
  # Restoring the checkpoint rebuilds the same architecture.
  model, params, step = workdir_lib.restore_params(str(tmp_path), workdir_lib.load_run_config(str(tmp_path)),
                                             784)
  assert step == 4 and type(model).__name__ == "ResNetHierarchicalVAE"
  with pytest.raises(ValueError, match="config.latent_channels"):
    train.train_and_evaluate(_config(architecture="resnet", latent_channels=()),
                             str(tmp_path / "bad"))


def test_one_step_dispatch_and_one_chunk_bound_run_without_a_loop():
  # XLA:CPU runs convolutions inside a loop body many times slower (jax-ml/jax#12868):
  # the ResNet presets' one-step dispatch and a one-chunk IW bound must not build one.
  import functools
  from hermite_vae import evaluation
  cfg = _config(method="hvae", architecture="resnet", latent_channels=(2, 1),
                resnet_channels=4, resnet_blocks=1)
  model, tx = state_lib.create_model(cfg, 784), state_lib.create_optimizer(cfg)
  state = state_lib.create_train_state(model, tx, jax.random.PRNGKey(0), 784)
  steps = functools.partial(train.train_steps, model=model, tx=tx,
                            cfg=objectives.ObjectiveConfig.from_config(cfg),
                            stop_on_nonfinite=True, grad_clip_norm=1.0)
  has_loop = lambda fn, *args: any(p in str(jax.make_jaxpr(fn)(*args))
                                   for p in ("scan[", "while["))
  xs = jnp.zeros((2, 4, 28, 28, 1))
  assert has_loop(steps, state, xs, jax.random.PRNGKey(1))
  assert not has_loop(steps, state, xs[:1], jax.random.PRNGKey(1))
  state1, metrics = jax.jit(steps)(state, xs[:1], jax.random.PRNGKey(1))
  assert int(state1.step) == 1 and metrics["loss"].shape == (1,)
  bound = lambda k, chunk: functools.partial(evaluation.iw_bound_batch.__wrapped__, model,
                                             num_samples=k, chunk=chunk)
  x = xs[0]
  assert has_loop(bound(4, 2), state.params, x, jax.random.PRNGKey(2))
  assert not has_loop(bound(4, 4), state.params, x, jax.random.PRNGKey(2))


def _write_fake_cifar(directory, n=40):
  import pickle
  os.makedirs(directory, exist_ok=True)
  rng = np.random.default_rng(0)
  for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
    with open(os.path.join(directory, name), "wb") as f:
      pickle.dump({b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                   b"labels": [0] * n}, f)


@pytest.mark.slow
def test_cifar10_trains_with_discretized_logistic_and_reports_bits_per_dim(tmp_path):
  _write_fake_cifar(str(tmp_path / "data" / "cifar-10-batches-py"))
  cfg = _config(dataset="cifar10", data_source="files", data_dir=str(tmp_path / "data"),
                train_split="train", eval_split="test", method="hvae")
  result = train.train_and_evaluate(cfg, str(tmp_path / "run"))
  # Uniform random 8-bit pixels: about 8 bits/dim, and never below 0 for a discrete model.
  assert 7.5 < result["bits_per_dim_elbo"] < 12
  np.testing.assert_allclose(result["bits_per_dim_elbo"],
                             -result["elbo_nats"] / (3072 * np.log(2)), rtol=1e-6)
  with pytest.raises(ValueError, match="8-bit pixels; use 'discretized_logistic'"):
    train.train_and_evaluate(_config(dataset="cifar10", likelihood="bernoulli"),
                             str(tmp_path / "bad"))


# Slow: the trainer's dispatch is checked by default in test_guarantees
# (steps_per_dispatch changes neither metrics nor checkpoints).
@pytest.mark.slow
def test_train_steps_scan_equals_repeated_train_step():
  import functools
  import optax
  from hermite_vae.models.mlp import MLPHierarchicalVAE
  model = MLPHierarchicalVAE((3, 2), (8, 8), num_pixels=784)
  cfg = objectives.ObjectiveConfig.from_config(_config(method="hvae"))
  tx = optax.adam(1e-2)
  state = state_lib.create_train_state(model, tx, jax.random.PRNGKey(0), 784)
  xs = (jax.random.uniform(jax.random.PRNGKey(1), (5, 8, 28, 28, 1)) < 0.3).astype(jnp.float32)
  kwargs = dict(model=model, tx=tx, cfg=cfg, stop_on_nonfinite=True, grad_clip_norm=1.0)
  key = jax.random.PRNGKey(2)
  scanned, metrics = jax.jit(functools.partial(train.train_steps, **kwargs))(state, xs, key)
  step = jax.jit(functools.partial(train.train_step, **kwargs))
  for i in range(5):
    state, m = step(state, xs[i], key)
    np.testing.assert_allclose(metrics["loss"][i], m["loss"], rtol=1e-5)
  assert int(scanned.step) == int(state.step) == 5
  for a, b in zip(jax.tree_util.tree_leaves(scanned), jax.tree_util.tree_leaves(state)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_nonfinite_loss_stops_and_names_step(tmp_path, monkeypatch):
  original = objectives.loss_and_metrics

  def poisoned(params, model, x, key, step, cfg):
    loss, metrics = original(params, model, x, key, step, cfg)
    return jnp.where(step >= 3, jnp.nan, loss), metrics

  monkeypatch.setattr(objectives, "loss_and_metrics", poisoned)
  cfg = _config(num_train_steps=6, log_every=2, checkpoint_every=2)
  with pytest.raises(FloatingPointError, match="step 3"):
    train.train_and_evaluate(cfg, str(tmp_path / "stop"))
  # Checkpoint at step 2 only; nothing non-finite saved.
  assert sorted(os.listdir(str(tmp_path / "stop" / "checkpoints"))) == ["2"]

  cfg.skip_nonfinite = True
  result = train.train_and_evaluate(cfg, str(tmp_path / "skip"))
  records = [r for r in metrics_io.read_metrics(str(tmp_path / "skip")) if r["split"] == "train"]
  assert records[-1]["skipped_nonfinite"] == 3 and np.isfinite(result["elbo_nats"])


_DEVICE_SCRIPT = """
import json, sys
import numpy as np
sys.path.insert(0, {root!r})
import jax
from configs import smoke
from hermite_vae import metrics_io, train
from hermite_vae import workdir as workdir_lib
from hermite_vae import state as state_lib
c = smoke.get_config()
c.method = sys.argv[2]
c.skip_connections = sys.argv[3] == "skip"
c.num_train_steps = 4; c.log_every = 2; c.eval_every = 4  # 2 steps per dispatch
out = train.train_and_evaluate(c, sys.argv[1])
_, state, _ = workdir_lib.restore_state(sys.argv[1], c, 784)
leaves = jax.tree_util.tree_leaves_with_path(jax.device_get(state))
np.savez(sys.argv[1] + "/state.npz",
         **{{jax.tree_util.keystr(path): value for path, value in leaves}})
print(json.dumps({{"devices": jax.device_count(), "eval": out,
                  "train": metrics_io.read_metrics(sys.argv[1])}}))
"""


# Slow: equality across device layouts runs by default in test_multiprocess (1x4 vs 2x2).
@pytest.mark.slow
@pytest.mark.parametrize("method,skips", [("hvae", ""), ("iwae", ""), ("hvae", "skip")])
def test_same_metrics_on_1_and_4_devices(tmp_path, method, skips):
  results = []
  for n in (1, 4):
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={n}",
               JAX_PLATFORMS="cpu")
    proc = subprocess.run(
        [sys.executable, "-c", _DEVICE_SCRIPT.format(root=ROOT), str(tmp_path / str(n)), method,
         skips or "none"],
        env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
  assert [r["devices"] for r in results] == [1, 4]
  one, four = results
  for a, b in zip(one["train"], four["train"]):
    for k in ("elbo_nats", "kl_nats", "reconstruction_nats", "loss"):
      if k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=2e-5, err_msg=k)
  np.testing.assert_allclose(one["eval"]["elbo_nats"], four["eval"]["elbo_nats"], rtol=2e-5)
  # Parameters and optimizer state (Adam's moments and count) after training; atol 1e-5
  # is 0.25% of how far 4 Adam steps at lr 1e-3 move a parameter (reduction order
  # differs across devices).
  states = [np.load(str(tmp_path / str(n) / "state.npz")) for n in (1, 4)]
  assert sorted(states[0].files) == sorted(states[1].files)
  assert any("opt_state" in name for name in states[0].files)
  assert any("d_z2" in name for name in states[0].files) == bool(skips)  # top-down state
  for name in states[0].files:
    np.testing.assert_allclose(states[0][name], states[1][name], rtol=1e-4, atol=1e-5,
                               err_msg=name)


def _tiny_vae_step_inputs():
  """(model, cfg, tx, state, x): a 2-layer MLP VAE, Adam 1e-2 and a batch of 8 digits."""
  import optax  # pylint: disable=g-import-not-at-top
  from hermite_vae.models.mlp import MLPHierarchicalVAE  # pylint: disable=g-import-not-at-top
  model = MLPHierarchicalVAE((3, 2), (8, 8), num_pixels=784)
  cfg = objectives.ObjectiveConfig.from_config(_config(method="vae"))
  tx = optax.adam(1e-2)
  state = state_lib.create_train_state(model, tx, jax.random.PRNGKey(0), 784)
  x = (jax.random.uniform(jax.random.PRNGKey(1), (8, 28, 28, 1)) < 0.3).astype(jnp.float32)
  return model, cfg, tx, state, x


def test_train_step_clipping_matches_optax_and_skips_nonfinite():
  import functools
  import optax
  model, cfg, tx, state, x = _tiny_vae_step_inputs()
  key = jax.random.PRNGKey(2)
  step = functools.partial(train.train_step, model=model, tx=tx, cfg=cfg,
                           stop_on_nonfinite=True, grad_clip_norm=1.0)
  new, metrics = jax.jit(step)(state, x, key)
  assert float(metrics["grad_norm"]) > 1.0   # clipping is active
  # Reference: optax's own clip_by_global_norm + adam on the same gradient.
  ref_tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-2))
  @jax.jit
  def reference(params):
    grads = jax.grad(lambda p: objectives.loss_and_metrics(
        p, model, x, jax.random.fold_in(key, 0), 0, cfg)[0])(params)
    updates, _ = ref_tx.update(grads, ref_tx.init(params), params)
    return optax.apply_updates(params, updates)
  ref = reference(state.params)
  for a, b in zip(jax.tree_util.tree_leaves(new.params), jax.tree_util.tree_leaves(ref)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  # A non-finite input leaves parameters and optimizer state bit-identical.
  bad, _ = jax.jit(step)(new, x * jnp.nan, key)
  for a, b in zip(jax.tree_util.tree_leaves((new.params, new.opt_state)),
                  jax.tree_util.tree_leaves((bad.params, bad.opt_state))):
    np.testing.assert_array_equal(a, b)
  assert int(bad.nonfinite_count) == 1 and int(bad.first_nonfinite_step) == 1


def test_bfloat16_compute_stays_finite_and_close_to_float32():
  # The trainer's dispatch for 12 steps on the same batches, float32 vs bfloat16 compute.
  # Tolerance: 0.5% of the ELBO (measured after 30 steps of train_and_evaluate: 0.03%).
  runs = {dtype: _dispatch(_config(compute_dtype=dtype, steps_per_dispatch=12), steps=12)
          for dtype in ("float32", "bfloat16")}
  (s32, m32), (s16, m16) = runs["float32"], runs["bfloat16"]
  e32, e16 = np.asarray(m32["elbo_nats"]), np.asarray(m16["elbo_nats"])
  assert np.all(np.isfinite(e16)) and int(s16.step) == 12
  np.testing.assert_allclose(e16, e32, rtol=5e-3)
  # Parameters, optimizer state, loss and every metric stay float32.
  for tree in (s16.params, s16.opt_state, m16):
    for leaf in jax.tree_util.tree_leaves(tree):
      if jnp.issubdtype(leaf.dtype, jnp.floating):
        assert leaf.dtype == jnp.float32, leaf.dtype
  assert m16["loss"].dtype == m16["kl_per_layer_nats"].dtype == jnp.float32
  # bf16 really used: other numbers than float32 after the same steps.
  assert any(not np.array_equal(a, b) for a, b in
             zip(jax.tree_util.tree_leaves(s32.params), jax.tree_util.tree_leaves(s16.params)))
  assert not np.array_equal(e16, e32)


def test_bfloat16_model_outputs_and_densities_are_float32():
  """The matmuls run in bfloat16; every (loc, scale), decoder output and log-density the
  objective sees is float32 (so is the loss computed from them)."""
  cfg = _config(compute_dtype="bfloat16")
  model = state_lib.create_model(cfg, 784)
  x = (jax.random.uniform(jax.random.PRNGKey(0), (4, 784)) < 0.2).astype(jnp.float32)
  params = jax.jit(model.init)(jax.random.PRNGKey(0), x, jax.random.PRNGKey(1))["params"]
  assert all(p.dtype == jnp.float32 for p in jax.tree_util.tree_leaves(params))
  loc, scale = model.apply({"params": params}, 0, x, method=model.encode_layer)
  assert loc.dtype == scale.dtype == jnp.float32
  g_loc, _ = model.apply({"params": params}, 0, loc[:, :3], method=model.generate_layer)
  assert g_loc.dtype == model.apply({"params": params}, loc, method=model.decode).dtype == (
      jnp.float32)
  terms = objectives.layer_terms(model, params, x, jax.random.PRNGKey(2))
  assert terms.log_px.dtype == terms.kl.dtype == terms.log_ratio_top.dtype == jnp.float32
  # The bf16 matmul is really in the program: the dense layers' dots are bf16.
  hlo = jax.jit(lambda p: objectives.layer_terms(model, p, x, jax.random.PRNGKey(2)).kl
                ).lower(params).as_text()
  assert "bf16" in hlo


def test_bfloat16_heads_and_the_generators_first_layer_compute_in_float32():
  """Under compute_dtype=bfloat16, each generator's matmuls in order: its first trunk
  layer in float32 (the latent input, with its OU perturbations, is not rounded to
  bf16's 2^-8), the next in bfloat16, the loc and scale heads in float32; and loc equals
  the float32 head applied to the trunk's output."""
  cfg = _config(compute_dtype="bfloat16")
  model = state_lib.create_model(cfg, 784)
  x = (jax.random.uniform(jax.random.PRNGKey(0), (4, 784)) < 0.2).astype(jnp.float32)
  params = jax.jit(model.init)(jax.random.PRNGKey(0), x, jax.random.PRNGKey(1))["params"]
  z = 1.0 + jax.random.normal(jax.random.PRNGKey(3), (4, model.latent_dims[1])) * 0.1
  gen = lambda p, z: model.apply({"params": p}, 0, z, method=model.generate_layer)
  jaxpr = jax.make_jaxpr(gen)(params, z)
  dots = [e for e in jaxpr.jaxpr.eqns if e.primitive.name == "dot_general"]
  dtypes = [str(e.invars[0].aval.dtype) for e in dots]
  assert dtypes == ["float32", "bfloat16", "float32", "float32"], dtypes
  loc, _ = gen(params, z)
  p, h = params["p_z1"], z
  for j in range(cfg.deterministic_layers):
    dense = p["mlp"][f"dense_{j}"]
    dt = jnp.float32 if j == 0 else jnp.bfloat16
    h = jnp.tanh(h.astype(dt) @ dense["kernel"].astype(dt) + dense["bias"].astype(dt))
  want = h.astype(jnp.float32) @ p["loc"]["kernel"] + p["loc"]["bias"]
  np.testing.assert_allclose(loc, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("key,value", [("free_bits", 0.5), ("kl_warmup_steps", 10),
                                       ("kl_warmup_start", 5)])
def test_iwae_rejects_kl_settings_it_would_ignore(key, value):
  from hermite_vae import config_lib  # pylint: disable=g-import-not-at-top
  with pytest.raises(ValueError, match=f"config.{key}=.*method=iwae"):
    config_lib.validate(_config(method="iwae", **{key: value}))


def test_a_runs_keys_are_distinct_and_the_terms_split_their_key():
  keys = rng.run_keys(0)
  assert sorted(keys) == sorted(rng.RUN_STREAMS)
  raw = {tuple(np.asarray(jax.random.key_data(k)).ravel()) for k in keys.values()}
  assert len(raw) == len(keys)
  path_key, ou_key = rng.terms_keys(jax.random.PRNGKey(0))
  layer = [tuple(np.asarray(jax.random.key_data(f(i))).ravel()) for i in range(4)
           for f in (lambda i: jax.random.fold_in(path_key, i),
                     lambda i: rng.ou_layer_key(ou_key, i))]
  assert len(set(layer)) == len(layer)


def test_a_sharp_layers_log_density_under_bfloat16_stays_within_half_a_nat():
  """p(z1|z2) made sharp (scale ~0.011, loc ~3, 40 units): under compute_dtype=bfloat16
  log N(z1; loc, scale) stays within 0.5 nats per example of float32 on average (the
  bf16 trunk's rounding is what remains); rounding loc itself to bfloat16, as bf16
  heads did, moves it by more than 1 nat."""
  from hermite_vae.models import layers  # pylint: disable=g-import-not-at-top
  kw = dict(latent_dims=(40, 40), hidden_dims=(200, 200))
  m32 = state_lib.create_model(_config(**kw), 784)
  m16 = state_lib.create_model(_config(compute_dtype="bfloat16", **kw), 784)
  x = (jax.random.uniform(jax.random.PRNGKey(0), (64, 784)) < 0.2).astype(jnp.float32)
  params = m32.init(jax.random.PRNGKey(0), x, jax.random.PRNGKey(1))["params"]
  p = dict(params)
  p["p_z1"] = dict(p["p_z1"], scale=dict(p["p_z1"]["scale"], bias=jnp.full((40,), -4.6)),
                   loc=dict(p["p_z1"]["loc"], bias=jnp.full((40,), 3.0)))
  z2 = jax.random.normal(jax.random.PRNGKey(2), (64, 40))
  (l32, s32), (l16, s16) = (m.apply({"params": p}, 0, z2, method=m.generate_layer)
                            for m in (m32, m16))
  z1 = l32 + s32 * jax.random.normal(jax.random.PRNGKey(3), l32.shape)
  lp32 = layers.gaussian_log_prob(z1, l32, s32)
  assert float(s32.mean()) < 0.02
  assert float(jnp.abs(lp32 - layers.gaussian_log_prob(z1, l16, s16)).mean()) < 0.5
  rounded = l32.astype(jnp.bfloat16).astype(jnp.float32)
  assert float(jnp.abs(lp32 - layers.gaussian_log_prob(z1, rounded, s32)).mean()) > 1.0


@pytest.mark.parametrize("preset", ["cifar10_resnet", "cifar10_mlp"])
def test_bfloat16_pixel_heads_compute_in_float32(preset):
  """The CIFAR-10 presets' discretized-logistic decoder under compute_dtype=bfloat16: the
  trunk runs in bfloat16, the loc and log-scale heads in float32 (bf16's 2^-8 spacing
  near |loc| = 1 is half a bin). Bug caught: the heads built with ``dtype=self.dtype``
  (``models/layers.py`` DiscretizedLogisticLayer, ``models/resnet.py`` ConvLikelihoodLayer)."""
  import importlib  # pylint: disable=g-import-not-at-top
  cfg = importlib.import_module(f"configs.{preset}").get_config()
  cfg.compute_dtype = "bfloat16"
  model = state_lib.create_model(cfg, 32 * 32 * 3)
  x = jnp.zeros((1, 32 * 32 * 3))
  variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), x, jax.random.PRNGKey(1))
  z1 = jnp.zeros((1, model.latent_dims[0]))
  jaxpr = jax.make_jaxpr(lambda v, z: model.apply(v, z, method=model.decode))(variables, z1)
  ops = [e for e in jaxpr.jaxpr.eqns
         if e.primitive.name in ("dot_general", "conv_general_dilated")]
  dtypes = [str(e.invars[0].aval.dtype) for e in ops]
  assert "bfloat16" in dtypes[:-2], dtypes           # the trunk is in bfloat16
  assert dtypes[-2:] == ["float32", "float32"], dtypes   # loc and log-scale heads


def test_an_update_above_grad_skip_norm_is_skipped_and_leaves_adam_untouched():
  import functools
  model, cfg, tx, state, x = _tiny_vae_step_inputs()
  step = lambda skip: jax.jit(functools.partial(
      train.train_step, model=model, tx=tx, cfg=cfg, stop_on_nonfinite=True,
      grad_skip_norm=skip))(state, x, jax.random.PRNGKey(2))
  applied, m_applied = step(0.0)                      # off
  norm = float(m_applied["grad_norm"])
  kept, m_kept = step(2 * norm)                       # under the threshold: applied
  skipped, m_skipped = step(norm / 2)                 # over it: skipped
  assert float(m_applied["update_skipped"]) == float(m_kept["update_skipped"]) == 0.0
  assert float(m_skipped["update_skipped"]) == 1.0
  assert int(skipped.step) == int(applied.step) == 1 and int(skipped.nonfinite_count) == 0
  for a, b in zip(jax.tree_util.tree_leaves(kept), jax.tree_util.tree_leaves(applied)):
    np.testing.assert_array_equal(a, b)
  before = jax.tree_util.tree_leaves((state.params, state.opt_state))
  after = jax.tree_util.tree_leaves((skipped.params, skipped.opt_state))
  for a, b in zip(after, before):
    np.testing.assert_array_equal(a, b)
  assert any(not np.array_equal(a, b) for a, b in
             zip(jax.tree_util.tree_leaves(applied.params), jax.tree_util.tree_leaves(state.params)))
  with pytest.raises(ValueError, match="grad_skip_norm"):
    train.train_and_evaluate(_config(grad_skip_norm=-1.0), "/nonexistent/never_written")
