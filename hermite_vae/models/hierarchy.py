"""What every hierarchy shares: the layer-wise interface the objectives use.

A subclass defines, in ``setup``, ``self.encoders`` (q(z_{i+1}|.) for i = 0..L-1),
``self.generators`` (p(z_{i+1}|z_{i+2}) for i = 0..L-2) and ``self.decoder`` (p(x|z_1)),
and has the fields/properties ``likelihood``, ``latent_dims`` (flattened sizes),
``num_layers`` and ``skip_connections``. Latents cross this interface as flat vectors
[..., latent_dims[i]].

Stochastic skip connections (``skip_connections=True``, HVAE+ of the paper's Table 5):
a deterministic top-down state carries every latent above a layer. With 0-based latents
z[0..L-1] (z[0] = z_1), state S[j] summarizes z[j..L-1]: S[L-1] = T_{L-1}(z[L-1]),
S[j] = T_j(S[j+1], z[j]) (``self.top_down[j - 1]``, j = 1..L-1). Generator i, p(z[i] |
z[i+1], S[i+2]), reads the latent directly above and the state of all latents above that
(none for the top generator); the decoder p(x | z[0], S[1]) reads z_1 and the state of
every latent above. Without skips each layer reads only the latent directly above. The
Hermite VAE smooths only a generator's own stochastic input z[i+1]; the state is held
fixed inside the smoothed function and gets its gradient through ``smooth``'s closure
(see ``objectives``).
"""
from __future__ import annotations

import flax.linen as nn

from hermite_vae.models import terms
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

  def generate_layer(self, i: int, z_above, context=None):
    """p(z_{i+1} | z_{i+2}[, context]) for i < L-1. Returns (loc, scale) of shape
    [..., latent_dims[i]]. ``context``: the top-down state S[i+2] of the latents above
    z_{i+2} (skip connections; None for the top generator or without skips)."""
    return self.generators[i](z_above, context)

  def decode(self, z1, context=None):
    """p(x | z1[, context]): Bernoulli logits [..., num_pixels], or for the discretized
    logistic location and log-scale [..., 2 * num_pixels] (see ``layers.log_likelihood``).
    ``context``: the top-down state S[1] of z_2..z_L (skip connections only)."""
    return self.decoder(z1, context)

  def top_down_state(self, j: int, state, z):
    """S[j] = T_j(S[j+1], z[j]) (``state`` None for j = L-1): flat [..., state size]."""
    return self.top_down[j - 1](state, z)

  def top_down_states(self, zs):
    """The states S[1..L-1] for the latents ``zs`` (bottom to top), as a list indexed like
    ``zs`` (entry 0 is None); all None without skip connections."""
    states = [None] * len(zs)
    if self.skip_connections:
      state = None
      for j in reversed(range(1, len(zs))):
        state = self.top_down_state(j, state, zs[j])
        states[j] = state
    return states

  def __call__(self, x, key, smoothing=None):
    """The forward pass: reconstruction and per-layer KL terms for one posterior sample
    path per example (:func:`hermite_vae.models.terms.forward` with this module's own
    layers), every intermediate generator OU-smoothed for the gradient when
    ``smoothing`` (a ``terms.Smoothing``) is given. Also what ``init`` runs.

    Args:
      x: [B, ...] images, flattened inside.
      key: the PRNG key of the path and the OU samples (``rng.terms_keys``).
    Returns:
      ``terms.LayerTerms``: ``log_px`` [B], ``kl`` [L, B], ``log_ratio_top`` [B].
    """
    return terms.forward(self.bound_layers(), x, key, smoothing)

  def bound_layers(self) -> terms.Layers:
    """This module's layers as ``terms.Layers`` (inside ``apply``)."""
    contexts = lambda zs: (generator_contexts(self.top_down_states(zs))
                           if has_skips(self) else [None] * len(zs))
    return terms.Layers(encode=self.encode_layer, generate=self.generate_layer,
                        decode=self.decode, contexts=contexts,
                        likelihood=self.likelihood, num_layers=self.num_layers)


def has_skips(model) -> bool:
  return bool(getattr(model, "skip_connections", False))


def decode(model, variables, z1, context=None):
  """``model.decode`` through ``apply``, passing ``context`` only when there is one (so a
  layer-wise model of one's own may define ``decode(z1)`` without it)."""
  extra = () if context is None else (context,)
  return model.apply(variables, z1, *extra, method=model.decode)


def generate(model, variables, i, z_above, context=None):
  """``model.generate_layer`` through ``apply``, ``context`` passed only when given."""
  extra = () if context is None else (context,)
  return model.apply(variables, i, z_above, *extra, method=model.generate_layer)


def generator_contexts(states):
  """From the states S[0..L-1] of :meth:`LayerwiseHierarchy.top_down_states`: the context
  of generator i (S[i+2], None where i + 2 >= L), for i = 0..L-2, then the decoder's
  (S[1]). A list of L entries."""
  num = len(states)
  return [states[i + 2] if i + 2 < num else None for i in range(num - 1)] + [
      states[1] if num > 1 else None]


def path_contexts(model, params, path):
  """:func:`generator_contexts` of a posterior path (``encode_path``'s output); all None
  for a model without skip connections (or without the field: any layer-wise model)."""
  if not has_skips(model):
    return [None] * len(path)
  states = model.apply({"params": params}, [z for z, _, _ in path],
                       method=model.top_down_states)
  return generator_contexts(states)


def applied_layers(model, params) -> terms.Layers:
  """``model``'s layers as ``terms.Layers`` of ``apply`` calls (outside ``apply``; any
  layer-wise model with ``encode_layer``, ``generate_layer``, ``decode``, ``likelihood``
  and ``latent_dims``)."""
  variables = {"params": params}
  return terms.Layers(
      encode=lambda i, h: model.apply(variables, i, h, method=model.encode_layer),
      generate=lambda i, h, c: generate(model, variables, i, h, c),
      decode=lambda z, c: decode(model, variables, z, c),
      contexts=lambda zs: path_contexts(model, params, [(z, None, None) for z in zs]),
      likelihood=model.likelihood, num_layers=len(model.latent_dims))


def encode_path(model, params, x, key):
  """One posterior sample path, z_i drawn with ``fold_in(key, i)``. Returns
  [(z_i, loc_i, scale_i)] bottom to top. ``objectives.layer_terms(..., key)`` splits its
  key first (``rng.terms_keys``: path and OU keys), so the path it scores is
  ``encode_path(model, params, x, rng.terms_keys(key)[0])``, not this one of ``key``."""
  variables = {"params": params}
  encode = lambda i, h: model.apply(variables, i, h, method=model.encode_layer)
  return terms.sample_path(encode, len(model.latent_dims), x, key)
