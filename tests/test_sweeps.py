"""Critical-rho estimation, the matmul FLOP counter, and parallel sweeps: their workers start, stop with the sweep, and are not reused for another config."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.lab import sweeps
from experiments.lab.flops import matmul_flops, matmul_ops, matmuls_alone
from hermite_vae import smooth


def test_critical_rho_on_a_step():
  rhos = [0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 1.0]
  kl = [20.0, 19.5, 19.0, 18.7, 18.4, 0.3, 0.2, 0.1]     # drops between 0.85 and 0.9
  est = sweeps.critical_rho(rhos, kl)
  assert est["interval"] == [0.85, 0.9] and abs(est["rho_c"] - 0.875) < 1e-9
  assert est["relative_jump"] > 0.9
  assert est["rho_c_fit"] is not None and 0.85 <= est["rho_c_fit"] <= 0.9
  # Order of the inputs does not matter.
  assert sweeps.critical_rho(rhos[::-1], kl[::-1])["rho_c"] == est["rho_c"]


def test_critical_rho_on_a_smooth_logistic():
  rhos = np.linspace(0.5, 1.0, 21)
  y = 10 / (1 + np.exp((rhos - 0.8) / 0.01))
  est = sweeps.critical_rho(rhos, y)
  assert abs(est["rho_c_fit"] - 0.8) < 0.005 and est["width_fit"] < 0.03


def test_matmul_flops_counts_dense_grad_scan_and_smooth():
  a, w = jnp.ones((100, 20)), jnp.ones((20, 30))
  f = 2 * 100 * 20 * 30
  assert matmul_flops(lambda a, w: a @ w, a, w) == f
  assert matmul_flops(jax.grad(lambda w: jnp.sum(jnp.tanh(a @ w))), w) == 2 * f
  scan = lambda xs: jax.lax.scan(lambda c, x: (c, x @ w), 0.0, xs)[1]
  assert matmul_flops(scan, jnp.ones((7, 100, 20))) == 7 * f
  # smooth's gradient: the primal (1 matmul) plus, for each of n samples, a forward, a
  # weight-gradient and an input-gradient matmul — the primal's own backward is skipped.
  sm = lambda w: jnp.sum(smooth(lambda z: jnp.tanh(z @ w), 0.5, 5)(jax.random.PRNGKey(0), a))
  assert matmul_flops(jax.grad(sm), w) == (1 + 3 * 5) * f


def test_matmuls_alone_runs_the_same_matmuls():
  a, w = jnp.ones((100, 20)), jnp.ones((20, 30))
  grad = jax.grad(lambda w: jnp.sum(jnp.tanh(a @ w)))   # forward a@w, backward a^T g
  ops = matmul_ops(grad, w)
  assert sum(ops.values()) == 2
  fn, operands = matmuls_alone(ops)
  outs = fn(operands)
  assert sorted(o.size for o in outs) == [20 * 30, 100 * 30]   # dW (maybe transposed), a@w
  (a0, b0), op0 = operands[0], list(ops)[0]
  np.testing.assert_allclose(outs[0], jax.lax.dot_general(a0, b0, op0.dimension_numbers),
                             rtol=1e-6)
  assert sum(op.flops * n for op, n in ops.items()) == matmul_flops(grad, w)


def test_parallel_sweep_gives_the_runs_of_a_serial_one(tmp_path):
  """train_many with K = 2 (one process per run, one thread each) and K = 1 (in this
  process, XLA's default threads): every run's final metrics are equal, up to the float
  summation order that the thread count sets (relative 1e-5, or 1e-6 absolute for a
  metric near zero such as a collapsed layer's I(x; z), an average of terms of order
  one); counts exactly."""
  import json  # pylint: disable=g-import-not-at-top
  import os  # pylint: disable=g-import-not-at-top
  from configs import smoke  # pylint: disable=g-import-not-at-top
  base = smoke.with_overrides(num_train_steps=4, checkpoint_every=4, eval_every=4,
                              mi_paths=4, eval_max_examples=40)
  runs = {}
  for k in (1, 2):
    jobs = sweeps.seed_jobs(base, str(tmp_path / f"k{k}"), [0, 1])
    runs[k] = sweeps.train_many(jobs, parallel=k)
  assert runs[1][0]["elbo_nats"] != runs[1][1]["elbo_nats"]      # two seeds, two runs
  for a, b in zip(runs[1], runs[2]):
    assert sorted(a) == sorted(b)
    for key in a:
      if isinstance(a[key], str) or key == "seconds":
        continue
      np.testing.assert_allclose(np.asarray(a[key], float), np.asarray(b[key], float),
                                 rtol=1e-5, atol=1e-6, err_msg=key)
  assert os.path.exists(tmp_path / "k2" / "seed_1" / sweeps.REQUEST)
  assert json.load(open(tmp_path / "k2" / "seed_0" / "config.json"))["config"]["seed"] == 0


def test_a_worker_with_two_threads_starts():
  """Bug caught: ``intra_op_parallelism_threads=2`` in XLA_FLAGS (not an XLA flag; alone
  there, XLA reads it as a file name and every worker dies at start)."""
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  assert "--xla_cpu_multi_thread_eigen=false" in sweeps.worker_env(1)["XLA_FLAGS"]
  for threads in (1, 2):
    out = subprocess.run([sys.executable, "-c", "import jax.numpy as jnp; "
                          "print(float(jnp.ones(3).sum()))"], env=sweeps.worker_env(threads),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "3.0", out.stderr[-1000:]


_SWEEP = """
import signal
import sys
# Ctrl-C as in a foreground shell: a process started in the background by a
# non-interactive shell inherits SIGINT ignored, and Python then never raises it.
signal.signal(signal.SIGINT, signal.default_int_handler)
sys.path.insert(0, {root!r})
from configs import smoke
from experiments.lab import sweeps
base = smoke.with_overrides(num_train_steps=10**6, log_every=2, checkpoint_every=2,
                            eval_every=10**6)
sweeps.train_many(sweeps.seed_jobs(base, sys.argv[1], [0, 1, 2]), parallel=2)
"""


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_stopping_a_sweep_stops_its_workers_and_starts_no_other(tmp_path, sig):
  """Bug caught: the thread pool waits instead of cancelling (after Ctrl-C the freed
  slots start the queued run; after SIGTERM the workers are orphaned)."""
  import os  # pylint: disable=g-import-not-at-top
  import signal  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  import time  # pylint: disable=g-import-not-at-top
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  parent = subprocess.Popen([sys.executable, "-c", _SWEEP.format(root=root), str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  deadline = time.time() + 180
  started = lambda s: os.path.isdir(tmp_path / f"seed_{s}" / "checkpoints")
  while time.time() < deadline and not (started(0) and started(1)):
    time.sleep(0.3)
  assert started(0) and started(1)
  parent.send_signal(getattr(signal, sig))
  try:
    parent.communicate(timeout=90)
  finally:   # a failed stop must not leave the sweep and its workers training
    if parent.poll() is None:
      parent.kill()
      subprocess.run(["pkill", "-f", f"run_one {tmp_path}"], check=False)
  assert parent.returncode != 0
  left = subprocess.run(["pgrep", "-f", f"run_one {tmp_path}"], capture_output=True,
                        text=True).stdout.split()
  assert not left, f"workers left running: {left}"
  assert not (tmp_path / "seed_2" / "config.json").exists()   # the queued run never began


def test_a_finished_run_of_another_config_is_refused(tmp_path):
  """Bug caught: ``_finished`` compares the step count only and returns the old result."""
  from configs import smoke  # pylint: disable=g-import-not-at-top
  base = smoke.with_overrides(num_train_steps=2, log_every=2, checkpoint_every=2,
                              eval_every=2, eval_max_examples=40)
  jobs = sweeps.seed_jobs(base, str(tmp_path), [0])
  sweeps.train_many(jobs, parallel=1)
  assert sweeps.train_many(jobs, parallel=1)   # the same config: read back
  changed = sweeps.seed_jobs(base, str(tmp_path), [0])
  changed[0][0].rho = 0.5
  with pytest.raises(ValueError, match="config.rho=0.5"):
    sweeps.train_many(changed, parallel=1)


def test_a_campaign_commits_each_run_and_continues_without_retraining(tmp_path):
  """``experiments/campaign.py --plan=smoke`` into a scratch repository: each run is
  trained, summarized and committed on its own; a rerun (another machine: an empty
  --root) trains nothing; a summary of another config is refused, naming the key; a run
  that does not fit --hours is left. Bugs caught: committed runs retrained; a changed
  config reused."""
  import json  # pylint: disable=g-import-not-at-top
  import os  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  repo = tmp_path / "repo"
  repo.mkdir()
  git = lambda *a: subprocess.run(["git", "-C", str(repo), *a], check=True,
                                  capture_output=True, text=True).stdout
  git("init", "-q")
  git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "--allow-empty", "-m", "0")
  env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
             GIT_COMMITTER_EMAIL="t@t")
  run = lambda work, *extra: subprocess.run(
      [sys.executable, os.path.join(root, "experiments", "campaign.py"), "--plan=smoke",
       f"--root={tmp_path / work}", f"--out_dir={repo / 'runs'}", *extra],
      cwd=root, env=env, capture_output=True, text=True, timeout=600)
  first = run("a", "--commit")
  assert first.returncode == 0, first.stderr[-3000:]
  log = git("log", "--format=%s")
  assert "Run summary: smoke/vae__seed_0" in log and "Run summary: smoke/hvae__seed_0" in log
  again = run("b")                                     # another machine: nothing to train
  assert again.returncode == 0 and again.stdout.count("done     ") == 2, again.stdout
  assert not (tmp_path / "b").exists()
  path = repo / "runs" / "smoke" / "vae__seed_0.json"
  summary = json.loads(path.read_text())
  summary["run_config"]["learning_rate"] = 0.5
  path.write_text(json.dumps(summary))
  changed = run("c", "--dry_run")
  assert changed.returncode != 0 and "config.learning_rate" in changed.stderr
  path.unlink()
  late = run("d", "--hours=0.001")                     # 3.6 s: no run fits
  assert late.returncode == 0 and "left     vae seed 0" in late.stdout, late.stdout


def test_every_campaign_run_builds_a_valid_config():
  """Every run of every plan in ``lab/campaigns.PLANS`` resolves to a config that
  ``config_lib.validate`` accepts, and no two runs of a plan share a summary path: a plan
  that would fail (or overwrite a summary) hours into a campaign fails here. Bug caught: a
  misspelled override or method spec in a plan."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  import os  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  sys.path.insert(0, os.path.join(root, "experiments"))
  try:
    spec = importlib.util.spec_from_file_location(
        "campaign_cli", os.path.join(root, "experiments", "campaign.py"))
    campaign = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(campaign)
  finally:
    sys.path.pop(0)
  for plan in campaign.campaigns.PLANS.values():
    paths = set()
    for run in plan.runs:
      config = campaign.run_config(run, plan, "/nonexistent")
      assert config.seed == run.seed
      if "num_train_steps" in plan.overrides:
        assert config.num_train_steps == plan.overrides["num_train_steps"], run
      path = campaign.summary_path(plan, run, "out")
      assert path not in paths, path
      paths.add(path)
