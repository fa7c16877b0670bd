"""Ancestral samples and reconstructions of a trained hierarchy (the original model).

Both return what to show per pixel, in [0, 1] (:func:`layers.mean_image`: Bernoulli
probabilities, or the discretized logistic's location), shape [num, num_pixels].
"""
from __future__ import annotations

import jax

from hermite_vae.models import layers
from hermite_vae.models.hierarchy import encode_path


def ancestral_samples(model, params, key, num: int):
  """z_L ~ N(0, I), z_i ~ p(z_i|z_{i+1}) for i = L-1..1, then p(x|z_1)'s mean image."""
  variables = {"params": params}
  z = jax.random.normal(jax.random.fold_in(key, 0), (num, model.latent_dims[-1]))
  for i in reversed(range(len(model.latent_dims) - 1)):
    loc, scale = model.apply(variables, i, z, method=model.generate_layer)
    z = loc + scale * jax.random.normal(jax.random.fold_in(key, i + 1), loc.shape)
  return layers.mean_image(model.likelihood, model.apply(variables, z, method=model.decode))


def reconstructions(model, params, x, key):
  """p(x|z_1)'s mean image for z_1 ~ q(z_1|x); ``x`` [B, num_pixels] as stored."""
  path = encode_path(model, params, x, key)
  out = model.apply({"params": params}, path[0][0], method=model.decode)
  return layers.mean_image(model.likelihood, out)
