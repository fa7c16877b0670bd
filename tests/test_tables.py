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
