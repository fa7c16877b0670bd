"""A convolutional hierarchy with residual blocks (the paper's "Residual ConvNets", §5.2).

Same structure and interface as :class:`hermite_vae.models.mlp.MLPHierarchicalVAE`, with
convolutional latents: every z_i is a feature map of ``latent_channels[i]`` channels at
half the image's resolution (14x14 for MNIST/OMNIGLOT, 16x16 for CIFAR-10, as in the
paper), and every stochastic layer is preceded by ``num_blocks`` residual blocks of
``channels`` feature maps (paper: up to 5 blocks on MNIST/OMNIGLOT; 6 blocks of 100
feature maps and 8-channel 16x16 latents on CIFAR-10).

    encoder  q_z1: x --conv/2--> blocks --> (loc, scale) of z1 ; q_z{i+1}: z_i --> blocks --> z_{i+1}
    decoder  p(zL) = N(0, I) ; p_z{i}: z_{i+1} --> blocks --> z_i ; p_x: z1 --> blocks --convT x2--> x

Latents cross the module boundary **flattened** ([..., H/2 * W/2 * C_i], row-major
H, W, C), so the objectives, the OU smoothing and the per-unit active-unit counts treat
them exactly like the MLP's vectors (``latent_dims`` are the flattened sizes).
Residual block: h + conv(elu(conv(elu(h)))) with 3x3 convolutions, no normalization, the
second convolution initialised at zero (each block starts as the identity).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from hermite_vae.models import layers
from hermite_vae.models.hierarchy import LayerwiseHierarchy, check_likelihood
from hermite_vae.models.layers import (bounded_scale, context_initializers, initializers,
                                       logistic_params)


class ResBlock(nn.Module):
  """h + conv(elu(conv(elu(h)))); the second convolution starts at zero, so every block
  starts as the identity and a deep unnormalized stack does not inflate activations."""
  channels: int
  dtype: Any = jnp.float32
  initialization: str = layers.DEFAULT_INIT

  @nn.compact
  def __call__(self, h):
    r = nn.Conv(self.channels, (3, 3), dtype=self.dtype, name="conv_0",
                **initializers(self.initialization, 9 * h.shape[-1]))(jax.nn.elu(h))
    r = nn.Conv(self.channels, (3, 3), kernel_init=nn.initializers.zeros, dtype=self.dtype,
                name="conv_1")(jax.nn.elu(r))
    return h + r


def _to_maps(h, shape):
  return h.reshape(h.shape[:-1] + tuple(shape))


def _with_context_maps(h, context, spatial):
  """Maps ``h`` [..., H, W, C] with the flat top-down ``context`` ([..., H*W*C']) appended
  as channels (broadcast over extra leading axes of ``h``); ``h`` when None."""
  if context is None:
    return h
  height, width = spatial
  maps = _to_maps(context, (height, width, context.shape[-1] // (height * width)))
  maps = jnp.broadcast_to(maps, h.shape[:-1] + maps.shape[-1:])
  return jnp.concatenate([h, maps.astype(h.dtype)], axis=-1)


class ConvTopDown(nn.Module):
  """Top-down state of the skip connections at latent resolution: S = elu(conv([S_above,
  z])) with ``channels`` maps, flattened."""
  spatial: tuple[int, int]
  latent_channels: int
  channels: int
  dtype: Any = jnp.float32
  initialization: str = layers.DEFAULT_INIT

  @nn.compact
  def __call__(self, state, z):
    h = _with_context_maps(_to_maps(z, tuple(self.spatial) + (self.latent_channels,)),
                           state, self.spatial)
    h = nn.Conv(self.channels, (3, 3), dtype=self.dtype, name="conv",
                **initializers(self.initialization, 9 * h.shape[-1]))(h)
    return _flatten_maps(jax.nn.elu(h).astype(jnp.float32))


def _flatten_maps(h):
  return h.reshape(h.shape[:-3] + (-1,))


class ConvGaussianLayer(nn.Module):
  """Flattened input of ``in_shape`` -> (loc, scale), each flattened [..., H'*W'*C]."""
  in_shape: tuple[int, int, int]
  latent_channels: int
  channels: int
  num_blocks: int
  downsample: bool = False     # stride-2 input convolution (image -> latent resolution)
  min_scale: float = layers.MIN_SCALE
  max_scale: float = layers.MAX_SCALE
  dtype: Any = jnp.float32
  initialization: str = layers.DEFAULT_INIT
  skip_init: str = layers.DEFAULT_SKIP_INIT
  # Compute dtype of the input convolution (None: ``dtype``); float32 for generators, as
  # layers.TanhMLP's first_dtype. The loc/scale heads always compute in float32.
  first_dtype: Any = None

  @nn.compact
  def __call__(self, h, context=None):
    own = self.in_shape[-1]
    h = _with_context_maps(_to_maps(h, self.in_shape), context, self.in_shape[:2])
    h = nn.Conv(self.channels, (3, 3), strides=2 if self.downsample else 1,
                dtype=self.first_dtype if self.first_dtype is not None else self.dtype,
                name="conv_in", **context_initializers(self.initialization, own,
                                                       h.shape[-1] - own, self.skip_init, 9))(h)
    for j in range(self.num_blocks):
      h = ResBlock(self.channels, self.dtype, self.initialization, name=f"block_{j}")(h)
    h = jax.nn.elu(h).astype(jnp.float32)
    head = lambda role: nn.Conv(self.latent_channels, (3, 3), dtype=jnp.float32, name=role,
                                **initializers(self.initialization, 9 * h.shape[-1], role,
                                               self.min_scale, self.max_scale,
                                               self.latent_channels))
    loc = head("loc")(h)
    raw = head("scale")(h)
    loc, raw = loc.astype(jnp.float32), raw.astype(jnp.float32)
    scale = bounded_scale(raw, self.min_scale, self.max_scale)
    return _flatten_maps(loc), _flatten_maps(scale)


class ConvLikelihoodLayer(nn.Module):
  """Flattened z_1 (``in_shape``) -> the likelihood's parameters at image resolution,
  flattened like ``x`` (Bernoulli: logits; discretized logistic: loc and log-scale)."""
  in_shape: tuple[int, int, int]
  image_shape: tuple[int, int, int]
  channels: int
  num_blocks: int
  likelihood: str = "bernoulli"
  dtype: Any = jnp.float32
  initialization: str = layers.DEFAULT_INIT
  skip_init: str = layers.DEFAULT_SKIP_INIT

  @nn.compact
  def __call__(self, z, context=None):
    def conv(features, name, h):
      return nn.Conv(features, (3, 3), dtype=self.dtype, name=name,
                     **initializers(self.initialization, 9 * h.shape[-1]))(h)
    own = self.in_shape[-1]
    h = _with_context_maps(_to_maps(z, self.in_shape), context, self.in_shape[:2])
    h = nn.Conv(self.channels, (3, 3), dtype=self.dtype, name="conv_in",
                **context_initializers(self.initialization, own, h.shape[-1] - own,
                                       self.skip_init, 9))(h)
    for j in range(self.num_blocks):
      h = ResBlock(self.channels, self.dtype, self.initialization, name=f"block_{j}")(h)
    h = nn.ConvTranspose(self.channels, (3, 3), strides=(2, 2), dtype=self.dtype,
                         name="upsample", **initializers(self.initialization, 9 * h.shape[-1]))(
                             jax.nn.elu(h))
    h = jax.nn.elu(h)
    height, width, colours = self.image_shape
    h = h[..., :height, :width, :]
    if self.likelihood == "bernoulli":
      return _flatten_maps(conv(colours, "logits", h).astype(jnp.float32))
    # The pixel heads compute in float32 (layers.DiscretizedLogisticLayer says why).
    head = lambda name: nn.Conv(colours, (3, 3), dtype=jnp.float32, name=name,
                                **initializers(self.initialization, 9 * h.shape[-1]))(
                                    h.astype(jnp.float32))
    return logistic_params(_flatten_maps(head("loc")), _flatten_maps(head("log_scale")))


class ResNetHierarchicalVAE(LayerwiseHierarchy):
  image_shape: tuple[int, int, int]    # (H, W, C) of the images
  latent_channels: Sequence[int]       # bottom (z1) to top (zL)
  channels: int = 64                   # feature maps of every residual block
  num_blocks: int = 2                  # residual blocks before every stochastic layer
  min_scale: float = layers.MIN_SCALE
  max_scale: float = layers.MAX_SCALE
  likelihood: str = "bernoulli"
  dtype: Any = jnp.float32             # compute dtype (bfloat16 on accelerators); params f32
  initialization: str = layers.DEFAULT_INIT      # kernels and biases at the start (layers.INITS)
  # Stochastic skip connections (HVAE+): a top-down state of `channels` maps at latent
  # resolution per latent z_{j+1}, j >= 1, feeds every generator and the decoder.
  skip_connections: bool = False
  skip_init: str = layers.DEFAULT_SKIP_INIT      # how the skips' context starts (layers.SKIP_INITS)

  @property
  def latent_shape(self):
    height, width, _ = self.image_shape
    return (-(-height // 2), -(-width // 2))

  @property
  def latent_dims(self) -> tuple[int, ...]:
    """Flattened size of each z_i."""
    return tuple(math.prod(self.latent_shape) * c for c in self.latent_channels)

  @property
  def num_pixels(self) -> int:
    return math.prod(self.image_shape)

  @property
  def num_layers(self) -> int:
    return len(self.latent_channels)

  def setup(self):
    check_likelihood(self.likelihood)
    init = lambda kind: layers.layer_initialization(self.initialization, kind)
    maps = [self.latent_shape + (c,) for c in self.latent_channels]
    common = dict(channels=self.channels, num_blocks=self.num_blocks,
                  min_scale=self.min_scale, max_scale=self.max_scale, dtype=self.dtype)
    layers.check_skip_init(self.skip_init)
    self.encoders = [
        ConvGaussianLayer(tuple(self.image_shape) if i == 0 else maps[i - 1],
                          self.latent_channels[i], downsample=i == 0, name=f"q_z{i + 1}",
                          initialization=init("encoder"), **common) for i in range(self.num_layers)]
    self.generators = [
        ConvGaussianLayer(maps[i + 1], self.latent_channels[i], name=f"p_z{i + 1}",
                          initialization=init("generator"), skip_init=self.skip_init,
                          first_dtype=jnp.float32,
                          **common)
        for i in range(self.num_layers - 1)]
    if self.skip_connections:
      self.top_down = [ConvTopDown(self.latent_shape, self.latent_channels[j], self.channels,
                                   self.dtype, init("decoder"), name=f"d_z{j + 1}")
                       for j in range(1, self.num_layers)]
    self.decoder = ConvLikelihoodLayer(maps[0], tuple(self.image_shape), self.channels,
                                       self.num_blocks, self.likelihood, self.dtype,
                                       init("decoder"), self.skip_init, name="p_x")
