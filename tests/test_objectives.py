"""Objectives: smoothing only where the paper puts it; schedules; IW bound."""
import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.lab.flops import compiled_memory_mib
from hermite_vae import correlated_samples, objectives, rng
from hermite_vae.models import layers
from hermite_vae.models.mlp import MLPHierarchicalVAE
from hermite_vae.models.resnet import ResNetHierarchicalVAE
from hermite_vae.models import hierarchy, terms

# lecun_normal: generators that depend on their input from the start (the default
# initialization starts every p(z_i|z_{i+1}) near N(0, I), where smoothing has little to act on).
MODEL = MLPHierarchicalVAE((5, 4, 3), (16, 12, 8), num_pixels=20, initialization="lecun_normal")
X = (jax.random.uniform(jax.random.PRNGKey(5), (6, 20)) < 0.4).astype(jnp.float32)
PARAMS = jax.jit(MODEL.init)(jax.random.PRNGKey(0), X, jax.random.PRNGKey(1))["params"]
# The convolutional hierarchy on 4x5 "images" (odd width: 2x3 latent maps, cropped decoder).
RESNET = ResNetHierarchicalVAE((4, 5, 1), (2, 2, 1), channels=4, num_blocks=1,
                               initialization="lecun_normal")

@functools.lru_cache(maxsize=None)
def _model(arch):  # the ResNet is initialised only when a (slow) ResNet case runs
  if arch == "mlp":
    return MODEL, PARAMS
  return RESNET, jax.jit(RESNET.init)(jax.random.PRNGKey(0), X, jax.random.PRNGKey(1))["params"]


# The MLP cases run by default; the same checks on the ResNet hierarchy are marked slow.
ARCHS = ["mlp", pytest.param("resnet", marks=pytest.mark.slow)]
KEY = jax.random.PRNGKey(3)
PATH_KEY, OU_KEY = rng.terms_keys(KEY)   # the split layer_terms makes
BASE = objectives.ObjectiveConfig(method="vae", rho=1.0, rho_anneal_steps=0, num_ou_samples=4,
                       smooth_target="mean_std", num_iw_samples=3, kl_warmup_start=0,
                       kl_warmup_steps=0, free_bits=0.0)


# Compiled (model and objective config static): the eager gradient of a smoothed
# hierarchy dispatches thousands of small operations.
_GRAD = jax.jit(jax.grad(objectives.loss_and_metrics, has_aux=True), static_argnums=(1, 5))


def _grads(arch="mlp", **kw):
  cfg = dataclasses.replace(BASE, **kw)
  model, params = _model(arch)
  return _GRAD(params, model, X, KEY, 0, cfg)


def _close(a, b, **kw):
  return all(np.allclose(u, v, **kw) for u, v in
             zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("target", ["mean_std", "ratio"])
@pytest.mark.parametrize("gradient", objectives.HVAE_GRADIENTS)
def test_hvae_at_rho_one_equals_vae(target, arch, gradient):
  g_vae, m_vae = _grads(arch)
  g_hvae, m_hvae = _grads(arch, method="hvae", rho=1.0, smooth_target=target,
                          hvae_gradient=gradient)
  assert _close(g_vae, g_hvae, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(m_vae["elbo_nats"], m_hvae["elbo_nats"], rtol=1e-6)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("target", ["mean_std", "ratio"])
@pytest.mark.parametrize("gradient", objectives.HVAE_GRADIENTS)
def test_smoothing_only_on_intermediate_generator_layers(target, arch, gradient):
  g_vae, m_vae = _grads(arch)
  g_hvae, m_hvae = _grads(arch, method="hvae", rho=0.5, smooth_target=target,
                          hvae_gradient=gradient)
  # Reported numbers are the original model's (the ratio form of the density differs
  # from the mean form only by float rounding).
  tol = 0 if target == "mean_std" else 1e-6
  np.testing.assert_allclose(m_vae["elbo_nats"], m_hvae["elbo_nats"], rtol=tol)
  np.testing.assert_allclose(m_vae["loss"], m_hvae["loss"], rtol=tol)
  # p(x|z1) is never smoothed and nothing it sees changes: identical gradient.
  assert _close(g_vae["p_x"], g_hvae["p_x"], rtol=1e-6, atol=1e-7)
  # Every intermediate generator layer p(z_i|z_{i+1}) is smoothed.
  for name in ("p_z1", "p_z2"):
    assert not _close(g_vae[name], g_hvae[name], rtol=1e-3, atol=1e-4), name


def _reference_hvae_loss(params, rho, n, eq4=True, model=MODEL, target="mean_std"):
  """The substituted objective written out here, independently of ``ou.smooth``: value
  of the original model, gradient of log N(z_i; mean_k mu(z'_k), mean_k sigma(z'_k))
  with z'_k from eq. 4 around z_{i+1}'s posterior sample (eq. 3 when ``eq4=False``).
  Same noise as the library: the path from rng.terms_keys(key)[0], eps ~ N(0, I) of shape
  [n, B, d] from rng.ou_layer_key(rng.terms_keys(key)[1], i)."""
  variables = {"params": params}
  path = hierarchy.encode_path(model, params, X, PATH_KEY)
  out = model.apply(variables, path[0][0], method=model.decode)
  log_px = layers.log_likelihood(model.likelihood, terms.flatten(X), out)
  kls = []
  for i in range(len(path) - 1):
    (z, q_loc, q_scale), (z_above, loc, scale) = path[i], path[i + 1]
    gen = lambda h, i=i: model.apply(variables, i, h, method=model.generate_layer)
    eps = jax.random.normal(rng.ou_layer_key(OU_KEY, i), (n,) + z_above.shape)
    if eq4:
      points = rho * z_above + (1 - rho) * loc + scale * np.sqrt(1 - rho**2) * eps
    else:
      points = rho * z_above + np.sqrt(1 - rho**2) * eps
    mu, sigma = jax.vmap(gen)(points)                       # [n, B, d]
    original = layers.gaussian_log_prob(z, *gen(z_above))
    if target == "mean_std":   # N(z; mean_k mu_k, mean_k sigma_k)
      smoothed = layers.gaussian_log_prob(z, mu.mean(0), sigma.mean(0))
    else:                      # natural form with mean_k (mu_k / sigma_k) and mean_k sigma_k
      ratio, scale = (mu / sigma).mean(0), sigma.mean(0)
      smoothed = jnp.sum(-0.5 * (z / scale - ratio) ** 2 - jnp.log(scale)
                         - 0.5 * np.log(2 * np.pi), axis=-1)
    log_p = jax.lax.stop_gradient(original - smoothed) + smoothed
    kls.append(layers.gaussian_log_prob(z, q_loc, q_scale) - log_p)
  kls.append(layers.kl_to_standard_normal(path[-1][1], path[-1][2]))
  return -(jnp.mean(log_px) - jnp.sum(jnp.mean(jnp.stack(kls), axis=1)))


@pytest.mark.parametrize("target", ["mean_std", "ratio"])
def test_hvae_gradient_matches_an_independent_reference_with_eq4(target):
  rho, n = 0.5, 4
  g_lib, m_lib = _grads(method="hvae", rho=rho, num_ou_samples=n, smooth_target=target)
  loss_ref, g_ref = jax.value_and_grad(_reference_hvae_loss)(PARAMS, rho, n, target=target)
  np.testing.assert_allclose(m_lib["loss"], loss_ref, rtol=1e-6)
  assert _close(g_lib, g_ref, rtol=1e-4, atol=1e-6)
  # OU samples drawn by eq. 3 (ignoring the posterior's loc/scale) give another gradient.
  g_eq3 = jax.grad(_reference_hvae_loss)(PARAMS, rho, n, eq4=False, target=target)
  assert not _close(g_eq3["p_z1"], g_ref["p_z1"], rtol=1e-3, atol=1e-5)


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _reference_generator_grads(i, rho, n, target):
  """-d/d(params of p_z{i+1}) of the batch mean of the substituted log p(z_i|z_{i+1}),
  written out: the posterior path of ``KEY``, the OU points of eq. 4 drawn with the key
  layer i's smoothing uses, Û the mean over them, then log N at the smoothed values."""
  path = hierarchy.encode_path(MODEL, PARAMS, X, PATH_KEY)
  z, (z_above, loc, scale) = path[i][0], path[i + 1]
  points = correlated_samples(rng.ou_layer_key(OU_KEY, i), z_above, rho, n, loc, scale)

  def neg_log_p(layer_params):
    params = {**PARAMS, f"p_z{i + 1}": layer_params}
    mus, sigmas = jax.vmap(lambda h: MODEL.apply({"params": params}, i, h,
                                                 method=MODEL.generate_layer))(points)
    if target == "ratio":    # smooth mu/sigma and sigma; log N(z; ratio * sigma, sigma)
      u_ratio, u_sigma = jnp.mean(mus / sigmas, 0), jnp.mean(sigmas, 0)
      return -jnp.mean(layers.gaussian_log_prob(z, u_ratio * u_sigma, u_sigma))
    return -jnp.mean(layers.gaussian_log_prob(z, jnp.mean(mus, 0), jnp.mean(sigmas, 0)))
  return jax.grad(neg_log_p)(PARAMS[f"p_z{i + 1}"])


@pytest.mark.parametrize("target", ["mean_std", "ratio"])
def test_smooth_targets_match_their_written_out_gradients(target):
  """Each target's generator gradient equals its formula written out by hand (a wrong
  ratio formula, or the other target, fails), and the two targets differ."""
  grads, _ = _grads(method="hvae", rho=0.5, num_ou_samples=4, smooth_target=target)
  for i in range(2):
    want = _reference_generator_grads(i, 0.5, 4, target)
    assert _close(grads[f"p_z{i + 1}"], want, rtol=1e-4, atol=1e-6), (target, i)
    other = _reference_generator_grads(i, 0.5, 4, "ratio" if target == "mean_std"
                                       else "mean_std")
    assert not _close(grads[f"p_z{i + 1}"], other, rtol=1e-3, atol=1e-4), (target, i)


def test_free_bits_floor_the_top_layers_analytic_kl_on_the_batch_mean():
  kl = objectives.layer_terms(MODEL, PARAMS, X, KEY).kl                 # [L, B]
  kl_mean = np.asarray(kl.mean(1))
  free_bits = float(np.median(np.asarray(kl[-1])))  # splits the top layer's examples in two
  _, m = _grads(free_bits=free_bits)
  floored = kl_mean.copy()
  floored[-1] = max(floored[-1], free_bits)
  want = -(float(m["reconstruction_nats"]) - floored.sum())
  np.testing.assert_allclose(m["loss"], want, rtol=1e-6)
  # A per-example floor is another loss (a floor on every layer: the next test).
  per_example = -(float(m["reconstruction_nats"]) - kl_mean[:-1].sum()
                  - np.maximum(np.asarray(kl[-1]), free_bits).mean())
  assert abs(per_example - want) > 1e-4


def test_free_bits_leave_the_sampled_terms_and_their_gradient_alone():
  """A floor far above every term (100 nats): the top layer's analytic KL is floored, so
  the top encoder's loc/scale heads get no gradient from it; the sampled intermediate
  terms, negative or not, keep exactly the gradient they have without free bits (a floor
  on them would make them constants and zero p(z_i|.)'s gradient)."""
  g0, m0 = _grads()
  g_fb, m_fb = _grads(free_bits=100.0)
  kl_mean = np.asarray(m0["kl_per_layer_nats"])
  np.testing.assert_allclose(m_fb["loss"], m0["loss"] - kl_mean[-1] + 100.0, rtol=1e-6)
  for name in ("p_z1", "p_z2", "p_x"):       # generators: only sampled terms and log p(x|z)
    assert _close(g_fb[name], g0[name], rtol=1e-6, atol=1e-8), name
    assert any(np.abs(np.asarray(v)).max() > 0 for v in jax.tree_util.tree_leaves(g_fb[name]))
  top = f"q_z{len(MODEL.latent_dims)}"
  assert not _close(g_fb[top], g0[top], rtol=1e-3, atol=1e-6)


def test_free_bits_on_every_layer_floor_each_batch_mean_term():
  """``free_bits_layers='every'`` (the paper's baseline): the loss is the sum of
  max(free_bits, batch-mean term) over layers, and where the floor binds the term passes
  no gradient. A floor between z1's and z2's terms: p(z2|z3), whose only loss term is
  z2's, gets no gradient at all; p(z1|z2), whose term stays above the floor, keeps
  exactly its gradient. Bug caught: 'every' applied to the top layer only."""
  g0, m0 = _grads()
  kl_mean = np.asarray(m0["kl_per_layer_nats"])
  floor = float(kl_mean[0] + kl_mean[1]) / 2
  assert kl_mean[0] > floor > kl_mean[1] and floor > kl_mean[2]
  g_fb, m_fb = _grads(free_bits=floor, free_bits_layers="every")
  want = -(float(m0["reconstruction_nats"]) - np.maximum(kl_mean, floor).sum())
  np.testing.assert_allclose(m_fb["loss"], want, rtol=1e-6)
  assert all(np.abs(np.asarray(v)).max() == 0 for v in jax.tree_util.tree_leaves(g_fb["p_z2"]))
  assert _close(g_fb["p_z1"], g0["p_z1"], rtol=1e-6, atol=1e-8)
  g_top, _ = _grads(free_bits=floor)   # 'top': z2's generator learns from its term
  assert any(np.abs(np.asarray(v)).max() > 0 for v in jax.tree_util.tree_leaves(g_top["p_z2"]))


def test_substitute_and_jacobian_gradients_differ_only_in_the_generator():
  g_sub, m_sub = _grads(method="hvae", rho=0.5, hvae_gradient="substitute")
  g_jac, m_jac = _grads(method="hvae", rho=0.5, hvae_gradient="jacobian")
  assert float(m_sub["loss"]) == float(m_jac["loss"])
  assert _close(g_sub["p_x"], g_jac["p_x"], rtol=1e-6, atol=1e-7)
  for name in ("p_z1", "p_z2"):
    assert not _close(g_sub[name], g_jac[name], rtol=1e-3, atol=1e-4), name


def test_iwae_loss_is_the_logmeanexp_of_the_sample_log_weights():
  """The iwae loss is -mean_B log (1/K) sum_k w_k over the K paths of its keys (a mean of
  log weights, a missing -log K or one key for every path fails), and that bound is
  above the average ELBO of the same paths."""
  k = 7
  cfg = dataclasses.replace(BASE, method="iwae", num_iw_samples=k)
  loss, metrics = jax.jit(lambda p: objectives.loss_and_metrics(p, MODEL, X, KEY, 0, cfg))(
      PARAMS)
  log_w = jax.jit(jax.vmap(lambda kk: objectives.layer_terms(MODEL, PARAMS, X, kk).log_weight))(
      jax.random.split(KEY, k))                                           # [K, B]
  want = jax.scipy.special.logsumexp(log_w, axis=0) - math.log(k)
  np.testing.assert_allclose(loss, -jnp.mean(want), rtol=1e-6)
  np.testing.assert_allclose(metrics[f"iw_bound_k{k}"], jnp.mean(want), rtol=1e-6)
  assert float(jnp.mean(want)) > float(jnp.mean(log_w)) + 0.1     # Jensen, strictly here
  assert float(jnp.std(log_w, axis=0).min()) > 0.1                # the K paths differ


def test_schedules():
  assert float(objectives.kl_weight(0, 10, 100)) == 0.0
  assert float(objectives.kl_weight(10, 10, 100)) == 0.0
  assert float(objectives.kl_weight(60, 10, 100)) == pytest.approx(0.5)
  assert float(objectives.kl_weight(500, 10, 100)) == 1.0
  assert float(objectives.kl_weight(0, 0, 0)) == 1.0
  assert float(objectives.rho_at(0, 0.8, 100)) == pytest.approx(0.8)
  assert float(objectives.rho_at(50, 0.8, 100)) == pytest.approx(0.9)
  assert float(objectives.rho_at(1000, 0.8, 100)) == pytest.approx(1.0)
  assert float(objectives.rho_at(1000, 0.8, 0)) == pytest.approx(0.8)
  kl = jnp.array([-2.0, 0.2, 3.0])        # only the top entry (an analytic KL) is floored
  np.testing.assert_allclose(objectives.free_bits_kl(kl, 1.0), [-2.0, 0.2, 3.0])
  np.testing.assert_allclose(objectives.free_bits_kl(kl, 5.0), [-2.0, 0.2, 5.0])


def test_free_bits_and_annealing_change_loss_not_elbo():
  _, m = _grads()
  _, m_fb = _grads(free_bits=100.0)
  _, m_kl = _grads(kl_warmup_start=10, kl_warmup_steps=10)
  assert float(m_fb["elbo_nats"]) == float(m["elbo_nats"]) == float(m_kl["elbo_nats"])
  assert float(m_fb["loss"]) > float(m["loss"])           # top-layer KL floor of 100 nats
  assert float(m_kl["loss"]) == pytest.approx(-float(m["reconstruction_nats"]))


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("gradient", objectives.HVAE_GRADIENTS)
def test_sequential_ou_samples_give_the_same_gradient(arch, gradient):
  g_batched, m_batched = _grads(arch, method="hvae", rho=0.5, hvae_gradient=gradient)
  g_seq, m_seq = _grads(arch, method="hvae", rho=0.5, ou_sequential=True,
                        hvae_gradient=gradient)
  assert float(m_batched["loss"]) == float(m_seq["loss"])
  assert _close(g_batched, g_seq, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("gradient", objectives.HVAE_GRADIENTS)
def test_chained_layers_give_the_same_gradient(gradient):
  g_plain, m_plain = _grads(method="hvae", rho=0.5, hvae_gradient=gradient)
  g_chain, m_chain = _grads(method="hvae", rho=0.5, hvae_gradient=gradient,
                            ou_chain_layers=True)
  assert float(m_plain["loss"]) == float(m_chain["loss"])
  assert _close(g_plain, g_chain, rtol=1e-5, atol=1e-6)


def test_chained_layers_hold_one_layer_of_ou_samples():
  """ou_chain_layers reaches `smooth`'s ``after``: less XLA scratch for the gradient of
  a 4-layer HVAE (3 smoothed layers) with wide generator layers (compiled, not run)."""
  model = MLPHierarchicalVAE((16, 16, 16, 16), (256,) * 4, num_pixels=64)
  x = jnp.zeros((64, 64))
  params = jax.eval_shape(lambda: model.init(KEY, x, KEY)["params"])

  def temp_mib(chain):
    cfg = dataclasses.replace(BASE, method="hvae", rho=0.9, num_ou_samples=8,
                              ou_chain_layers=chain)
    loss = lambda p: objectives.loss_and_metrics(p, model, x, KEY, 0, cfg)[0]
    mem = compiled_memory_mib(jax.jit(jax.grad(loss)).lower(params).compile())
    if mem is None:
      pytest.skip(f"{jax.devices()[0].platform} gives no XLA memory analysis")
    return mem["temp_mib"]

  assert temp_mib(True) < 0.8 * temp_mib(False)
