"""What every hierarchy shares: the layer-wise interface the objectives use.

A subclass defines, in ``setup``, ``self.encoders`` (q(z_{i+1}|.) for i = 0..L-1),
``self.generators`` (p(z_{i+1}|z_{i+2}) for i = 0..L-2) and ``self.decoder`` (p(x|z_1)),
and has the fields/properties ``likelihood``, ``latent_dims`` (flattened sizes) and
``num_layers``. Latents cross this interface as flat vectors [..., latent_dims[i]].
"""
from __future__ import annotations

import flax.linen as nn
import jax

from hermite_vae.models.layers import LIKELIHOODS, scale_pixels


def check_likelihood(likelihood: str) -> None:
  if likelihood not in LIKELIHOODS:
    raise ValueError(f"likelihood={likelihood!r}: expected one of {sorted(LIKELIHOODS)}")


class LayerwiseHierarchy(nn.Module):
  """Base of :class:`~hermite_vae.models.mlp.MLPHierarchicalVAE` and
  :class:`~hermite_vae.models.resnet.ResNetHierarchicalVAE` (no fields of its own)."""

  def encode_layer(self, i: int, h):
    """q(z_{i+1} | h) with h = x (flattened pixels as stored: {0, 1} or 0..255) for i = 0,
    else z_i. Returns (loc, scale), flat."""
    if i == 0:
      h = scale_pixels(self.likelihood, h)
    return self.encoders[i](h)

  def generate_layer(self, i: int, z_above):
    """p(z_{i+1} | z_{i+2}) for i < L-1. Returns (loc, scale) of shape [..., latent_dims[i]]."""
    return self.generators[i](z_above)

  def decode(self, z1):
    """p(x | z1): Bernoulli logits [..., num_pixels], or for the discretized logistic
    location and log-scale [..., 2 * num_pixels] (see ``layers.log_likelihood``)."""
    return self.decoder(z1)

  def __call__(self, x, key):
    """One ancestral pass through every layer (used to initialise all parameters).

    Args:
      x: [B, num_pixels].
    Returns:
      the decoder's output for z_1 (see :meth:`decode`).
    """
    h, zs = x, []
    for i in range(self.num_layers):
      loc, scale = self.encode_layer(i, h)
      h = loc + scale * jax.random.normal(jax.random.fold_in(key, i), loc.shape)
      zs.append(h)
    for i in range(self.num_layers - 1):
      self.generate_layer(i, zs[i + 1])
    return self.decode(zs[0])


def flatten(x):
  """[B, ...] -> [B, prod(...)]."""
  return x.reshape(x.shape[0], -1)


def encode_path(model, params, x, key):
  """One posterior sample path. Returns [(z_i, loc_i, scale_i)] bottom to top."""
  variables = {"params": params}
  h, path = flatten(x), []
  for i in range(len(model.latent_dims)):
    loc, scale = model.apply(variables, i, h, method=model.encode_layer)
    z = loc + scale * jax.random.normal(jax.random.fold_in(key, i), loc.shape, loc.dtype)
    path.append((z, loc, scale))
    h = z
  return path
