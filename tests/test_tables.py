"""The generated tables of docs/ match the committed run summaries they come from."""
import json
import os
import shutil

from experiments import tables


def test_committed_tables_are_generated_from_the_committed_data():
  assert tables.main(["--check"]) == 0, (
      "a generated block of docs/ differs from docs/runs/: run python experiments/tables.py")


def test_a_changed_summary_makes_the_check_fail(tmp_path, monkeypatch):
  runs = tmp_path / "runs"
  shutil.copytree(tables.RUNS, runs)
  page = tmp_path / "page.md"
  page.write_text("intro\n<!-- BEGIN GENERATED: rho_n_grid -->\nold\n"
                  "<!-- END GENERATED: rho_n_grid -->\nend\n")
  monkeypatch.setattr(tables, "RUNS", str(runs))
  monkeypatch.setattr(tables, "PAGES", [str(page)])
  monkeypatch.setitem(tables.TABLES, "rho_n_grid",
                      lambda: tables.rho_n_table(tables.load("rho_n_grid", str(runs))))
  assert tables.main(["--check"]) == 1          # "old" is not what the data give
  assert tables.main([]) == 0 and tables.main(["--check"]) == 0
  text = page.read_text()
  assert text.startswith("intro\n") and text.endswith("end\n") and "| n | ρ | κ |" in text
  files = sorted(os.listdir(runs / "rho_n_grid"))
  path = runs / "rho_n_grid" / files[0]
  summary = json.loads(path.read_text())
  summary["final"]["elbo_nats"] -= 10.0
  path.write_text(json.dumps(summary))
  assert tables.main(["--check"]) == 1


def _summary(method, seed, l1000, rho=0.9, grad_norm=None):
  steps = list(range(1000, 11000, 1000))
  grad_norm = grad_norm or [40.0] * len(steps)
  return {"config": {"method": method, "rho": rho, "num_ou_samples": 5}, "seed": seed,
          "iw_bound_k1000": l1000, "skipped_nonfinite": 0, "train_seconds": 600.0,
          "final": {"elbo_nats": l1000 - 5, "kl_per_layer_nats": [6.0, 4.0, 1.0, 2.0],
                    "active_units_x": [10, 5, 2, 3], "x_share_units": [10, 5, 2, seed + 1],
                    "x_share_layer": [0.9, 0.5, 0.2, 0.1],
                    "mutual_information_nats": [5.0, 3.0, 1.0, 0.5]},
          "trainer_evals": [], "train_curve": {
              "step": steps, "loss": [250.0 - 0.1 * i for i in range(len(steps))],
              "grad_norm": grad_norm}}


def test_campaign_tables_pair_seeds_and_find_spikes():
  spiky = [40.0] * 10
  spiky[6] = 253.0
  runs = [_summary("vae", 0, -240.0), _summary("vae", 1, -241.0),
          _summary("hvae", 0, -238.5), _summary("hvae", 1, -242.0, grad_norm=spiky),
          _summary("hvae", 0, -239.0, rho=0.7)]
  paired = tables.campaign_vs_vae(runs)
  assert "hvae ρ = 0.9, n = 5: test L1000 − the same seed's VAE: seed 0: +1.50, seed 1: -1.00" \
      in paired and "ahead in 1/2 seeds" in paired
  assert "hvae ρ = 0.7, n = 5" in paired and "ahead in 1/1 seeds" in paired
  assert "varies by 0.71 nats (sd) across its 2 seeds" in paired
  assert tables.spikes(runs[3])["steps"] == [7000]
  assert tables.spikes(runs[2])["steps"] == [] and tables.spikes(runs[2])["loss_rise"] < 0
  table = tables.campaign_table(runs)
  rows = table.splitlines()[2:]
  assert [r.split(" | ")[0] for r in rows] == ["| vae", "| hvae ρ = 0.9, n = 5",
                                                "| hvae ρ = 0.7, n = 5"]
  assert "-240.5 ± 0.7 (-240.0, -241.0)" in rows[0]
  assert rows[1].endswith("| 1/2 | 10, 10 |")   # seed 1 has 2 x-share units in z4
  stability = tables.campaign_stability(runs).splitlines()
  assert stability[4] == "| hvae ρ = 0.9, n = 5, seed 0 | 0 | none | -0.10 | 40.0 |"
  assert stability[5] == "| hvae ρ = 0.9, n = 5, seed 1 | 0 | 7,000 | -0.10 | 40.0 |"


def test_fig1_points_take_rho_and_n_from_each_runs_config():
  """The MNIST Fig. 1 table reads rho and n from the summary's run_config (the VAE at rho 1,
  n 0), groups seeds of one (n, rho), and leaves out runs that differ from the VAE by more
  than rho and n (KL annealing, gradient skipping). Bugs caught: a cell keyed by the run's
  name only; vae+kl drawn as the VAE."""
  from experiments.docs_tables import mnist  # pylint: disable=g-import-not-at-top

  def named(name, method, seed, l1000, rho=0.9, n=5):
    s = _summary(method, seed, l1000, rho=rho)
    s["run_config"] = {"method": method, "rho": rho, "num_ou_samples": n}
    return s

  by_name = {
      "vae": [named("vae", "vae", 0, -110.0), named("vae", "vae", 1, -112.0)],
      "vae+kl": [named("vae+kl", "vae", 0, -90.0)],
      "vae+skip": [named("vae+skip", "vae", 0, -90.0)],
      "hvae": [named("hvae", "hvae", 0, -100.0)],
      "hvae@rho=0.8": [named("hvae@rho=0.8", "hvae", 0, -105.0, rho=0.8)],
      "hvae@kappa=0.152@n=2": [named("k", "hvae", 0, -101.0, rho=0.8237, n=2)],
  }
  points = mnist.fig1_points(by_name)
  assert [(p["num_ou_samples"], p["rho"], p["seed"]) for p in points] == [
      (0, 1.0, 0), (0, 1.0, 1), (5, 0.9, 0), (5, 0.8, 0), (2, 0.8237, 0)]
  assert abs(points[-1]["kappa"] - (1 - 0.8237 ** 2) * 0.5) < 1e-12
  rows = mnist.fig1(points).splitlines()[2:]
  assert len(rows) == 4 and rows[0].startswith("| vae | 1 | 0.000 | 0,1 |")
  assert "-111.0 ± 1.4 (-110.0, -112.0)" in rows[0]
  assert rows[3].startswith("| 2 | 0.8237 | 0.161 | 0 |")


def test_every_planned_mnist_run_has_a_label():
  """Every run name of the MNIST campaigns is shown under a readable label in the tables
  and figures (a missing one printed the raw name, e.g. 'hvae@rho=0.8', with no n)."""
  from experiments.docs_tables import mnist  # pylint: disable=g-import-not-at-top
  from experiments.lab import campaigns  # pylint: disable=g-import-not-at-top

  for plan in ("mnist_100k", "mnist_1m"):
    names = {run.name for run in campaigns.PLANS[plan].runs}
    assert names <= set(mnist.LABELS), (plan, sorted(names - set(mnist.LABELS)))


def test_l5000_rows_pair_each_release_with_its_run_and_the_paper():
  from experiments.docs_tables import mnist  # pylint: disable=g-import-not-at-top

  base = {"hvae": [_summary("hvae", 1, -104.0), _summary("hvae", 0, -100.1)],
          "vae": [_summary("vae", 0, -110.0)]}
  records = [dict(name=name, seed=0, step=100_000, num_examples=10_000,
                  iw_bound_k5000=l5000, elbo_nats=l5000 - 8)
             for name, l5000 in (("hvae", -99.5), ("vae", -109.25))]
  rows = mnist.l5000(records, base).splitlines()[2:]
  assert rows == [
      "| vae | 0 | 100,000 | 10,000 | -109.25 | -110.00 | -117.25 | — |",
      "| hvae ρ = 0.9, n = 5 | 0 | 100,000 | 10,000 | -99.50 | -100.10 | -107.50 | "
      "-83.42 (Table 1, static MNIST, HVAE L = 4) |"]
  assert mnist.l5000([], base).startswith("No L5000")
