"""The figures of ``docs/figures/``: the top-layer KL of the (rho, n) grid against rho and
against kappa, the validation curves of the Fashion-MNIST and MNIST campaigns, and the
paper's Fig. 1 on MNIST at 100k steps."""
from __future__ import annotations

import os

import numpy as np

from . import campaign, common, mnist, rho_n

FIGURES = os.path.join(common.ROOT, "docs", "figures")


def _plots():
  """The plotting module ``lab.plots`` (matplotlib, imported on first use)."""
  try:  # imported as experiments.docs_tables
    from ..lab import plots  # pylint: disable=g-import-not-at-top
  except ImportError:  # imported as docs_tables: experiments/ is on sys.path
    from lab import plots  # pylint: disable=g-import-not-at-top
  return plots


def figures(out_dir: str = FIGURES) -> None:
  """Draws into ``out_dir`` the (rho, n) figures (if a grid run exists) and the
  campaign's curves (if a campaign run exists); returns nothing."""
  plots = _plots()
  os.makedirs(out_dir, exist_ok=True)
  runs = rho_n.all_runs()
  if runs:
    rows = []
    for r in runs:
      n, rho = rho_n.cell_of(r)
      rows.append({"rho": rho, "num_ou_samples": n, "kappa": common.kappa(rho, n),
                   "seed": r["seed"], **r["final"]})
    plots.rho_n_curves({"mnist": rows}, os.path.join(out_dir, "rho_n_top_kl_vs_rho.png"),
                       os.path.join(out_dir, "rho_n_top_kl_vs_kappa.png"),
                       title="4 x 40 MLP, 8,000 steps, 9k MNIST digits, 3 seeds")
  summaries = campaign.runs()
  if summaries:
    _curves(plots, campaign.by_method(summaries),
            os.path.join(out_dir, "fashion_mnist_100k_curves.png"),
            "Fashion-MNIST, 4 x 40 MLP: validation (1,000 images) every 10,000 steps")
  by_name = mnist.runs()
  if by_name:
    _curves(plots, {mnist.LABELS.get(k, k): v for k, v in by_name.items()},
            os.path.join(out_dir, "mnist_100k_curves.png"),
            "MNIST (mnist.pkl.gz), the paper's Fig. 2: validation (1,000 digits) every "
            "10,000 steps")
  points = mnist.fig1_points(by_name)
  if points:
    plots.rho_n_curves({"mnist": points}, os.path.join(out_dir, "mnist_100k_fig1_vs_rho.png"),
                       os.path.join(out_dir, "mnist_100k_fig1_vs_kappa.png"),
                       title="The paper's Fig. 1 at its budget: static MNIST (mnist.pkl.gz), "
                       "4 x 40 MLP, 100,000 steps, 10,000 test digits")
  longer = mnist.runs(mnist.CONTINUATION)
  if longer:
    _curves(plots, {mnist.LABELS.get(k, k): v for k, v in longer.items()},
            os.path.join(out_dir, "mnist_300k_curves.png"),
            "MNIST, the seed-0 pair continued to 300,000 steps: validation (1,000 digits)")


def _curves(plots, by_label, path, title):
  """The paper's Fig. 2 for one campaign: validation ELBO and top-layer KL against steps,
  a colour per method and a line style per seed."""
  colours = ["tab:gray", "tab:red", "tab:blue", "tab:green", "tab:orange", "tab:purple"]
  styles = ["-", "--", ":", "-.", (0, (1, 3))]
  curves = {}
  for m, (label, at) in enumerate(by_label.items()):
    for r in at:
      ev = sorted(r["trainer_evals"], key=lambda e: e["step"])
      steps = np.array([e["step"] for e in ev])
      curves[f"{label}, seed {r['seed']}"] = {
          "elbo": (steps, np.array([e["elbo_nats"] for e in ev])),
          "top_kl": (steps, np.array([e["kl_per_layer_nats"][-1] for e in ev])),
          "style": {"color": colours[m % len(colours)],
                    "linestyle": styles[r["seed"] % len(styles)], "marker": "."}}
  plots.training_curves(curves, path, title=title)
