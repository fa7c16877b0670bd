"""The per-layer terms of the ELBO, written once as a forward pass over a hierarchy's layers.

:func:`forward` takes the hierarchy's layers as four functions (``Layers``) and computes,
for one posterior sample path per example,

    log p(x | z_1),
    kl[i] = log q(z_i | z_{i-1}) - log p(z_i | z_{i+1})  (i < L, single-sample),
    kl[L] = KL(q(z_L | z_{L-1}) || N(0, I))               (analytic),

with every intermediate generator p(z_i | z_{i+1}) optionally OU-smoothed for the
gradient (``Smoothing``: the paper's substitution, or the Jacobian ablation, through
``ou.smooth``). :meth:`LayerwiseHierarchy.__call__ <hermite_vae.models.hierarchy.
LayerwiseHierarchy.__call__>` calls it with the module's own bound layers, so a model's
terms are one ``model.apply``; ``objectives.layer_terms`` calls it with ``apply``
wrappers for a layer-wise model of one's own. Same function, same numbers (tested).

Randomness: ``rng.terms_keys(key)`` splits the key into the posterior path's key
(layer i: ``fold_in(path_key, i)``) and the OU key (generator i: ``rng.ou_layer_key``).
Cost: one evaluation of every layer, plus 1 + 3n evaluations of each smoothed generator
in the backward pass (``ou.smooth``).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple, Optional

import flax
import jax
import jax.numpy as jnp

from hermite_vae import ou, rng
from hermite_vae.models import layers


@dataclasses.dataclass(frozen=True)
class Smoothing:
  """How the intermediate generators are smoothed for the gradient (static)."""
  rho: Any                 # float or traced scalar in [0, 1]
  num_ou_samples: int      # n, the OU samples per smoothed layer
  target: str = "mean_std"  # mean_std: smooth (mu, sigma); ratio: (mu / sigma, sigma)
  sequential: bool = False  # evaluate the n samples one after another (memory of one)
  gradient: str = "substitute"  # substitute (the paper's) | jacobian (ablation)
  chain: bool = False       # one layer's n samples live at a time (smooth's ``after``)


@flax.struct.dataclass
class LayerTerms:
  log_px: jax.Array        # [B] log p(x|z_1)
  kl: jax.Array            # [L, B] per-layer KL terms (top one analytic)
  log_ratio_top: jax.Array  # [B] log q(z_L|.) - log p(z_L), single sample (for IW bounds)

  @property
  def elbo(self):          # [B]
    return self.log_px - jnp.sum(self.kl, axis=0)

  @property
  def log_weight(self):    # [B] log p(x, z) - log q(z|x) for this sample path
    return self.log_px - jnp.sum(self.kl[:-1], axis=0) - self.log_ratio_top


class Layers(NamedTuple):
  """A hierarchy's layers as functions (bound module methods or ``apply`` wrappers)."""
  encode: Callable        # (i, h) -> (loc, scale) of q(z_{i+1} | h), h = x or z_i
  generate: Callable      # (i, z_above, context) -> (loc, scale) of p(z_{i+1} | z_{i+2}, .)
  decode: Callable        # (z_1, context) -> the likelihood's parameters
  contexts: Callable      # [z_1 .. z_L] -> the L skip contexts (generators', decoder's)
  likelihood: str
  num_layers: int


def flatten(x):
  """[B, ...] -> [B, prod(...)]."""
  return x.reshape(x.shape[0], -1)


def sample_path(encode, num_layers, x, key):
  """One posterior sample path: [(z_i, loc_i, scale_i)] bottom to top, z_i drawn with
  ``fold_in(key, i)``."""
  h, path = flatten(x), []
  for i in range(num_layers):
    loc, scale = encode(i, h)
    z = loc + scale * jax.random.normal(jax.random.fold_in(key, i), loc.shape, loc.dtype)
    path.append((z, loc, scale))
    h = z
  return path


def forward(net: Layers, x, key, smoothing: Optional[Smoothing] = None) -> LayerTerms:
  """Reconstruction and per-layer KL terms for one posterior sample per example."""
  path_key, ou_key = rng.terms_keys(key)
  path = sample_path(net.encode, net.num_layers, x, path_key)
  # Skip connections: each generator's top-down state of the latents above its input,
  # and the decoder's (all None without skips).
  contexts = net.contexts([z for z, _, _ in path])
  out = net.decode(path[0][0], contexts[-1])
  log_px = layers.log_likelihood(net.likelihood, flatten(x), out)
  chain = smoothing is not None and smoothing.chain
  kls, after = [], (() if chain else None)   # (): the first call of smooth's chain
  for i in range(net.num_layers - 1):
    z, q_loc, q_scale = path[i]
    log_q = layers.gaussian_log_prob(z, q_loc, q_scale)
    log_p = generator_log_prob(lambda h, i=i: net.generate(i, h, contexts[i]), z,
                               path[i + 1], smoothing, rng.ou_layer_key(ou_key, i), after)
    after = log_p if chain else None
    kls.append(log_q - log_p)
  z_top, top_loc, top_scale = path[-1]
  kls.append(layers.kl_to_standard_normal(top_loc, top_scale))
  log_ratio_top = (layers.gaussian_log_prob(z_top, top_loc, top_scale) -
                   layers.gaussian_log_prob(z_top, 0.0, 1.0))
  return LayerTerms(log_px=log_px, kl=jnp.stack(kls), log_ratio_top=log_ratio_top)


def generator_log_prob(apply, z, above, smoothing, key, after=None):
  """log p(z_i | z_{i+1}[, context]) with ``apply = z_{i+1} -> (mu_i, sigma_i)`` and
  ``above = (z_{i+1}, loc, scale)`` of the posterior; OU-smoothed for the gradient when
  ``smoothing`` is given. Only the layer's own stochastic input z_{i+1} is perturbed
  (eq. 4 with its posterior's loc/scale); a skip context closed over by ``apply`` is held
  fixed and gets its gradient through ``smooth``'s closure."""
  z_above, above_loc, above_scale = above
  if smoothing is None:
    loc, scale = apply(z_above)
    return layers.gaussian_log_prob(z, loc, scale)
  if smoothing.target == "mean_std":
    fn, log_prob = apply, layers.gaussian_log_prob
  else:
    def fn(h):
      loc, scale = apply(h)
      return loc / scale, scale
    log_prob = layers.gaussian_log_prob_ratio
  density = lambda params: log_prob(z, *params)
  substitute = smoothing.gradient == "substitute"
  smoothed = ou.smooth(fn, smoothing.rho, smoothing.num_ou_samples,
                       outer=density if substitute else None,
                       sequential=smoothing.sequential)(key, z_above, above_loc, above_scale,
                                                        after=after)
  return smoothed if substitute else density(smoothed)
