"""What the substitution gradient follows in expectation (docs/theory.md), checked by
Monte Carlo over many keys on a single generator layer written with ``smooth``:

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
  assert np.abs(z1).max() < 4.5, np.abs(z1).max()          # ~40 components: no outlier
  _, g5 = _paired_grads(p, keys, rho, 5)
  z5 = _z_scores(jax.tree_util.tree_map(lambda a, b: a - b, g5, g_vae))
  assert np.abs(z5).max() > 10, np.abs(z5).max()           # n = 5: another expectation


def _linear_surrogate(p, rho, n):
  """The expected log N(z_i; a m + b + a s xi, sigma) with Var xi = c = rho^2 + (1 -
  rho^2)/n, in closed form: the ELBO term plus kappa a^2 s^2 / (2 sigma^2)."""
  s, sigma = jnp.exp(p["log_s"]), jnp.exp(p["log_sigma"])
  c = rho**2 + (1 - rho**2) / n
  mean = p["a"] * p["m"] + p["b"]
  return jnp.sum(-((Z_I - mean) ** 2 + p["a"] ** 2 * s**2 * c) / (2 * sigma**2)
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
      return smooth(fn, rho, n, outer=_log_normal)(k2, z, q["m"], s)
    return jax.grad(sub)(p)
  return jax.lax.map(one, keys)


@pytest.mark.parametrize("rho,n", [(0.5, 2), (0.8, 5), (0.3, 20), (0.9, 1)])
def test_linear_gaussian_mean_gradient_is_that_of_elbo_plus_the_kappa_discount(rho, n):
  r = np.random.default_rng(1)
  p = {"a": jnp.asarray(r.normal(size=D_OUT) * 1.5, jnp.float32),
       "b": jnp.asarray(r.normal(size=D_OUT), jnp.float32),
       "log_sigma": jnp.asarray(np.log([0.4, 0.7]), jnp.float32),
       "m": jnp.asarray(r.normal(size=(B, D_OUT)), jnp.float32),
       "log_s": jnp.asarray(np.log(r.uniform(0.5, 1.5, size=(B, D_OUT))), jnp.float32)}
  keys = jax.random.split(jax.random.PRNGKey(2), 20000)
  g = _linear_sub_grads(p, keys, rho, n)
  want = jax.grad(_linear_surrogate)(p, rho, n)
  z = _z_scores(jax.tree_util.tree_map(lambda a, w: a - w[None], g, want))
  assert np.abs(z).max() < 4.5, (rho, n, np.abs(z).max())
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
