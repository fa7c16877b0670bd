"""Stochastic skip connections (HVAE+): a generator reads latents two and more layers up
only with skips on; the substituted gradient of a skipped generator against a written-out
reference; rho = 1 gives the VAE's gradient; parameter counts; exact resume."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import smoke
from hermite_vae import correlated_samples, objectives, rng, train
from hermite_vae.models import layers
from hermite_vae.models.mlp import MLPHierarchicalVAE, count_params
from hermite_vae.models.resnet import ResNetHierarchicalVAE
from hermite_vae.models import hierarchy

X = (jax.random.uniform(jax.random.PRNGKey(5), (6, 16)) < 0.4).astype(jnp.float32)
KEY = jax.random.PRNGKey(3)
BASE = objectives.ObjectiveConfig(method="hvae", rho=0.5, rho_anneal_steps=0, num_ou_samples=4,
                                  smooth_target="mean_std", num_iw_samples=1,
                                  kl_warmup_start=0, kl_warmup_steps=0, free_bits=0.0)


def _model(arch, skip, skip_init="joint"):
  """Wiring tests use skip_init="joint", so the context acts from the first step (under the
  default "zero" it starts without effect: see test_zero_skip_init_starts_as_the_model_without_skips)."""
  if arch == "mlp":
    return MLPHierarchicalVAE((5, 4, 3), (12, 10, 8), num_pixels=16, skip_connections=skip,
                              initialization="lecun_normal", skip_init=skip_init)
  return ResNetHierarchicalVAE((4, 4, 1), (2, 2, 1), channels=4, num_blocks=1,
                               skip_connections=skip, initialization="lecun_normal",
                               skip_init=skip_init)


def _init(model):
  return jax.jit(model.init)(jax.random.PRNGKey(0), X, jax.random.PRNGKey(1))["params"]


@pytest.mark.parametrize("arch", ["mlp", "resnet"])
def test_generators_read_latents_two_layers_up_only_with_skips(arch):
  for skip in (True, False):
    model = _model(arch, skip)
    params = _init(model)
    zs = [z for z, _, _ in hierarchy.encode_path(model, params, X, KEY)]
    moved = zs[:2] + [zs[2] + 1.0]                         # change z3 only

    def p_z1(latents):                                     # p(z1 | z2, .), and p(x | z1, .)
      ctx = hierarchy.path_contexts(model, params, [(z, z, z) for z in latents])
      gen = model.apply({"params": params}, 0, latents[1], ctx[0],
                        method=model.generate_layer)
      return gen[0], model.apply({"params": params}, latents[0], ctx[-1],
                                 method=model.decode)
    (loc, out), (loc_moved, out_moved) = p_z1(zs), p_z1(moved)
    changed = float(jnp.max(jnp.abs(loc - loc_moved)))
    changed_x = float(jnp.max(jnp.abs(out - out_moved)))
    if skip:
      assert changed > 1e-3 and changed_x > 1e-3, (changed, changed_x)
    else:
      assert changed == 0.0 and changed_x == 0.0
  assert set(params) == {"q_z1", "q_z2", "q_z3", "p_z1", "p_z2", "p_x"}        # no skips


@pytest.mark.parametrize("arch", ["mlp", "resnet"])
def test_zero_skip_init_starts_as_the_model_without_skips(arch):
  """Under skip_init="zero" the layers reading a context start with its kernel rows at zero
  and the other rows as without skips: the loss at initialization equals the skip-free
  model's to float precision, the context rows get a nonzero gradient (the skips learn),
  and under "joint" the loss differs."""
  cfg = dataclasses.replace(BASE, method="vae")
  loss = lambda model: objectives.loss_and_metrics(_init(model), model, X, KEY, 0, cfg)[0]
  plain = float(loss(_model(arch, False)))
  np.testing.assert_allclose(float(loss(_model(arch, True, "zero"))), plain, rtol=1e-6)
  assert abs(float(loss(_model(arch, True, "joint"))) - plain) > 1e-3
  model = _model(arch, True, "zero")
  params = _init(model)
  first = "mlp" if arch == "mlp" else "conv_in"
  kernel = lambda tree: (tree[first]["dense_0"]["kernel"] if arch == "mlp"
                         else tree[first]["kernel"])
  own = 5 if arch == "mlp" else 2                      # z1's units / channels read by p_x
  grads = jax.grad(lambda p: objectives.loss_and_metrics(p, model, X, KEY, 0, cfg)[0])(params)
  assert float(jnp.max(jnp.abs(kernel(params["p_x"])[..., own:, :]))) == 0.0
  assert float(jnp.max(jnp.abs(kernel(grads["p_x"])[..., own:, :]))) > 0.0
  np.testing.assert_array_equal(kernel(params["p_x"])[..., :own, :],
                                kernel(_init(_model(arch, False))["p_x"]))
  with pytest.raises(ValueError, match="skip_init"):
    _init(_model(arch, True, "ones"))


def test_skipped_generator_gradient_matches_a_written_out_reference():
  """p(z1 | z2, S[2]) with S[2] = T(z3): the substituted gradient of its parameters is
  that of log N(z1; mean_k mu(z2'_k, S), mean_k sigma(z2'_k, S)) with z2'_k the eq. 4
  points around q(z2|z1) and S held at its value (smoothing S too, or not at all, fails)."""
  model = _model("mlp", True)
  params = _init(model)
  grads = jax.jit(jax.grad(lambda p: objectives.loss_and_metrics(p, model, X, KEY, 0, BASE)[0]))(
      params)
  path_key, ou_key = rng.terms_keys(KEY)              # the split layer_terms makes
  path = hierarchy.encode_path(model, params, X, path_key)
  ctx = hierarchy.path_contexts(model, params, path)[0]
  z1, (z2, loc2, scale2) = path[0][0], path[1]
  points = correlated_samples(rng.ou_layer_key(ou_key, 0), z2, 0.5, 4, loc2, scale2)

  def neg_log_p(gen_params):
    p = {**params, "p_z1": gen_params}
    mus, sigmas = jax.vmap(lambda h: model.apply({"params": p}, 0, h, ctx,
                                                 method=model.generate_layer))(points)
    return -jnp.mean(layers.gaussian_log_prob(z1, mus.mean(0), sigmas.mean(0)))
  want = jax.jit(jax.grad(neg_log_p))(params["p_z1"])
  for g, w in zip(jax.tree_util.tree_leaves(grads["p_z1"]), jax.tree_util.tree_leaves(want)):
    np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-6)
  plain = jax.grad(lambda gp: -jnp.mean(layers.gaussian_log_prob(z1, *model.apply(
      {"params": {**params, "p_z1": gp}}, 0, z2, ctx, method=model.generate_layer))))(
          params["p_z1"])
  assert any(not np.allclose(g, w, rtol=1e-3, atol=1e-4) for g, w in zip(
      jax.tree_util.tree_leaves(grads["p_z1"]), jax.tree_util.tree_leaves(plain)))
  # The state's parameters get a gradient (through smooth's closure and the decoder).
  assert float(jnp.abs(grads["d_z3"]["dense"]["kernel"]).sum()) > 0


@pytest.mark.parametrize("arch,gradient", [
    ("mlp", "substitute"), pytest.param("mlp", "jacobian", marks=pytest.mark.slow),
    pytest.param("resnet", "substitute", marks=pytest.mark.slow)])
def test_rho_1_is_the_vae_gradient_and_schedules_agree_with_skips(arch, gradient):
  model = _model(arch, True)
  params = _init(model)
  grad = lambda **kw: jax.jit(jax.grad(lambda p: objectives.loss_and_metrics(
      p, model, X, KEY, 0, dataclasses.replace(BASE, **kw))[0]))(params)
  vae, at_1 = grad(method="vae"), grad(rho=1.0, hvae_gradient=gradient)
  for a, b in zip(jax.tree_util.tree_leaves(vae), jax.tree_util.tree_leaves(at_1)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  plain = grad(hvae_gradient=gradient)
  for kw in ({"ou_sequential": True}, {"ou_chain_layers": True}):
    other = grad(hvae_gradient=gradient, **kw)
    for a, b in zip(jax.tree_util.tree_leaves(plain), jax.tree_util.tree_leaves(other)):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def _dense(a, b):
  return a * b + b


def test_mlp_parameter_count_with_skips():
  latent, hidden = (5, 4, 3), (12, 10, 8)
  model = _model("mlp", True)
  params = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), X, jax.random.PRNGKey(1)))
  without = count_params(jax.eval_shape(lambda: _model("mlp", False).init(
      jax.random.PRNGKey(0), X, jax.random.PRNGKey(1))))
  # States: d_z3 = Dense(z3 -> 8), d_z2 = Dense([S3, z2] -> 10). Inputs that grow:
  # p(z1|z2, S3) by 8 units (into its first 10-unit layer), p(x|z1, S2) by 10 (into 12).
  extra = _dense(3, 8) + _dense(8 + 4, 10) + 8 * 10 + 10 * 12
  assert count_params(params) == without + extra


def test_exact_resume_with_skips(tmp_path):
  c = smoke.get_config()
  c.skip_connections = True
  c.num_train_steps, c.checkpoint_every, c.eval_every = 4, 2, 4
  full = train.train_and_evaluate(c, str(tmp_path / "full"))
  c2 = c.copy_and_resolve_references()
  c2.num_train_steps = 2
  train.train_and_evaluate(c2, str(tmp_path / "resumed"))
  resumed = train.train_and_evaluate(c, str(tmp_path / "resumed"))
  assert full["elbo_nats"] == resumed["elbo_nats"]
  from hermite_vae import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  a = workdir_lib.restore_state(str(tmp_path / "full"), c, 784)[1]
  b = workdir_lib.restore_state(str(tmp_path / "resumed"), c, 784)[1]
  assert "d_z2" in a.params
  for u, v in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
    np.testing.assert_array_equal(u, v)


def test_generator_spectra_with_skips_hold_each_examples_state():
  from hermite_vae import diagnostics  # pylint: disable=g-import-not-at-top
  model = _model("mlp", True)
  params = _init(model)
  out = diagnostics.generator_spectra(model, params, X, KEY, num_samples=256, max_examples=2)
  assert [r["layer"] for r in out] == [1, 2]
  # Layer 1 by hand: example b's p(z1 | ., S[2]_b) under q(z2|z1)_b, averaged over b.
  path = hierarchy.encode_path(model, params, X[:2], jax.random.fold_in(KEY, 0))
  ctx = hierarchy.path_contexts(model, params, path)[0]
  _, loc, scale = path[1]
  keys = jax.random.split(jax.random.fold_in(KEY, 1), 2)
  per_example = [float(diagnostics._spectrum_one(  # pylint: disable=protected-access
      lambda h, b=b: model.apply({"params": params}, 0, h, ctx[b],
                                 method=model.generate_layer)[0],
      loc[b], scale[b], keys[b], 256)[4]) for b in range(2)]
  assert out[0]["mu"]["energy"]["total"] == pytest.approx(np.mean(per_example), rel=1e-4)
