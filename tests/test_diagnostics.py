"""Diagnostics: the Hermite spectrum of known polynomials, eq. 5 measured, and the
gradient-variance meter against a brute-force loop over seeds."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hermite_vae import diagnostics, objectives
from hermite_vae import workdir as workdir_lib
from hermite_vae.hermite import hermite
from hermite_vae.models.mlp import MLPHierarchicalVAE
from hermite_vae.models import hierarchy, terms

LOC = jnp.array([[0.5, -1.0, 2.0], [0.0, 0.3, -0.2]])
SCALE = jnp.array([[2.0, 0.5, 1.0], [0.7, 1.5, 0.4]])


@pytest.mark.parametrize("k,bucket", [(1, "1"), (2, "2"), (3, ">=3")])
def test_spectrum_of_a_hermite_polynomial_and_eq5(k, bucket):
  # f(z) = 2 h_k(eps_1) + 0.5 with z = loc + scale * eps, per example.
  def make_fn(loc, scale):
    return lambda z: (2.0 * hermite(k, (z[:, 1] - loc[1]) / scale[1]) + 0.5)[:, None]

  results = [diagnostics.hermite_spectrum(make_fn(LOC[b], SCALE[b]), LOC[b:b + 1],
                                          SCALE[b:b + 1], jax.random.PRNGKey(b),
                                          num_samples=20_000, rhos=(0.5, 0.9))
             for b in range(2)]
  for out in results:
    energy = out["energy"]
    assert energy["0"] == pytest.approx(0.25, abs=0.05)
    assert energy[bucket] == pytest.approx(4.0, rel=0.1)          # all variance in degree k
    for other in {"1", "2", ">=3"} - {bucket}:
      assert abs(energy[other]) < 0.25, (other, energy)
    assert out["fraction"][bucket] > 0.9
    for rho in (0.5, 0.9):
      s = out["smoothing"][str(rho)]
      assert s["ratio"] == pytest.approx(rho**(2 * k), abs=0.06)   # eq. 5
      low, high = s["predicted_range"]
      assert low - 0.5 <= s["var_smoothed"] <= high + 0.5


MODEL = MLPHierarchicalVAE((3, 2, 2), (8, 6, 6), num_pixels=10, initialization="lecun_normal")
X = (jax.random.uniform(jax.random.PRNGKey(2), (5, 10)) < 0.5).astype(jnp.float32)
PARAMS = jax.jit(MODEL.init)(jax.random.PRNGKey(0), X, jax.random.PRNGKey(1))["params"]


@pytest.mark.parametrize("rho,layer", [pytest.param(1.0, 0, marks=pytest.mark.slow),
                                       pytest.param(0.6, 1, marks=pytest.mark.slow),
                                       (1.0, None)])
def test_gradient_variance_matches_a_loop_over_seeds(rho, layer):
  key = jax.random.PRNGKey(7)
  got = diagnostics.gradient_variance(MODEL, PARAMS, X, key, layer=layer, rho=rho,
                                      num_ou_samples=3, num_draws=12, chunk=4)
  smoothing = None if rho == 1.0 else terms.Smoothing(rho, 3, "mean_std", False,
                                                           "substitute")
  name = None if layer is None else f"p_z{layer + 1}"
  def loss(sub, k):
    full = dict(PARAMS, **{name: sub}) if name else sub
    terms = objectives.layer_terms(MODEL, full, X, k, smoothing)
    return jnp.mean(terms.kl[layer]) if name else -jnp.mean(terms.elbo)
  grad = jax.jit(jax.grad(loss))   # one draw per call, seed by seed
  grads = []
  for k in jax.random.split(key, 12):
    g = grad(PARAMS[name] if name else PARAMS, k)
    grads.append(np.concatenate([np.ravel(v) for v in jax.tree_util.tree_leaves(g)]))
  grads = np.asarray(grads, np.float64)
  np.testing.assert_allclose(got["trace"], grads.var(0, ddof=1).sum(), rtol=1e-4)
  np.testing.assert_allclose(got["mean_sq_norm"], np.sum(grads.mean(0) ** 2), rtol=1e-4)


def test_generator_spectra_are_those_of_each_layers_mu_and_sigma():
  """Each layer's entry is the spectrum of that layer's own mu and sigma under its
  posterior q(z_{i+1}|.) (the wrong layer, mu for sigma, or the encoder's loc/scale of the
  wrong layer fails): checked against hermite_spectrum called by hand, and E_0 = |E f|^2
  against a Monte-Carlo mean."""
  key = jax.random.PRNGKey(0)
  out = diagnostics.generator_spectra(MODEL, PARAMS, X, key, num_samples=2048, max_examples=2)
  assert [r["layer"] for r in out] == [1, 2]
  path = hierarchy.encode_path(MODEL, PARAMS, X[:2], jax.random.fold_in(key, 0))
  for i, r in enumerate(out):
    _, loc, scale = path[i + 1]
    for j, f in enumerate(("mu", "sigma")):
      fn = lambda h, i=i, j=j: MODEL.apply({"params": PARAMS}, i, h,
                                           method=MODEL.generate_layer)[j]
      want = diagnostics.hermite_spectrum(fn, loc, scale, jax.random.fold_in(key, i + 1),
                                          num_samples=2048)
      for degree in ("0", "1", "2", ">=3", "total"):
        assert r[f]["energy"][degree] == pytest.approx(want["energy"][degree], rel=1e-5,
                                                       abs=1e-7), (i, f, degree)
      # E_0 = |E f|^2 under N(loc, scale^2), averaged over the two examples.
      z = loc[:, None] + scale[:, None] * jax.random.normal(jax.random.PRNGKey(9),
                                                            (2, 20_000, loc.shape[-1]))
      mean = jnp.mean(jax.vmap(fn)(z), axis=1)                      # [2, d_i]
      assert r[f]["energy"]["0"] == pytest.approx(float(jnp.mean(jnp.sum(mean**2, -1))),
                                                  rel=0.1)
  # The layers' functions differ, so would their spectra if swapped.
  assert out[0]["mu"]["energy"]["total"] != pytest.approx(out[1]["mu"]["energy"]["total"],
                                                          rel=0.05)


def test_spectrum_is_unbiased_in_high_dimension():
  # d = 40 inputs (a 40-unit layer): 820 degree-2 coefficients, each estimated from 4,000
  # samples; without the U-statistic correction their squares would add ~0.8 spurious
  # degree-2 energy to this purely linear function.
  d = 40
  fn = lambda z: 2.0 * z[:, 5:6]
  out = diagnostics.hermite_spectrum(fn, jnp.zeros((1, d)), jnp.ones((1, d)),
                                     jax.random.PRNGKey(3), num_samples=4000, rhos=())
  assert out["energy"]["1"] == pytest.approx(4.0, rel=0.1)
  assert abs(out["energy"]["2"]) < 0.25 and abs(out["energy"][">=3"]) < 0.5


@pytest.mark.slow
def test_live_diagnostics_are_logged_every_n_steps(tmp_path):
  from configs import smoke  # pylint: disable=g-import-not-at-top
  from hermite_vae import metrics_io, train  # pylint: disable=g-import-not-at-top
  config = smoke.get_config()
  config.diagnostics_every, config.diagnostics_draws = 2, 4
  config.num_train_steps, config.log_every, config.eval_every = 4, 4, 4
  train.train_and_evaluate(config, str(tmp_path))
  records = [r for r in metrics_io.read_metrics(str(tmp_path)) if r["split"] == "diagnostics"]
  assert [r["step"] for r in records] == [2, 4]
  for r in records:
    assert len(r["grad_var_relative"]) == len(r["var_ratio_mu"]) == 2    # p(z1|z2), p(z2|z3)
    assert all(v > 0 and math.isfinite(v) for v in r["grad_var_trace"])
    assert all(0 < v <= 1.2 for v in r["var_ratio_mu"])                   # rho = 0.9 < 1


def test_live_diagnostics_follow_the_runs_smooth_target(tmp_path, monkeypatch):
  """Bug caught: ``train._live_diagnostics`` (or ``live_metrics``) dropping
  ``smooth_target``: a ``ratio`` run logs the ``mean_std`` gap."""
  from configs import smoke  # pylint: disable=g-import-not-at-top
  from hermite_vae import train  # pylint: disable=g-import-not-at-top
  seen = {}
  monkeypatch.setattr(diagnostics, "live_metrics",
                      lambda *a, **kw: seen.update(kw) or {"kappa": 0.0})
  config = smoke.with_overrides(smooth_target="ratio", diagnostics_every=2, num_train_steps=2,
                                log_every=2, eval_every=2, rho=0.5)
  train.train_and_evaluate(config, str(tmp_path))
  assert seen["smooth_target"] == "ratio"
  monkeypatch.undo()
  model = MLPHierarchicalVAE(latent_dims=(4, 3, 2), hidden_dims=(16, 8, 8), num_pixels=784)
  x = smoke_images(8)
  params = model.init(jax.random.PRNGKey(0), x, jax.random.PRNGKey(1))["params"]
  key = jax.random.PRNGKey(3)
  gap = lambda target: diagnostics.surrogate_gap(
      model, params, x, jax.random.fold_in(key, 200), rho=0.5, num_ou_samples=5,
      num_draws=2, smooth_target=target)["gap"]
  assert not np.allclose(gap("ratio"), gap("mean_std"))   # the targets differ here
  live = diagnostics.live_metrics(model, params, x, key, rho=0.5, num_ou_samples=5,
                                  gradient="substitute", num_draws=2, num_samples=16,
                                  smooth_target="ratio")
  np.testing.assert_allclose(live["surrogate_gap_nats"], gap("ratio"), rtol=1e-6)


def smoke_images(n):
  from hermite_vae import data  # pylint: disable=g-import-not-at-top
  x = data.load("mnist_embedded", "embedded").eval[:n]
  return np.asarray(x, np.float32).reshape(n, -1)


def test_surrogate_gap_is_zero_at_one_ou_sample_and_positive_above():
  """The §3 bias measured on a small hierarchy: at n = 1 the smoothed and the original
  log-densities have the same expectation (gap within 4 standard errors of 0); at n = 5,
  rho = 0.5 the smoothed density is higher (the surrogate discounts the posterior noise);
  at fixed rho the gap scales as (1 - 1/n) (docs/theory.md: the n-sample mean's variance),
  and at fixed n it grows as rho falls (each degree's factor 1 - rho^(2k)). Bugs caught:
  OU samples not independent across the n draws (no (1 - 1/n) scaling), rho ignored."""
  model = MLPHierarchicalVAE((3, 3, 2), (16, 12, 8), num_pixels=10,
                             initialization="lecun_normal")
  x = (jax.random.uniform(jax.random.PRNGKey(0), (64, 10)) < 0.5).astype(jnp.float32)
  params = model.init(jax.random.PRNGKey(1), x, jax.random.PRNGKey(2))["params"]
  gap = lambda rho, n: diagnostics.surrogate_gap(model, params, x, jax.random.PRNGKey(3),
                                                 rho=rho, num_ou_samples=n, num_draws=200)
  one = gap(0.5, 1)
  assert one["kappa"] == 0.0
  assert np.all(np.abs(one["gap"]) < 4 * np.asarray(one["gap_std_err"]) + 1e-6), one
  two, five, twenty, low = gap(0.5, 2), gap(0.5, 5), gap(0.5, 20), gap(0.2, 5)
  g = {k: np.asarray(v["gap"]) for k, v in (("2", two), ("5", five), ("20", twenty),
                                            ("low", low))}
  assert np.all(g["5"] > 4 * np.asarray(five["gap_std_err"])), five
  np.testing.assert_allclose(g["2"] / g["5"], (1 / 2) / (4 / 5), atol=0.1)
  np.testing.assert_allclose(g["20"] / g["5"], (19 / 20) / (4 / 5), atol=0.1)
  assert np.all(g["low"] - g["5"] > 4 * np.hypot(low["gap_std_err"], five["gap_std_err"]))
