"""Ancestral samples and reconstructions of a trained hierarchy (the original model).

Both return what to show per pixel, in [0, 1] (:func:`layers.mean_image`: Bernoulli
probabilities, or the discretized logistic's location), shape [num, num_pixels].
"""
from __future__ import annotations

import jax

from hermite_vae.models import layers
from hermite_vae.models.hierarchy import decode, encode_path, generate, has_skips, path_contexts


def ancestral_samples(model, params, key, num: int):
  """z_L ~ N(0, I), z_i ~ p(z_i|z_{i+1}) for i = L-1..1, then p(x|z_1)'s mean image."""
  variables = {"params": params}
  num_layers = len(model.latent_dims)
  zs = {num_layers - 1: jax.random.normal(jax.random.fold_in(key, 0),
                                          (num, model.latent_dims[-1]))}
  states = {num_layers: None}    # skip connections: S[j] of the latents z[j..L-1]
  for i in reversed(range(num_layers - 1)):
    if has_skips(model):         # S[i+1] from S[i+2] and the latent just sampled
      states[i + 1] = model.apply(variables, i + 1, states.get(i + 2), zs[i + 1],
                                  method=model.top_down_state)
    loc, scale = generate(model, variables, i, zs[i + 1], states.get(i + 2))
    zs[i] = loc + scale * jax.random.normal(jax.random.fold_in(key, i + 1), loc.shape)
  context = states.get(1) if has_skips(model) else None
  return layers.mean_image(model.likelihood,
                           decode(model, variables, zs[0], context))


def reconstructions(model, params, x, key):
  """p(x|z_1)'s mean image for z_1 ~ q(z_1|x); ``x`` [B, num_pixels] as stored."""
  path = encode_path(model, params, x, key)
  out = decode(model, {"params": params}, path[0][0], path_contexts(model, params, path)[-1])
  return layers.mean_image(model.likelihood, out)
