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

import functools
import numbers
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
PyTree = Any

__all__ = ["correlated_samples", "kappa", "ou_expectation", "rho_for_kappa", "smooth",
           "validate_rho", "validate_n"]


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


def kappa(rho: float, n: int) -> float:
  """kappa = (1 - rho^2)(1 - 1/n): the discount that n OU samples at correlation rho put
  on the upper layers. It multiplies the degree-1 Hermite energy of mu_i in the gap between
  the objective the substitution gradient follows and the ELBO (docs/theory.md); 0 at
  n = 1 or rho = 1 (the VAE's gradient), at most 1 - 1/n (rho = 0)."""
  validate_rho(rho)
  validate_n(n)
  return (1.0 - float(rho) ** 2) * (1.0 - 1.0 / n)


def smallest_n_for_kappa(kappa_value: float) -> int:
  """The fewest OU samples whose kappa can exceed ``kappa_value`` (1 - 1/n > kappa)."""
  if not 0.0 <= kappa_value < 1.0:
    raise ValueError(f"kappa={kappa_value!r}: must be in [0, 1)")
  return int(np.floor(1.0 / (1.0 - kappa_value))) + 1


def rho_for_kappa(kappa_value: float, n: int) -> float:
  """The rho at which n OU samples give discount ``kappa_value``:
  rho = sqrt(1 - kappa / (1 - 1/n)). Raises ValueError naming the smallest n that reaches
  it when kappa >= 1 - 1/n (n = 1 reaches only kappa = 0)."""
  validate_n(n)
  try:
    k = float(kappa_value)
  except (TypeError, ValueError) as e:
    raise ValueError(f"kappa={kappa_value!r}: must be a number in [0, 1)") from e
  if not 0.0 <= k < 1.0:  # also rejects NaN
    raise ValueError(f"kappa={kappa_value!r}: must be in [0, 1)")
  if k == 0.0:
    return 1.0
  if k >= 1.0 - 1.0 / n:
    raise ValueError(
        f"kappa={k:g} is out of reach with n={n} OU samples (kappa < 1 - 1/n = "
        f"{1 - 1 / n:g}); the smallest n that reaches it is {smallest_n_for_kappa(k)}")
  return float(np.sqrt(1.0 - k / (1.0 - 1.0 / n)))


def _validate_z(z) -> None:
  dtype = getattr(z, "dtype", None)
  if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
    raise ValueError(
        f"z must be a floating-point array, got z with dtype={dtype!r} "
        f"(type {type(z).__name__})")


def _validate_after(after) -> None:
  leaves = jax.tree_util.tree_leaves(after)
  bad = [leaf for leaf in leaves if getattr(leaf, "dtype", None) is None
         or not jnp.issubdtype(leaf.dtype, jnp.floating)]
  if bad:
    raise ValueError(f"after must be None or a pytree of floating-point arrays, got "
                     f"{type(bad[0]).__name__} {bad[0]!r:.60}")


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


def smooth(fn: Callable[[Array], PyTree], rho, n: int, *,
           outer: Optional[Callable[[PyTree], PyTree]] = None, sequential: bool = False):
  """OU smoothing for the gradient only — the Hermite VAE primitive (paper §2.2).

  ``smoothed = smooth(fn, rho, n)``; ``y = smoothed(key, z)``,
  ``y = smoothed(key, z, loc, scale)`` or ``smoothed(key, z, loc, scale, after=y_prev)``.
  With Û the Monte-Carlo estimate of U_rho,
  ``Û fn(z) = (1/n) sum_k fn(z'_k)``, z'_k from eq. 3 (no loc/scale) or eq. 4
  (``z = loc + scale * eps``), there are two semantics:

  * **Jacobian form** (``outer=None``): value exactly ``fn(z)``; reverse-mode
    derivative that of ``Û fn(z)``. Downstream code differentiates at the *original*
    value and only the Jacobian of ``fn`` is replaced by that of the smoothed function.
  * **Substitution form** (``outer=g``): value exactly ``g(fn(z))``; reverse-mode
    derivative that of ``g(Û fn(z))`` — the derivative of ``g`` is taken *at the smoothed
    value* ``Û fn(z)``. This is the paper's Hermite VAE gradient: §2.2 substitutes the
    *distribution* N(z_i | mu_i, sigma_i) by N(z_i | U_rho mu_i, U_rho sigma_i) when
    computing gradients, i.e. ``fn = z_{i+1} -> (mu_i, sigma_i)`` and
    ``g = (mu, sigma) -> log N(z_i; mu, sigma)``. For nonlinear ``g`` the two forms differ
    (their difference is O(1 - rho^2), and in practice decides whether the upper layers
    of a deep hierarchy collapse); for linear ``g`` they coincide.

  Both forms give gradients with respect to ``z``, ``loc``, ``scale`` and every floating
  array ``fn`` or ``g`` closes over (e.g. Flax parameters captured in a closure, or the
  sample ``z_i`` that ``g`` scores); they are hoisted with :func:`jax.closure_convert`.
  ``rho`` and ``key`` get no gradient. Forward-mode (jvp) is not defined (``custom_vjp``).
  Both work under ``jit`` and ``vmap`` and with a traced ``rho``.

  Args:
    fn: function of one array returning a pytree of arrays.
    rho: smoothing in [0, 1]; a Python float or a JAX scalar (no recompilation when it
      changes inside jit). rho=1 gives the plain gradient (of fn, or of g∘fn), rho=0 the
      gradient with fn replaced by the MC estimate of E[fn].
    n: number of correlated samples (static, >= 1); the paper uses 5–10.
    outer: optional function ``g`` from fn's output pytree to a pytree of arrays
      (substitution form). ``None``: Jacobian form.
    sequential: how the backward pass evaluates the n samples. False: all at once
      (``vmap``: sample-batched matmuls, n times one evaluation's activations held
      briefly); True: one after another (``lax.scan``, accumulating the cotangents: the
      memory of one evaluation, for large convolutional layers).

  The returned function also takes ``after``, which orders the backward passes of
  several smoothed calls (a *chain*) and changes no value and no gradient. ``None``
  (default): not part of a chain; XLA schedules freely. A pytree of floating arrays
  computed earlier, typically the output of the previous smoothed call (``()`` for the
  first call of a chain): this call's backward pass completes before the Monte-Carlo
  evaluations of the call that produced ``after`` start (this call gives ``after`` a zero
  cotangent that exists only then), and its own Monte-Carlo evaluations wait for its
  output's cotangent. Chaining the smoothed layers of a hierarchy keeps the n-sample
  activations of one layer live at a time; without it XLA may evaluate several layers'
  samples together (``tests/test_ou_chain.py`` bounds the scratch memory). The price is
  less parallelism between the layers' backward passes (docs/performance.md).

  Cost: the forward pass evaluates ``fn`` (and ``g``) once and keeps only the inputs and
  the noise; the Monte-Carlo evaluations and their linearization happen in the backward
  pass, so no activations of the n samples are held between the two passes. In matmul
  FLOPs one gradient costs 1 + 3n evaluations of ``fn`` (value; n forward, 2n backward);
  the substitution form with ``sequential=True`` needs Û fn(z) before its first
  pullback and so adds n forward evaluations (1 + 4n).
  """
  validate_rho(rho)
  validate_n(n)
  if outer is not None and not callable(outer):
    raise ValueError(f"outer must be a callable or None, got outer={outer!r}")

  def smoothed(key, z, loc=None, scale=None, *, after=None):
    _validate_z(z)
    _validate_after(after)
    eps = _draw_eps(key, z, n, loc, scale)
    # The primal is computed here, outside the custom_vjp, so that a Flax module can
    # create its parameters in `fn` during `init`; the custom_vjp only attaches the
    # smoothed derivative and sends a zero cotangent into this direct path.
    inner = fn(z)
    converted, consts = jax.closure_convert(fn, z)
    rho_arr = jnp.asarray(rho, dtype=z.dtype)
    if outer is None:
      return _smoothed_core(converted, sequential, inner, z, loc, scale, eps, rho_arr,
                            tuple(consts), after)
    primal = outer(inner)
    outer_converted, outer_consts = jax.closure_convert(outer, inner)
    return _substituted_core(converted, outer_converted, sequential, primal, z, loc, scale,
                             eps, rho_arr, tuple(consts), tuple(outer_consts), after)

  return smoothed


def _zeros_cotangent(x):
  if x is None:
    return None
  if jnp.issubdtype(x.dtype, jnp.inexact):
    return jnp.zeros_like(x)
  return np.zeros(x.shape, dtype=jax.dtypes.float0)


def _primal(converted, sequential, primal, z, loc, scale, eps, rho, consts, after):
  del converted, sequential, z, loc, scale, eps, rho, consts, after
  return primal


def _core_fwd(converted, sequential, primal, z, loc, scale, eps, rho, consts, after):
  del converted, sequential
  # Only the inputs and the noise are kept: the Monte-Carlo evaluations happen in the
  # backward pass (their values are never needed, only their linearization).
  return primal, ((z, loc, scale, eps, rho, consts), after)


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


def _zero_after(tree):
  """A scalar 0 that XLA can compute only once every array of ``tree`` exists.

  (``0 * sum``: XLA keeps it, as it must for floats; an optimization barrier would be
  removed before scheduling on CPU. Non-finite entries give NaN, where the gradient is
  non-finite anyway.)
  """
  sums = [jnp.sum(leaf) for leaf in jax.tree_util.tree_leaves(tree)
          if jnp.issubdtype(leaf.dtype, jnp.inexact)]
  return 0.0 * functools.reduce(jnp.add, sums, jnp.float32(0.0))


def _wait_for(z, g, after):
  """``z``, usable only once the cotangent ``g`` exists (calls of a chain only).

  The ``g`` of a call whose output another call names as ``after`` includes that call's
  cotangent for ``after``, which exists only once that call's backward pass is done.
  Gating the Monte-Carlo points on ``g`` keeps XLA from evaluating the n samples of two
  such calls at the same time. Outside a chain (``after=None``) XLA schedules freely.
  """
  if after is None:
    return z
  return z + _zero_after(g).astype(z.dtype)


def _signal_done(cotangents, after):
  """Cotangents for ``after`` (zeros) that exist only once ``cotangents`` do."""
  if after is None:
    return None
  zero = _zero_after(cotangents)
  return jax.tree_util.tree_map(lambda a: jnp.zeros_like(a) + zero.astype(a.dtype), after)


def _core_bwd(converted, sequential, residuals, g):
  (z, loc, scale, eps, rho, consts), after = residuals
  pullback = _sequential_pullback if sequential else _mc_pullback
  cotangents = pullback(converted, _wait_for(z, g, after), loc, scale, eps, rho, consts, g)
  d_after = _signal_done(cotangents, after)
  dz, dloc, dscale, dconsts = cotangents
  # None: symbolic zero for the direct path fn(z), so its backward pass is skipped.
  return (None, dz, dloc, dscale, _zeros_cotangent(eps), _zeros_cotangent(rho), dconsts,
          d_after)


_smoothed_core = jax.custom_vjp(_primal, nondiff_argnums=(0, 1))
_smoothed_core.defvjp(_core_fwd, _core_bwd)


# ------------------------------------------------- substitution form (outer=g)

def _sub_primal(converted, outer, sequential, primal, z, loc, scale, eps, rho, consts,
                outer_consts, after):
  del converted, outer, sequential, z, loc, scale, eps, rho, consts, outer_consts, after
  return primal


def _sub_fwd(converted, outer, sequential, primal, z, loc, scale, eps, rho, consts,
             outer_consts, after):
  del converted, outer, sequential
  return primal, ((z, loc, scale, eps, rho, consts, outer_consts), after)


def _sequential_mean(converted, z, loc, scale, eps, rho, consts):
  """Û fn(z) = (1/n) sum_k fn(z'_k), one sample at a time (no derivatives)."""
  def body(acc, eps_k):
    value = converted(_ou_points(z, loc, scale, eps_k, rho), *consts)
    return jax.tree_util.tree_map(jnp.add, acc, value), None

  first = converted(_ou_points(z, loc, scale, eps[0], rho), *consts)
  total, _ = jax.lax.scan(body, first, eps[1:])
  return jax.tree_util.tree_map(lambda v: v / eps.shape[0], total)


def _sub_bwd(converted, outer, sequential, residuals, g):
  (z, loc, scale, eps, rho, consts, outer_consts), after = residuals
  z = _wait_for(z, g, after)
  if sequential:
    mean = _sequential_mean(converted, z, loc, scale, eps, rho, consts)
    inner_pullback = functools.partial(_sequential_pullback, converted, z, loc, scale, eps,
                                       rho, consts)
  else:
    def mc(z, loc, scale, consts):
      return _mc_mean(lambda p: converted(p, *consts), z, loc, scale, eps, rho)

    mean, inner_pullback = jax.vjp(mc, z, loc, scale, consts)
  # The derivative of g is taken at the smoothed value Û fn(z) (the substitution).
  _, outer_pullback = jax.vjp(outer, mean, *outer_consts)
  g_mean, *d_outer_consts = outer_pullback(g)
  dz, dloc, dscale, dconsts = inner_pullback(g_mean)
  d_after = _signal_done((dz, dloc, dscale, dconsts, d_outer_consts), after)
  return (None, dz, dloc, dscale, _zeros_cotangent(eps), _zeros_cotangent(rho), dconsts,
          tuple(d_outer_consts), d_after)


_substituted_core = jax.custom_vjp(_sub_primal, nondiff_argnums=(0, 1, 2))
_substituted_core.defvjp(_sub_fwd, _sub_bwd)
