"""Building blocks: the paper's "two deterministic tanh layers" before each stochastic
layer, a Gaussian head with a numerically safe scale, and the likelihood heads p(x|z_1):
Bernoulli (binary images) and discretized logistic (8-bit images, Salimans et al. 2017
with one component per sub-pixel), selected by name (:data:`LIKELIHOODS`).

Safe scale: ``scale = softplus(raw) + min_scale`` (default ``min_scale = 1e-3``).
softplus grows linearly, not exponentially like ``exp(raw)``, so one large ``raw`` cannot
overflow the scale or its gradient, and the floor keeps ``log scale`` and ``1/scale``
finite when a unit's posterior sharpens; this is what keeps 10^5–10^6-step trainings from
diverging at the default learning rate.

Initialization (``initialization``, one name for the whole hierarchy, :data:`INITS`): how every
kernel and bias starts. Wide hierarchies are sensitive to it (see :func:`initializers`).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

LOG_2PI = math.log(2 * math.pi)
# Default bounds of every Gaussian scale (the training config's defaults read these):
# scale = MAX_SCALE * tanh(softplus(raw) / MAX_SCALE) + MIN_SCALE; MAX_SCALE = 0: no bound.
MIN_SCALE = 1e-3
MAX_SCALE = 3.0

# The initializations a hierarchy can start from (``config.initialization``):
#   lecun_normal  Flax's default: truncated-normal kernels of variance 1/fan_in, zero
#                 biases (the ablation).
#   torch         PyTorch's nn.Linear/Conv default: kernels and biases uniform in
#                 +-1/sqrt(fan_in) (kernel variance 1/(3 fan_in)).
#   zero_heads    lecun_normal trunks, but the loc and scale heads of every Gaussian layer
#                 start at zero weight, with the scale's bias set so that scale = 1: every
#                 q(z_i|.) and p(z_i|.) starts as N(0, I), so every KL term starts at 0
#                 (as VDVAE zero-initialises its prior's output).
#   small_heads   lecun_normal trunks; the loc and scale heads of every Gaussian layer of
#                 d units start with kernels of variance 1/(fan_in * d) (lecun_normal
#                 divided by sqrt(d)) and the scale's bias at scale = 1, so each layer's
#                 initial KL is O(1) nats whatever its width d, and nonzero: the encoder
#                 starts informative about x. The default.
#   zero_prior    lecun_normal everywhere except the heads of the generator layers
#                 p(z_i|z_{i+1}), which start as zero_heads: every p(z_i|.) starts as
#                 N(0, I) while the encoder starts as informative about x as with
#                 lecun_normal (VDVAE's choice for its prior).
INITS = ("small_heads", "zero_prior", "zero_heads", "lecun_normal", "torch")
DEFAULT_INIT = "small_heads"

# How the skip connections' context enters the first layer that reads it
# (``config.skip_init``; only with ``skip_connections``):
#   zero   the kernel's rows (input channels) that read the context start at zero and the
#          rows that read the layer's own input start as without skips (fan-in of that
#          input alone): at initialization the hierarchy computes exactly what the one
#          without skips computes, and the skips grow from there (as VDVAE starts each
#          residual branch of its top-down path at zero). The default.
#   joint  the context's rows are initialized with the others, over the joint fan-in (the
#          ablation; docs/results.md, "Skip connections", measures what it does).
SKIP_INITS = ("zero", "joint")
DEFAULT_SKIP_INIT = "zero"


def layer_initialization(init: str, kind: str) -> str:
  """The initialization a hierarchy's layer of ``kind`` (``encoder``, ``generator``,
  ``decoder``) uses under the hierarchy's ``init``: ``zero_prior`` is ``zero_heads`` for
  generators and ``lecun_normal`` elsewhere; the others are the same everywhere."""
  check_init(init)
  if init == "zero_prior":
    return "zero_heads" if kind == "generator" else "lecun_normal"
  return init


def check_init(init: str) -> None:
  if init not in INITS:
    raise ValueError(f"init={init!r}: expected one of {INITS}")


def _torch_bias(fan_in: int):
  bound = 1.0 / math.sqrt(max(fan_in, 1))
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(
      key, shape, dtype, -bound, bound)


def unit_scale_raw(min_scale: float, max_scale: float) -> float:
  """The ``raw`` for which :func:`bounded_scale` gives 1 (or as close as the bounds allow)."""
  target = 1.0 - min_scale
  if max_scale:
    target = max_scale * math.atanh(min(target / max_scale, 0.999))
  return math.log(math.expm1(target))


def initializers(init: str, fan_in: int, role: str = "trunk", min_scale: float = MIN_SCALE,
                 max_scale: float = MAX_SCALE, features: int = 1) -> dict:
  """``kernel_init`` and ``bias_init`` of one Dense/Conv under ``init`` (:data:`INITS`).

  ``role``: ``trunk`` (hidden layers and likelihood heads), ``loc`` or ``scale`` (the two
  heads of a Gaussian layer; ``min_scale``/``max_scale`` are its scale bounds); ``fan_in``
  is the layer's number of inputs per output (kernel size times input channels),
  ``features`` its number of outputs (the latent width d of a head).

  Why it matters: docs/results.md, "Initialization" (the one place that tells it).
  """
  check_init(init)
  if init == "torch":
    return dict(kernel_init=nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform"),
                bias_init=_torch_bias(fan_in))
  if init == "small_heads" and role in ("loc", "scale"):
    bias = unit_scale_raw(min_scale, max_scale) if role == "scale" else 0.0
    return dict(kernel_init=nn.initializers.variance_scaling(1.0 / features, "fan_in",
                                                             "truncated_normal"),
                bias_init=nn.initializers.constant(bias))
  if init == "zero_heads" and role in ("loc", "scale"):
    bias = unit_scale_raw(min_scale, max_scale) if role == "scale" else 0.0
    return dict(kernel_init=nn.initializers.zeros, bias_init=nn.initializers.constant(bias))
  return dict(kernel_init=nn.initializers.lecun_normal(), bias_init=nn.initializers.zeros)


def check_skip_init(skip_init: str) -> None:
  if skip_init not in SKIP_INITS:
    raise ValueError(f"skip_init={skip_init!r}: expected one of {SKIP_INITS}")


def context_initializers(init: str, own: int, extra: int, skip_init: str = DEFAULT_SKIP_INIT,
                         window: int = 1) -> dict:
  """``kernel_init``/``bias_init`` of a first Dense/Conv reading ``own`` input channels
  followed by ``extra`` context channels (skip connections; ``window``: the kernel's
  spatial size, 1 for a Dense). See :data:`SKIP_INITS`."""
  check_skip_init(skip_init)
  if not extra or skip_init == "joint":
    return initializers(init, window * (own + extra))
  inits = initializers(init, window * own)
  own_kernel = inits["kernel_init"]

  def kernel_init(key, shape, dtype=jnp.float32):
    if shape[-2] != own + extra:
      raise ValueError(f"kernel of {shape[-2]} input channels, expected {own} + {extra}")
    head = own_kernel(key, shape[:-2] + (own, shape[-1]), dtype)
    return jnp.concatenate([head, jnp.zeros(shape[:-2] + (extra, shape[-1]), dtype)], -2)
  return dict(inits, kernel_init=kernel_init)


class TanhMLP(nn.Module):
  """Deterministic tanh layers (the paper uses two per stochastic layer). With a
  ``context`` (skip connections) the first layer reads [h, context]."""
  widths: Sequence[int]
  dtype: Any = jnp.float32     # compute dtype of the matmuls (parameters stay float32)
  initialization: str = DEFAULT_INIT
  skip_init: str = DEFAULT_SKIP_INIT
  # Compute dtype of the first layer (None: ``dtype``). Generators read a latent whose
  # OU perturbations can be far below bfloat16's relative precision (2^-8): their first
  # layer runs in float32 so that rounding the input does not erase them.
  first_dtype: Any = None

  @nn.compact
  def __call__(self, h, context=None):
    own = h.shape[-1]
    h = with_context(h, context)
    for j, width in enumerate(self.widths):
      inits = (context_initializers(self.initialization, own, h.shape[-1] - own,
                                    self.skip_init) if j == 0
               else initializers(self.initialization, h.shape[-1]))
      dtype = self.first_dtype if j == 0 and self.first_dtype is not None else self.dtype
      h = jnp.tanh(nn.Dense(width, dtype=dtype, name=f"dense_{j}", **inits)(h))
    return h


def with_context(h, context):
  """``h`` with the top-down ``context`` appended on the last axis (broadcast over any
  extra leading axes of ``h``, e.g. OU or importance samples); ``h`` when None."""
  if context is None:
    return h
  context = jnp.broadcast_to(context, h.shape[:-1] + context.shape[-1:])
  return jnp.concatenate([h, context.astype(h.dtype)], axis=-1)


class TopDownLayer(nn.Module):
  """The deterministic top-down state of the skip connections: S = tanh(Dense([S_above,
  z])) over ``width`` units (S_above None for the top latent)."""
  width: int
  dtype: Any = jnp.float32
  initialization: str = DEFAULT_INIT

  @nn.compact
  def __call__(self, state, z):
    h = z if state is None else jnp.concatenate([state, z], axis=-1)
    return jnp.tanh(nn.Dense(self.width, dtype=self.dtype, name="dense",
                             **initializers(self.initialization, h.shape[-1]))(h)
                    ).astype(jnp.float32)


class GaussianLayer(nn.Module):
  """h -> (loc, scale) of a diagonal Gaussian over ``latent_dim`` units.

  ``max_scale > 0`` bounds the scale smoothly: max_scale * tanh(softplus(raw) / max_scale)
  (about softplus(raw) well below the bound); 0 turns the bound off. Defaults:
  :data:`MIN_SCALE`, :data:`MAX_SCALE` (the training config's defaults too).

  The loc and scale heads always compute in float32 (their input cast up): a bfloat16
  loc carries ~3 significant digits, which moves log N(z; loc, scale) by
  ~(2^-8 |loc| / scale)^2 per unit, nats when the layer is sharp. ``first_dtype``:
  the first trunk layer's compute dtype (``TanhMLP``).
  """
  widths: Sequence[int]
  latent_dim: int
  min_scale: float = MIN_SCALE
  max_scale: float = MAX_SCALE
  dtype: Any = jnp.float32
  initialization: str = DEFAULT_INIT
  skip_init: str = DEFAULT_SKIP_INIT
  first_dtype: Any = None

  @nn.compact
  def __call__(self, h, context=None):
    h = TanhMLP(self.widths, self.dtype, self.initialization, self.skip_init,
                self.first_dtype, name="mlp")(h, context).astype(jnp.float32)
    head = lambda role: nn.Dense(self.latent_dim, dtype=jnp.float32, name=role,
                                 **initializers(self.initialization, h.shape[-1], role,
                                                self.min_scale, self.max_scale,
                                                self.latent_dim))
    loc = head("loc")(h)
    raw = head("scale")(h)
    return loc, bounded_scale(raw, self.min_scale, self.max_scale)


def bounded_scale(raw, min_scale: float, max_scale: float):
  """softplus(raw) + min_scale, or with ``max_scale > 0`` the smoothly bounded
  max_scale * tanh(softplus(raw) / max_scale) + min_scale."""
  scale = jax.nn.softplus(raw)
  if max_scale:
    scale = max_scale * jnp.tanh(scale / max_scale)
  return scale + min_scale


class BernoulliLayer(nn.Module):
  """z_1 -> logits of p(x|z_1) over ``num_pixels`` binary pixels."""
  widths: Sequence[int]
  num_pixels: int
  dtype: Any = jnp.float32
  initialization: str = DEFAULT_INIT
  skip_init: str = DEFAULT_SKIP_INIT

  @nn.compact
  def __call__(self, h, context=None):
    h = TanhMLP(self.widths, self.dtype, self.initialization, self.skip_init, name="mlp")(
        h, context)
    return nn.Dense(self.num_pixels, dtype=self.dtype, name="logits",
                    **initializers(self.initialization, h.shape[-1]))(h).astype(jnp.float32)


class DiscretizedLogisticLayer(nn.Module):
  """z_1 -> [..., 2 * num_pixels]: location (in [-1, 1] pixel units) and log-scale of a
  logistic per sub-pixel, concatenated. The log-scale is bounded below by
  ``MIN_LOG_SCALE`` (as in PixelCNN++) so the density stays finite. Both heads compute in
  float32 (their input cast up): bfloat16's spacing near |loc| = 1 is 2^-8 = 0.0039, half
  a bin (2/255), which matters when the log-scale sits near its floor."""
  widths: Sequence[int]
  num_pixels: int
  dtype: Any = jnp.float32
  initialization: str = DEFAULT_INIT
  skip_init: str = DEFAULT_SKIP_INIT

  @nn.compact
  def __call__(self, h, context=None):
    h = TanhMLP(self.widths, self.dtype, self.initialization, self.skip_init, name="mlp")(
        h, context).astype(jnp.float32)
    dense = lambda name: nn.Dense(self.num_pixels, dtype=jnp.float32, name=name,
                                  **initializers(self.initialization, h.shape[-1]))
    return logistic_params(dense("loc")(h).astype(jnp.float32),
                           dense("log_scale")(h).astype(jnp.float32))


MIN_LOG_SCALE = -7.0


def logistic_params(loc, raw_log_scale):
  """The discretized-logistic decoder output: [loc, max(raw_log_scale, MIN_LOG_SCALE)]
  concatenated on the last axis (split again by :func:`log_likelihood`)."""
  return jnp.concatenate([loc, jnp.maximum(raw_log_scale, MIN_LOG_SCALE)], axis=-1)
LIKELIHOODS = {"bernoulli": BernoulliLayer, "discretized_logistic": DiscretizedLogisticLayer}


def scale_pixels(likelihood: str, x):
  """The encoder's view of the pixels: binary {0, 1} as they are; 8-bit 0..255 -> [-1, 1]."""
  return x if likelihood == "bernoulli" else x / 127.5 - 1.0


def log_likelihood(likelihood: str, x, out):
  """log p(x | z_1) summed over the last axis; ``out`` is the decoder's output."""
  if likelihood == "bernoulli":
    return bernoulli_log_prob(x, out)
  if likelihood == "discretized_logistic":
    loc, log_scale = jnp.split(out, 2, axis=-1)
    return discretized_logistic_log_prob(x, loc, log_scale)
  raise ValueError(f"unknown likelihood {likelihood!r}; expected one of {sorted(LIKELIHOODS)}")


def mean_image(likelihood: str, out):
  """Pixel intensities in [0, 1] to show for a decoder output (Bernoulli: probabilities;
  discretized logistic: the location, which is the median)."""
  if likelihood == "bernoulli":
    return jax.nn.sigmoid(out)
  loc, _ = jnp.split(out, 2, axis=-1)
  return jnp.clip((loc + 1.0) / 2.0, 0.0, 1.0)


def discretized_logistic_log_prob(x, loc, log_scale):
  """log P(x) for 8-bit ``x`` (values 0..255, any float dtype) under a logistic with
  ``loc`` (in [-1, 1] units, x -> x / 127.5 - 1) and ``log_scale``, discretized into 256
  bins of width 2/255; the end bins take the tails (-inf, -1 + 1/255] and
  [1 - 1/255, inf). Summed over the last axis; in nats. The probabilities of the 256
  values sum to 1."""
  x = x / 127.5 - 1.0
  centered = x - loc
  inv_scale = jnp.exp(-log_scale)
  plus_in = inv_scale * (centered + 1.0 / 255.0)
  min_in = inv_scale * (centered - 1.0 / 255.0)
  log_cdf_plus = plus_in - jax.nn.softplus(plus_in)          # log sigmoid(plus_in)
  log_one_minus_cdf_min = -jax.nn.softplus(min_in)           # log (1 - sigmoid(min_in))
  cdf_delta = jax.nn.sigmoid(plus_in) - jax.nn.sigmoid(min_in)
  mid_in = inv_scale * centered
  # Where the bin mass underflows in float32: density at the bin centre times its width.
  log_pdf_mid = mid_in - log_scale - 2.0 * jax.nn.softplus(mid_in) - jnp.log(127.5)
  log_delta = jnp.where(cdf_delta > 1e-5, jnp.log(jnp.maximum(cdf_delta, 1e-12)), log_pdf_mid)
  log_p = jnp.where(x < -0.999, log_cdf_plus,
                    jnp.where(x > 0.999, log_one_minus_cdf_min, log_delta))
  return jnp.sum(log_p, axis=-1)


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
