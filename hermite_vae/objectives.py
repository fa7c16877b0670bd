"""Per-layer ELBO terms and the training objectives: ``vae``, ``iwae``, ``hvae``.

Notation (paper §1): p(x, z) = p(x|z_1) prod_{i<L} p(z_i|z_{i+1}) p(z_L),
q(z|x) = q(z_1|x) prod_{i<L} q(z_{i+1}|z_i). For one posterior sample path,

    ELBO = log p(x|z_1) - sum_{i<L} [log q(z_i|.) - log p(z_i|z_{i+1})]
                        - KL(q(z_L|z_{L-1}) || N(0, I))

(the top KL analytic, the others single-sample estimates) — :func:`layer_terms` returns
the reconstruction ``[B]`` and the KL terms ``[L, B]`` separately.

Hermite VAE (§2.2, "Algorithm"): every intermediate generator layer p(z_i|z_{i+1}),
i < L, is evaluated through :func:`hermite_vae.ou.smooth`, with z_{i+1}'s OU samples drawn
around its posterior sample by eq. 4 (loc/scale of q(z_{i+1}|.)). Because ``smooth``
returns the original value and only changes the derivative, the loss value and every
metric are those of the original model. Never smoothed: q(.|.), p(x|z_1), p(z_L).

``hvae_gradient`` (which derivative replaces the original one):
  * ``substitute`` (default, the paper's): the gradient of
    log N(z_i; Û mu_i, Û sigma_i) — the distribution is substituted, so the derivative of
    log N is taken at the smoothed mean and scale (``smooth(..., outer=log N)``). §2.2:
    "we substitute N(z_i|mu_i(z_{i+1}), sigma_i(z_{i+1})) with
    N(z_i|U_rho mu_i(z_{i+1}), U_rho sigma_i(z_{i+1}))", "only done when computing
    gradients"; §3 analyses this objective.
  * ``jacobian`` (ablation): log N is differentiated at the original (mu_i, sigma_i) and
    only the Jacobian of (mu_i, sigma_i) is that of the smoothed functions (``smooth``
    without ``outer``). Measured on MNIST, it does not prevent collapse (README).

``smooth_target``:
  * ``mean_std``: smooth (mu_i, sigma_i) -> N(z_i | U_rho mu_i, U_rho sigma_i).
  * ``ratio``: smooth (mu_i / sigma_i, sigma_i) and write the density in natural form,
    log N = -log sigma - (z/sigma - mu/sigma)^2 / 2 + const, i.e. substitute
    N(z_i | Û(mu/sigma) Û sigma, Û sigma). This is our reading of §2.2's "apply the OU
    semigroup to the ratio of the mean and variance functions", justified in §3 by the
    variance of (z_1 - mu(z_2)) / sigma(z_2).

Schedules (baselines; the reported ELBO is never affected): KL annealing (a weight on
the KL terms: 0 for ``kl_warmup_start`` steps, then linear to 1 over ``kl_warmup_steps``),
free bits (a floor max(free_bits, .) on the top layer's analytic KL, or on every layer's
batch-mean term: ``free_bits_layers``, see :func:`free_bits_kl`), and a rho schedule (rho rising linearly from ``rho`` to 1 over ``rho_anneal_fraction`` of training).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Optional

import jax
import jax.numpy as jnp

from hermite_vae.models import hierarchy, terms
from hermite_vae.models.terms import LayerTerms, Smoothing

METHODS = ("vae", "iwae", "hvae")
SMOOTH_TARGETS = ("mean_std", "ratio")
HVAE_GRADIENTS = ("substitute", "jacobian")


@dataclasses.dataclass(frozen=True)
class ObjectiveConfig:
  """The static part of the config the objective needs (hashable, for jit)."""
  method: str
  rho: float
  rho_anneal_steps: int
  num_ou_samples: int
  smooth_target: str
  num_iw_samples: int
  kl_warmup_start: int
  kl_warmup_steps: int
  free_bits: float
  ou_sequential: bool = False
  free_bits_layers: str = "top"
  hvae_gradient: str = "substitute"
  ou_chain_layers: bool = False

  @classmethod
  def from_config(cls, c):
    """From a training config (see ``hermite_vae.config_lib.default_config``)."""
    return cls(method=c.method, rho=float(c.rho),
               rho_anneal_steps=int(c.rho_anneal_fraction * c.num_train_steps),
               num_ou_samples=c.num_ou_samples, smooth_target=c.smooth_target,
               num_iw_samples=c.num_iw_samples, kl_warmup_start=c.kl_warmup_start,
               kl_warmup_steps=c.kl_warmup_steps, free_bits=float(c.free_bits),
               ou_sequential=bool(c.ou_sequential), hvae_gradient=c.hvae_gradient,
               ou_chain_layers=bool(c.ou_chain_layers),
               free_bits_layers=c.free_bits_layers)


def layer_terms(model, params, x, key, smoothing: Optional[Smoothing] = None) -> LayerTerms:
  """Reconstruction and per-layer KL terms for one posterior sample per example: the
  model's forward pass (``model.apply(variables, x, key, smoothing)``) for the library's
  hierarchies, the same ``terms.forward`` over ``apply`` calls of its layers for a
  layer-wise model of one's own."""
  if isinstance(model, hierarchy.LayerwiseHierarchy):
    return model.apply({"params": params}, x, key, smoothing)
  return terms.forward(hierarchy.applied_layers(model, params), x, key, smoothing)


# ---------------------------------------------------------------- schedules

def kl_weight(step, warmup_start: int, warmup_steps: int):
  """KL annealing: 0 before ``warmup_start``, then linear to 1 over ``warmup_steps``."""
  if warmup_steps <= 0 and warmup_start <= 0:
    return jnp.float32(1.0)
  t = (jnp.asarray(step, jnp.float32) - warmup_start) / max(warmup_steps, 1)
  return jnp.clip(t, 0.0, 1.0)


def rho_at(step, rho, anneal_steps: int):
  """rho schedule: ``rho`` rising linearly to 1 over ``anneal_steps`` (0: constant)."""
  if anneal_steps <= 0:
    return jnp.float32(rho)
  t = jnp.clip(jnp.asarray(step, jnp.float32) / anneal_steps, 0.0, 1.0)
  return rho + (1.0 - rho) * t


FREE_BITS_LAYERS = ("top", "every")


def free_bits_kl(kl_per_layer, free_bits: float, layers: str = "top"):
  """Free bits (Kingma et al., 2016): ``kl_per_layer`` [L] (batch means, bottom to top)
  with entries replaced by max(free_bits, .).

  ``layers='top'``: the top layer's entry only, KL(q(z_L|.) || N(0, I)) — analytic and
  >= 0, a true KL. ``layers='every'``: every layer's entry, the same floor on each (the
  paper's baseline). Below the top an entry is the batch mean of the sampled term
  log q(z_i|z_{i-1}) - log p(z_i|z_{i+1}), which estimates E[log q - log p]: not a KL,
  and often negative (a layer above that encodes z_i's own noise makes p(z_i|.) sharper
  than q(z_i|.)). Where the floor binds, the entry is a constant: **no gradient reaches
  p(z_i|z_{i+1}) or the encoders from that term** — the generator of a floored layer
  learns only through the reconstruction and the terms below, which is what a floor
  means (use the nats below it freely), applied to an estimate. (In this bottom-up
  hierarchy p(z_i|z_{i+1}) depends on z_i through z_{i+1} ~ q(.|z_i), so there is no
  closed-form per-layer KL below the top.)
  """
  if free_bits <= 0:
    return kl_per_layer
  if layers == "every":
    return jnp.maximum(kl_per_layer, free_bits)
  return kl_per_layer.at[-1].set(jnp.maximum(kl_per_layer[-1], free_bits))


# ----------------------------------------------------------------- objectives

def iw_bound(log_weights):
  """log (1/K) sum_k exp(log_w_k), over axis 0: the K-sample importance-weighted bound."""
  return jax.nn.logsumexp(log_weights, axis=0) - math.log(log_weights.shape[0])


def loss_and_metrics(params, model, x, key, step, cfg):
  """Training loss (what is differentiated) and metrics (always the original model).

  ``cfg`` needs: method, rho, rho_anneal_steps, num_ou_samples, smooth_target,
  hvae_gradient, num_iw_samples, kl_warmup_start, kl_warmup_steps, free_bits,
  ou_sequential, ou_chain_layers.
  """
  if cfg.method == "iwae":
    keys = jax.random.split(key, cfg.num_iw_samples)

    def one_sample(k):
      sample = layer_terms(model, params, x, k)
      return sample.log_weight, sample.log_px, sample.kl

    log_w, log_px, kl = jax.vmap(one_sample)(keys)            # [K, B], [K, B], [K, L, B]
    bound = iw_bound(log_w)                                   # [B]
    loss = -jnp.mean(bound)
    log_px, kl = log_px[0], kl[0]                             # first sample: ELBO metrics
    extra = {f"iw_bound_k{cfg.num_iw_samples}": jnp.mean(bound)}
  else:
    smoothing = None
    extra = {}
    if cfg.method == "hvae":
      rho = rho_at(step, cfg.rho, cfg.rho_anneal_steps)
      smoothing = Smoothing(rho, cfg.num_ou_samples, cfg.smooth_target, cfg.ou_sequential,
                            cfg.hvae_gradient, cfg.ou_chain_layers)
      extra["rho"] = rho
    sample = layer_terms(model, params, x, key, smoothing)
    log_px, kl = sample.log_px, sample.kl
    kl_mean = jnp.mean(kl, axis=1)
    beta = kl_weight(step, cfg.kl_warmup_start, cfg.kl_warmup_steps)
    loss = -(jnp.mean(log_px) - beta * jnp.sum(free_bits_kl(kl_mean, cfg.free_bits, cfg.free_bits_layers)))
    extra["kl_weight"] = beta
  kl_mean = jnp.mean(kl, axis=1)
  metrics = {"elbo_nats": jnp.mean(log_px) - jnp.sum(kl_mean),
             "reconstruction_nats": jnp.mean(log_px),
             "kl_nats": jnp.sum(kl_mean),
             "kl_per_layer_nats": kl_mean,
             "loss": loss, **extra}
  return loss, metrics
