"""Device-resident datasets: shuffling and binarization with ``jax.random``, no per-step
host->device copy.

The uint8 images are put on the devices once (replicated over this process's devices).
Training batches are drawn on device: each epoch is a permutation of this process's share
of the examples, ``permutation(fold_in(fold_in(key, process_index), epoch))``, and
dynamically binarized datasets get a fresh Bernoulli draw per batch from
``fold_in(key, step)``. The order depends only on (seed, step, process count), so a
resumed run sees exactly the batches an uninterrupted one would.

Evaluation sets of dynamically binarized datasets are binarized once on the host with
``numpy.random.default_rng(EVAL_BINARIZATION_SEED)`` so every evaluation scores the same
binary images.

Multi-process: each process keeps the contiguous shard ``[p*N/P, (p+1)*N/P)`` of the
examples and draws ``batch_size / P`` examples per step from it; the global batch is
assembled with ``jax.make_array_from_process_local_data``.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

EVAL_BINARIZATION_SEED = 0


def binarize_once(images: np.ndarray, seed: int = EVAL_BINARIZATION_SEED) -> np.ndarray:
  """Fixed Bernoulli binarization of uint8 grey levels (evaluation sets)."""
  rng = np.random.default_rng(seed)
  return (rng.random(images.shape, dtype=np.float32) < images / np.float32(255.0)).astype(
      np.uint8)


def _process_share(n, num_processes, index):
  lo = n * index // num_processes
  hi = n * (index + 1) // num_processes
  return lo, hi


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
    if batch_size % mesh.size:
      raise ValueError(f"batch_size={batch_size} must be divisible by the number of "
                       f"devices ({mesh.size}).")
    self.local_batch = batch_size // num_proc
    lo, hi = _process_share(len(images), num_proc, proc)
    if hi - lo < self.local_batch:
      raise ValueError(f"batch_size={batch_size} exceeds the {hi - lo} training examples "
                       f"of this process.")
    self.mesh = mesh
    self.binarization = binarization
    self.steps_per_epoch = (hi - lo) // self.local_batch
    self._key = jax.random.fold_in(jax.random.PRNGKey(seed), proc)
    local_mesh = Mesh(np.array(mesh.local_devices), ("data",))
    self._replicated = NamedSharding(local_mesh, P())
    self._local_sharding = NamedSharding(local_mesh, P(None, "data"))
    self._global_sharding = NamedSharding(mesh, P(None, "data"))
    self.images = jax.device_put(images[lo:hi], self._replicated)
    self._epoch, self._perm = None, None
    draw = functools.partial(_draw_batch, batch=self.local_batch,
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

  def stack(self, step: int, k: int, device_step=None):
    """The batches of steps ``step .. step + k - 1``, stacked: ``[k, B, H, W, C]``.

    ``device_step``: optionally the same step as an int32 array already on the devices
    (e.g. the train state's ``step``); then no host-to-device copy happens unless the
    chunk starts a new epoch's permutation from a host-side step."""
    if k < 1:
      raise ValueError(f"k={k} must be >= 1")
    if device_step is None:
      device_step = jax.device_put(np.int32(step), self._replicated)
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


def _draw_batch(images, perm, key, step, *, batch, steps_per_epoch, dynamic):
  i = step % steps_per_epoch
  idx = jax.lax.dynamic_slice_in_dim(perm, i * batch, batch)
  x = images[idx].astype(jnp.float32)
  if dynamic:
    u = jax.random.uniform(jax.random.fold_in(jax.random.fold_in(key, step), 1), x.shape)
    x = (u < x / 255.0).astype(jnp.float32)
  return x


def eval_batches(images: np.ndarray, batch_size: int, mesh: Mesh, max_examples: int = 0):
  """Yields ``(x, mask)``: fixed-size float32 batches sharded along ``data`` (the last one
  padded, ``mask`` 1.0 on real examples) over the first ``max_examples`` images (0: all).
  Each process reads its share of the examples."""
  if max_examples:
    images = images[:max_examples]
  num_proc, proc = jax.process_count(), jax.process_index()
  lo, hi = _process_share(len(images), num_proc, proc)
  local = images[lo:hi]
  local_batch = batch_size // num_proc
  sharding = NamedSharding(mesh, P("data"))
  n_batches = -(-max(len(images) // num_proc, 1) // local_batch)
  for b in range(n_batches):
    chunk = local[b * local_batch:(b + 1) * local_batch]
    mask = np.zeros(local_batch, np.float32)
    mask[:len(chunk)] = 1.0
    pad = np.zeros((local_batch - len(chunk),) + local.shape[1:], local.dtype)
    x = np.concatenate([chunk, pad]).astype(np.float32)
    yield (jax.make_array_from_process_local_data(sharding, x),
           jax.make_array_from_process_local_data(sharding, mask))
