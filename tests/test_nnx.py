"""``smooth`` from Flax NNX: a smoothed Gaussian layer as an ``nnx.Module`` whose
parameters ``fn`` closes over (the README's example). Value: the unsmoothed layer's;
``nnx.grad`` under ``nnx.jit``: the hand-written substituted gradient."""
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from hermite_vae import correlated_samples, smooth


def log_normal(z, mu, sigma):
  return jnp.sum(-0.5 * ((z - mu) / sigma) ** 2 - jnp.log(sigma) - 0.5 * jnp.log(2 * jnp.pi),
                 -1)


class SmoothedGaussian(nnx.Module):
  """log p(z_i | z_{i+1}): value of the original layer, gradient of the substituted one."""

  def __init__(self, d_above, d, hidden, *, rho=0.9, n=5, rngs):
    self.hidden = nnx.Linear(d_above, hidden, rngs=rngs)
    self.mu = nnx.Linear(hidden, d, rngs=rngs)
    self.sigma = nnx.Linear(hidden, d, rngs=rngs)
    self.rho, self.n = rho, n

  def mu_sigma(self, u):                                # z_{i+1} -> (mu_i, sigma_i)
    h = jnp.tanh(self.hidden(u))
    return self.mu(h), jax.nn.softplus(self.sigma(h)) + 1e-3

  def __call__(self, key, z_i, z_above, loc, scale):
    return smooth(self.mu_sigma, self.rho, self.n, outer=lambda p: log_normal(z_i, *p))(
        key, z_above, loc, scale)


KEY = jax.random.PRNGKey(0)
LOC = 0.3 * jax.random.normal(jax.random.PRNGKey(1), (8, 4))
SCALE = jnp.full((8, 4), 0.7)
Z_ABOVE = LOC + SCALE * jax.random.normal(jax.random.PRNGKey(2), (8, 4))
Z_I = jax.random.normal(jax.random.PRNGKey(3), (8, 3))


def _reference_grads(model, rho, n):
  """Gradient of log N(z_i; Û mu, Û sigma), Û the mean over the OU points smooth draws
  (eq. 4, the same key), written with plain jax.grad over the module's state."""
  graphdef, params = nnx.split(model, nnx.Param)

  def substituted(params):
    m = nnx.merge(graphdef, params)
    points = correlated_samples(KEY, Z_ABOVE, rho, n, LOC, SCALE)       # [n, 8, 4]
    mus, sigmas = jax.vmap(m.mu_sigma)(points)
    return jnp.sum(log_normal(Z_I, mus.mean(0), sigmas.mean(0)))
  return jax.grad(substituted)(params)


def test_nnx_smoothed_layer_value_and_gradient():
  model = SmoothedGaussian(4, 3, 16, rho=0.8, n=5, rngs=nnx.Rngs(0))

  @nnx.jit
  def value_and_grad(model):
    return nnx.value_and_grad(lambda m: jnp.sum(m(KEY, Z_I, Z_ABOVE, LOC, SCALE)))(model)

  value, grads = value_and_grad(model)
  original = jnp.sum(log_normal(Z_I, *model.mu_sigma(Z_ABOVE)))
  np.testing.assert_allclose(value, original, rtol=1e-6)
  want = _reference_grads(model, 0.8, 5)
  got, want = jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(want)
  assert len(got) == len(want) == 6
  for g, w in zip(got, want):
    np.testing.assert_allclose(g, w, rtol=2e-5, atol=1e-6)
  # The smoothing is not a no-op here: the plain gradient differs.
  plain = nnx.grad(lambda m: jnp.sum(log_normal(Z_I, *m.mu_sigma(Z_ABOVE))))(model)
  diff = max(float(jnp.max(jnp.abs(a - b))) for a, b in
             zip(jax.tree_util.tree_leaves(plain), got))
  assert diff > 1e-2


def test_nnx_smoothed_layer_at_rho_1_is_the_plain_gradient():
  model = SmoothedGaussian(4, 3, 16, rho=1.0, n=3, rngs=nnx.Rngs(1))
  got = nnx.jit(nnx.grad(lambda m: jnp.sum(m(KEY, Z_I, Z_ABOVE, LOC, SCALE))))(model)
  plain = nnx.grad(lambda m: jnp.sum(log_normal(Z_I, *m.mu_sigma(Z_ABOVE))))(model)
  for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(plain)):
    np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
