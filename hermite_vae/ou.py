"""The Ornstein–Uhlenbeck (OU) operator U_rho of the paper (§2.1, eq. 3–5).

Three public pieces, from most to least primitive:

* :func:`correlated_samples` — the OU sampler. Eq. 3 for a standard Gaussian ``z``::

      z'_k = rho * z + sqrt(1 - rho^2) * eps_k

  and eq. 4 for ``z = loc + scale * eps_1`` drawn from N(loc, scale^2)::

      z'_k = rho * z + (1 - rho) * loc + scale * sqrt(1 - rho^2) * eps_k

  with ``eps_k ~ N(0, I)``, ``k = 1..n``. (Eq. 3 is eq. 4 with loc=0, scale=1.)

* :func:`ou_expectation` — the Monte-Carlo estimate of U_rho f(z) = E_{z'|z}[f(z')]
  (eq. 3), ``(1/n) sum_k f(z'_k)``; its value *and* gradient are those of the estimate.

* :func:`smooth` — what Hermite VAEs use: a function whose primal value is exactly
  ``fn(z)`` (the original model) and whose reverse-mode derivative is that of the MC
  estimate of U_rho fn (paper §2.2, "Algorithm": smoothing is used "only when computing
  gradients"). Implemented with :func:`jax.custom_vjp`; arrays that ``fn`` closes over
  (e.g. Flax parameters) are hoisted with :func:`jax.closure_convert` so they receive the
  smoothed gradient too.

Properties (tested in ``tests/test_ou.py``): U_rho h_alpha = rho^|alpha| h_alpha for
Hermite polynomials, E[U_rho f] = E[f] (Prop. 1), U_1 = id and U_0 = E (Prop. 2),
Var[U_rho f] = sum_{|alpha|>0} rho^{2|alpha|} f_hat(alpha)^2 (eq. 5), and the semigroup
law U_rho U_sigma = U_{rho sigma}.
"""
from __future__ import annotations

import numbers
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
PyTree = Any

__all__ = ["correlated_samples", "ou_expectation", "smooth", "validate_rho", "validate_n"]


def validate_rho(rho) -> None:
  """Raises ValueError if a concrete ``rho`` is outside [0, 1] (tracers pass through)."""
  if isinstance(rho, jax.core.Tracer):
    return
  try:
    value = np.asarray(rho)
  except Exception as e:  # pragma: no cover - exotic inputs
    raise ValueError(f"rho must be a real scalar in [0, 1], got rho={rho!r}") from e
  if value.shape != () or not np.issubdtype(value.dtype, np.number):
    raise ValueError(f"rho must be a real scalar in [0, 1], got rho={rho!r}")
  if not (0.0 <= float(value) <= 1.0):  # also rejects NaN
    raise ValueError(f"rho must be in [0, 1], got rho={float(value)!r}")


def validate_n(n) -> None:
  """Raises ValueError unless ``n`` is a Python integer >= 1 (it is static)."""
  if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
    raise ValueError(f"n (number of OU samples) must be an integer >= 1, got n={n!r}")


def _validate_z(z) -> None:
  dtype = getattr(z, "dtype", None)
  if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
    raise ValueError(
        f"z must be a floating-point array, got z with dtype={dtype!r} "
        f"(type {type(z).__name__})")


def correlated_samples(key: Array, z: Array, rho, n: int,
                       loc: Optional[Array] = None,
                       scale: Optional[Array] = None) -> Array:
  """Draws n OU-correlated points around ``z`` (paper eq. 3, or eq. 4 with loc/scale).

  Args:
    key: PRNG key for eps_1..eps_n.
    z: floating array, the point the samples are correlated with.
    rho: correlation in [0, 1] (Python float or JAX scalar).
    n: number of samples (static int >= 1).
    loc, scale: optional Gaussian parameters with ``z = loc + scale * eps``;
      they broadcast with ``z``. Omitted: z is standard Gaussian (loc=0, scale=1).

  Returns:
    Array of shape ``(n,) + broadcast_shape(z, loc, scale)``.
  """
  validate_rho(rho)
  validate_n(n)
  _validate_z(z)
  eps = _draw_eps(key, z, n, loc, scale)
  return _ou_points(z, loc, scale, eps, rho)


def _draw_eps(key, z, n, loc, scale):
  shapes = [jnp.shape(z)] + [jnp.shape(a) for a in (loc, scale) if a is not None]
  try:
    shape = jnp.broadcast_shapes(*shapes)
  except ValueError as e:
    raise ValueError(
        f"loc/scale must broadcast with z; got shapes z={jnp.shape(z)}, "
        f"loc={None if loc is None else jnp.shape(loc)}, "
        f"scale={None if scale is None else jnp.shape(scale)}") from e
  return jax.random.normal(key, (n,) + tuple(shape), dtype=z.dtype)


def _ou_points(z, loc, scale, eps, rho):
  """Eq. 4 (eq. 3 when loc and scale are None), for a stack of eps."""
  rho = jnp.asarray(rho, z.dtype)
  noise = jnp.sqrt(jnp.maximum(1.0 - rho * rho, 0.0)) * eps
  if scale is not None:
    noise = scale * noise
  points = rho * z + noise
  if loc is not None:
    points = points + (1.0 - rho) * loc
  return points


def _mc_mean(fn, z, loc, scale, eps, rho):
  points = _ou_points(z, loc, scale, eps, rho)
  values = jax.vmap(fn)(points)
  return jax.tree_util.tree_map(lambda v: jnp.mean(v, axis=0), values)


def ou_expectation(fn: Callable[[Array], PyTree], rho, n: int):
  """Monte-Carlo estimator of U_rho fn (paper eq. 3).

  Returns ``estimate(key, z, loc=None, scale=None)`` computing
  ``(1/n) sum_k fn(z'_k)`` with ``z'_k`` from :func:`correlated_samples`. Both its value
  and its derivatives are those of the estimate (an ordinary JAX function). The n
  evaluations are vectorised with ``vmap``; ``fn`` maps one point to any pytree.
  """
  validate_rho(rho)
  validate_n(n)

  def estimate(key, z, loc=None, scale=None):
    _validate_z(z)
    eps = _draw_eps(key, z, n, loc, scale)
    return _mc_mean(fn, z, loc, scale, eps, rho)

  return estimate


def smooth(fn: Callable[[Array], PyTree], rho, n: int, *, sequential: bool = False):
  """OU smoothing for the gradient only — the Hermite VAE primitive (paper §2.2).

  ``smoothed = smooth(fn, rho, n)``; ``y = smoothed(key, z)`` or
  ``y = smoothed(key, z, loc, scale)``.

  * Value: exactly ``fn(z)`` (bit-equal; no samples are drawn unless differentiated).
  * Reverse-mode derivative: that of the MC estimate ``(1/n) sum_k fn(z'_k)`` of
    U_rho fn(z), with z'_k from eq. 3 (no loc/scale) or eq. 4 (``z = loc + scale*eps``),
    with respect to ``z``, ``loc``, ``scale`` and every floating array ``fn`` closes
    over (e.g. Flax parameters captured in a closure). ``rho`` and ``key`` get no
    gradient.
  * Forward-mode (jvp) is not defined (``custom_vjp``).

  Args:
    fn: function of one array returning a pytree of arrays.
    rho: smoothing in [0, 1]; a Python float or a JAX scalar (no recompilation when it
      changes inside jit). rho=1 gives the plain gradient of fn, rho=0 the gradient of
      the MC estimate of E[fn].
    n: number of correlated samples (static, >= 1); the paper uses 5–10.
    sequential: how the backward pass evaluates the n samples. False: all at once
      (``vmap``: sample-batched matmuls, n times one evaluation's activations held
      briefly); True: one after another (``lax.scan``, accumulating the cotangents: the
      memory of one evaluation, for large convolutional layers).

  Cost: the forward pass evaluates ``fn`` once (the value) and keeps only its inputs and
  the noise; the Monte-Carlo evaluations and their linearization happen in the backward
  pass, so no activations of the n samples are held between the two passes. In matmul
  FLOPs one gradient costs 1 + 3n evaluations of ``fn`` (value; n forward, 2n backward).
  """
  validate_rho(rho)
  validate_n(n)

  def smoothed(key, z, loc=None, scale=None):
    _validate_z(z)
    eps = _draw_eps(key, z, n, loc, scale)
    # The primal is computed here, outside the custom_vjp, so that a Flax module can
    # create its parameters in `fn` during `init`; the custom_vjp only attaches the
    # smoothed derivative and sends a zero cotangent into this direct path.
    primal = fn(z)
    converted, consts = jax.closure_convert(fn, z)
    rho_arr = jnp.asarray(rho, dtype=z.dtype)
    return _smoothed_core(converted, sequential, primal, z, loc, scale, eps, rho_arr,
                          tuple(consts))

  return smoothed


def _zeros_cotangent(x):
  if x is None:
    return None
  if jnp.issubdtype(x.dtype, jnp.inexact):
    return jnp.zeros_like(x)
  return np.zeros(x.shape, dtype=jax.dtypes.float0)


def _primal(converted, sequential, primal, z, loc, scale, eps, rho, consts):
  del converted, sequential, z, loc, scale, eps, rho, consts
  return primal


def _core_fwd(converted, sequential, primal, z, loc, scale, eps, rho, consts):
  del converted, sequential
  # Only the inputs and the noise are kept: the Monte-Carlo evaluations happen in the
  # backward pass (their values are never needed, only their linearization).
  return primal, (z, loc, scale, eps, rho, consts)


def _mc_pullback(converted, z, loc, scale, eps, rho, consts, g):
  """Cotangents of (z, loc, scale, consts) for the mean over eps's leading axis."""
  def mc(z, loc, scale, consts):
    return _mc_mean(lambda p: converted(p, *consts), z, loc, scale, eps, rho)

  _, pullback = jax.vjp(mc, z, loc, scale, consts)
  return pullback(g)


def _sequential_pullback(converted, z, loc, scale, eps, rho, consts, g):
  """The same sum, one sample at a time (scan), holding one evaluation's activations."""
  g = jax.tree_util.tree_map(lambda v: v / eps.shape[0], g)

  def body(acc, eps_k):
    def one(z, loc, scale, consts):
      return converted(_ou_points(z, loc, scale, eps_k, rho), *consts)

    _, pullback = jax.vjp(one, z, loc, scale, consts)
    return jax.tree_util.tree_map(jnp.add, acc, pullback(g)), None

  zeros = jax.tree_util.tree_map(jnp.zeros_like, (z, loc, scale, consts))
  total, _ = jax.lax.scan(body, zeros, eps)
  return total


def _core_bwd(converted, sequential, residuals, g):
  z, loc, scale, eps, rho, consts = residuals
  pullback = _sequential_pullback if sequential else _mc_pullback
  dz, dloc, dscale, dconsts = pullback(converted, z, loc, scale, eps, rho, consts, g)
  # None: symbolic zero for the direct path fn(z), so its backward pass is skipped.
  return None, dz, dloc, dscale, _zeros_cotangent(eps), _zeros_cotangent(rho), dconsts


_smoothed_core = jax.custom_vjp(_primal, nondiff_argnums=(0, 1))
_smoothed_core.defvjp(_core_fwd, _core_bwd)
