"""The training state and how it is built: model, optimizer, initial state, device mesh.

Both the trainer (``train.py``) and a workdir's restore (``workdir.py``) build states here,
so neither imports the other.
"""
from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from hermite_vae import config_lib, data
from hermite_vae.models import layers
from hermite_vae.models.mlp import MLPHierarchicalVAE
from hermite_vae.models.resnet import ResNetHierarchicalVAE


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any
  nonfinite_count: jax.Array       # number of skipped non-finite updates
  first_nonfinite_step: jax.Array  # -1 if none


def create_model(config, num_pixels: int):
  """The config's hierarchy: ``architecture='mlp'`` (:class:`MLPHierarchicalVAE`) or
  ``'resnet'`` (:class:`ResNetHierarchicalVAE`, for the dataset's image shape)."""
  common = dict(min_scale=config.min_scale, max_scale=config.max_scale,
                initialization=config.initialization,
                skip_connections=bool(config.skip_connections),
                skip_init=config.get("skip_init", layers.DEFAULT_SKIP_INIT),
                likelihood=config_lib.likelihood(config),
                dtype=jnp.bfloat16 if config.compute_dtype == "bfloat16" else jnp.float32)
  if config.architecture == "resnet":
    shape = tuple(data.get_spec(config.dataset).image_shape)
    if int(np.prod(shape)) != num_pixels:
      raise ValueError(f"dataset {config.dataset!r} has images of shape {shape}, not "
                       f"{num_pixels} pixels")
    return ResNetHierarchicalVAE(image_shape=shape,
                                 latent_channels=tuple(config.latent_channels),
                                 channels=config.resnet_channels,
                                 num_blocks=config.resnet_blocks, **common)
  return MLPHierarchicalVAE(latent_dims=tuple(config.latent_dims),
                         hidden_dims=tuple(config.hidden_dims), num_pixels=num_pixels,
                         deterministic_layers=config.deterministic_layers, **common)


def create_optimizer(config) -> optax.GradientTransformation:
  if config.lr_schedule == "cosine":
    lr = optax.warmup_cosine_decay_schedule(0.0, config.learning_rate, config.warmup_steps,
                                            config.num_train_steps)
  elif config.warmup_steps:
    lr = optax.linear_schedule(0.0, config.learning_rate, config.warmup_steps)
  else:
    lr = config.learning_rate
  return optax.adam(lr)  # global-norm clipping happens in train_step (one norm pass)


def create_train_state(model, tx, key, num_pixels: int) -> TrainState:
  """Initial parameters (``model.init`` from ``key``) and optimizer state, built in one
  compiled call (eager initialisation dispatches hundreds of small ops)."""
  @jax.jit
  def init(key):
    params = model.init(key, jnp.zeros((1, num_pixels), jnp.float32), key)["params"]
    return TrainState(step=jnp.int32(0), params=params, opt_state=tx.init(params),
                      nonfinite_count=jnp.int32(0), first_nonfinite_step=jnp.int32(-1))
  return init(key)


def make_mesh() -> Mesh:
  return Mesh(np.array(jax.devices()), ("data",))
