"""The paper's figures from saved results (matplotlib, Agg backend)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position


def _seed_series(ax, rows, get, fmt, **kw):
  """The mean over seeds of ``get(row)`` against rho as a line, every seed as a dot."""
  rhos = sorted({r["rho"] for r in rows})
  values = [[get(r) for r in rows if r["rho"] == rho] for rho in rhos]
  line, = ax.plot(rhos, [np.mean(v) for v in values], fmt, **kw)
  if any(len(v) > 1 for v in values):
    ax.plot([rho for rho, v in zip(rhos, values) for _ in v], [x for v in values for x in v],
            ".", color=line.get_color(), alpha=0.45, markersize=4)


def phase_transition(results: dict, path: str, title: str = "") -> None:
  """results: {dataset: [row, ...]}, each row with rho, kl_per_layer_nats,
  active_units_x, active_units_conditional, mutual_information_nats, elbo_nats; several
  rows per rho (one per seed) are drawn as their mean (line) and each seed (dots)."""
  fig, axes = plt.subplots(1, 5, figsize=(23, 4.2))
  markers = "osd^v<>"
  for d, (name, rows) in enumerate(results.items()):
    m = markers[d]
    _seed_series(axes[0], rows, lambda r: r["kl_per_layer_nats"][-1], m + "-", label=name)
    for i in range(len(rows[0]["kl_per_layer_nats"])):
      kw = dict(color=f"C{i}", label=f"{name} z{i + 1}")
      _seed_series(axes[1], rows, lambda r, i=i: r["active_units_x"][i], m + "-", **kw)
      _seed_series(axes[2], rows, lambda r, i=i: r["active_units_conditional"][i], m + "--",
                   **kw)
      if "mutual_information_nats" in rows[0]:
        _seed_series(axes[3], rows, lambda r, i=i: r["mutual_information_nats"][i], m + "-",
                     **kw)
    _seed_series(axes[4], rows, lambda r: r["elbo_nats"], m + "-", label=name)
  labels = ["top-layer KL (nats)", "active units, x-based", "active units, conditional",
            "I(x; z_i) (nats)", "ELBO (nats)"]
  for ax, label in zip(axes, labels):
    ax.set_xlabel("rho")
    ax.set_title(label)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
  fig.suptitle(title or "Phase transition: original model evaluated after training at rho")
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def heatmaps(grid: dict, depths, widths, path: str, title: str = "") -> None:
  """grid[(method, depth, width)] = (x-based total, conditional total, total units); the
  totals may be means over seeds."""
  methods = sorted({k[0] for k in grid})
  fig, axes = plt.subplots(2, len(methods), figsize=(4.5 * len(methods), 7.5), squeeze=False)
  for j, method in enumerate(methods):
    for row, (kind, idx) in enumerate((("x-based", 0), ("conditional", 1))):
      frac = np.array([[grid[(method, d, w)][idx] / grid[(method, d, w)][2] for w in widths]
                       for d in depths])
      ax = axes[row, j]
      im = ax.imshow(frac, vmin=0, vmax=1, cmap="viridis", origin="lower")
      for a, d in enumerate(depths):
        for b, w in enumerate(widths):
          ax.text(b, a, f"{grid[(method, d, w)][idx]:g}/{grid[(method, d, w)][2]}",
                  ha="center", va="center", color="w", fontsize=8)
      ax.set_xticks(range(len(widths)), [str(w) for w in widths])
      ax.set_yticks(range(len(depths)), [str(d) for d in depths])
      ax.set_xlabel("latent units per layer")
      ax.set_ylabel("stochastic layers")
      ax.set_title(f"{method}: active units ({kind})")
  fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.6, label="fraction active")
  fig.suptitle(title or "Posterior collapse: active units")
  fig.savefig(path, dpi=110)
  plt.close(fig)


def training_curves(runs: dict, path: str, title: str = "") -> None:
  """runs[name] = {'elbo': (steps, values), 'top_kl': (steps, values)} and optionally
  'style': keyword arguments of ``plot`` (colour per method, line style per seed)."""
  fig, axes = plt.subplots(1, 2, figsize=(11, 4 if len(runs) <= 4 else 5))
  for name, c in runs.items():
    axes[0].plot(*c["elbo"], label=name, **c.get("style", {}))
    axes[1].plot(*c["top_kl"], label=name, **c.get("style", {}))
  if title:
    fig.suptitle(title, fontsize=10)
  axes[0].set_ylabel("validation ELBO (nats)")
  axes[1].set_ylabel("top-layer KL (nats)")
  for ax in axes:
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
  if len(runs) <= 4:
    for ax in axes:
      ax.legend(fontsize=8)
    fig.tight_layout()
  else:   # one legend below both panels, clear of the curves
    handles, labels = axes[0].get_legend_handles_labels()
    ncol = 3
    fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=8)
    fig.tight_layout(rect=(0, 0.06 * -(-len(runs) // ncol), 1, 1))
  fig.savefig(path, dpi=110)
  plt.close(fig)


def image_grid(images: np.ndarray, path: str, ncol: int = 10, title: str = "") -> None:
  """images: [N, H, W, C] in [0, 1]."""
  n, h, w, c = images.shape
  nrow = -(-n // ncol)
  canvas = np.ones((nrow * (h + 2), ncol * (w + 2), c))
  for k in range(n):
    r, q = divmod(k, ncol)
    canvas[r * (h + 2):r * (h + 2) + h, q * (w + 2):q * (w + 2) + w] = images[k]
  fig = plt.figure(figsize=(ncol * 0.6, nrow * 0.6 + 0.4))
  plt.imshow(canvas.squeeze(-1) if c == 1 else canvas, cmap="gray", vmin=0, vmax=1)
  plt.axis("off")
  if title:
    plt.title(title, fontsize=9)
  fig.savefig(path, dpi=110, bbox_inches="tight")
  plt.close(fig)


def kl_per_layer_curves(steps, kl_per_layer, path: str, title: str = "") -> None:
  """KL term of every layer (bottom z_1 to top z_L) against training steps."""
  kl = np.asarray(kl_per_layer)
  fig, ax = plt.subplots(figsize=(6.5, 4))
  for i in range(kl.shape[1]):
    ax.plot(steps, kl[:, i], label=f"z{i + 1}")
  ax.set_xlabel("step")
  ax.set_ylabel("KL term (nats)")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  ax.set_title(title)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def layer_activity(active_x, active_conditional, mutual_information, path: str,
                   title: str = "") -> None:
  """Per layer: both active-unit counts (bars) and I(x; z_i) (right panel)."""
  layers = np.arange(1, len(active_x) + 1)
  fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
  axes[0].bar(layers - 0.2, active_x, 0.4, label="x-based")
  axes[0].bar(layers + 0.2, active_conditional, 0.4, label="conditional")
  axes[0].set_xlabel("layer z_i")
  axes[0].set_ylabel("active units")
  axes[0].legend(fontsize=8)
  axes[1].bar(layers, mutual_information if len(mutual_information) else np.zeros(len(layers)))
  axes[1].set_xlabel("layer z_i")
  axes[1].set_ylabel("I(x; z_i) (nats)")
  for ax in axes:
    ax.set_xticks(layers)
    ax.grid(alpha=0.3, axis="y")
  fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def rho_n_curves(results: dict, path_rho: str, path_kappa: str, title: str = "") -> None:
  """The (rho, n) grid: top-layer KL and top-layer x-based units against rho, one curve
  per n (``path_rho``), and the same against kappa = (1 - rho^2)(1 - 1/n), every cell
  (``path_kappa``). Rows carry rho, num_ou_samples (0: the VAE), kappa; several rows per
  cell (seeds) are drawn as their mean and every seed."""
  for path, axis in ((path_rho, "rho"), (path_kappa, "kappa")):
    share = all("x_share_units" in r for rows in results.values() for r in rows)
    fig, axes = plt.subplots(1, 4 if share else 3, figsize=(21 if share else 16, 4.4))
    for d, (name, rows) in enumerate(results.items()):
      ns = sorted({r.get("num_ou_samples") or 0 for r in rows})
      for j, n in enumerate(ns):
        at = [dict(r, rho=r[axis]) for r in rows if (r.get("num_ou_samples") or 0) == n]
        label = f"{name} " + (f"n = {n}" if n else "vae")
        fmt = ("osd^v<>"[j % 7] + ("-" if axis == "rho" else ""))
        if not n and axis == "rho":
          fmt = "k*"
        _seed_series(axes[0], at, lambda r: r["kl_per_layer_nats"][-1], fmt, label=label)
        _seed_series(axes[1], at, lambda r: r["active_units_x"][-1], fmt, label=label)
        _seed_series(axes[2], at, lambda r: r["elbo_nats"], fmt, label=label)
        if share:
          _seed_series(axes[3], at, lambda r: r["x_share_units"][-1], fmt, label=label)
    for ax, label in zip(axes, ["top-layer KL (nats)", "top layer: x-based active units",
                                "ELBO (nats)", "top layer: units with x-share >= 0.1"]):
      ax.set_xlabel("rho" if axis == "rho" else "kappa = (1 - rho^2)(1 - 1/n)")
      ax.set_title(label)
      ax.grid(alpha=0.3)
      ax.legend(fontsize=6)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
