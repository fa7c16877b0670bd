"""A collapse report for one training workdir (vae, iwae or hvae): one Markdown page with
PNG figures.

    python experiments/report.py --workdir=/tmp/hvae [--out_dir=/tmp/hvae/report]

Contents: KL per layer over training; both active-unit counts and I(x; z_i) per layer at
the last evaluation; per intermediate generator layer p(z_i|z_{i+1}) at the latest
checkpoint, the Hermite spectrum of mu_i and sigma_i under the posterior (energy by
degree, Var[U_rho mu_i] / Var[mu_i] measured and predicted by eq. 5) and the variance of
its KL term's gradient for a grid of rho and both gradient forms (rho = 1: the VAE's);
for an hvae run the surrogate gap (the paper's §3 bias, ``diagnostics.surrogate_gap``)
at the run's (rho, n) with kappa; and a verdict per layer: informative about x (at least
``--min_share_units`` units with an x-explained variance share of at least the run's
``x_share_threshold``) / active only conditionally / collapsed, with the thresholds used.
"""
import json
import math
import os
import time

from absl import app, flags
from absl import logging as absl_logging
import jax
import numpy as np

from hermite_vae import data, diagnostics, metrics_io
from hermite_vae import workdir as workdir_lib
from lab import plots

flags.DEFINE_string("workdir", None, "A training workdir.")
flags.DEFINE_string("out_dir", "", "Where to write report.md and figures (default "
                    "<workdir>/report).")
flags.DEFINE_list("rhos", ["1.0", "0.95", "0.9", "0.7"], "rho grid of the gradient meter.")
flags.DEFINE_list("gradients", ["substitute", "jacobian"], "Gradient forms to meter.")
flags.DEFINE_integer("draws", 64, "Independent draws per gradient-variance estimate.")
flags.DEFINE_integer("examples", 100, "Evaluation examples in the meter's batch.")
flags.DEFINE_integer("spectrum_examples", 8, "Examples whose posterior the spectrum uses.")
flags.DEFINE_integer("spectrum_samples", 2048, "Gaussian samples per spectrum estimate.")
flags.DEFINE_integer("min_share_units", 2, "Units with an x-explained share >= the run's "
                     "x_share_threshold that make a layer informative about x.")
flags.DEFINE_integer("gap_draws", 32, "Draws of the surrogate-gap estimate (hvae runs).")
flags.DEFINE_integer("seed", 0, "Randomness of the estimates.")
flags.DEFINE_bool("verbose", False, "Show the INFO logs of orbax and the other libraries.")
flags.mark_flag_as_required("workdir")
FLAGS = flags.FLAGS


def verdict(share_units, active_c, min_share_units):
  if share_units is not None and share_units >= min_share_units:
    return "active and informative about x"
  if active_c > 0:
    return "active only conditionally (follows the noise of the layers below, not x)"
  return "collapsed"


def _fmt(v, digits=3):
  return "–" if v is None else f"{v:.{digits}g}"


def _stage(text):
  print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def build_report(workdir, out_dir):
  workdir_lib.require_trained(workdir)
  config = workdir_lib.load_run_config(workdir)
  records = metrics_io.read_metrics(workdir)
  train_rec = [r for r in records if r["split"] == "train"]
  evals = [r for r in records if r["split"] == "eval"]
  if not evals:
    raise ValueError(f"{workdir} has no evaluation record yet")
  last = evals[-1]
  os.makedirs(out_dir, exist_ok=True)
  plots.kl_per_layer_curves([r["step"] for r in train_rec],
                            [r["kl_per_layer_nats"] for r in train_rec],
                            os.path.join(out_dir, "kl_per_layer.png"), config.method)
  mi = last.get("mutual_information_nats", [])
  plots.layer_activity(last["active_units_x"], last["active_units_conditional"], mi,
                       os.path.join(out_dir, "activity.png"), f"step {last['step']}")

  loaded = data.load_config(config)
  x = loaded.eval[:FLAGS.examples].reshape(min(FLAGS.examples, len(loaded.eval)), -1)
  x = x.astype(np.float32)
  model, params, step = workdir_lib.restore_params(workdir, config, x.shape[1])
  key = jax.random.PRNGKey(FLAGS.seed)
  rhos = [float(r) for r in FLAGS.rhos]
  _stage(f"Hermite spectra of the generator layers ({len(rhos)} rho)")
  spectra = diagnostics.generator_spectra(model, params, x, key, rhos=rhos,
                                          num_samples=FLAGS.spectrum_samples,
                                          max_examples=FLAGS.spectrum_examples)
  meter = {}
  _stage(f"gradient variance over {FLAGS.draws} draws per layer, rho and gradient")
  for i in list(range(len(model.latent_dims) - 1)) + [None]:   # None: the whole objective
    for rho in rhos:
      for gradient in (FLAGS.gradients if rho < 1 else ["vae"]):
        meter[("all" if i is None else i + 1, rho, gradient)] = diagnostics.gradient_variance(
            model, params, x, jax.random.fold_in(key, 17), layer=i, rho=rho,
            num_ou_samples=config.num_ou_samples,
            gradient="substitute" if gradient == "vae" else gradient,
            num_draws=FLAGS.draws, chunk=min(16, FLAGS.draws))

  lines = [f"# Collapse report: `{workdir}`", "",
           f"Method `{config.method}`" + (f", rho = {config.rho}, n = {config.num_ou_samples}, "
                                          f"gradient `{config.hvae_gradient}`"
                                          if config.method == "hvae" else "") +
           f"; latents {tuple(model.latent_dims)}; checkpoint step {step}; data "
           f"{config.dataset} (train {loaded.info['train_split']}, evaluation "
           f"{loaded.info['eval_split']}).", "",
           "## Verdict per layer", "",
           f"Thresholds: a unit is active if its variance (over x, or over sampled "
           f"(x, z_(i-1)) for the conditional count) exceeds {config.au_threshold}; a "
           f"layer informs about x if at least {FLAGS.min_share_units} of its units have "
           f"at least {config.x_share_threshold} of their variance explained by x "
           f"(scale-free; docs/evaluation.md). I(x; z_i) <= 0 is no evidence either way.",
           "", "| layer | KL term (nats) | active units x-based | active units conditional | "
           "x-share units | x-share of the layer | I(x; z_i) (nats) | verdict |",
           "|---|---|---|---|---|---|---|---|"]
  shares = last.get("x_share_units")
  for i, (ax, ac) in enumerate(zip(last["active_units_x"], last["active_units_conditional"])):
    m = mi[i] if mi else None
    su = shares[i] if shares else None
    sl = last["x_share_layer"][i] if shares else None
    lines.append(f"| z{i + 1} | {last['kl_per_layer_nats'][i]:.2f} | {ax} | {ac} | "
                 f"{'–' if su is None else su} | {_fmt(sl)} | {_fmt(m)} | "
                 f"{verdict(su, ac, FLAGS.min_share_units)} |")
  lines += ["", "![KL per layer](kl_per_layer.png)", "", "![activity](activity.png)", "",
            "## Hermite spectrum of the generator layers", "",
            "Energy of mu_i and sigma_i by Hermite degree under q(z_(i+1)|.) (fractions of "
            "Var f), and Var[U_rho mu_i] / Var[mu_i]: measured (rho^2-correlated pairs) "
            "and the range eq. 5 predicts from the spectrum.", "",
            "| layer p(z_i|z_(i+1)) | f | Var f | degree 1 | degree 2 | degree >= 3 | " +
            " | ".join(f"ratio rho={r} (predicted)" for r in rhos) + " |",
            "|" + "---|" * (6 + len(rhos))]
  for s in spectra:
    for f in ("mu", "sigma"):
      sp = s[f]
      var = sp["energy"]["1"] + sp["energy"]["2"] + sp["energy"][">=3"]
      if math.isnan(sp["fraction"]["1"]):        # constant function: nothing to smooth
        lines.append(f"| z{s['layer']} | {f} | {var:.3g} (constant) |" + " – |" *
                     (3 + len(rhos)))
        continue
      cells = []
      for r in rhos:
        sm = sp["smoothing"][str(r)]
        lo, hi = (v / var for v in sm["predicted_range"])
        cells.append(f"{sm['ratio']:.3f} ({lo:.3f}–{hi:.3f})")
      lines.append(f"| z{s['layer']} | {f} | {var:.3g} | {sp['fraction']['1']:.2f} | "
                   f"{sp['fraction']['2']:.2f} | {sp['fraction']['>=3']:.2f} | " +
                   " | ".join(cells) + " |")
  lines += ["", "## Gradient variance of each generator layer's KL term", "",
            f"Trace of the covariance of the gradient of the batch-mean KL term of z_i "
            f"w.r.t. the parameters of p(z_i|z_(i+1)), over {FLAGS.draws} draws of the "
            f"posterior samples and OU noise ({len(x)} evaluation examples), and relative "
            "to |E g|^2; layer `all`: the gradient of the whole objective (-ELBO) w.r.t. "
            "all parameters.", "", "| layer | rho | gradient | trace | relative |",
            "|---|---|---|---|---|"]
  for (layer, rho, gradient), v in meter.items():
    name = layer if layer == "all" else f"z{layer}"
    lines.append(f"| {name} | {rho} | {gradient} | {v['trace']:.4g} | "
                 f"{v['relative']:.4g} |")
  gap = None
  if config.method == "hvae":
    _stage("surrogate gap")
    gap = diagnostics.surrogate_gap(model, params, x, jax.random.fold_in(key, 23),
                                    rho=float(config.rho),
                                    num_ou_samples=int(config.num_ou_samples),
                                    num_draws=FLAGS.gap_draws,
                                    smooth_target=config.smooth_target)
    lines += ["", "## Surrogate gap (the paper's §3 bias)", "",
              f"E[log N(z_i; Û mu_i, Û sigma_i)] - E[log N(z_i; mu_i, sigma_i)] per "
              f"example at the run's rho = {config.rho}, n = {config.num_ou_samples} "
              f"(kappa = (1 - rho^2)(1 - 1/n) = {gap['kappa']:.3f}), over "
              f"{FLAGS.gap_draws} draws: what the substitution gradient adds to the ELBO "
              "in expectation (docs/theory.md).", "",
              "| layer p(z_i|z_(i+1)) | gap (nats) | standard error |", "|---|---|---|"]
    for i, (g, se) in enumerate(zip(gap["gap"], gap["gap_std_err"])):
      lines.append(f"| z{i + 1} | {g:.4g} | {se:.2g} |")
  with open(os.path.join(out_dir, "report.md"), "w") as f:
    f.write("\n".join(lines) + "\n")
  with open(os.path.join(out_dir, "report.json"), "w") as f:
    json.dump({"spectra": spectra, "surrogate_gap": gap, "gradient_variance": [
        dict(layer=k[0], rho=k[1], gradient=k[2], **v) for k, v in meter.items()]}, f,
              indent=2)
  return os.path.join(out_dir, "report.md")


def main(argv):
  del argv
  absl_logging.set_verbosity(absl_logging.INFO if FLAGS.verbose else absl_logging.WARNING)
  path = build_report(FLAGS.workdir, FLAGS.out_dir or os.path.join(FLAGS.workdir, "report"))
  print(f"wrote {path}")


if __name__ == "__main__":
  app.run(main)
