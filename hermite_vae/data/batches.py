"""Device-resident datasets: shuffling and binarization with ``jax.random``, no per-step
host->device copy.

The uint8 training images are put on the devices once (replicated over this process's
devices). Training batches are drawn on device: each epoch is a permutation of the
examples, ``permutation(fold_in(key, epoch))`` with ``key`` the run's ``data`` key
(``rng.run_keys``), and dynamically binarized datasets get a fresh Bernoulli draw per
batch from ``fold_in(key, step)``. The global
batch of a step depends only on (seed, step) — not on the number of processes or devices
— so a resumed run sees exactly the batches an uninterrupted one would, and a run on
2 processes x 2 devices sees those of 1 process x 4 devices.

Evaluation sets of dynamically binarized datasets are binarized once on the host with
``numpy.random.default_rng(EVAL_BINARIZATION_SEED)`` so every evaluation scores the same
binary images.

Multi-process: every process holds the training images (these datasets are at most
CIFAR-10's 150 MB) and computes only its rows ``[p*B/P, (p+1)*B/P)`` of each global batch
of B; evaluation batch b is the examples ``[b*B, (b+1)*B)`` whatever the layout, each
process reading its rows of it. The global arrays are assembled with
``jax.make_array_from_process_local_data``.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from hermite_vae import rng

EVAL_BINARIZATION_SEED = 0


def binarize_once(images: np.ndarray, seed: int = EVAL_BINARIZATION_SEED) -> np.ndarray:
  """Fixed Bernoulli binarization of uint8 grey levels (evaluation sets)."""
  gen = np.random.default_rng(seed)
  return (gen.random(images.shape, dtype=np.float32) < images / np.float32(255.0)).astype(
      np.uint8)


class TrainBatches:
  """Draws training batches on device, sharded along the mesh's ``data`` axis.

  ``batches(step) -> float32 [B, H, W, C]``, the batch of one step;
  ``batches.stack(step, k) -> float32 [k, B, H, W, C]``, the batches of steps
  ``step .. step + k - 1`` (bit-equal to ``k`` single calls), for training loops that run
  several steps per dispatch.
  """

  def __init__(self, images: np.ndarray, batch_size: int, binarization: str, seed: int,
               mesh: Mesh):
    num_proc, proc = jax.process_count(), jax.process_index()
    if batch_size % mesh.size or batch_size % num_proc:
      raise ValueError(f"batch_size={batch_size} must be divisible by the number of "
                       f"devices ({mesh.size}) and of processes ({num_proc}).")
    if len(images) < batch_size:
      raise ValueError(f"batch_size={batch_size} exceeds the {len(images)} training "
                       "examples.")
    self.batch_size = batch_size
    self.local_batch = batch_size // num_proc
    self.mesh = mesh
    self.binarization = binarization
    self.steps_per_epoch = len(images) // batch_size
    self._key = rng.run_keys(seed)["data"]
    local_mesh = Mesh(np.array(mesh.local_devices), ("data",))
    self._replicated = NamedSharding(local_mesh, P())
    self._local_sharding = NamedSharding(local_mesh, P(None, "data"))
    self._global_sharding = NamedSharding(mesh, P(None, "data"))
    self.images = jax.device_put(images, self._replicated)
    self._epoch, self._perm = None, None
    draw = functools.partial(_draw_batch, batch=batch_size,
                             rows=(proc * self.local_batch, self.local_batch),
                             steps_per_epoch=self.steps_per_epoch,
                             dynamic=binarization == "dynamic")
    # Draws `length` consecutive batches of one epoch, from step `step + offset`:
    # [length, local_batch, ...]. `step` is a device scalar (the train state's step), the
    # offset and length static: a dispatch inside one epoch copies nothing from the host.
    self._draw = jax.jit(
        lambda images, perm, key, step, offset, length: jax.vmap(
            lambda s: draw(images, perm, key, s))(step + offset + jnp.arange(length)),
        static_argnums=(4, 5), out_shardings=self._local_sharding)
    self._permute = jax.jit(
        lambda key, step, offset: jax.random.permutation(
            jax.random.fold_in(key, (step + offset) // self.steps_per_epoch),
            self.images.shape[0]),
        static_argnums=2, out_shardings=self._replicated)

  def permutation(self, epoch: int, step=None, offset: int = 0):
    """The example order of ``epoch`` (computed on device from ``step + offset`` when a
    device ``step`` in that epoch is given; cached per epoch)."""
    if epoch != self._epoch:
      if step is None:
        step, offset = jnp.int32(epoch * self.steps_per_epoch), 0
      self._perm, self._epoch = self._permute(self._key, step, offset), epoch
    return self._perm

  def __call__(self, step: int):
    return self.stack(step, 1)[0]

  def _local_view(self, device_step):
    """A replicated global scalar (multi-process) as the same value over this process's
    devices, from the shards it already holds: no copy from the host."""
    if device_step.is_fully_addressable:
      return device_step
    shards = {shard.device: shard.data for shard in device_step.addressable_shards}
    return jax.make_array_from_single_device_arrays(
        (), self._replicated, [shards[d] for d in self._replicated.mesh.devices.flat])

  def stack(self, step: int, k: int, device_step=None):
    """The batches of steps ``step .. step + k - 1``, stacked: ``[k, B, H, W, C]``.

    ``device_step``: optionally the same step as an int32 array already on the devices
    (e.g. the train state's ``step``, replicated over the global mesh on several
    processes); then no host-to-device copy happens: this process's copies of it are
    reused in place as an array over its own devices."""
    if k < 1:
      raise ValueError(f"k={k} must be >= 1")
    if device_step is None:
      device_step = jax.device_put(np.int32(step), self._replicated)
    else:
      device_step = self._local_view(device_step)
    parts, start = [], step
    while start < step + k:  # one draw per epoch the steps fall in
      epoch = start // self.steps_per_epoch
      end = min(step + k, (epoch + 1) * self.steps_per_epoch)
      perm = self.permutation(epoch, device_step, start - step)
      parts.append(self._draw(self.images, perm, self._key, device_step, start - step,
                              end - start))
      start = end
    local = parts[0] if len(parts) == 1 else jnp.concatenate(parts)
    if jax.process_count() == 1:
      return local
    return jax.make_array_from_process_local_data(self._global_sharding, local)


def _draw_batch(images, perm, key, step, *, batch, rows, steps_per_epoch, dynamic):
  """This process's ``rows`` (start, count) of the global batch of ``step``."""
  start, count = rows
  i = step % steps_per_epoch
  idx = jax.lax.dynamic_slice_in_dim(perm, i * batch, batch)[start:start + count]
  x = images[idx].astype(jnp.float32)
  if dynamic:
    u = jax.random.uniform(jax.random.fold_in(jax.random.fold_in(key, step), 1),
                           (batch,) + x.shape[1:])[start:start + count]
    x = (u < x / 255.0).astype(jnp.float32)
  return x


def eval_batches(images: np.ndarray, batch_size: int, mesh: Mesh, max_examples: int = 0):
  """Yields ``(x, mask)``: fixed-size float32 global batches sharded along ``data`` (the
  last one padded, ``mask`` 1.0 on real examples) over the first ``max_examples`` images
  (0: all). Batch b holds the examples [b*B, (b+1)*B) on any number of processes; each
  process reads its rows of it."""
  if max_examples:
    images = images[:max_examples]
  num_proc, proc = jax.process_count(), jax.process_index()
  if batch_size % num_proc:
    raise ValueError(f"eval batch_size={batch_size} must be divisible by the number of "
                     f"processes ({num_proc}).")
  local_batch = batch_size // num_proc
  sharding = NamedSharding(mesh, P("data"))
  for b in range(-(-len(images) // batch_size)):
    lo = b * batch_size + proc * local_batch
    chunk = images[lo:lo + local_batch]
    mask = np.zeros(local_batch, np.float32)
    mask[:len(chunk)] = 1.0
    pad = np.zeros((local_batch - len(chunk),) + images.shape[1:], images.dtype)
    x = np.concatenate([chunk, pad]).astype(np.float32)
    yield (jax.make_array_from_process_local_data(sharding, x),
           jax.make_array_from_process_local_data(sharding, mask))
