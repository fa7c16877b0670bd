"""The paper's argument, measured on a trained model (§2–3).

* :func:`gradient_variance` — the variance of the stochastic gradient of one generator
  layer's KL term (or of the whole objective) over independent draws of the posterior
  samples and of the OU noise, for a given rho and gradient semantics (rho = 1: the VAE's
  gradient). Reported as the trace of the covariance and relative to the squared norm of
  the mean gradient.
* :func:`hermite_spectrum` — the energy of a generator layer's mean (or scale) function
  by Hermite degree (0, 1, 2, >= 3) under the posterior's Gaussian of its input, and
  Var[f] against Var[U_rho f] (eq. 5): measured with rho^2-correlated pairs,
  Var[U_rho f] = E[f(z) f(z'')] - E[f]^2 with corr(z, z'') = rho^2, and predicted from the
  spectrum as sum_k rho^{2k} E_k.

* :func:`surrogate_gap` — the paper's §3 bias, measured: per generator layer,
  E[log N(z_i; Û_rho mu_i, Û_rho sigma_i)] - E[log N(z_i; mu_i, sigma_i)] in nats over
  posterior paths and OU noise, the amount by which the objective the substitution
  gradient follows exceeds the ELBO's term (docs/theory.md), beside
  :func:`kappa` = (1 - rho^2)(1 - 1/n), its degree-1 factor.

All run on the original model's parameters and never change them.
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from hermite_vae import objectives, ou, rng
from hermite_vae.models import hierarchy, layers, terms
from hermite_vae.ou import kappa


# ------------------------------------------------------------ surrogate gap

@functools.partial(jax.jit, static_argnums=(0, 5, 6))
def _gap_draws(model, params, x, keys, rho, num_ou_samples, smooth_target):
  """[draws, L - 1]: per draw (posterior path and OU noise of one key) and generator
  layer, the batch mean of log N(z_i; Û mu_i, Û sigma_i) - log N(z_i; mu_i, sigma_i)."""
  variables = {"params": params}

  def one(key):
    # The keys a training step's terms use (rng.terms_keys, rng.ou_layer_key).
    path_key, ou_key = rng.terms_keys(key)
    path = hierarchy.encode_path(model, params, x, path_key)
    contexts = hierarchy.path_contexts(model, params, path)
    gaps = []
    for i in range(len(path) - 1):
      z = path[i][0]
      z_above, loc, scale = path[i + 1]
      gen = lambda h, i=i: hierarchy.generate(model, variables, i, h, contexts[i])
      if smooth_target == "ratio":   # U of (mu / sigma, sigma), the natural-form density
        def fn(h, gen=gen):
          mu, sigma = gen(h)
          return mu / sigma, sigma
        log_prob = layers.gaussian_log_prob_ratio
      else:
        fn, log_prob = gen, layers.gaussian_log_prob
      u = ou.ou_expectation(fn, rho, num_ou_samples)(rng.ou_layer_key(ou_key, i), z_above,
                                                      loc, scale)
      smoothed = log_prob(z, *u)
      gaps.append(jnp.mean(smoothed - layers.gaussian_log_prob(z, *gen(z_above))))
    return jnp.stack(gaps)

  return jax.lax.map(one, keys)


def surrogate_gap(model, params, x, key, *, rho, num_ou_samples, num_draws=16,
                  smooth_target="mean_std") -> dict:
  """The §3 bias per generator layer p(z_i|z_{i+1}), bottom to top, in nats per example:
  ``gap`` = E[log N(z_i; Û mu_i, Û sigma_i)] - E[log N(z_i; mu_i, sigma_i)] over
  ``num_draws`` draws of the posterior path and of the n OU samples (eq. 4) on ``x``,
  ``gap_std_err`` its standard error over draws, ``kappa`` (the same for every layer).
  The substitution gradient follows ELBO + sum_i gap_i in expectation (docs/theory.md);
  at n = 1 every gap is 0 in expectation. Cost: ``num_draws`` x (one posterior path and
  n + 1 evaluations of every generator layer) on ``x``."""
  if num_draws < 2:
    raise ValueError(f"num_draws={num_draws}: need >= 2 for a standard error")
  keys = jax.random.split(key, num_draws)
  draws = np.asarray(_gap_draws(model, params, x, keys, float(rho), int(num_ou_samples),
                                smooth_target), np.float64)
  return {"gap": draws.mean(0).tolist(),
          "gap_std_err": (draws.std(0, ddof=1) / math.sqrt(num_draws)).tolist(),
          "kappa": kappa(float(rho), int(num_ou_samples)), "rho": float(rho),
          "num_ou_samples": int(num_ou_samples)}


# -------------------------------------------------------------- gradient variance

def _smoothing(rho, num_ou_samples, gradient, target="mean_std"):
  if rho >= 1.0:
    return None                     # the VAE's gradient
  return terms.Smoothing(rho, num_ou_samples, target, False, gradient)


@functools.partial(jax.jit, static_argnums=(0, 4, 5, 6, 7, 8, 9))
def _moments(model, params, x, keys, layer, rho, num_ou_samples, gradient, chunk,
             smooth_target):
  """Sum of g and of g*g over ``keys`` [num_chunks, chunk] of the gradient of the KL
  term of generator ``layer`` (None: the whole loss) w.r.t. that layer's parameters."""
  name = f"p_z{layer + 1}" if layer is not None else None
  smoothing = _smoothing(rho, num_ou_samples, gradient, smooth_target)

  def loss(sub, key):
    full = dict(params, **{name: sub}) if name else sub
    sample = objectives.layer_terms(model, full, x, key, smoothing)
    if name:
      return jnp.mean(sample.kl[layer])
    return -jnp.mean(sample.elbo)

  target = params[name] if name else params
  grad = jax.grad(loss)

  def body(acc, chunk_keys):
    g = jax.vmap(lambda k: grad(target, k))(chunk_keys)
    s1 = jax.tree_util.tree_map(lambda a, v: a + v.sum(0), acc[0], g)
    s2 = jax.tree_util.tree_map(lambda a, v: a + (v * v).sum(0), acc[1], g)
    return (s1, s2), None

  zeros = jax.tree_util.tree_map(jnp.zeros_like, target)
  (s1, s2), _ = jax.lax.scan(body, (zeros, zeros), keys)
  return s1, s2


def gradient_variance(model, params, x, key, *, layer=None, rho=1.0, num_ou_samples=5,
                      gradient="substitute", num_draws=64, chunk=16,
                      smooth_target="mean_std") -> dict:
  """Variance of the stochastic gradient over ``num_draws`` independent draws.

  Args:
    layer: index i of the generator layer p(z_{i+1}|z_{i+2}) (0-based, i < L-1): the
      gradient of the batch-mean KL term of z_{i+1} w.r.t. that layer's parameters.
      None: the gradient of the whole loss (-ELBO) w.r.t. all parameters.
    rho, num_ou_samples, gradient, smooth_target: the smoothing (rho = 1: the VAE's
      gradient; smooth_target as the run's ``config.smooth_target``).
    num_draws, chunk: draws in total and per vectorised chunk (memory ~ chunk gradients).
  Returns:
    ``trace``: sum over parameters of the per-coordinate variance (unbiased);
    ``mean_sq_norm``: |E g|^2; ``relative``: trace / |E g|^2; ``num_draws``.
  """
  if num_draws % chunk or num_draws < 2:
    raise ValueError(f"num_draws={num_draws} must be a multiple of chunk={chunk} and >= 2")
  keys = jax.random.split(key, num_draws).reshape(num_draws // chunk, chunk, -1)
  s1, s2 = _moments(model, params, x, keys, layer, float(rho), num_ou_samples, gradient,
                    chunk, smooth_target)
  n = num_draws
  s1 = np.concatenate([np.asarray(v, np.float64).ravel() for v in jax.tree_util.tree_leaves(s1)])
  s2 = np.concatenate([np.asarray(v, np.float64).ravel() for v in jax.tree_util.tree_leaves(s2)])
  mean = s1 / n
  trace = float(np.sum(s2 - n * mean * mean) / (n - 1))
  mean_sq = float(np.sum(mean * mean))
  return {"trace": trace, "mean_sq_norm": mean_sq,
          "relative": trace / mean_sq if mean_sq > 0 else float("inf"), "num_draws": n}


# ---------------------------------------------------------------- Hermite spectrum

def _unbiased_sq(total, total_sq, n):
  """Unbiased estimate of (E P)^2 from sum P and sum P^2 over n samples (U-statistic)."""
  return (total * total - total_sq) / (n * (n - 1))


@functools.partial(jax.jit, static_argnums=(0, 4))
def _spectrum_one(fn, loc, scale, key, num_samples):
  """Energies [E0, E1, E2, E>=3, total] of fn under N(loc, diag(scale^2)) (one example)."""
  d = loc.shape[-1]
  eps = jax.random.normal(key, (num_samples, d), loc.dtype)
  f = fn(loc + scale * eps)                                        # [N, m]
  n = num_samples
  # E_0 = |E f|^2 from the raw values; the other degrees from the centred values (their
  # Hermite coefficients are unchanged, and float32 sums do not cancel |E f|^2 away).
  e0 = jnp.sum(_unbiased_sq(f.sum(0), (f * f).sum(0), n))
  f = f - f.mean(0)
  total = e0 + jnp.sum(jnp.mean(f * f, axis=0)) * n / (n - 1)
  e1 = jnp.sum(_unbiased_sq(eps.T @ f, (eps * eps).T @ (f * f), n))
  # Degree 2: h = eps_j eps_k (j < k) and (eps_j^2 - 1) / sqrt(2) (j = k).
  a = jnp.einsum("nj,nk,no->jko", eps, eps, f)
  b = jnp.einsum("nj,nk,no->jko", eps * eps, eps * eps, f * f)
  h2 = (eps * eps - 1.0) / math.sqrt(2.0)
  a_diag = h2.T @ f
  b_diag = (h2 * h2).T @ (f * f)
  off = jnp.sum(jnp.triu(jnp.sum(_unbiased_sq(a, b, n), axis=-1), k=1))
  e2 = off + jnp.sum(_unbiased_sq(a_diag, b_diag, n))
  return jnp.stack([e0, e1, e2, total - e0 - e1 - e2, total])


@functools.partial(jax.jit, static_argnums=(0, 4))
def _smoothed_variance(fn, loc, scale, key, num_samples, rho):
  """Var[U_rho f] = E[f(z) f(z'')] - (E f)^2, corr(z, z'') = rho^2, and Var[f] (one
  example: loc, scale [d])."""
  k1, k2 = jax.random.split(key)
  eps = jax.random.normal(k1, (num_samples,) + loc.shape, loc.dtype)
  eta = jax.random.normal(k2, eps.shape, loc.dtype)
  r2 = rho * rho
  f = fn(loc + scale * eps)
  g = fn(loc + scale * (r2 * eps + jnp.sqrt(1.0 - r2 * r2) * eta))
  mean = 0.5 * (f.mean(0) + g.mean(0))
  f, g = f - mean, g - mean                       # centred: no float32 cancellation
  var_u = jnp.sum(jnp.mean(f * g, axis=0))
  var_f = jnp.sum(0.5 * (jnp.mean(f * f, axis=0) + jnp.mean(g * g, axis=0)))
  return var_u, var_f


def hermite_spectrum(fn, loc, scale, key, *, num_samples=4096, rhos=(0.9,)) -> dict:
  """Hermite energy of ``fn`` (points [N, d] -> values [N, m]) by degree, under
  N(loc_b, scale_b^2) for each example b of ``loc``/``scale`` [B, d], averaged over b.
  ``fn`` may be a list of B functions, one per example.

  Returns ``energy`` {0, 1, 2, '>=3', 'total'} (sum over the m outputs; E_0 = |E f|^2,
  Var f = E_1 + E_2 + E_>=3), ``fraction`` of Var f by degree, and per rho:
  ``var_smoothed`` (measured Var[U_rho f]), ``var`` (Var f) and ``predicted_range``
  (rho^2 E_1 + rho^4 E_2 + [0, rho^6] E_>=3, eq. 5).
  """
  loc, scale = jnp.asarray(loc), jnp.asarray(scale)
  keys = jax.random.split(key, loc.shape[0])
  fns = list(fn) if isinstance(fn, (list, tuple)) else [fn] * loc.shape[0]
  energies = np.mean([np.asarray(_spectrum_one(fns[b], loc[b], scale[b], keys[b], num_samples),
                                 np.float64) for b in range(loc.shape[0])], axis=0)
  e0, e1, e2, e3, total = (float(v) for v in energies)
  var = e1 + e2 + e3
  tiny = 1e-9 * max(total, 1e-30)       # a constant function: no fractions to speak of
  out = {"energy": {"0": e0, "1": e1, "2": e2, ">=3": e3, "total": total},
         "fraction": {k: (v / var if var > tiny else float("nan"))
                      for k, v in (("1", e1), ("2", e2), (">=3", e3))},
         "smoothing": {}}
  for rho in rhos:
    pairs = np.asarray([_smoothed_variance(fns[b], loc[b], scale[b], keys[b], num_samples,
                                           float(rho)) for b in range(loc.shape[0])],
                       np.float64).mean(0)
    var_u, var_f = float(pairs[0]), float(pairs[1])
    low = rho**2 * e1 + rho**4 * e2
    out["smoothing"][str(rho)] = {
        "var_smoothed": var_u, "var": var_f,
        "ratio": var_u / var_f if var_f > tiny else float("nan"),
        "predicted_range": [low, low + rho**6 * max(e3, 0.0)]}
  return out


def generator_spectra(model, params, x, key, *, num_samples=2048, rhos=(0.9,),
                      max_examples=8) -> list:
  """:func:`hermite_spectrum` of mu_i and sigma_i of every intermediate generator layer
  p(z_i|z_{i+1}), under the posterior Gaussian q(z_{i+1}|.) of one sampled path of the
  first ``max_examples`` examples of ``x``. One dict per layer, bottom to top."""
  path = hierarchy.encode_path(model, params, x[:max_examples], jax.random.fold_in(key, 0))
  # Skip connections: example b's function z_{i+1} -> (mu_i, sigma_i) holds its own
  # top-down state fixed, as the smoothing does.
  contexts = hierarchy.path_contexts(model, params, path)
  variables = {"params": params}
  out = []
  for i in range(len(path) - 1):
    _, loc, scale = path[i + 1]
    ctx = [None] * loc.shape[0] if contexts[i] is None else list(contexts[i])
    fn = lambda j: [lambda h, c=c: hierarchy.generate(model, variables, i, h, c)[j]
                    for c in ctx]
    k = jax.random.fold_in(key, i + 1)
    out.append({"layer": i + 1,
                "mu": hermite_spectrum(fn(0), loc, scale, k, num_samples=num_samples,
                                       rhos=rhos),
                "sigma": hermite_spectrum(fn(1), loc, scale, k, num_samples=num_samples,
                                          rhos=rhos)})
  return out


def live_metrics(model, params, x, key, *, rho, num_ou_samples, gradient, num_draws=16,
                 num_samples=512, smooth_target="mean_std") -> dict:
  """What the trainer logs every ``diagnostics_every`` steps (split ``diagnostics``), per
  intermediate generator layer p(z_i|z_{i+1}), bottom to top: the relative and total
  variance of the KL term's gradient at the run's rho (``grad_var_relative``,
  ``grad_var_trace``), Var[U_rho mu_i] / Var[mu_i] under the posterior (eq. 5,
  ``var_ratio_mu``) and the surrogate gap (``surrogate_gap_nats``, :func:`surrogate_gap`;
  ``kappa``)."""
  num_generators = len(model.latent_dims) - 1
  out = {"grad_var_relative": [], "grad_var_trace": [], "var_ratio_mu": []}
  gap = surrogate_gap(model, params, x, jax.random.fold_in(key, 200), rho=rho,
                      num_ou_samples=num_ou_samples, num_draws=max(num_draws, 2),
                      smooth_target=smooth_target)
  out["surrogate_gap_nats"], out["kappa"] = gap["gap"], gap["kappa"]
  path = hierarchy.encode_path(model, params, x, jax.random.fold_in(key, 0))
  contexts = hierarchy.path_contexts(model, params, path)
  variables = {"params": params}
  for i in range(num_generators):
    meter = gradient_variance(model, params, x, jax.random.fold_in(key, 1 + i), layer=i,
                              rho=rho, num_ou_samples=num_ou_samples, gradient=gradient,
                              num_draws=num_draws, chunk=min(num_draws, 8),
                              smooth_target=smooth_target)
    out["grad_var_relative"].append(meter["relative"])
    out["grad_var_trace"].append(meter["trace"])
    _, loc, scale = path[i + 1]
    ctx = None if contexts[i] is None else contexts[i][0]      # example 0, as loc[0]
    mu = lambda h, i=i, ctx=ctx: hierarchy.generate(model, variables, i, h, ctx)[0]
    var_u, var_f = _smoothed_variance(mu, loc[0], scale[0], jax.random.fold_in(key, 100 + i),
                                      num_samples, float(rho))
    out["var_ratio_mu"].append(float(var_u) / float(var_f) if float(var_f) > 0 else 1.0)
  return out
