"""Validation of a training config: every bad value fails before any data or compute,
with a message naming the key."""
from __future__ import annotations

from hermite_vae import objectives
from hermite_vae.data import registry, sources
from hermite_vae.models import layers


def _fail(key, value, why):
  raise ValueError(f"config.{key}={value!r}: {why}")


def validate(config) -> None:
  c = config
  if c.method not in objectives.METHODS:
    _fail("method", c.method, f"unknown method; expected one of {objectives.METHODS}")
  try:
    rho = float(c.rho)
  except (TypeError, ValueError):
    _fail("rho", c.rho, "must be a number in [0, 1]")
  if not 0.0 <= rho <= 1.0:
    _fail("rho", c.rho, "must be in [0, 1]")
  if not 0.0 <= c.rho_anneal_fraction <= 1.0:
    _fail("rho_anneal_fraction", c.rho_anneal_fraction, "must be in [0, 1]")
  if c.smooth_target not in objectives.SMOOTH_TARGETS:
    _fail("smooth_target", c.smooth_target, f"expected one of {objectives.SMOOTH_TARGETS}")
  gradient = c.get("hvae_gradient", "substitute")
  if gradient not in objectives.HVAE_GRADIENTS:
    _fail("hvae_gradient", gradient, f"expected one of {objectives.HVAE_GRADIENTS}")
  for key in ("num_ou_samples", "num_iw_samples", "batch_size", "num_train_steps",
              "log_every", "eval_every", "checkpoint_every", "eval_batch_size",
              "deterministic_layers", "keep_checkpoints", "steps_per_dispatch"):
    value = c[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
      _fail(key, value, "must be an integer >= 1")
  for key in ("kl_warmup_start", "kl_warmup_steps", "warmup_steps", "au_samples", "mi_paths",
              "eval_iw_samples", "eval_max_examples"):
    if not isinstance(c[key], int) or c[key] < 0:
      _fail(key, c[key], "must be an integer >= 0")
  if not isinstance(c.get("ou_sequential", False), bool):
    _fail("ou_sequential", c.ou_sequential, "must be True or False")
  for key in ("free_bits", "grad_clip_norm"):
    if c[key] < 0:
      _fail(key, c[key], "must be >= 0")
  if not c.learning_rate > 0:
    _fail("learning_rate", c.learning_rate, "must be > 0")
  if c.lr_schedule not in ("constant", "cosine"):
    _fail("lr_schedule", c.lr_schedule, "expected 'constant' or 'cosine'")
  architecture = c.get("architecture", "mlp")
  if architecture not in ("mlp", "resnet"):
    _fail("architecture", architecture, "expected 'mlp' or 'resnet'")
  if architecture == "resnet":
    latent_key, latent = "latent_channels", tuple(c.latent_channels)
    if not latent or any((not isinstance(d, int)) or d < 1 for d in latent):
      _fail("latent_channels", c.latent_channels, "must be a non-empty tuple of positive "
            "integers")
    if not isinstance(c.resnet_channels, int) or c.resnet_channels < 1:
      _fail("resnet_channels", c.resnet_channels, "must be an integer >= 1")
    if not isinstance(c.resnet_blocks, int) or c.resnet_blocks < 0:
      _fail("resnet_blocks", c.resnet_blocks, "must be an integer >= 0")
  else:
    latent_key, latent, hidden = "latent_dims", tuple(c.latent_dims), tuple(c.hidden_dims)
    if not latent or any((not isinstance(d, int)) or d < 1 for d in latent):
      _fail("latent_dims", c.latent_dims, "must be a non-empty tuple of positive integers")
    if any((not isinstance(d, int)) or d < 1 for d in hidden):
      _fail("hidden_dims", c.hidden_dims, "must be a tuple of positive integers")
    if len(latent) != len(hidden):
      _fail("hidden_dims", c.hidden_dims,
            f"has {len(hidden)} entries but latent_dims={latent} has {len(latent)}: one "
            "hidden width per stochastic layer")
  if c.method == "hvae" and len(latent) < 2:
    _fail(latent_key, latent, "method=hvae smooths intermediate generator "
          "layers p(z_i|z_{i+1}) and needs at least 2 stochastic layers")
  if c.dataset not in registry.DATASETS:
    _fail("dataset", c.dataset, f"unknown dataset; known: {sorted(registry.DATASETS)}")
  requested = c.get("likelihood", "auto")
  if requested != "auto" and requested not in layers.LIKELIHOODS:
    _fail("likelihood", requested, f"expected 'auto' or one of {sorted(layers.LIKELIHOODS)}")
  expected = likelihood(c)
  if requested not in ("auto", expected):
    pixels = "8-bit" if expected == "discretized_logistic" else "binary"
    _fail("likelihood", requested, f"dataset {c.dataset!r} has {pixels} pixels; use "
          f"{expected!r} (or 'auto')")
  if c.data_source not in sources.SOURCES:
    _fail("data_source", c.data_source, f"expected one of {sources.SOURCES}")


def likelihood(config) -> str:
  """p(x|z_1) for the config's dataset: ``bernoulli`` for binary (binarized) images,
  ``discretized_logistic`` for 8-bit ones (``config.likelihood='auto'`` picks this)."""
  binary = registry.DATASETS[config.dataset].binarization != "none"
  return "bernoulli" if binary else "discretized_logistic"
