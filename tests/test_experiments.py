"""Each experiment script end to end at a tiny budget (embedded data, tiny model), run
from outside the repository (the scripts need no sys.path edits). All are marked slow
(``python -m pytest -q -n 2 -m slow tests``); by default, test_multiprocess runs main.py
and launch_local.py from outside the repository."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = [f"--config={os.path.join(ROOT, 'configs', 'smoke.py')}", "--config.num_train_steps=2", "--config.log_every=1",
        "--config.eval_every=2", "--config.checkpoint_every=2", "--config.eval_max_examples=40",
        "--config.mi_paths=2"]


def _run(script, *args, cwd=None):
  cwd = cwd or os.path.dirname(ROOT)   # outside the repository
  proc = subprocess.run([sys.executable, os.path.join(ROOT, "experiments", script), *args],
                        cwd=cwd, capture_output=True, text=True, timeout=900,
                        env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert proc.returncode == 0, proc.stderr[-4000:]
  return proc.stdout


# Slow: test_multiprocess runs main.py and launch_local.py from outside the repo too.
@pytest.mark.slow
def test_main_trains_from_any_directory(tmp_path):
  workdir = tmp_path / "run"
  _run("main.py", f"--workdir={workdir}", *TINY, cwd=str(tmp_path))
  records = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
  assert [r["step"] for r in records if r["split"] == "train"] == [1, 2]
  assert json.load(open(workdir / "config.json"))["config"]["num_train_steps"] == 2


@pytest.mark.slow

def test_phase_transition_with_refinement_and_resume(tmp_path):
  args = ["--workdir", str(tmp_path), *TINY, "--rhos=0.2,0.6,1.0", "--refine_rounds=1",
          "--refine_points=1", "--seeds=0,1"]
  out = _run("phase_transition.py", *args)
  result = json.load(open(tmp_path / "phase_transition.json"))
  rhos = sorted({r["rho"] for r in result["rows"]})
  assert len(rhos) == 4 and {0.2, 0.6, 1.0} <= set(rhos)   # one refined point
  assert sorted((r["rho"], r["seed"]) for r in result["rows"]) == [
      (rho, s) for rho in rhos for s in (0, 1)]
  by_seed = {r["seed"]: r["elbo_nats"] for r in result["rows"] if r["rho"] == 0.2}
  assert by_seed[0] != by_seed[1]                          # two seeds, two models
  row = result["rows"][0]
  assert len(row["active_units_x"]) == len(row["active_units_conditional"]) == 3
  assert len(row["mutual_information_nats"]) == 3
  assert "top_kl" in result["critical_rho"]["mnist_embedded"]
  assert (tmp_path / "phase_transition.png").stat().st_size > 1000
  assert (tmp_path / "phase_transition.csv").exists() and "critical rho" in out
  # Re-running collects the finished runs instead of training again.
  metrics = tmp_path / "mnist_embedded" / "rho_0.2" / "seed_1" / "metrics.jsonl"
  before = os.path.getmtime(metrics)
  _run("phase_transition.py", *args)
  assert os.path.getmtime(metrics) == before


@pytest.mark.slow
def test_phase_transition_with_an_n_axis_the_vae_and_two_processes(tmp_path):
  _run("phase_transition.py", "--workdir", str(tmp_path), *TINY, "--rhos=0.5,0.9",
       "--num_ou_samples=1,3", "--vae", "--seeds=0", "--parallel=2")
  result = json.load(open(tmp_path / "phase_transition.json"))
  cells = sorted((r["method"], r["num_ou_samples"], r["rho"]) for r in result["rows"])
  assert cells == [("hvae", 1, 0.5), ("hvae", 1, 0.9), ("hvae", 3, 0.5), ("hvae", 3, 0.9),
                   ("vae", 0, 1.0)]
  row = next(r for r in result["rows"] if r["num_ou_samples"] == 3 and r["rho"] == 0.5)
  assert abs(row["kappa"] - 0.75 * (2 / 3)) < 1e-12
  assert set(result["critical_rho"]["mnist_embedded"]) == {"n_1", "n_3"}
  assert (tmp_path / "phase_transition_kappa.png").stat().st_size > 1000
  assert (tmp_path / "mnist_embedded" / "n_3" / "rho_0.5" / "seed_0" / "final_eval.json").exists()


@pytest.mark.slow
def test_collapse_grid(tmp_path):
  _run("collapse_grid.py", "--workdir", str(tmp_path), *TINY, "--depths=2", "--widths=2,3",
       "--hidden_width=8", "--seeds=0,1", "--parallel=2")
  rows = json.load(open(tmp_path / "collapse_grid.json"))
  assert sorted((r["method"], r["width"], r["seed"]) for r in rows) == sorted(
      (m, w, s) for m in ("vae", "hvae") for w in (2, 3) for s in (0, 1))
  assert (tmp_path / "collapse_grid.png").stat().st_size > 1000


@pytest.mark.slow
def test_compare_curves_samples_evaluate(tmp_path):
  out = _run("compare.py", "--workdir", str(tmp_path), *TINY, "--methods=vae,hvae+kl",
             "--kl_warmup=0,2", "--num_importance_samples=10", "--seeds=0,1")
  table = (tmp_path / "compare.md").read_text()
  assert "| vae | 2 |" in table and "| hvae+kl | 2 |" in table and "L10" in table
  assert table in out + "\n"
  rows = json.load(open(tmp_path / "compare.json"))
  assert sorted((r["method"], r["seed"]) for r in rows) == [("hvae+kl", 0), ("hvae+kl", 1),
                                                           ("vae", 0), ("vae", 1)]
  # --collect aggregates a folder of seeds, under a label.
  _run("compare.py", "--workdir", str(tmp_path / "collected"), *TINY,
       f"--collect=both seeds={tmp_path / 'vae'}", "--num_importance_samples=10")
  assert "| both seeds | 2 |" in (tmp_path / "collected" / "compare.md").read_text()
  _run("curves.py", f"--workdirs={tmp_path / 'vae' / 'seed_0'},{tmp_path / 'hvae+kl' / 'seed_0'}",
       f"--out={tmp_path / 'curves.png'}")
  assert (tmp_path / "curves.png").stat().st_size > 1000
  _run("samples.py", f"--workdir={tmp_path / 'vae' / 'seed_0'}", "--num=20")
  assert (tmp_path / "vae" / "seed_0" / "samples.png").exists()
  assert (tmp_path / "vae" / "seed_0" / "reconstructions.png").exists()
  out = _run("evaluate.py", f"--workdir={tmp_path / 'vae' / 'seed_0'}", "--num_importance_samples=20",
             "--chunk=10", "--batch_size=40", "--max_examples=40", "--au_samples=3")
  assert "L_20" in out
  result = json.load(open(tmp_path / "vae" / "seed_0" / "eval_train_4500_.json"))
  assert result["iw_bound_k20"] >= result["iw_bound_k1"] - 1.0


@pytest.mark.slow
def test_report_on_a_tiny_run(tmp_path):
  workdir = tmp_path / "run"
  _run("main.py", f"--workdir={workdir}", *TINY)
  out = _run("report.py", f"--workdir={workdir}", "--rhos=1.0,0.9", "--draws=4",
             "--examples=20", "--spectrum_examples=2", "--spectrum_samples=256")
  report = (workdir / "report" / "report.md").read_text()
  assert "wrote" in out and "## Verdict per layer" in report
  for layer in ("z1", "z2", "z3"):
    assert f"| {layer} |" in report
  assert "| z2 | 0.9 | substitute |" in report and "| z2 | 0.9 | jacobian |" in report
  assert "| all | 0.9 | substitute |" in report and "| all | 1.0 | vae |" in report
  assert (workdir / "report" / "kl_per_layer.png").stat().st_size > 1000
  assert (workdir / "report" / "activity.png").stat().st_size > 1000


@pytest.mark.slow
def test_benchmark_tiny(tmp_path):
  out = _run("benchmark.py", "--steps=2", "--repeats=1", "--methods=vae,hvae", "--ou_samples=1",
             "--steps_per_dispatch=1,2",
             "--eval_k=20", "--eval_chunk=10", "--eval_batch=10", "--matmul_size=64",
             f"--out={tmp_path / 'b.json'}")
  result = json.load(open(tmp_path / "b.json"))
  assert [(r["method"], r["steps_per_dispatch"]) for r in result["train"]] == [
      ("vae", 1), ("hvae n=1", 1), ("vae", 2), ("hvae n=1", 2)]
  vae, hvae = result["train"][:2]
  assert hvae["matmul_gflop_per_step"] > vae["matmul_gflop_per_step"] > 0
  assert all(r["matmuls_alone_ms"] > 0 for r in result["train"])
  assert "| hvae n=1 |" in (tmp_path / "b.md").read_text() and "time vs vae" in out


@pytest.mark.slow
def test_memory_tiny():
  out = _run("memory.py", "--presets=smoke", "--methods=vae,hvae,hvae_sequential",
             "--num_ou_samples=16", "--batch_sizes=64")
  rows = {line.split("|")[3].strip(): [float(v.replace(",", "")) for v in
                                       line.split("|")[4:8]]
          for line in out.splitlines() if line.startswith("| smoke")}
  assert list(rows) == ["vae", "hvae", "hvae_sequential"]
  params, args, temp, _ = zip(*rows.values())
  assert len(set(params)) == 1 and len(set(args)) == 1        # same state and batch
  # 16 OU samples evaluated at once hold more scratch than the vae's step.
  assert rows["hvae"][2] > rows["vae"][2] > 0


def test_the_library_imports_no_plotting_or_experiment_code():
  code = ("import sys, hermite_vae, hermite_vae.train, hermite_vae.evaluation, "
          "hermite_vae.models.sampling; hermite_vae.train_and_evaluate; "
          "bad = [m for m in sys.modules if m.split('.')[0] in "
          "('matplotlib', 'lab', 'experiments', 'configs')]; print(bad)")
  proc = subprocess.run([sys.executable, "-c", code], cwd=os.path.dirname(ROOT),
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert proc.stdout.strip() == "[]"


@pytest.mark.slow
def test_gap_decomposition_of_a_release(tmp_path):
  """gap_decomposition.py on a release of a tiny hvae run: the kappa term is kappa(rho, n)
  times half the degree-1 energy, n = 1 has no kappa term and a zero Hermite sum, and every
  measured gap is finite."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from hermite_vae import ou  # pylint: disable=g-import-not-at-top
  workdir, release = tmp_path / "run", tmp_path / "release"
  _run("main.py", f"--workdir={workdir}", *TINY, "--config.method=hvae")
  _run("release.py", f"--workdir={workdir}", f"--out={release}")
  out = tmp_path / "gap.json"
  _run("gap_decomposition.py", f"--workdir={release}", "--examples=8", "--draws=2",
       "--spectrum_examples=2", "--spectrum_samples=64", "--cells=0.8:3,0.9:1", f"--json={out}")
  result = json.load(open(out))
  assert result["step"] == 2 and [c["n"] for c in result["cells"]] == [3, 1]
  for cell in result["cells"]:
    assert len(cell["layers"]) == len(result["energy"]) == 2   # smoke: 3 stochastic layers
    for layer, energy in zip(cell["layers"], result["energy"]):
      np.testing.assert_allclose(layer["kappa_term"],
                                 float(ou.kappa(cell["rho"], cell["n"])) * energy["1"] / 2,
                                 rtol=1e-6)
      low, high = layer["hermite_sum"]
      assert low <= high and np.isfinite(layer["measured"])
      if cell["n"] == 1:
        assert layer["kappa_term"] == 0 and low == high == 0
