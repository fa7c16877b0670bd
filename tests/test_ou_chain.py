"""`smooth(...)(..., after=y)`: chaining smoothed calls changes memory, never numbers.

A deep HVAE smooths every intermediate generator layer; each smoothed call evaluates its
n OU samples in the backward pass. Without a data dependency between the calls XLA may
evaluate the samples of several layers at once; ``after`` orders them (this call's
backward pass, then the Monte-Carlo evaluations of the call that produced ``after``).
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.lab.flops import compiled_memory_mib
from hermite_vae import smooth
from hermite_vae.models.layers import gaussian_log_prob

KEY = jax.random.PRNGKey(0)
BATCH, DIM, HIDDEN, NUM_LAYERS = 64, 16, 256, 3


def _params(num_layers=NUM_LAYERS, hidden=HIDDEN):
  keys = jax.random.split(KEY, 2 * num_layers)
  return [(jax.random.normal(keys[2 * i], (DIM, hidden)) / 4,
           jax.random.normal(keys[2 * i + 1], (hidden, 2 * DIM)) / 16)
          for i in range(num_layers)]


def _zs(num_layers=NUM_LAYERS):
  return [jax.random.normal(jax.random.fold_in(KEY, 100 + i), (BATCH, DIM))
          for i in range(num_layers + 1)]


def _generator(w):
  w1, w2 = w

  def fn(h):
    out = jnp.tanh(jnp.tanh(h @ w1) @ w2)
    return out[:, :DIM], jnp.exp(out[:, DIM:])
  return fn


def _objective(chain, outer, n=8, sequential=False):
  """sum_i log N(z_i; mu_i(z_{i+1}), sigma_i(z_{i+1})), every layer smoothed."""
  def f(params, zs):
    total, after = 0.0, (() if chain else None)
    for i, w in enumerate(params):
      density = (lambda z_i: lambda p: gaussian_log_prob(z_i, *p))(zs[i])
      smoothed = smooth(_generator(w), 0.9, n, outer=density if outer else None,
                        sequential=sequential)
      out = smoothed(jax.random.fold_in(KEY, i), zs[i + 1], 0.5 * zs[i + 1],
                     jnp.full_like(zs[i + 1], 0.8), after=after)
      log_p = out if outer else density(out)
      total = total + jnp.sum(log_p)
      after = log_p if chain else None
    return total
  return f


@pytest.mark.parametrize("outer,sequential", [(True, False), (False, False), (True, True)])
def test_after_changes_neither_value_nor_gradient(outer, sequential):
  params, zs = _params(hidden=32), _zs()
  grad = lambda chain: jax.jit(jax.value_and_grad(
      _objective(chain, outer, n=4, sequential=sequential), argnums=(0, 1)))(params, zs)
  (v_plain, g_plain), (v_chain, g_chain) = grad(False), grad(True)
  assert v_chain == v_plain
  for a, b in zip(jax.tree_util.tree_leaves(g_chain), jax.tree_util.tree_leaves(g_plain)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)  # XLA may fuse differently


def _temp_mib(f, params, zs):
  mem = compiled_memory_mib(jax.jit(jax.grad(f)).lower(params, zs).compile())
  if mem is None:
    pytest.skip(f"{jax.devices()[0].platform} gives no XLA memory analysis")
  return mem["temp_mib"]


@pytest.mark.parametrize("outer", [True, False])
def test_after_keeps_one_layer_of_samples_live(outer):
  """Three chained layers need little more scratch than one; unchained, XLA (CPU)
  evaluates the layers' samples together."""
  one = _temp_mib(_objective(False, outer), _params(1), _zs(1))
  plain = _temp_mib(_objective(False, outer), _params(), _zs())
  chained = _temp_mib(_objective(True, outer), _params(), _zs())
  assert chained < 1.6 * one, (one, chained)
  assert chained < 0.8 * plain, (plain, chained)


@pytest.mark.parametrize("after", ["not an array", jnp.arange(3), [jnp.ones(2), 1]])
def test_after_must_be_floating_arrays(after):
  with pytest.raises(ValueError, match="after must be None or a pytree of floating"):
    smooth(jnp.sin, 0.5, 2)(KEY, jnp.ones(3), after=after)
