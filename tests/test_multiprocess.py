"""One data-parallel run on several processes: 2 processes x 2 fake CPU devices joined over
127.0.0.1 (experiments/launch_local.py) train like 1 process x 4 devices — same training
metrics, parameters and optimizer state — and a checkpoint written by either layout
restores in the other and continues identically. The scripts run from outside the
repository (no sys.path edits needed)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from configs import smoke
from hermite_vae import config_lib, metrics_io
from hermite_vae import workdir as workdir_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = ["--config.log_every=2", "--config.eval_every=2", "--config.checkpoint_every=2",
         "--config.keep_checkpoints=3", "--config.steps_per_dispatch=2"]


def _args(workdir, steps):
  return [f"--config={os.path.join(ROOT, 'configs', 'smoke.py')}", f"--workdir={workdir}",
          f"--config.num_train_steps={steps}", *STEPS]


def _one_process(workdir, steps=4):
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
             JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, os.path.join(ROOT, "experiments", "main.py"),
                         *_args(workdir, steps)], env=env, capture_output=True, text=True,
                        timeout=600, cwd=os.path.dirname(workdir))   # outside the repo
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc.stderr


def _two_processes(workdir, steps=4):
  proc = subprocess.run([sys.executable, os.path.join(ROOT, "experiments", "launch_local.py"),
                         "--num_processes=2", "--devices_per_process=2", "--",
                         *_args(workdir, steps)], capture_output=True, text=True, timeout=600,
                        env=dict(os.environ, JAX_PLATFORMS="cpu"), cwd=os.path.dirname(workdir))
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc.stderr


def _state(workdir, step):
  return workdir_lib.restore_state(workdir, smoke.get_config(), 784, step)[1]


def _assert_same_run(a, b, upto=4):
  """Same metrics up to step ``upto`` and the same TrainState at that step."""
  ra = [r for r in metrics_io.read_metrics(a) if r["step"] <= upto]
  rb = [r for r in metrics_io.read_metrics(b) if r["step"] <= upto]
  assert [(r["step"], r["split"]) for r in ra] == [(r["step"], r["split"]) for r in rb]
  assert max(r["step"] for r in ra) == upto
  for x, y in zip(ra, rb):
    for key in ("elbo_nats", "kl_nats", "reconstruction_nats", "loss", "grad_norm"):
      if key in x:
        np.testing.assert_allclose(x[key], y[key], rtol=2e-5, err_msg=key)
    if x["split"] == "eval":
      assert x["num_examples"] == y["num_examples"] == 100
      assert x["active_units_x"] == y["active_units_x"]
  sa, sb = _state(a, upto), _state(b, upto)
  assert int(sa.step) == int(sb.step) == upto
  import jax  # pylint: disable=g-import-not-at-top
  for u, v in zip(jax.tree_util.tree_leaves(sa), jax.tree_util.tree_leaves(sb)):
    np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-4, atol=1e-5)


def test_two_processes_train_like_one_and_resume_in_one(tmp_path):
  one = str(tmp_path / "one")                       # 1 process x 4 devices, steps 0-4
  _one_process(one)
  two = str(tmp_path / "two")                       # 2 processes x 2 devices, steps 0-2
  _two_processes(two, steps=2)
  info = json.load(open(os.path.join(two, "config.json")))
  assert info["process_count"] == 2 and len(info["devices"]) == 4
  assert not [f for f in os.listdir(two) if f.startswith("metrics") and f != "metrics.jsonl"]
  _assert_same_run(one, two, upto=2)
  # The 2-process checkpoint at step 2 continues in 1 process, as if never interrupted.
  assert "Restored checkpoint at step 2" in _one_process(two, steps=4)
  _assert_same_run(one, two, upto=4)


@pytest.mark.slow
def test_one_process_checkpoint_continues_on_two_processes(tmp_path):
  one = str(tmp_path / "one")                       # 1 process x 4 devices, steps 0-4
  _one_process(one)
  one_then_two = str(tmp_path / "one_then_two")     # its checkpoint at 2, 2 processes on
  _one_process(one_then_two, steps=2)
  assert "Restored checkpoint at step 2" in _two_processes(one_then_two, steps=4)
  _assert_same_run(one, one_then_two)


@pytest.mark.parametrize("overrides,match", [
    (dict(coordinator_address="127.0.0.1:1", num_processes=2, process_id=2),
     "process_id=2: must be in \\[0, 1\\]"),
    (dict(coordinator_address="localhost", num_processes=2, process_id=0),
     "expected host:port"),
    (dict(num_processes=2), "need config.coordinator_address"),
])
def test_misconfigured_process_group_fails_before_compute(overrides, match):
  config = smoke.get_config()
  config.update(overrides)
  with pytest.raises(ValueError, match=match):
    config_lib.validate(config)


def test_unreachable_coordinator_fails_in_bounded_time(tmp_path):
  # Process 1 of 2 whose coordinator never answers: an error naming the setting after
  # distributed_timeout_s, not a hang.
  code = (f"import sys; sys.path.insert(0, {ROOT!r})\n"
          "from configs import smoke\nfrom hermite_vae import train\n"
          "c = smoke.get_config()\n"
          "c.coordinator_address = '127.0.0.1:9'; c.num_processes = 2; c.process_id = 1\n"
          "c.distributed_timeout_s = 3\n"
          f"train.train_and_evaluate(c, {str(tmp_path / 'w')!r})\n")
  proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                        timeout=120, env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert proc.returncode != 0
  assert "config.coordinator_address='127.0.0.1:9'" in proc.stderr, proc.stderr[-2000:]


_GUARD_SCRIPT = r"""
import sys
sys.path.insert(0, {root!r})
import jax, numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P
jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.distributed.initialize(sys.argv[1], 2, int(sys.argv[2]))
from hermite_vae import data, train
from hermite_vae import state as state_lib
mesh = state_lib.make_mesh()
images = (np.arange(64 * 16) % 255).astype(np.uint8).reshape(64, 4, 4, 1)
batches = data.TrainBatches(images, 8, "dynamic", 0, mesh)
step = lambda s: jax.device_put(np.int32(s), NamedSharding(mesh, P()))
first = batches.stack(0, 3, step(0))                     # compiles
later = step(3)
with jax.transfer_guard("disallow_explicit"):
  xs = batches.stack(3, 3, later)                        # same epoch: on device only
  xs.block_until_ready()
with jax.transfer_guard("disallow_explicit"):
  try:
    batches.stack(3, 3, None)
    print("GUARD NOT LIVE")
  except Exception as e:
    assert "host-to-device" in str(e), e
print("OK", jax.process_count(), xs.shape, not xs.is_fully_addressable)
"""


def test_a_multi_process_dispatch_draws_its_batches_without_host_copies(tmp_path):
  """On 2 processes the trainer passes the state's global step to the batch drawer; the
  drawer reuses this process's shards of it (no host-to-device copy: jax.transfer_guard)
  and a host-side step is caught by the same guard."""
  import socket  # pylint: disable=g-import-not-at-top
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  procs = [subprocess.Popen([sys.executable, "-c", _GUARD_SCRIPT.format(root=ROOT),
                             f"127.0.0.1:{port}", str(i)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True) for i in range(2)]
  outs = [p.communicate(timeout=300) for p in procs]
  for p, (out, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]
    assert "OK 2 (3, 8, 4, 4, 1) True" in out, out + err[-2000:]
