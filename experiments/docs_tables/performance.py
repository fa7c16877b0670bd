"""Performance: aggregate training throughput of runs in parallel processes
(``experiments/parallel_benchmark.py``'s ``docs/data/parallel_cpu.json``)."""
from __future__ import annotations

import json
import os

from . import common
from .render import table


def parallel_table(path: str = os.path.join(common.DATA, "parallel_cpu.json")) -> str:
  """One Markdown row per (method, mode) of ``path``: aggregate steps/s, its ratio to the
  method's single process, and the wall time of the two runs."""
  with open(path) as f:
    rows = json.load(f)
  base = {r["method"]: r["aggregate_steps_per_s"] for r in rows
          if r["mode"].startswith("1 process")}
  header = ["method", "mode", "aggregate steps/s", "against 1 process", "wall, 2 runs"]
  return table(header, [
      [r["method"], r["mode"], f"{r['aggregate_steps_per_s']:.1f}",
       f"{r['aggregate_steps_per_s'] / base[r['method']]:.2f}×",
       f"{r['wall_s']:.1f} s ({r['steps']:,} steps each)"] for r in rows])
