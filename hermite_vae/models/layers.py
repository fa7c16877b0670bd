"""Building blocks: the paper's "two deterministic tanh layers" before each stochastic
layer, a Gaussian head with a numerically safe scale, and a Bernoulli head.

Safe scale: ``scale = softplus(raw) + min_scale`` (default ``min_scale = 1e-3``).
softplus grows linearly, not exponentially like ``exp(raw)``, so one large ``raw`` cannot
overflow the scale or its gradient, and the floor keeps ``log scale`` and ``1/scale``
finite when a unit's posterior sharpens; this is what keeps 10^5–10^6-step trainings from
diverging at the default learning rate.
"""
from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

LOG_2PI = math.log(2 * math.pi)


class TanhMLP(nn.Module):
  """Deterministic tanh layers (the paper uses two per stochastic layer)."""
  widths: Sequence[int]

  @nn.compact
  def __call__(self, h):
    for j, width in enumerate(self.widths):
      h = jnp.tanh(nn.Dense(width, name=f"dense_{j}")(h))
    return h


class GaussianLayer(nn.Module):
  """h -> (loc, scale) of a diagonal Gaussian over ``latent_dim`` units.

  ``max_scale > 0`` bounds the scale smoothly: max_scale * tanh(softplus(raw) / max_scale)
  (about softplus(raw) well below the bound). Off (0) by default.
  """
  widths: Sequence[int]
  latent_dim: int
  min_scale: float = 1e-3
  max_scale: float = 0.0

  @nn.compact
  def __call__(self, h):
    h = TanhMLP(self.widths, name="mlp")(h)
    loc = nn.Dense(self.latent_dim, name="loc")(h)
    scale = jax.nn.softplus(nn.Dense(self.latent_dim, name="scale")(h))
    if self.max_scale:
      scale = self.max_scale * jnp.tanh(scale / self.max_scale)
    return loc, scale + self.min_scale


class BernoulliLayer(nn.Module):
  """z_1 -> logits of p(x|z_1) over ``num_pixels`` binary pixels."""
  widths: Sequence[int]
  num_pixels: int

  @nn.compact
  def __call__(self, h):
    h = TanhMLP(self.widths, name="mlp")(h)
    return nn.Dense(self.num_pixels, name="logits")(h)


def gaussian_log_prob(z, loc, scale):
  """log N(z | loc, scale^2), summed over the last axis."""
  u = (z - loc) / scale
  return jnp.sum(-0.5 * u * u - jnp.log(scale) - 0.5 * LOG_2PI, axis=-1)


def gaussian_log_prob_ratio(z, ratio, scale):
  """log N(z | ratio*scale, scale^2) written with ratio = loc/scale (natural form, §3)."""
  u = z / scale - ratio
  return jnp.sum(-0.5 * u * u - jnp.log(scale) - 0.5 * LOG_2PI, axis=-1)


def kl_to_standard_normal(loc, scale):
  """KL(N(loc, scale^2) || N(0, I)), summed over the last axis."""
  return jnp.sum(0.5 * (loc * loc + scale * scale - 1.0) - jnp.log(scale), axis=-1)


def bernoulli_log_prob(x, logits):
  """log Bernoulli(x | sigmoid(logits)), summed over the last axis."""
  return jnp.sum(x * logits - jax.nn.softplus(logits), axis=-1)
