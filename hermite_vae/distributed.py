"""Multi-process set-up: one JAX process per host (TPU pod slices, multi-GPU nodes, SLURM,
or several processes on one machine), all in one data-parallel run.

``initialize(config)`` is called by ``train_and_evaluate`` before any JAX computation:

* ``config.coordinator_address`` set (e.g. ``'10.0.0.1:1234'``): an explicit cluster of
  ``config.num_processes`` processes, this one being ``config.process_id`` (0-based). On
  CPU the collectives use gloo. A coordinator that does not answer within
  ``config.distributed_timeout_s`` seconds is an error naming the address, not a hang.
* ``config.distributed=True`` without an address: ``jax.distributed.initialize()``
  detects the cluster itself (TPU pod slices, SLURM, Open MPI).
* neither: a single process (nothing to do).

What is sharded and what is replicated (see ``train.py``): the global batch is split
along the mesh axis ``data`` over every device of every process (each process computes
its rows of each global batch, assembled with ``jax.make_array_from_process_local_data``);
parameters and optimizer state are replicated; XLA all-reduces the gradients. Only
process 0 writes ``config.json``, ``metrics.jsonl``, TensorBoard events and the progress
bar; every process takes part in orbax checkpointing.
"""
from __future__ import annotations

import logging
import socket
import time

import jax

log = logging.getLogger(__name__)


def validate(config) -> None:
  """Raises ValueError for an inconsistent process-group setting (before any compute)."""
  address, num, index = config.coordinator_address, config.num_processes, config.process_id
  if not address:
    if num or index >= 0:
      raise ValueError(
          f"config.num_processes={num!r} / config.process_id={index!r} need "
          "config.coordinator_address (host:port of process 0)")
    return
  if ":" not in address:
    raise ValueError(f"config.coordinator_address={address!r}: expected host:port")
  if not isinstance(num, int) or num < 1:
    raise ValueError(f"config.num_processes={num!r}: must be an integer >= 1 with "
                     "config.coordinator_address")
  if not isinstance(index, int) or not 0 <= index < num:
    raise ValueError(f"config.process_id={index!r}: must be in [0, {num - 1}] "
                     f"(config.num_processes={num})")
  if config.distributed_timeout_s < 1:
    raise ValueError(f"config.distributed_timeout_s={config.distributed_timeout_s!r}: "
                     "must be >= 1")


def _wait_for_coordinator(config) -> None:
  """Raises RuntimeError naming the setting if the coordinator does not accept a TCP
  connection within the timeout (XLA would abort the process without saying which)."""
  host, port = config.coordinator_address.rsplit(":", 1)
  deadline = time.monotonic() + config.distributed_timeout_s
  while True:
    try:
      with socket.create_connection((host, int(port)), timeout=1.0):
        return
    except OSError as e:
      if time.monotonic() > deadline:
        raise RuntimeError(
            f"config.coordinator_address={config.coordinator_address!r} did not answer "
            f"process {config.process_id} within config.distributed_timeout_s="
            f"{config.distributed_timeout_s}s ({e}); start process 0 there, or fix the "
            "address") from e
      time.sleep(0.2)


def initialize(config) -> None:
  """Joins the process group the config describes (idempotent; see the module doc)."""
  validate(config)
  if jax.distributed.is_initialized():
    return
  if config.coordinator_address:
    log.warning("joining the process group at config.coordinator_address=%r as process %d "
                "of %d (config.distributed_timeout_s=%s)", config.coordinator_address,
                config.process_id, config.num_processes, config.distributed_timeout_s)
    if config.process_id:   # process 0 hosts the coordinator; the others wait for it
      _wait_for_coordinator(config)
    if jax.config.jax_platforms in (None, "", "cpu") or "cpu" in str(jax.config.jax_platforms):
      # CPU collectives across processes (harmless where another platform is used).
      jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
      jax.distributed.initialize(
          coordinator_address=config.coordinator_address,
          num_processes=config.num_processes, process_id=config.process_id,
          initialization_timeout=int(config.distributed_timeout_s))
    except Exception as e:  # pylint: disable=broad-except
      raise RuntimeError(
          f"could not join the process group at config.coordinator_address="
          f"{config.coordinator_address!r} as process {config.process_id} of "
          f"{config.num_processes} within config.distributed_timeout_s="
          f"{config.distributed_timeout_s}s: {e}") from e
  elif config.distributed:
    jax.distributed.initialize()
  else:
    return
  log.info("JAX process %d of %d; %d local / %d global devices", jax.process_index(),
           jax.process_count(), jax.local_device_count(), jax.device_count())


def is_chief() -> bool:
  """Whether this process writes the run's files (metrics, TensorBoard events, the
  progress bar, config.json): process 0 only."""
  return jax.process_index() == 0
