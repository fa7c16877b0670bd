"""Evaluation of the original (never smoothed) model.

* ELBO, reconstruction and per-layer KL on a dataset (one posterior sample per example).
* Importance-weighted bounds L_K = E log (1/K) sum_k p(x, z^k) / q(z^k|x) (Burda et al.),
  computed in chunks of samples with a running logsumexp, so memory is O(chunk x batch)
  whatever K (L_100, L_5000 of the paper).
* Active units, two counts per layer, side by side:
    - ``active_units_x`` (Burda et al.): A_u = Cov_x(E_q[u|x]) > threshold, with
      E_q[z_i|x] for i > 1 estimated by averaging loc(q(z_i|z_{i-1})) over
      ``num_samples`` sampled paths z_1..z_{i-1} of the layers below (default 100);
    - ``active_units_conditional``: Cov over sampled (x, z_{i-1}) of E_q[z_i|z_{i-1}],
      one sample path per x. A layer that only encodes the noise of a collapsed layer
      below looks active here but not in the x-based count.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from hermite_vae import objectives


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
  total, _ = jax.lax.scan(body, init, jnp.arange(num_samples // chunk))
  return total - jnp.log(float(num_samples))


@functools.partial(jax.jit, static_argnums=(0, 3))
def posterior_means(model, params, x, num_samples: int, key):
  """Per layer: (E_q[z_i|x] averaged over ``num_samples`` paths [B, d_i],
  E_q[z_i|z_{i-1}] along one sampled path [B, d_i])."""
  keys = jax.random.split(key, num_samples)
  paths = jax.vmap(lambda k: objectives.encode_path(model, params, x, k))(keys)
  return [(jnp.mean(loc, axis=0), loc[0]) for (_, loc, _) in paths]


class _Moments:
  """Streaming per-unit mean/variance over examples (float64 on the host)."""

  def __init__(self):
    self.n, self.s1, self.s2 = 0.0, 0.0, 0.0

  def add(self, values, mask):
    v = np.asarray(values, np.float64)[mask > 0]
    self.n += v.shape[0]
    self.s1 = self.s1 + v.sum(0)
    self.s2 = self.s2 + (v * v).sum(0)

  def variance(self):
    mean = self.s1 / self.n
    return np.maximum(self.s2 / self.n - mean * mean, 0.0)


def evaluate_dataset(model, params, batches, key, *, au_samples: int = 100,
                     au_threshold: float = 0.01, iw_samples: int = 0, iw_chunk: int = 100):
  """Metrics over ``batches`` (an iterable of (x, mask)) for the original model."""
  L = len(model.latent_dims)
  sums = {"log_px": 0.0, "kl": np.zeros(L), "iw": 0.0, "elbo_sq": 0.0}
  count = 0.0
  au_x = [_Moments() for _ in range(L)]
  au_c = [_Moments() for _ in range(L)]
  for b, (x, mask) in enumerate(batches):
    kb = jax.random.fold_in(key, b)
    mask_np = np.asarray(mask)
    log_px, kl = _elbo_batch(model, params, x, jax.random.fold_in(kb, 0))
    log_px, kl = np.asarray(log_px, np.float64), np.asarray(kl, np.float64)
    sums["log_px"] += float((log_px * mask_np).sum())
    sums["kl"] += (kl * mask_np).sum(axis=1)
    elbo = log_px - kl.sum(0)
    sums["elbo_sq"] += float((elbo * elbo * mask_np).sum())
    count += float(mask_np.sum())
    if au_samples:
      for i, (m_x, m_c) in enumerate(posterior_means(model, params, x, au_samples,
                                                     jax.random.fold_in(kb, 1))):
        au_x[i].add(m_x, mask_np)
        au_c[i].add(m_c, mask_np)
    if iw_samples:
      chunk = min(iw_chunk, iw_samples)
      bound = iw_bound_batch(model, params, x, jax.random.fold_in(kb, 2), iw_samples, chunk)
      sums["iw"] += float((np.asarray(bound, np.float64) * mask_np).sum())
  kl = sums["kl"] / count
  elbo = sums["log_px"] / count - kl.sum()
  out = {"elbo_nats": float(elbo),
         "elbo_std_err": float(np.sqrt(max(sums["elbo_sq"] / count - elbo**2, 0.0) / count)),
         "reconstruction_nats": sums["log_px"] / count,
         "kl_nats": float(kl.sum()),
         "kl_per_layer_nats": kl.tolist(),
         "num_examples": int(count)}
  if au_samples:
    out["active_units_x"] = [int((m.variance() > au_threshold).sum()) for m in au_x]
    out["active_units_conditional"] = [int((m.variance() > au_threshold).sum()) for m in au_c]
    out["active_units_samples"] = au_samples
  if iw_samples:
    out[f"iw_bound_k{iw_samples}"] = sums["iw"] / count
  return out
