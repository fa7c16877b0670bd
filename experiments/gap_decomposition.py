"""How much of a trained model's surrogate gap the kappa (degree-1) term explains, per
generator layer (docs/theory.md, "n > 1: a discount on the posterior noise").

For every intermediate generator p(z_i | z_{i+1}) of a trained workdir, on the first
``--examples`` evaluation examples and at each ``--cells`` (rho, n):

* ``measured``: the surrogate gap the training follows, E log N(z_i; Û mu_i, Û sigma_i) -
  E log N(z_i; mu_i, sigma_i) (``diagnostics.surrogate_gap``, both mu and sigma smoothed);
* ``measured_mean_only``: the same with only mu smoothed, sigma_i(z_{i+1}) kept: the part
  the Hermite formula describes;
* ``kappa_term``: kappa(rho, n) E_1 / 2, with E_k the degree-k Hermite energy of
  mu_i / sigma_bar under q(z_{i+1} | z_i) (sigma_bar: sigma_i at the posterior mean,
  held per example), summed over outputs, averaged over examples;
* ``hermite_sum``: (1 - 1/n) [(1 - rho^2) E_1 + (1 - rho^4) E_2 + c E_>=3] / 2 with c in
  [1 - rho^6, 1] (a bracket: the degrees above 2 are not separated; E_>=3 is the rest of
  the variance, so its estimate can come out slightly negative).

The formulas hold exactly for a fixed sigma; sigma_bar makes them an approximation where
sigma_i varies with z_{i+1}, and the measured mean-only gap says how good it is.

    python experiments/gap_decomposition.py --workdir=releases/mnist_100k/hvae_seed_0 \\
      --data_dir=/tmp/mnist_pkl --cells=0.9:5,0.834:2,0.7:5 \\
      --json=docs/runs/gap_decomposition/hvae__seed_0.json

(``--workdir`` a training workdir or a release; ``--data_dir`` replaces the run's.)
"""
from __future__ import annotations

import json
import os
import sys

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from hermite_vae import data, diagnostics, ou, rng  # noqa: E402
from hermite_vae import workdir as workdir_lib  # noqa: E402
from hermite_vae.models import hierarchy, layers  # noqa: E402

flags.DEFINE_string("workdir", None, "A trained hvae or vae workdir.")
flags.DEFINE_list("cells", [], "rho:n pairs to measure at ('' : the run's own).")
flags.DEFINE_integer("examples", 200, "Evaluation examples of the measured gaps.")
flags.DEFINE_integer("spectrum_examples", 16, "Examples of the Hermite spectra.")
flags.DEFINE_integer("spectrum_samples", 4096, "Posterior draws per example (spectra).")
flags.DEFINE_integer("draws", 32, "Draws of the measured gaps (path and OU noise).")
flags.DEFINE_string("json", "", "Write the result here.")
flags.DEFINE_string("data_dir", "", "Replaces the run's data_dir (a release has none).")
flags.mark_flags_as_required(["workdir"])
FLAGS = flags.FLAGS


def mean_only_gap(model, params, x, keys, rho, n):
  """[draws, L - 1]: the batch mean of log N(z_i; Û mu_i, sigma_i) - log N(z_i; mu_i,
  sigma_i), only the mean smoothed (keys as ``diagnostics.surrogate_gap``'s)."""
  variables = {"params": params}

  def one(key):
    path_key, ou_key = rng.terms_keys(key)
    path = hierarchy.encode_path(model, params, x, path_key)
    contexts = hierarchy.path_contexts(model, params, path)
    gaps = []
    for i in range(len(path) - 1):
      z = path[i][0]
      z_above, loc, scale = path[i + 1]
      gen = lambda h, i=i: hierarchy.generate(model, variables, i, h, contexts[i])
      mu, sigma = gen(z_above)
      u_mu = ou.ou_expectation(lambda h, gen=gen: gen(h)[0], rho, n)(
          rng.ou_layer_key(ou_key, i), z_above, loc, scale)
      gaps.append(jnp.mean(layers.gaussian_log_prob(z, u_mu, sigma)
                           - layers.gaussian_log_prob(z, mu, sigma)))
    return jnp.stack(gaps)

  return np.asarray(jax.jit(lambda k: jax.lax.map(one, k))(keys), np.float64)


def spectra(model, params, x, key, num_samples):
  """Per layer, the Hermite energies {1, 2, '>=3'} of mu_i / sigma_bar (see the module
  docstring) under q(z_{i+1} | z_i) of one sampled path."""
  variables = {"params": params}
  path = hierarchy.encode_path(model, params, x, jax.random.fold_in(key, 0))
  contexts = hierarchy.path_contexts(model, params, path)
  out = []
  for i in range(len(path) - 1):
    _, loc, scale = path[i + 1]
    ctx = [None] * loc.shape[0] if contexts[i] is None else list(contexts[i])
    sigma_bar = [hierarchy.generate(model, variables, i, loc[b:b + 1],
                                    None if c is None else c[None])[1][0]
                 for b, c in enumerate(ctx)]
    fns = [lambda h, c=c, sb=sb: hierarchy.generate(
        model, variables, i, h, None if c is None else jnp.broadcast_to(c, (h.shape[0],) + c.shape))[0] / sb
           for c, sb in zip(ctx, sigma_bar)]
    spec = diagnostics.hermite_spectrum(fns, loc, scale, jax.random.fold_in(key, i + 1),
                                        num_samples=num_samples, rhos=())
    out.append({k: spec["energy"][k] for k in ("1", "2", ">=3")})
  return out


def main(argv):
  del argv
  config = workdir_lib.load_run_config(FLAGS.workdir)
  config.data_dir = FLAGS.data_dir or config.data_dir
  loaded = data.load_config(config)
  x = np.asarray(loaded.eval[:FLAGS.examples], np.float32).reshape(FLAGS.examples, -1)
  model, params, step = workdir_lib.restore_params(FLAGS.workdir, config, x.shape[-1])
  cells = ([(float(c.split(":")[0]), int(c.split(":")[1])) for c in FLAGS.cells]
           or [(float(config.rho), int(config.num_ou_samples))])
  energy = spectra(model, params, jnp.asarray(x[:FLAGS.spectrum_examples]),
                   jax.random.PRNGKey(1), FLAGS.spectrum_samples)
  result = {"workdir": FLAGS.workdir, "method": config.method, "trained_rho": config.rho,
            "trained_n": config.num_ou_samples, "step": int(step),
            "examples": FLAGS.examples, "spectrum_examples": FLAGS.spectrum_examples,
            "energy": energy, "cells": []}
  keys = jax.random.split(jax.random.PRNGKey(0), FLAGS.draws)
  for rho, n in cells:
    full = diagnostics.surrogate_gap(model, params, x, jax.random.PRNGKey(0), rho=rho,
                                     num_ou_samples=n, num_draws=FLAGS.draws,
                                     smooth_target=config.smooth_target)
    mean_only = mean_only_gap(model, params, jnp.asarray(x), keys, rho, n)
    k = diagnostics.kappa(rho, n)
    layers_out = []
    for i, e in enumerate(energy):
      base = (1 - 1 / n) * ((1 - rho**2) * e["1"] + (1 - rho**4) * e["2"]) / 2
      layers_out.append({
          "layer": i + 1, "measured": full["gap"][i], "measured_se": full["gap_std_err"][i],
          "measured_mean_only": float(mean_only[:, i].mean()),
          "measured_mean_only_se": float(mean_only[:, i].std(ddof=1) / np.sqrt(len(mean_only))),
          "kappa_term": k * e["1"] / 2,
          "hermite_sum": sorted([base + (1 - 1 / n) * (1 - rho**6) * e[">=3"] / 2,
                                 base + (1 - 1 / n) * e[">=3"] / 2])})
    result["cells"].append({"rho": rho, "n": n, "kappa": k, "layers": layers_out})
    for l in layers_out:
      print(f"rho {rho} n {n} kappa {k:.3f} layer {l['layer']}: measured "
            f"{l['measured']:.4f} ± {l['measured_se']:.4f}, mean only "
            f"{l['measured_mean_only']:.4f} ± {l['measured_mean_only_se']:.4f}, kappa term "
            f"{l['kappa_term']:.4f}, Hermite sum [{l['hermite_sum'][0]:.4f}, "
            f"{l['hermite_sum'][1]:.4f}]", flush=True)
  if FLAGS.json:
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.json)), exist_ok=True)
    with open(FLAGS.json, "w") as f:
      json.dump(result, f, indent=1)


if __name__ == "__main__":
  app.run(main)
