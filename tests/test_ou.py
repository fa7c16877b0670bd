"""Properties of the OU operator (paper §2.1–2.2, eq. 3–5) and of `smooth`."""
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hermite_vae import correlated_samples, ou_expectation, smooth
from hermite_vae.hermite import hermite, hermite_coefficient

KEY = jax.random.PRNGKey(0)


def _mc_check(values, expected, n_sigma=5.0, floor=1e-6):
  """Asserts mean(values) == expected within n_sigma standard errors."""
  values = np.asarray(values, np.float64)
  se = values.std(axis=0) / math.sqrt(values.shape[0])
  err = np.abs(values.mean(axis=0) - expected)
  assert np.all(err <= n_sigma * se + floor), (err, se)


# ----------------------------------------------------------------- sampler

def test_correlated_samples_moments_eq4():
  loc, scale, rho, n = 0.7, 2.0, 0.6, 200_000
  z = jnp.asarray(1.3)
  zs = np.asarray(correlated_samples(KEY, z, rho, n, loc=loc, scale=scale), np.float64)
  assert zs.shape == (n,)
  # z'|z ~ N(rho z + (1-rho) loc, scale^2 (1 - rho^2)).
  mean = rho * 1.3 + (1 - rho) * loc
  sd = scale * math.sqrt(1 - rho**2)
  assert abs(zs.mean() - mean) < 5 * sd / math.sqrt(n)
  assert abs(zs.std() / sd - 1) < 0.01


def test_correlated_samples_preserve_marginal():
  # If z ~ N(loc, scale^2) then z' ~ N(loc, scale^2) with corr(z, z') = rho.
  loc, scale, rho, m = -1.0, 0.5, 0.8, 200_000
  k1, k2 = jax.random.split(KEY)
  z = loc + scale * jax.random.normal(k1, (m,))
  zp = np.asarray(correlated_samples(k2, z, rho, 1, loc=loc, scale=scale)[0])
  assert abs(zp.mean() - loc) < 0.01
  assert abs(zp.std() - scale) < 0.01
  assert abs(np.corrcoef(np.asarray(z), zp)[0, 1] - rho) < 0.01


def test_correlated_samples_broadcast_values():
  """loc [4] broadcasts along the last axis and scale [3, 1] along the first, in eq. 4's
  formula (a loc or scale applied on the wrong axis, or an unscaled noise, fails)."""
  rho, n = 0.5, 2
  z = jnp.arange(12.0).reshape(3, 4) / 10
  loc = jnp.array([1.0, -2.0, 3.0, 0.5])
  scale = jnp.array([[0.1], [1.0], [10.0]])
  out = correlated_samples(KEY, z, rho, n, loc=loc, scale=scale)
  assert out.shape == (n, 3, 4)
  eps = jax.random.normal(KEY, (n, 3, 4))      # eps_1..eps_n for the broadcast shape
  want = rho * z + (1 - rho) * loc[None, :] + scale * np.sqrt(1 - rho**2) * eps
  np.testing.assert_allclose(out, want, rtol=1e-6, atol=1e-6)
  # The noise of row r has scale r's size: rows 0 and 2 differ by 100x in spread.
  spread = jnp.std(out - (rho * z + (1 - rho) * loc), axis=(0, 2))
  assert float(spread[2]) > 20 * float(spread[0])


# ------------------------------------------- Hermite eigenfunctions, eq. 3

@pytest.mark.parametrize("k", [1, 2, 3, 4])
@pytest.mark.parametrize("rho", [0.0, 0.5, 0.9, 1.0])
def test_hermite_polynomials_are_eigenfunctions(k, rho):
  n = 100_000
  for i, z0 in enumerate([-1.5, 0.3, 2.0]):
    key = jax.random.fold_in(KEY, 10 * k + i)
    z = jnp.asarray(z0)
    samples = jax.vmap(lambda p: hermite(k, p))(correlated_samples(key, z, rho, n))
    estimate = ou_expectation(lambda p: hermite(k, p), rho, n)(key, z)
    # ou_expectation is exactly the mean of fn over the sampler's points.
    np.testing.assert_allclose(estimate, samples.mean(), rtol=1e-4, atol=1e-5)
    _mc_check(samples, rho**k * float(hermite(k, z)))


def test_hermite_orthonormal():
  z = jax.random.normal(KEY, (400_000,))
  gram = np.array([[np.mean(hermite(i, z) * hermite(j, z)) for j in range(5)]
                   for i in range(5)])
  np.testing.assert_allclose(gram, np.eye(5), atol=0.05)


# ------------------------------------------------------ Propositions 1, 2

def _f(z):
  return jnp.sin(2 * z) + z**2 + jnp.exp(0.5 * z)


def test_prop1_expectation_preserved():
  # E[f] in closed form: E sin(2z)=0, E z^2=1, E exp(z/2)=exp(1/8).
  expected = 1.0 + math.exp(1 / 8)
  m = 100_000
  z = jax.random.normal(KEY, (m,))
  for rho in [0.0, 0.3, 0.9]:
    u = jax.vmap(lambda zi, ki: ou_expectation(_f, rho, 4)(ki, zi))(
        z, jax.random.split(jax.random.fold_in(KEY, 1), m))
    _mc_check(u, expected)


def test_prop2_rho_one_is_identity_values_and_gradients():
  z = jnp.array([0.3, -1.2, 2.0])
  f = lambda p: jnp.sum(jnp.tanh(p) * p**2)
  est = ou_expectation(f, 1.0, 7)
  assert float(est(KEY, z)) == pytest.approx(float(f(z)), rel=1e-6)
  np.testing.assert_allclose(jax.grad(lambda p: est(KEY, p))(z), jax.grad(f)(z), rtol=1e-6)
  sm = smooth(f, 1.0, 7)
  np.testing.assert_allclose(jax.grad(lambda p: sm(KEY, p))(z), jax.grad(f)(z), rtol=1e-6)


def test_prop2_rho_zero_is_expectation_independent_of_z():
  est = ou_expectation(_f, 0.0, 200_000)
  a = est(KEY, jnp.asarray(-3.0))
  b = est(KEY, jnp.asarray(5.0))
  assert float(a) == float(b)  # the points do not depend on z at all
  samples = jax.vmap(_f)(jax.random.normal(KEY, (200_000,)))
  _mc_check(samples, 1.0 + math.exp(1 / 8))
  assert jax.grad(lambda z: est(KEY, z))(jnp.asarray(0.7)) == 0.0


# ------------------------------------------------------------------ eq. 5

COEFFS = {(1, 0): 1.0, (0, 2): 0.7, (1, 1): 0.4, (3, 0): 0.3, (0, 0): 0.5}


def _f_multi(z):  # z: [2]
  return sum(c * hermite(a, z[0]) * hermite(b, z[1]) for (a, b), c in COEFFS.items())


def test_eq5_variance_of_smoothed_function():
  rho, n, m = 0.7, 128, 20_000
  expected = sum(rho**(2 * (a + b)) * c**2 for (a, b), c in COEFFS.items() if a + b > 0)
  z = jax.random.normal(KEY, (m, 2))
  keys = jax.random.split(jax.random.fold_in(KEY, 3), m)
  u = np.asarray(jax.vmap(lambda zi, ki: ou_expectation(_f_multi, rho, n)(ki, zi))(z, keys),
                 np.float64)
  # The MC estimate adds E_z Var(f(z')|z)/n <= Var(f)/n to the variance; remove it.
  var_f = sum(c**2 for (a, b), c in COEFFS.items() if a + b > 0)
  var_u = u.var() - (var_f - expected) / n
  centered = (u - u.mean())**2
  se = centered.std() / math.sqrt(m)
  assert abs(var_u - expected) < 5 * se + 1e-3, (var_u, expected, se)
  assert var_u < var_f  # variance reduction
  # The coefficients themselves: U_rho multiplies f_hat(alpha) by rho^|alpha|.
  zz = jax.random.normal(jax.random.fold_in(KEY, 4), (m, 2))
  smoothed = lambda batch: jax.vmap(lambda p, k: ou_expectation(_f_multi, rho, n)(k, p))(
      batch, jax.random.split(KEY, batch.shape[0]))
  for (a, b), c in COEFFS.items():
    got = float(hermite_coefficient(smoothed, (a, b), zz))
    assert abs(got - rho**(a + b) * c) < 0.06, ((a, b), got)


# ---------------------------------------------------------------- semigroup

def test_semigroup_closed_form():
  # f(z) = exp(a z) has U_r f(z) = exp(a r z + a^2 (1 - r^2) / 2).
  a, rho, sigma, n_in, n_out = 0.8, 0.7, 0.6, 64, 4096
  f = lambda p: jnp.exp(a * p)
  closed = lambda r, z: math.exp(a * r * z + a**2 * (1 - r**2) / 2)
  inner_key, outer_key = jax.random.split(KEY)
  inner_keys = jax.random.split(inner_key, n_out)
  inner = lambda k, p: ou_expectation(f, sigma, n_in)(k, p)  # U_sigma f at p
  for z0 in [-1.0, 0.5]:
    z = jnp.asarray(z0)
    # U_rho (U_sigma f)(z): outer OU points, an independent inner estimate at each.
    nested = jnp.mean(jax.vmap(inner)(inner_keys, correlated_samples(outer_key, z, rho, n_out)))
    direct_points = correlated_samples(outer_key, z, rho * sigma, 200_000)
    direct = jax.vmap(f)(direct_points)
    _mc_check(direct, closed(rho * sigma, z0))
    # Nested estimate vs the closed form of U_{rho sigma}: SE from direct samples.
    se = float(direct.std()) / math.sqrt(n_out)
    assert abs(float(nested) - closed(rho * sigma, z0)) < 5 * se


# ------------------------------------------------------- custom_vjp semantics

def _net(params, z):
  h = jnp.tanh(z @ params["w1"] + params["b1"])
  return {"out": h @ params["w2"], "aux": jnp.sum(h**2)}


PARAMS = {
    "w1": jax.random.normal(jax.random.PRNGKey(1), (3, 8)) / 2,
    "b1": jnp.linspace(-1, 1, 8),
    "w2": jax.random.normal(jax.random.PRNGKey(2), (8, 2)),
}


def _loss(tree):
  # Linear in fn's outputs, so that d loss / d output does not depend on where it is
  # evaluated: smooth feeds it fn(z), ou_expectation the MC mean (see the vjp test).
  return jnp.sum(tree["out"] * jnp.array([1.5, -0.5])) + tree["aux"]


def test_primal_is_bit_equal_to_fn():
  z = jax.random.normal(KEY, (5, 3))
  fn = lambda p: _net(PARAMS, p)
  sm = smooth(fn, 0.3, 5)
  # Eager against eager, compiled against compiled (a compiled program may fuse
  # differently from op-by-op execution).
  for got, want in [(sm(KEY, z), fn(z)), (jax.jit(sm)(KEY, z), jax.jit(fn)(z))]:
    for k in ("out", "aux"):
      np.testing.assert_array_equal(got[k], want[k])


@pytest.mark.parametrize("sequential", [False, True])
@pytest.mark.parametrize("with_loc_scale", [False, True])
def test_gradient_is_gradient_of_mc_estimator(with_loc_scale, sequential):
  z = jax.random.normal(KEY, (4, 3))
  loc = jnp.linspace(-1, 1, 3)
  scale = jnp.array([0.5, 1.5, 2.0])
  args = (z, loc, scale) if with_loc_scale else (z,)

  def via(estimator, params, *a):
    return _loss(estimator(lambda p: _net(params, p), 0.6, 6)(KEY, *a))

  argnums = tuple(range(len(args) + 1))
  smooth_ = lambda f, rho, n: smooth(f, rho, n, sequential=sequential)
  g_smooth = jax.grad(lambda *a: via(smooth_, *a), argnums)(PARAMS, *args)
  g_mc = jax.grad(lambda *a: via(ou_expectation, *a), argnums)(PARAMS, *args)
  for gs, gm in zip(jax.tree_util.tree_leaves(g_smooth), jax.tree_util.tree_leaves(g_mc)):
    np.testing.assert_allclose(gs, gm, rtol=1e-5, atol=1e-6)
  # and it differs from the plain gradient (rho < 1 really smooths).
  g_plain = jax.grad(lambda params: _loss(_net(params, z)))(PARAMS)
  assert not np.allclose(g_smooth[0]["w1"], g_plain["w1"], atol=1e-4)


def test_vjp_uses_primal_cotangent_and_mc_pullback():
  # For any cotangent g: vjp of smooth == vjp of the MC estimator, while the primal is fn(z).
  z = jax.random.normal(KEY, (4, 3))
  fn = lambda params, p: _net(params, p)
  y_s, vjp_s = jax.vjp(lambda pr, p: smooth(lambda u: fn(pr, u), 0.4, 3)(KEY, p), PARAMS, z)
  y_m, vjp_m = jax.vjp(lambda pr, p: ou_expectation(lambda u: fn(pr, u), 0.4, 3)(KEY, p),
                       PARAMS, z)
  np.testing.assert_array_equal(y_s["out"], fn(PARAMS, z)["out"])
  assert not np.allclose(y_s["out"], y_m["out"])
  g = {"out": jax.random.normal(KEY, (4, 2)), "aux": jnp.float32(0.3)}
  for a, b in zip(jax.tree_util.tree_leaves(vjp_s(g)), jax.tree_util.tree_leaves(vjp_m(g))):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_gradient_under_jit_and_vmap_and_traced_rho():
  zs = jax.random.normal(KEY, (3, 4, 3))
  keys = jax.random.split(KEY, 3)

  def per_example(params, key, z, rho):
    return _loss(smooth(lambda p: _net(params, p), rho, 5)(key, z))

  def per_example_mc(params, key, z, rho):
    return _loss(ou_expectation(lambda p: _net(params, p), rho, 5)(key, z))

  def total(f, params, rho):
    return jnp.sum(jax.vmap(f, in_axes=(None, 0, 0, None))(params, keys, zs, rho))

  g_jit = jax.jit(jax.grad(lambda p, r: total(per_example, p, r)))
  for rho in (0.2, 0.8):  # traced rho: one compilation serves both values
    got = g_jit(PARAMS, jnp.float32(rho))
    want = jax.grad(lambda p: total(per_example_mc, p, rho))(PARAMS)
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  assert g_jit._cache_size() == 1


class _SmoothedDense(nn.Module):
  rho: float

  @nn.compact
  def __call__(self, key, z):
    dense = nn.Dense(4, name="dense")
    return smooth(lambda u: jnp.tanh(dense(u)), self.rho, 5)(key, z)


def test_inside_flax_module_apply():
  z = jax.random.normal(KEY, (2, 3))
  model = _SmoothedDense(rho=0.5)
  variables = model.init(KEY, KEY, z)
  params = variables["params"]
  out = model.apply(variables, KEY, z)
  plain = jnp.tanh(nn.Dense(4).apply({"params": params["dense"]}, z))
  np.testing.assert_array_equal(out, plain)
  c = jnp.arange(4.0)  # a loss linear in the output (see _loss)
  g = jax.grad(lambda p: jnp.sum(model.apply({"params": p}, KEY, z) * c))(params)
  g_mc = jax.grad(lambda p: jnp.sum(ou_expectation(
      lambda u: jnp.tanh(nn.Dense(4).apply({"params": p["dense"]}, u)), 0.5, 5)(KEY, z) * c))(
          params)
  for a, b in zip(jax.tree_util.tree_leaves(g), jax.tree_util.tree_leaves(g_mc)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------- bad inputs

@pytest.mark.parametrize("rho", [-0.1, 1.5, float("nan"), "0.5", [0.5, 0.5]])
def test_bad_rho(rho):
  for build in (smooth, ou_expectation):
    with pytest.raises(ValueError, match="rho"):
      build(jnp.sin, rho, 5)
  with pytest.raises(ValueError, match="rho"):
    correlated_samples(KEY, jnp.zeros(2), rho, 5)


@pytest.mark.parametrize("n", [0, -3, 2.5, True, None])
def test_bad_n(n):
  for build in (smooth, ou_expectation):
    with pytest.raises(ValueError, match=f"n=.*{n}"):
      build(jnp.sin, 0.5, n)


def test_non_floating_z():
  for build in (smooth, ou_expectation):
    with pytest.raises(ValueError, match="z must be a floating.*int32"):
      build(jnp.sin, 0.5, 2)(KEY, jnp.arange(3))


def test_inconsistent_shapes():
  with pytest.raises(ValueError, match="broadcast"):
    smooth(jnp.sin, 0.5, 2)(KEY, jnp.zeros(3), jnp.zeros(4), jnp.ones(3))
