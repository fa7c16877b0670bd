"""The substitution form of `smooth` (``outer=g``): value g(fn(z)), gradient of g(Û fn(z)).

This is the paper's Hermite VAE gradient (§2.2: N(z_i|mu_i, sigma_i) is substituted by
N(z_i|U_rho mu_i, U_rho sigma_i) when computing gradients).
"""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hermite_vae import ou_expectation, smooth
from hermite_vae.models.layers import gaussian_log_prob

KEY = jax.random.PRNGKey(0)
# Elementwise linear mean and log-linear scale: U_rho of both is known in closed form.
A = jnp.array([1.5, -0.7, 0.9])
B = jnp.array([0.2, 0.1, -0.3])
C = jnp.array([0.4, -0.6, 0.3])
Z_I = jnp.array([0.3, -0.5, 1.1])      # the sample scored by log N
Z = jnp.array([0.2, 0.9, -0.4])        # z_{i+1}, drawn from N(LOC, SCALE^2)
LOC = jnp.array([0.1, 0.5, -0.2])
SCALE = jnp.array([0.6, 0.4, 0.8])
ARGS = (A, B, C, Z_I, Z, LOC, SCALE)
NAMES = ("a", "b", "c", "z_i", "z", "loc", "scale")


def _mean_scale(a, b, c):
  return lambda h: (a * h + b, jnp.exp(c * h))


def _substituted(rho, n, sequential=False, outer_form=True):
  def f(a, b, c, z_i, z, loc, scale):
    density = lambda p: gaussian_log_prob(z_i, *p)
    if outer_form:
      return smooth(_mean_scale(a, b, c), rho, n, outer=density,
                    sequential=sequential)(KEY, z, loc, scale)
    return density(smooth(_mean_scale(a, b, c), rho, n, sequential=sequential)(
        KEY, z, loc, scale))
  return f


def _closed_form(rho):
  """log N(z_i; U_rho mu, U_rho sigma) with z' ~ N(m, s^2) from eq. 4:
  U mu = a m + b, U sigma = exp(c m + c^2 s^2 / 2)."""
  def f(a, b, c, z_i, z, loc, scale):
    m = rho * z + (1 - rho) * loc
    s = scale * jnp.sqrt(1 - rho**2)
    return gaussian_log_prob(z_i, a * m + b, jnp.exp(c * m + 0.5 * (c * s) ** 2))
  return f


def _grads(f):
  return jax.grad(f, argnums=tuple(range(len(ARGS))))(*ARGS)


def test_matches_closed_form_at_large_n():
  # The sequential schedule is checked against this one exactly (same noise, n = 6) in
  # test_gradient_is_that_of_g_of_the_mc_estimate; 200,000 scanned samples add nothing.
  rho = 0.7
  got = _grads(_substituted(rho, 200_000))
  want = _grads(_closed_form(rho))
  for name, g, w in zip(NAMES, got, want):
    np.testing.assert_allclose(g, w, rtol=0.01, atol=2e-3, err_msg=name)


def test_value_is_bit_equal_to_the_original():
  f = _substituted(0.3, 7)
  original = gaussian_log_prob(Z_I, A * Z + B, jnp.exp(C * Z))
  np.testing.assert_array_equal(f(*ARGS), original)
  np.testing.assert_array_equal(jax.jit(f)(*ARGS), jax.jit(
      lambda a, b, c, z_i, z: gaussian_log_prob(z_i, a * z + b, jnp.exp(c * z)))(*ARGS[:5]))


def test_rho_one_is_the_plain_gradient():
  plain = _grads(lambda a, b, c, z_i, z, loc, scale:
                 gaussian_log_prob(z_i, a * z + b, jnp.exp(c * z)))
  got = _grads(_substituted(1.0, 5))
  for name, g, w in zip(NAMES, got, plain):
    np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-7, err_msg=name)


@pytest.mark.parametrize("sequential", [False, True])
def test_gradient_is_that_of_g_of_the_mc_estimate(sequential):
  # Same noise: exactly the gradient of g(ou_expectation(fn)), for every input.
  rho, n = 0.6, 6
  got = _grads(_substituted(rho, n, sequential))

  def reference(a, b, c, z_i, z, loc, scale):
    mean = ou_expectation(_mean_scale(a, b, c), rho, n)(KEY, z, loc, scale)
    return gaussian_log_prob(z_i, *mean)

  for name, g, w in zip(NAMES, got, _grads(reference)):
    np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6, err_msg=name)


def test_differs_from_the_jacobian_form():
  # g is nonlinear in (mu, sigma): differentiating it at the original value (Jacobian
  # form) is another gradient, far from the closed form of the substitution.
  rho = 0.5
  substituted = _grads(_substituted(rho, 100_000))
  jacobian = _grads(_substituted(rho, 100_000, outer_form=False))
  closed = _grads(_closed_form(rho))
  for name in ("a", "c", "z"):
    i = NAMES.index(name)
    np.testing.assert_allclose(substituted[i], closed[i], rtol=0.02, atol=3e-3)
    assert not np.allclose(jacobian[i], closed[i], rtol=0.05, atol=1e-2), name


def test_jit_vmap_and_traced_rho():
  zs = jax.random.normal(KEY, (4, 3))
  keys = jax.random.split(KEY, 4)

  def total(a, rho, use_outer):
    def one(key, z):
      fn = _mean_scale(a, B, C)
      density = lambda p: gaussian_log_prob(Z_I, *p)
      if use_outer:
        return smooth(fn, rho, 5, outer=density)(key, z, LOC, SCALE)
      return density(ou_expectation(fn, rho, 5)(key, z, LOC, SCALE))
    return jnp.sum(jax.vmap(one)(keys, zs))

  g_jit = jax.jit(jax.grad(lambda a, r: total(a, r, True)))
  for rho in (0.2, 0.8):
    np.testing.assert_allclose(g_jit(A, jnp.float32(rho)),
                               jax.grad(lambda a: total(a, rho, False))(A),
                               rtol=1e-5, atol=1e-6)
  assert g_jit._cache_size() == 1


class _SubstitutedGaussian(nn.Module):
  """A Flax layer h -> (mu, sigma) scored at z_i through the substitution."""

  @nn.compact
  def __call__(self, key, z_i, h, loc, scale):
    dense_mu, dense_sigma = nn.Dense(3, name="mu"), nn.Dense(3, name="sigma")
    fn = lambda u: (dense_mu(jnp.tanh(u)), jax.nn.softplus(dense_sigma(jnp.tanh(u))))
    return smooth(fn, 0.5, 4, outer=lambda p: gaussian_log_prob(z_i, *p))(
        key, h, loc, scale)


def test_flax_parameters_and_the_scored_sample_get_gradients():
  model = _SubstitutedGaussian()
  h = jax.random.normal(KEY, (2, 3))
  variables = model.init(KEY, KEY, Z_I, h, LOC, SCALE)

  def loss(params, z_i):
    return jnp.sum(model.apply({"params": params}, KEY, z_i, h, LOC, SCALE))

  def reference(params, z_i):
    def fn(u):
      mu = nn.Dense(3).apply({"params": params["mu"]}, jnp.tanh(u))
      sigma = jax.nn.softplus(nn.Dense(3).apply({"params": params["sigma"]}, jnp.tanh(u)))
      return mu, sigma
    return jnp.sum(gaussian_log_prob(z_i, *ou_expectation(fn, 0.5, 4)(KEY, h, LOC, SCALE)))

  got = jax.grad(loss, argnums=(0, 1))(variables["params"], Z_I)
  want = jax.grad(reference, argnums=(0, 1))(variables["params"], Z_I)
  for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  assert float(jnp.abs(got[1]).sum()) > 0


def test_outer_must_be_callable():
  with pytest.raises(ValueError, match="outer"):
    smooth(jnp.sin, 0.5, 2, outer=3.0)
