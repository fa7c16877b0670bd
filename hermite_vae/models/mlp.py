"""The paper's MLP hierarchical VAE (§5.1): serially stacked Gaussian layers, two tanh
layers of ``hidden_dims[i]`` units before each stochastic layer in encoder and decoder.

Indexing (0-based in code, 1-based in the paper): ``latent_dims[i]`` is the size of
z_{i+1}; ``hidden_dims[i]`` the width of the deterministic layers of q(z_{i+1}|z_i) and of
p(z_i|z_{i+1}) (for i = 0: q(z_1|x) and p(x|z_1)), as in Burda et al.'s IWAE MLPs.

    encoder  q_z1(x) -> z1 ; q_z2(z1) -> z2 ; ... ; q_zL(z_{L-1}) -> zL
    decoder  p(zL) = N(0, I) ; p_z{L-1}(zL) -> z_{L-1} ; ... ; p_z1(z2) -> z1 ; p_x(z1) -> x

Each layer is its own named submodule so objectives can apply one layer at a time (the
Hermite VAE smooths exactly the ``p_z*`` layers): use :meth:`encode_layer`,
:meth:`generate_layer` and :meth:`decode` through ``model.apply(..., method=...)``.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp

from hermite_vae.models import layers
from hermite_vae.models.hierarchy import LayerwiseHierarchy, check_likelihood
from hermite_vae.models.layers import LIKELIHOODS, GaussianLayer


class MLPHierarchicalVAE(LayerwiseHierarchy):
  latent_dims: Sequence[int]         # bottom (z1) to top (zL)
  hidden_dims: Sequence[int]         # one width per stochastic layer, bottom to top
  num_pixels: int = 784
  deterministic_layers: int = 2
  min_scale: float = layers.MIN_SCALE
  max_scale: float = layers.MAX_SCALE
  likelihood: str = "bernoulli"      # p(x|z_1): bernoulli | discretized_logistic (8-bit)
  dtype: Any = jnp.float32           # compute dtype (bfloat16 on accelerators); params f32
  initialization: str = layers.DEFAULT_INIT    # kernels and biases at the start (layers.INITS)
  # Stochastic skip connections (HVAE+): a top-down state of hidden_dims[j] tanh units
  # per latent z_{j+1}, j >= 1, feeds every generator and the decoder (hierarchy.py).
  skip_connections: bool = False
  skip_init: str = layers.DEFAULT_SKIP_INIT    # how the skips' context starts (layers.SKIP_INITS)

  def setup(self):
    if len(self.latent_dims) != len(self.hidden_dims):
      raise ValueError(
          f"latent_dims (length {len(self.latent_dims)}) and hidden_dims (length "
          f"{len(self.hidden_dims)}) must have one entry per stochastic layer")
    init = lambda kind: layers.layer_initialization(self.initialization, kind)
    depth = self.deterministic_layers
    num = len(self.latent_dims)
    self.encoders = [
        GaussianLayer((self.hidden_dims[i],) * depth, self.latent_dims[i], self.min_scale,
                      self.max_scale, self.dtype, init("encoder"), name=f"q_z{i + 1}") for i in range(num)]
    # generators[i] is p(z_{i+1} | z_{i+2}) (paper p(z_i|z_{i+1}) with i 1-based).
    self.generators = [
        GaussianLayer((self.hidden_dims[i + 1],) * depth, self.latent_dims[i], self.min_scale,
                      self.max_scale, self.dtype, init("generator"), self.skip_init,
                      first_dtype=jnp.float32, name=f"p_z{i + 1}") for i in range(num - 1)]
    check_likelihood(self.likelihood)
    layers.check_skip_init(self.skip_init)
    if self.skip_connections:
      self.top_down = [layers.TopDownLayer(self.hidden_dims[j], self.dtype, init("decoder"),
                                           name=f"d_z{j + 1}") for j in range(1, num)]
    self.decoder = LIKELIHOODS[self.likelihood]((self.hidden_dims[0],) * depth,
                                                self.num_pixels, self.dtype, init("decoder"),
                                                self.skip_init, name="p_x")

  @property
  def num_layers(self) -> int:
    return len(self.latent_dims)


def count_params(params) -> int:
  """Number of parameters (arrays or shape/dtype structs, e.g. from ``jax.eval_shape``)."""
  return sum(math.prod(p.shape) for p in jax.tree_util.tree_leaves(params))
