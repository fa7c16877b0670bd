"""The tables of ``docs/`` generated from the run summaries in ``docs/runs/``.

    python experiments/tables.py            # rewrite every generated block
    python experiments/tables.py --check    # exit 1 if a block differs from its data
    python experiments/tables.py --figures  # also redraw docs/figures/ from the data

A generated block of a Markdown page sits between ``<!-- BEGIN GENERATED: name -->`` and
``<!-- END GENERATED: name -->``; everything between them is replaced by ``TABLES[name]``
computed from the JSON summaries (``experiments/summarize_runs.py``). Nothing in such a
block is typed by hand, so a table cannot drift from its data
(``tests/test_tables.py`` regenerates them from the committed files). The studies live in
``experiments/docs_tables/``; this file names the blocks and is the command line.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

try:  # imported as experiments.tables
  from .docs_tables import campaign, common, figures as drawing, legacy, mnist, performance
  from .docs_tables import render as markdown, rho_n
except ImportError:  # run as python experiments/tables.py: experiments/ is sys.path[0]
  from docs_tables import campaign, common, figures as drawing, legacy, mnist, performance
  from docs_tables import render as markdown, rho_n

ROOT, RUNS, DATA = common.ROOT, common.RUNS, common.DATA
PAGES = [os.path.join(ROOT, "docs", "results.md"), os.path.join(ROOT, "docs", "performance.md")]
BLOCK = markdown.BLOCK
PREDICTIONS = rho_n.PREDICTIONS
CAMPAIGN, SPIKE_FACTOR = campaign.CAMPAIGN, campaign.SPIKE_FACTOR

# The public names of the studies, as scripts and tests use them.
load, mean_sd, per_layer_mean = common.load, common.mean_sd, common.per_layer_mean
informative, kappa = common.informative, common.kappa
rho_n_table, kappa_fit, kappa_fit_text = rho_n.rho_n_table, rho_n.kappa_fit, rho_n.kappa_fit_text
same_kappa_table, linear_discount = rho_n.same_kappa_table, rho_n.linear_discount
predict, measured_rho_c, prediction_text = (rho_n.predict, rho_n.measured_rho_c,
                                            rho_n.prediction_text)
campaign_table, campaign_vs_vae = campaign.campaign_table, campaign.campaign_vs_vae
campaign_stability, spikes = campaign.campaign_stability, campaign.spikes
parallel_table = performance.parallel_table
legacy_phase_table, legacy_compare_table = legacy.legacy_phase_table, legacy.legacy_compare_table
legacy_init_table, read_csv = legacy.legacy_init_table, legacy.read_csv
figures = drawing.figures

# Every generated block of PAGES by name: a function of no argument returning its Markdown.
TABLES = {
    "init_main": lambda: legacy_init_table(os.path.join(DATA, "init_study_main.csv")),
    "init_others": lambda: legacy_init_table(os.path.join(DATA, "init_study_others_wide.csv")),
    "skips_20k": lambda: legacy_compare_table(os.path.join(DATA, "skips_mnist_20k.csv")),
    "phase_4x40": lambda: legacy_phase_table(os.path.join(DATA, "phase_transition.json"),
                                             "4 × 40"),
    "width_3x40": lambda: legacy_phase_table(os.path.join(DATA, "width_3x40.json"), "3 × 40"),
    "width_3x200": lambda: legacy_phase_table(os.path.join(DATA, "width_3x200.json"),
                                              "3 × 200"),
    "parallel_cpu": parallel_table,
    "rho_n_grid": lambda: rho_n_table(load("rho_n_grid")),
    "rho_n_fit": lambda: kappa_fit_text(load("rho_n_grid")),
    "rho_n_same_kappa": lambda: same_kappa_table(rho_n.fitted_runs()),
    "rho_n_10_table": lambda: rho_n.n_table(10),
    "rho_n_prediction": lambda: prediction_text(10),
    "campaign_table": lambda: campaign_table(campaign.runs()),
    "campaign_vs_vae": lambda: campaign_vs_vae(campaign.runs()),
    "campaign_stability": lambda: campaign_stability(campaign.runs()),
    "campaign_interval": lambda: campaign.campaign_interval(campaign.runs()),
    "rho_n_vs_pooled": lambda: rho_n.pooled_bound_table(load("rho_n_grid")),
    "rho_n_2_table": lambda: rho_n.n_table(2),
    "rho_n_2_prediction": lambda: prediction_text(2),
    "rho_n_3_table": lambda: rho_n.n_table(3),
    "rho_n_3_prediction": lambda: prediction_text(3),
    "mnist_table": mnist.table,
    "mnist_paired": mnist.paired,
    "mnist_fig1": mnist.fig1,
    "mnist_300k": mnist.continuation,
    "law_skip_test": lambda: rho_n.equal_kappa_test("law_skip"),
    "law_skip_table": lambda: rho_n.rho_n_table(load("law_skip")),
    "law_t3_test": lambda: rho_n.equal_kappa_test("law_t3"),
    "law_t3_table": lambda: rho_n.rho_n_table(load("law_t3")),
    "mnist_reference": mnist.reference,
    "mnist_l5000": mnist.l5000,
    "mnist_spikes": mnist.spikes,
    "gap_decomposition": mnist.gap_decomposition,
}


def render(text: str) -> str:
  """``text`` with every generated block regenerated from ``TABLES``."""
  return markdown.render(text, TABLES)


def main(argv=None) -> int:
  """The command line (see the module docstring); returns the exit status: 1 when a
  prediction is already recorded or, with --check, when a block differs from its data."""
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--check", action="store_true")
  parser.add_argument("--figures", action="store_true")
  parser.add_argument("--predict", type=int, default=0,
                      help="record the critical-rho prediction for this n from the grid")
  args = parser.parse_args(argv)
  with common.one_load_per_group():
    if args.predict:
      os.makedirs(PREDICTIONS, exist_ok=True)
      path = os.path.join(PREDICTIONS, f"n{args.predict}.json")
      if os.path.exists(path):
        print(f"{path} exists: a prediction is recorded once")
        return 1
      with open(path, "w") as f:
        json.dump(predict(args.predict, rho_n.fitted_runs()), f, indent=1)
        f.write("\n")
    stale = []
    for page in PAGES:
      with open(page) as f:
        text = f.read()
      new = markdown.render(text, TABLES)
      if new != text:
        stale.append(page)
        if not args.check:
          with open(page, "w") as f:
            f.write(new)
    if args.figures:
      figures()
  if args.check and stale:
    print("generated blocks differ from their data: " + ", ".join(stale))
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
