"""The older tables of ``docs/results.md`` (sections 0, 2 and 3), from the CSV and JSON
rows their scripts wrote to ``docs/data/``, in the format of their time: a layer carries
x-information on >= 1 x-based active unit (not ``evaluation.informative_layers``)."""
from __future__ import annotations

import csv
import json

import numpy as np

from . import common
from .common import mean_sd
from .render import layers, table


def read_csv(path: str, json_keys) -> list[dict]:
  """The rows of a CSV written by ``sweeps.write_csv``: ``json_keys`` decoded from JSON
  (lists), ``seed`` as an int, every other field a string."""
  with open(path) as f:
    rows = list(csv.DictReader(f))
  for r in rows:
    for key in json_keys:
      r[key] = json.loads(r[key])
    r["seed"] = int(r["seed"])
  return rows


def _x_info(at) -> tuple[str, str]:
  """('k/seeds' with >= 1 x-based unit above z1, 'k/seeds' with one in the top layer)."""
  above = sum(any(u >= 1 for u in r["active_units_x"][1:]) for r in at)
  top = sum(r["active_units_x"][-1] >= 1 for r in at)
  return f"{above}/{len(at)}", f"{top}/{len(at)}"


def legacy_phase_table(path: str, label: str) -> str:
  """The format of results.md sections 2 (phase transition, width) from a list of rows
  (phase_transition.py's JSON rows, or {"rows": [...]}): one Markdown row per (dataset,
  rho), the model named by ``label``."""
  with open(path) as f:
    rows = json.load(f)
  rows = rows["rows"] if isinstance(rows, dict) else rows
  zl = layers("L")
  header = [f"{label} ρ", "seeds", "ELBO mean ± sd (seeds)", "top KL mean ± sd (seeds)",
            f"KL per layer {zl} (mean)", f"AU x-based {zl} per seed",
            f"I(x; z_i) {zl} (mean)", "seeds with x-info above z1", "seeds with x-info in z_L"]
  lines = []
  for name, rho in sorted({(r["dataset"], r["rho"]) for r in rows}):
    at = sorted((r for r in rows if r["dataset"] == name and r["rho"] == rho),
                key=lambda r: r["seed"])
    mean = lambda key, d: " ".join(f"{v:.{d}f}" for v in np.mean([r[key] for r in at], 0))
    lines.append([f"{name} {rho:g}", common.seeds(at),
                  mean_sd([r["elbo_nats"] for r in at]),
                  mean_sd([r["kl_per_layer_nats"][-1] for r in at], 2),
                  mean("kl_per_layer_nats", 2),
                  common.per_seed(r["active_units_x"] for r in at),
                  mean("mutual_information_nats", 2), *_x_info(at)])
  return table(header, lines)


def legacy_compare_table(path: str) -> str:
  """results.md section 3's skip table from compare.py's CSV (one row per method and
  seed): one Markdown row per method, per-layer columns bottom to top."""
  rows = read_csv(path, ("active_units_x", "active_units_conditional", "kl_per_layer_nats",
                         "mutual_information_nats"))
  depth = len(rows[0]["kl_per_layer_nats"]) if rows else "L"
  header = ["run (4 × 40, 20k steps)", "L100 mean ± sd (seeds 0, 1, 2)", "ELBO",
            f"KL per layer {layers(depth)} (mean)", f"AU x-based {layers(depth)} per seed",
            f"AU conditional {layers(depth)} per seed", f"I(x; z_i) {layers(depth)} (mean)",
            "seeds with x-info above z1", f"seeds with x-info in z{depth}"]
  lines = []
  for method in dict.fromkeys(r["method"] for r in rows):
    at = sorted((r for r in rows if r["method"] == method), key=lambda r: r["seed"])
    mean = lambda key, d: " / ".join(f"{v:.{d}f}" for v in np.mean([r[key] for r in at], 0))
    lines.append([method, mean_sd([float(r["iw_bound_k100"]) for r in at]),
                  mean_sd([float(r["elbo_nats"]) for r in at]), mean("kl_per_layer_nats", 2),
                  common.per_seed(r["active_units_x"] for r in at),
                  common.per_seed(r["active_units_conditional"] for r in at),
                  mean("mutual_information_nats", 2), *_x_info(at)])
  return table(header, lines)


def legacy_init_table(path: str) -> str:
  """results.md section 0's tables from init_study.py's CSV, in its format and order: one
  Markdown row per (width, depth, method, steps, init)."""
  rows = read_csv(path, ("active_units_x", "initial_kl_per_layer_nats", "kl_per_layer_nats",
                         "mutual_information_nats"))
  per_layer = lambda at, key, d=1: " / ".join(
      f"{c.mean():.{d}f}±{(c.std(ddof=1) if len(c) > 1 else 0.0):.{d}f}"
      for c in np.asarray([r[key] for r in at], float).T)
  zl = layers("L")
  header = ["model", "method", "steps", "init", f"initial KL {zl}", "ELBO mean ± sd (seeds)",
            f"KL {zl}", f"AU x-based {zl} per seed", f"I(x; z_i) {zl}",
            "seeds with x-info above z1", "seeds with x-info in z_L"]
  lines = []
  cell_of = lambda r: (r["width"], r["depth"], r["method"], r["steps"], r["init"])
  for cell in dict.fromkeys(cell_of(r) for r in rows):
    at = sorted((r for r in rows if cell_of(r) == cell), key=lambda r: r["seed"])
    w, d, m, steps, init = cell
    lines.append([f"{w}x{d}", m, steps, init, per_layer(at, "initial_kl_per_layer_nats"),
                  mean_sd([float(r["elbo_nats"]) for r in at]),
                  per_layer(at, "kl_per_layer_nats"),
                  common.per_seed(r["active_units_x"] for r in at),
                  per_layer(at, "mutual_information_nats", 2), *_x_info(at)])
  return table(header, lines)
