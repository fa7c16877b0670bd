"""What the substitution gradient follows in expectation (docs/theory.md), checked by
Monte Carlo over many keys on a single generator layer written with ``smooth`` and on a
whole hierarchy. Each z-score test's threshold is placed from a family-wise false-alarm
probability of 1e-4 over the tested components (``_threshold``), not from the keys' draw:

* n = 1: the OU sample has the posterior sample's distribution, so the mean substitution
  gradient is the VAE's (every parameter, the posterior's loc and scale included) at
  every rho; for n = 5 it is not.
* A linear-Gaussian layer mu(h) = a h + b, fixed sigma: the mean substitution gradient is
  the gradient of ELBO + kappa a^2 s^2 / (2 sigma^2), kappa = (1 - rho^2)(1 - 1/n).
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hermite_vae import diagnostics, smooth
from hermite_vae.models import layers

B, D_IN, D_OUT, H = 3, 2, 2, 5
Z_I = jnp.array([[0.3, -1.2], [1.5, 0.4], [-0.7, 0.9]])      # the scored samples z_i


def _tanh_params():
  r = np.random.default_rng(0)
  return {"w1": jnp.asarray(r.normal(size=(D_IN, H)), jnp.float32),
          "b1": jnp.asarray(r.normal(size=H) * 0.3, jnp.float32),
          "wm": jnp.asarray(r.normal(size=(H, D_OUT)), jnp.float32),
          "ws": jnp.asarray(r.normal(size=(H, D_OUT)) * 0.5, jnp.float32),
          "m": jnp.asarray(r.normal(size=(B, D_IN)), jnp.float32),        # q(z_{i+1}|z_i)
          "log_s": jnp.asarray(np.log(r.uniform(0.5, 1.2, size=(B, D_IN))), jnp.float32)}


def _tanh_layer(p, h):
  t = jnp.tanh(h @ p["w1"] + p["b1"])
  return t @ p["wm"], jax.nn.softplus(t @ p["ws"]) + 0.3


def _log_normal(p_out):
  return jnp.sum(layers.gaussian_log_prob(Z_I, *p_out))


@functools.partial(jax.jit, static_argnums=(2, 3))
def _paired_grads(p, keys, rho, n):
  """Per key: (VAE gradient, substitution gradient) on the same posterior sample."""
  def one(key):
    k1, k2 = jax.random.split(key)
    eps = jax.random.normal(k1, (B, D_IN))

    def vae(q):
      z = q["m"] + jnp.exp(q["log_s"]) * eps
      return _log_normal(_tanh_layer(q, z))

    def sub(q):
      s = jnp.exp(q["log_s"])
      z = q["m"] + s * eps
      return smooth(lambda h: _tanh_layer(q, h), rho, n, outer=_log_normal)(k2, z, q["m"], s)

    return jax.grad(vae)(p), jax.grad(sub)(p)
  return jax.lax.map(one, keys)


def _threshold(num_components: int, alpha: float = 1e-4) -> float:
  """|z| that the largest of ``num_components`` null z-scores exceeds with probability
  ``alpha`` (two-sided, Bonferroni)."""
  from scipy.stats import norm  # pylint: disable=g-import-not-at-top
  return float(norm.isf(alpha / (2 * num_components)))


def _z_scores(diff):
  """Per gradient component: mean / standard error over the keys."""
  leaves = [np.asarray(v, np.float64).reshape(v.shape[0], -1)
            for v in jax.tree_util.tree_leaves(diff)]
  d = np.concatenate(leaves, axis=1)
  return d.mean(0) / (d.std(0, ddof=1) / np.sqrt(d.shape[0]) + 1e-12)


@pytest.mark.parametrize("rho", [0.3, 0.8])
def test_one_ou_sample_gives_the_vae_gradient_in_expectation(rho):
  keys = jax.random.split(jax.random.PRNGKey(0), 20000)
  p = _tanh_params()
  g_vae, g1 = _paired_grads(p, keys, rho, 1)
  z1 = _z_scores(jax.tree_util.tree_map(lambda a, b: a - b, g1, g_vae))
  assert np.abs(z1).max() < _threshold(z1.size), np.abs(z1).max()
  _, g5 = _paired_grads(p, keys, rho, 5)
  z5 = _z_scores(jax.tree_util.tree_map(lambda a, b: a - b, g5, g_vae))
  assert np.abs(z5).max() > 10, np.abs(z5).max()           # n = 5: another expectation


def _linear_surrogate(p, rho, n):
  """The expected log N(z_i; a m + b + a s xi, sigma) with Var xi = c = rho^2 + (1 -
  rho^2)/n, in closed form: the ELBO term plus kappa a^2 s^2 / (2 sigma^2). ``p['z']`` is
  the scored z_i (a function of the encoders below in a hierarchy): its gradient is the
  ELBO term's, the discount not depending on it."""
  s, sigma = jnp.exp(p["log_s"]), jnp.exp(p["log_sigma"])
  c = rho**2 + (1 - rho**2) / n
  mean = p["a"] * p["m"] + p["b"]
  return jnp.sum(-((p["z"] - mean) ** 2 + p["a"] ** 2 * s**2 * c) / (2 * sigma**2)
                 - jnp.log(sigma) - 0.5 * jnp.log(2 * jnp.pi))


@functools.partial(jax.jit, static_argnums=(2, 3))
def _linear_sub_grads(p, keys, rho, n):
  def one(key):
    k1, k2 = jax.random.split(key)
    eps = jax.random.normal(k1, (B, D_OUT))

    def sub(q):
      s, sigma = jnp.exp(q["log_s"]), jnp.exp(q["log_sigma"])
      fn = lambda h: (q["a"] * h + q["b"], jnp.broadcast_to(sigma, h.shape))
      z = q["m"] + s * eps
      density = lambda out: jnp.sum(layers.gaussian_log_prob(q["z"], *out))
      return smooth(fn, rho, n, outer=density)(k2, z, q["m"], s)
    return jax.grad(sub)(p)
  return jax.lax.map(one, keys)


@pytest.mark.parametrize("rho,n", [(0.5, 2), (0.8, 5), (0.3, 20), (0.9, 1)])
def test_linear_gaussian_mean_gradient_is_that_of_elbo_plus_the_kappa_discount(rho, n):
  r = np.random.default_rng(1)
  p = {"a": jnp.asarray(r.normal(size=D_OUT) * 1.5, jnp.float32),
       "b": jnp.asarray(r.normal(size=D_OUT), jnp.float32),
       "log_sigma": jnp.asarray(np.log([0.4, 0.7]), jnp.float32),
       "m": jnp.asarray(r.normal(size=(B, D_OUT)), jnp.float32),
       "log_s": jnp.asarray(np.log(r.uniform(0.5, 1.5, size=(B, D_OUT))), jnp.float32),
       "z": Z_I}
  keys = jax.random.split(jax.random.PRNGKey(2), 20000)
  g = _linear_sub_grads(p, keys, rho, n)
  want = jax.grad(_linear_surrogate)(p, rho, n)
  z = _z_scores(jax.tree_util.tree_map(lambda a, w: a - w[None], g, want))
  assert np.abs(z).max() < _threshold(z.size), (rho, n, np.abs(z).max())
  # The plain ELBO's gradient (kappa = 0) is another one unless kappa = 0.
  if diagnostics.kappa(rho, n) > 0:
    elbo = jax.grad(_linear_surrogate)(p, 1.0, 1)
    z0 = _z_scores(jax.tree_util.tree_map(lambda a, w: a - w[None], g, elbo))
    assert np.abs(z0).max() > 10, (rho, n, np.abs(z0).max())


def test_kappa():
  assert diagnostics.kappa(0.9, 1) == 0.0 and diagnostics.kappa(1.0, 20) == 0.0
  assert diagnostics.kappa(0.8, 5) == pytest.approx(0.36 * 0.8)
  with pytest.raises(ValueError, match="rho"):
    diagnostics.kappa(1.2, 5)



@pytest.mark.parametrize("rho,n", [(0.5, 2), (0.3, 5)])
def test_the_gap_of_a_degree_two_mean_is_its_hermite_term(rho, n):
  """mu(h) = c h_2((h - m) / s), h_2(u) = (u^2 - 1) / sqrt(2), sigma fixed: the expected
  substituted log-density exceeds the ELBO term by (1 - 1/n)(1 - rho^4) c^2 / (2 sigma^2)
  — the degree-2 term of docs/theory.md's sum, whose factor is not kappa."""
  from hermite_vae.ou import correlated_samples  # pylint: disable=g-import-not-at-top
  c, sigma, m, s = 1.3, 0.8, 0.4, 0.7
  h2 = lambda u: (u * u - 1) / np.sqrt(2)
  mu = lambda h: c * h2((h - m) / s)

  @jax.jit
  def gaps(keys):
    def one(key):
      k0, k1, k2 = jax.random.split(key, 3)
      z_above = m + s * jax.random.normal(k0, (4096,))
      z_i = jax.random.normal(k1, (4096,))   # given z_i, independent of z_{i+1}'s noise
      points = correlated_samples(k2, z_above, rho, n, m, s)        # [n, 4096]
      smoothed = layers.gaussian_log_prob(z_i[:, None], mu(points).mean(0)[:, None], sigma)
      original = layers.gaussian_log_prob(z_i[:, None], mu(z_above)[:, None], sigma)
      return jnp.mean(smoothed - original)
    return jax.lax.map(one, keys)

  g = np.asarray(gaps(jax.random.split(jax.random.PRNGKey(4), 200)), np.float64)
  want = (1 - 1 / n) * (1 - rho**4) * c**2 / (2 * sigma**2)
  assert abs(g.mean() - want) < 5 * g.std(ddof=1) / np.sqrt(len(g)) + 1e-3, (g.mean(), want)
  kappa_only = diagnostics.kappa(rho, n) * c**2 / (2 * sigma**2)
  assert abs(g.mean() - kappa_only) > 10 * g.std(ddof=1) / np.sqrt(len(g))


def _hierarchy_grads(model, params, x, keys, rho, n):
  """Per key, the whole hierarchy's loss gradient: the VAE's, and the substitution's at
  (rho, n) (every intermediate generator smoothed)."""
  from hermite_vae.models import terms  # pylint: disable=g-import-not-at-top
  def loss(p, key, smoothing):
    return -jnp.mean(model.apply({"params": p}, x, key, smoothing).elbo)
  smoothing = terms.Smoothing(rho, n)

  @jax.jit
  def run(keys):
    return jax.lax.map(lambda k: (jax.grad(loss)(params, k, None),
                                  jax.grad(loss)(params, k, smoothing)), keys)
  return run(keys)


@pytest.mark.parametrize("skips", [False, True])
def test_one_ou_sample_on_a_whole_hierarchy(skips):
  """The whole loss gradient of a 3-layer hierarchy (every generator smoothed), n = 1,
  rho = 0.3, against the VAE's over 4,000 keys. Without skips it is the VAE's in
  expectation (each smoothed generator reads only z_{i+1}, whose OU sample has its
  posterior law). With skips it is not: p(z_i | z_{i+1}, S[i+2]) reads a state built from
  z_{i+2} ~ q(.|z_{i+1}), which is held while z_{i+1} is replaced by a sample correlated
  with it only through rho (docs/theory.md, "Skip connections"): the mean gradients
  differ."""
  from hermite_vae.models.mlp import MLPHierarchicalVAE  # pylint: disable=g-import-not-at-top
  model = MLPHierarchicalVAE((3, 3, 2), (12, 10, 8), num_pixels=8, skip_connections=skips,
                             initialization="lecun_normal", skip_init="joint")
  x = (jax.random.uniform(jax.random.PRNGKey(0), (16, 8)) < 0.5).astype(jnp.float32)
  params = model.init(jax.random.PRNGKey(1), x, jax.random.PRNGKey(2))["params"]
  keys = jax.random.split(jax.random.PRNGKey(3), 4000)
  g_vae, g_sub = _hierarchy_grads(model, params, x, keys, 0.3, 1)
  diff = jax.tree_util.tree_map(lambda a, b: a - b, g_sub, g_vae)
  z = _z_scores(diff)
  if skips:
    assert np.abs(z).max() > 2 * _threshold(z.size), np.abs(z).max()
  else:
    assert np.abs(z).max() < _threshold(z.size), np.abs(z).max()


def _skip_state_cov(g, t, m, s, nodes=80):
  """E[S eps0] for S = tanh(g (m + s eps0) + t eta), eps0, eta ~ N(0, 1), by Gauss-Hermite
  quadrature (exact to float64 rounding at this smoothness)."""
  x, w = np.polynomial.hermite_e.hermegauss(nodes)
  w = w / w.sum()
  e0, et = np.meshgrid(x, x, indexing="ij")
  return float(np.sum(w[:, None] * w[None, :] * np.tanh(g * (m + s * e0) + t * et) * e0))


@pytest.mark.parametrize("rho,n,c", [(0.5, 1, 1.5), (0.5, 3, 1.5), (0.8, 2, 1.5),
                                     (0.5, 3, -1.5)])
def test_the_gap_of_a_linear_layer_with_a_skip_state(rho, n, c):
  """p(z_i | z_{i+1}, S) = N(a z_{i+1} + c S + b, sigma), S = tanh(g z_{i+2} + ...) with
  z_{i+2} drawn from the original z_{i+1} and held while z_{i+1} is replaced by its OU
  samples: the expected substituted log-density exceeds the ELBO term by
  [kappa a^2 s^2 + 2 (1 - rho) a c s E(S eps0)] / (2 sigma^2) (docs/theory.md, "Skip
  connections"), exactly; the kappa term alone (0 at n = 1) is rejected. c < 0: the state's
  term changes sign with a c E(S eps0)."""
  from hermite_vae.ou import correlated_samples  # pylint: disable=g-import-not-at-top
  a, b, sigma, m, s, g, t = 1.2, 0.3, 0.9, 0.4, 0.7, 1.3, 0.6

  @jax.jit
  def gaps(keys):
    def one(key):
      k0, k1, k2, k3 = jax.random.split(key, 4)
      eps0 = jax.random.normal(k0, (4096,))
      z_above = m + s * eps0
      state = jnp.tanh(g * z_above + t * jax.random.normal(k3, (4096,)))
      z_i = jax.random.normal(k1, (4096,))   # given z_i, independent of z_{i+1}'s noise
      points = correlated_samples(k2, z_above, rho, n, m, s)        # [n, 4096]
      smoothed = layers.gaussian_log_prob(z_i[:, None],
                                          (a * points.mean(0) + c * state + b)[:, None], sigma)
      original = layers.gaussian_log_prob(z_i[:, None], (a * z_above + c * state + b)[:, None],
                                          sigma)
      return jnp.mean(smoothed - original)
    return jax.lax.map(one, keys)

  d = np.asarray(gaps(jax.random.split(jax.random.PRNGKey(5), 200)), np.float64)
  se = d.std(ddof=1) / np.sqrt(len(d))
  kappa_term = diagnostics.kappa(rho, n) * a**2 * s**2 / (2 * sigma**2)
  skip_term = (1 - rho) * a * c * s * _skip_state_cov(g, t, m, s) / sigma**2
  want = kappa_term + skip_term
  assert abs(d.mean() - want) < 5 * se + 1e-3, (d.mean(), want)
  assert abs(d.mean() - kappa_term) > 10 * se, (d.mean(), kappa_term, se)
