"""Evaluation of the original (never smoothed) model.

* ELBO, reconstruction and per-layer KL on a dataset (one posterior sample per example).
* Importance-weighted bounds L_K = E log (1/K) sum_k p(x, z^k) / q(z^k|x) (Burda et al.),
  computed in chunks of samples with a running logsumexp, so memory is O(chunk x batch)
  whatever K (L_100, L_5000 of the paper).
* Active units, two counts per layer, side by side, and a scale-free share:
    - ``active_units_x`` (Burda et al.): A_u = Cov_x(E_q[u|x]) > threshold, with
      E_q[z_i|x] for i > 1 estimated by averaging loc(q(z_i|z_{i-1})) over
      ``num_samples`` sampled paths z_1..z_{i-1} of the layers below (default 100). The
      average of S paths carries Monte-Carlo noise of variance v/S (v: the across-path
      variance), which would make a unit that only follows the noise of the layers
      below look active; we subtract its unbiased estimate E_x[v]/S, so the count
      estimates Var_x(E_q[u|x]) itself;
    - ``active_units_conditional``: Cov over sampled (x, z_{i-1}) of E_q[z_i|z_{i-1}],
      one sample path per x. A layer that only encodes the noise of a collapsed layer
      below looks active here but not in the x-based count;
    - ``x_share_units`` / ``x_share_layer``: Var_x(E_q[u|x]) / Var(u), the share of each
      unit's variance that x explains (:func:`x_variance_share`), thresholded per unit
      and summed per layer; unlike Burda's absolute threshold it does not depend on the
      layer's scale.
* Mutual information I(x; z_i) per layer with the aggregate-posterior estimator of He et
  al. (2019), I = E_x E_{q(z_i|x)}[log q(z_i|x) - log q(z_i)], extended to upper layers,
  whose q(z_i|x) = E_{z_{i-1}|x} q(z_i|z_{i-1}) is a mixture: the sample z_i comes from
  one sampled path and q(z_i|x) is estimated with the ``mi_paths - 1`` *other* paths
  (leave-one-out), q(z_i) by the mixture of those over the examples of the batch.
  Densities from the direct distance (``pairwise_log_normal``, no matmul). What it can
  resolve: bounded by log(batch size); consistent for z_1; for upper layers the
  mixture's log is biased down (Jensen), more so the sharper the layer relative to the
  spread of its components over paths, so a sharp informative layer can score negative
  with few paths; a layer that only encodes the noise of the layer below has
  I(x; z_i) = 0 and scores <= 0 up to Monte-Carlo error (with the sample's own path in
  the mixture it would score log(batch)). A value <= 0 is no evidence either way
  (docs/evaluation.md). Needs ``mi_paths >= 2``.
* Bits per dimension: -bound / (D ln 2) for likelihoods over D pixels.
"""
from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

from hermite_vae import objectives
from hermite_vae.models import hierarchy


@functools.partial(jax.jit, static_argnums=(0,))
def _elbo_batch(model, params, x, key):
  terms = objectives.layer_terms(model, params, x, key)
  return terms.log_px, terms.kl


@functools.partial(jax.jit, static_argnums=(0, 4, 5))
def iw_bound_batch(model, params, x, key, num_samples: int, chunk: int):
  """L_K per example [B] for K = ``num_samples`` (a multiple of ``chunk``)."""
  if num_samples % chunk:
    raise ValueError(f"num_samples={num_samples} must be a multiple of chunk={chunk}")

  def body(carry, k):
    keys = jax.random.split(jax.random.fold_in(key, k), chunk)
    log_w = jax.vmap(lambda kk: objectives.layer_terms(model, params, x, kk).log_weight)(keys)
    return jnp.logaddexp(carry, jax.nn.logsumexp(log_w, axis=0)), None

  init = jnp.full((x.shape[0],), -jnp.inf, jnp.float32)
  if num_samples == chunk:     # no loop: XLA:CPU's convolutions are slow in loop bodies
    return body(init, 0)[0] - jnp.log(float(num_samples))
  total, _ = jax.lax.scan(body, init, jnp.arange(num_samples // chunk))
  return total - jnp.log(float(num_samples))


@functools.partial(jax.jit, static_argnums=(0, 3))
def posterior_means(model, params, x, num_samples: int, key):
  """Per layer: (E_q[z_i|x] averaged over ``num_samples`` paths [B, d_i],
  E_q[z_i|z_{i-1}] along one sampled path [B, d_i],
  the across-path variance of loc(q(z_i|z_{i-1})) divided by num_samples [B, d_i] — the
  Monte-Carlo noise in the first, which ``evaluate_dataset`` subtracts —,
  the mean over paths of the sampled z_i [B, d_i] and the mean over paths of its squared
  deviation from that mean [B, d_i]: with them the host pools the unit's total variance
  over (x, path) under the aggregate posterior (``_PooledVariance``) without the samples
  themselves, [S, B, d_i], leaving the device).

  Memory on the host: 5 arrays of [B, d_i] per layer, against S + 3 before the samples
  stayed on the device (S = 100: about 20 times less)."""
  keys = jax.random.split(key, num_samples)
  paths = jax.vmap(lambda k: hierarchy.encode_path(model, params, x, k))(keys)
  noise = lambda loc: (jnp.var(loc, axis=0, ddof=1) / num_samples if num_samples > 1
                       else jnp.zeros_like(loc[0]))
  return [(jnp.mean(loc, axis=0), loc[0], noise(loc), jnp.mean(z, axis=0),
           jnp.var(z, axis=0)) for (z, loc, _) in paths]


def pairwise_log_normal(z, loc, scale):
  """log N(z_b | loc_b', scale_b') for every pair (b, b'): [B, B'].

  From the direct distance ((z_b - loc_b') / scale_b')^2, in the inputs' dtype, with no
  matmul: expanding the square into z^2/s^2 - 2 z loc/s^2 + loc^2/s^2 and computing it
  with matmuls cancels large terms (catastrophic for a sharp layer, scale 1e-3, in
  float32) and on accelerators runs at the matmul's reduced precision (TF32, bfloat16).
  Cost: B * B' * d subtractions, squares and sums.
  """
  diff = (z[:, None, :] - loc[None]) / scale[None]                        # [B, B', d]
  return (-0.5 * jnp.sum(diff * diff, axis=-1) - jnp.sum(jnp.log(scale), axis=-1)[None]
          - 0.5 * z.shape[-1] * jnp.log(2 * jnp.pi))


@functools.partial(jax.jit, static_argnums=(0, 3))
def mutual_information_batch(model, params, x, num_paths: int, key):
  """Per-layer estimates of I(x; z_i) on one batch (nats) [L]: the sample from path 0,
  the mixtures over paths 1..num_paths-1 (see the module docstring). The paths' mixture
  is accumulated one path at a time (a scan with a running logsumexp): memory
  O(B^2 d) whatever ``num_paths``; cost O(num_paths * B^2 * d) per layer."""
  if num_paths < 2:
    raise ValueError(f"num_paths={num_paths}: the leave-one-out estimate of q(z_i|x) needs "
                     "at least 2 sample paths (config.mi_paths >= 2, or 0 for off)")
  keys = jax.random.split(key, num_paths)
  paths = jax.vmap(lambda k: hierarchy.encode_path(model, params, x, k))(keys)
  out = []
  for z, loc, scale in paths:                       # [S, B, d] each
    z0 = z[0]                                       # one sample z_i ~ q(z_i|x_b) per b
    others = (loc[1:], scale[1:])                   # the other paths: independent of z0
    s, b = loc.shape[0] - 1, loc.shape[1]

    def add_path(acc, path, z0=z0):
      return jnp.logaddexp(acc, pairwise_log_normal(z0, *path)), None

    init = jnp.full((b, b), -jnp.inf, z0.dtype)
    total, _ = jax.lax.scan(add_path, init, others)
    log_q_cond = total - jnp.log(s)                                      # [B, B']
    log_q_x = jnp.diagonal(log_q_cond)                                   # log q(z0_b | x_b)
    log_q_agg = jax.nn.logsumexp(log_q_cond, axis=1) - jnp.log(b)        # log q(z0_b)
    out.append(jnp.mean(log_q_x - log_q_agg))
  return jnp.stack(out)


def _host(x) -> np.ndarray:
  """A (global) array's value on the host; gathers across processes when needed."""
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
  return np.asarray(x)


class _Moments:
  """Streaming per-unit mean/variance over examples (float64 on the host)."""

  def __init__(self):
    self.n, self.s1, self.s2 = 0.0, 0.0, 0.0

  def add(self, values, mask):
    v = np.asarray(values, np.float64)[mask > 0]
    self.n += v.shape[0]
    self.s1 = self.s1 + v.sum(0)
    self.s2 = self.s2 + (v * v).sum(0)

  def mean(self):
    return self.s1 / self.n

  def variance(self):
    mean = self.s1 / self.n
    return np.maximum(self.s2 / self.n - mean * mean, 0.0)


class _PooledVariance:
  """Per-unit variance over every (example, path) pair, pooled from each example's mean
  over paths m_b and mean squared deviation v_b (law of total variance, exact):
  Var = mean_b v_b + Var_b m_b."""

  def __init__(self):
    self.means, self.within, self.n = _Moments(), 0.0, 0.0

  def add(self, path_mean, path_var, mask):
    self.means.add(path_mean, mask)
    v = np.asarray(path_var, np.float64)[mask > 0]
    self.within = self.within + v.sum(0)
    self.n += v.shape[0]

  def variance(self):
    return self.within / self.n + self.means.variance()


@dataclasses.dataclass
class _Totals:
  """Running sums over the real (mask = 1) examples of every batch."""
  num_layers: int
  iw_samples: tuple
  count: float = 0.0
  log_px: float = 0.0
  elbo_sq: float = 0.0
  num_pixels: int = 0
  mi_batches: int = 0
  kl: np.ndarray = None             # [L]
  mi: np.ndarray = None             # [L]
  iw: dict = None                   # K -> sum of L_K

  def __post_init__(self):
    self.kl = np.zeros(self.num_layers)
    self.mi = np.zeros(self.num_layers)
    self.iw = {k: 0.0 for k in self.iw_samples}


def evaluate_dataset(model, params, batches, key, *, au_samples: int = 100,
                     au_threshold: float = 0.01, iw_samples=(), iw_chunk: int = 100,
                     mi_paths: int = 0, share_threshold: float = 0.1):
  """Metrics over ``batches`` (an iterable of (x, mask)) for the original model.

  With ``au_samples``: ``active_units_x`` and ``active_units_conditional`` (Burda's
  threshold ``au_threshold`` on a variance), and beside them the scale-free
  ``x_share_units`` (units whose x-explained share of variance, ``x_variance_share``, is
  at least ``share_threshold``) and ``x_share_layer`` (the layer's
  sum_u Var_x(E_q[u|x]) / sum_u Var(u)).

  ``iw_samples``: an int or a sequence of K for the bounds ``iw_bound_k{K}``.
  ``mi_paths``: > 0 adds ``mutual_information_nats`` per layer (full batches only).
  Raises ValueError if ``batches`` yields nothing or only masked-out examples.
  """
  num_layers = len(model.latent_dims)
  iw_samples = (iw_samples,) if isinstance(iw_samples, int) else tuple(iw_samples)
  totals = _Totals(num_layers, tuple(k for k in iw_samples if k))
  au_x = [_Moments() for _ in range(num_layers)]
  au_c = [_Moments() for _ in range(num_layers)]
  au_noise = [_Moments() for _ in range(num_layers)]
  au_total = [_PooledVariance() for _ in range(num_layers)]
  for b, (x, mask) in enumerate(batches):
    kb = jax.random.fold_in(key, b)
    mask_np = _host(mask)
    totals.num_pixels = int(np.prod(x.shape[1:]))
    log_px, kl = _elbo_batch(model, params, x, jax.random.fold_in(kb, 0))
    log_px, kl = _host(log_px).astype(np.float64), _host(kl).astype(np.float64)
    elbo = log_px - kl.sum(0)
    totals.log_px += float((log_px * mask_np).sum())
    totals.kl += (kl * mask_np).sum(axis=1)
    totals.elbo_sq += float((elbo * elbo * mask_np).sum())
    totals.count += float(mask_np.sum())
    if au_samples:
      for i, (m_x, m_c, noise, z_mean, z_var) in enumerate(
          posterior_means(model, params, x, au_samples, jax.random.fold_in(kb, 1))):
        au_x[i].add(_host(m_x), mask_np)
        au_c[i].add(_host(m_c), mask_np)
        au_noise[i].add(_host(noise), mask_np)
        au_total[i].add(_host(z_mean), _host(z_var), mask_np)
    for k in totals.iw_samples:
      chunk = math.gcd(k, iw_chunk)
      bound = iw_bound_batch(model, params, x, jax.random.fold_in(kb, 2), k, chunk)
      totals.iw[k] += float((_host(bound).astype(np.float64) * mask_np).sum())
    if mi_paths and mask_np.all():
      mi = mutual_information_batch(model, params, x, mi_paths, jax.random.fold_in(kb, 3))
      totals.mi += _host(mi).astype(np.float64)
      totals.mi_batches += 1
  if totals.count == 0:
    raise ValueError("evaluate_dataset: no examples (the batches were empty or fully "
                     "masked)")
  return _summary(totals, au_x, au_c, au_noise, au_total, au_samples, au_threshold,
                  share_threshold, mi_paths)


# A layer is *informative about x* when at least this many of its units have at least
# ``config.x_share_threshold`` (0.1) of their variance explained by x (``x_share_units``;
# docs/evaluation.md says why this rule and not a count of Burda's units).
MIN_INFORMATIVE_UNITS = 2


def informative_layers(result: dict) -> list[bool]:
  """Per layer (bottom to top), from an evaluation's ``x_share_units``: is z_i
  informative about x? The one rule every table and script applies."""
  return [int(u) >= MIN_INFORMATIVE_UNITS for u in result["x_share_units"]]


def x_variance_share(var_x, var_total):
  """Per unit: Var_x(E_q[u|x]) / Var(u), the share of the unit's variance under the
  aggregate posterior that x explains (law of total variance: in [0, 1]; the estimate
  clipped to it). Scale-free, unlike Burda's absolute threshold: rescaling a layer
  (z_i -> a z_i, which the layers around it can absorb) leaves it unchanged."""
  return np.clip(np.asarray(var_x) / np.maximum(np.asarray(var_total), 1e-30), 0.0, 1.0)


def _summary(totals, au_x, au_c, au_noise, au_total, au_samples, au_threshold,
             share_threshold, mi_paths) -> dict:
  count = totals.count
  kl = totals.kl / count
  elbo = totals.log_px / count - kl.sum()
  out = {"elbo_nats": float(elbo),
         "elbo_std_err": float(np.sqrt(max(totals.elbo_sq / count - elbo**2, 0.0) / count)),
         "reconstruction_nats": totals.log_px / count,
         "kl_nats": float(kl.sum()),
         "kl_per_layer_nats": kl.tolist(),
         "num_examples": int(count)}
  if au_samples:
    var_x = [m.variance() - n.mean() for m, n in zip(au_x, au_noise)]
    out["active_units_x"] = [int((v > au_threshold).sum()) for v in var_x]
    out["active_units_conditional"] = [int((m.variance() > au_threshold).sum()) for m in au_c]
    out["active_units_samples"] = au_samples
    share = [x_variance_share(v, t.variance()) for v, t in zip(var_x, au_total)]
    out["x_share_units"] = [int((r >= share_threshold).sum()) for r in share]
    out["x_share_layer"] = [float(np.clip(np.maximum(v, 0).sum() / max(t.variance().sum(),
                                                                        1e-30), 0, 1))
                            for v, t in zip(var_x, au_total)]
    out["x_share_threshold"] = share_threshold
  out["bits_per_dim_elbo"] = -elbo / (totals.num_pixels * math.log(2))
  for k in totals.iw_samples:
    out[f"iw_bound_k{k}"] = totals.iw[k] / count
    out[f"bits_per_dim_k{k}"] = -out[f"iw_bound_k{k}"] / (totals.num_pixels * math.log(2))
  if totals.mi_batches:
    out["mutual_information_nats"] = (totals.mi / totals.mi_batches).tolist()
    out["mutual_information_paths"] = mi_paths
  return out
