"""Starts a multi-process run on this machine: N processes of experiments/main.py joined
over 127.0.0.1, each with its own fake CPU devices (or its share of the local GPUs).

    python experiments/launch_local.py --num_processes=2 --devices_per_process=2 -- \
      --config=configs/smoke.py --workdir=/tmp/mp

Everything after ``--`` goes to every process's main.py; the launcher adds
``--config.coordinator_address=127.0.0.1:PORT --config.num_processes=N
--config.process_id=I``. Process 0's output is shown; the others' go to
``<workdir>/process_<i>.log``. If one process fails, the others are stopped and the
launcher exits with its status.
"""
import os
import socket
import subprocess
import sys
import time

from absl import app, flags

flags.DEFINE_integer("num_processes", 2, "Number of processes.")
flags.DEFINE_integer("devices_per_process", 2,
                     "Fake CPU devices per process (0: leave XLA_FLAGS as they are).")
flags.DEFINE_integer("port", 0, "Coordinator port (0: a free one).")
FLAGS = flags.FLAGS

MAIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "main.py")


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def launch(num_processes, devices_per_process, port, main_args, log_dir):
  """Runs the processes to completion; returns the first non-zero exit status (or 0)."""
  env = dict(os.environ)
  if devices_per_process:
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                        f" --xla_force_host_platform_device_count={devices_per_process}")
    env.setdefault("JAX_PLATFORMS", "cpu")
  port = port or free_port()
  os.makedirs(log_dir, exist_ok=True)
  procs, logs = [], []
  for i in range(num_processes):
    args = [sys.executable, MAIN, *main_args,
            f"--config.coordinator_address=127.0.0.1:{port}",
            f"--config.num_processes={num_processes}", f"--config.process_id={i}"]
    out = None if i == 0 else open(os.path.join(log_dir, f"process_{i}.log"), "w")
    logs.append(out)
    procs.append(subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT if out
                                  else None))
  status = 0
  try:
    while any(p.poll() is None for p in procs):
      failed = [p.returncode for p in procs if p.returncode not in (None, 0)]
      if failed:
        status = failed[0]
        break
      time.sleep(0.2)
    status = status or next((p.returncode for p in procs if p.returncode), 0)
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
    for f in logs:
      if f is not None:
        f.close()
  return status


def main(argv):
  main_args = argv[1:]
  workdir = next((a.split("=", 1)[1] for a in main_args if a.startswith("--workdir=")), None)
  if workdir is None:
    raise app.UsageError("pass main.py's flags after --, including --workdir=DIR")
  status = launch(FLAGS.num_processes, FLAGS.devices_per_process, FLAGS.port, main_args,
                  workdir)
  if status:
    print(f"a process failed with status {status}; see {workdir}/process_*.log",
          file=sys.stderr)
  sys.exit(status)


if __name__ == "__main__":
  app.run(main)
