"""Evaluation: IW bounds against a closed-form log p(x), active units on constructed
encoders, mutual information."""
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hermite_vae import evaluation, objectives
from hermite_vae.models.mlp import MLPHierarchicalVAE
from hermite_vae import state as state_lib


# ----------------------------------------------------------------------------
# A model whose log p(x) is known: a 1-layer linear-Gaussian VAE written with the
# same machinery (layer_terms is exercised through the IW bound).

class _LinearGaussian:
  """p(z) = N(0, I_d), p(x|z) = N(W z, s^2 I): log p(x) = log N(x | 0, W W^T + s^2 I)."""

  def __init__(self, d=2, D=3, s=0.5, seed=0):
    rng = np.random.default_rng(seed)
    self.W = rng.normal(size=(D, d))
    self.s = s
    cov = self.W @ self.W.T + s * s * np.eye(D)
    self.cov = cov
    # Exact posterior q*(z|x) = N(A x, C); we use a deliberately worse encoder.
    self.C = np.linalg.inv(np.eye(d) + self.W.T @ self.W / s**2)
    self.A = self.C @ self.W.T / s**2

  def log_px(self, x):
    D = x.shape[-1]
    inv = np.linalg.inv(self.cov)
    _, logdet = np.linalg.slogdet(self.cov)
    return -0.5 * (np.einsum("bi,ij,bj->b", x, inv, x) + logdet + D * math.log(2 * math.pi))

  def log_weights(self, x, key, num, inflate=1.6):
    """log p(x,z) - log q(z|x) for an encoder with inflated covariance."""
    loc = x @ self.A.T
    chol = np.linalg.cholesky(self.C * inflate)
    eps = np.asarray(jax.random.normal(key, (num,) + loc.shape))
    z = loc[None] + eps @ chol.T
    Cq = self.C * inflate
    inv_q = np.linalg.inv(Cq)
    _, logdet_q = np.linalg.slogdet(Cq)
    d, D = z.shape[-1], x.shape[-1]
    log_q = -0.5 * (np.einsum("kbi,ij,kbj->kb", z - loc, inv_q, z - loc) + logdet_q +
                    d * math.log(2 * math.pi))
    log_pz = -0.5 * (np.sum(z * z, -1) + d * math.log(2 * math.pi))
    r = x[None] - z @ self.W.T
    log_pxz = -0.5 * (np.sum(r * r, -1) / self.s**2 + D * math.log(2 * math.pi * self.s**2))
    return log_pz + log_pxz - log_q


def test_iw_bounds_increase_to_log_px():
  lg = _LinearGaussian()
  x = np.random.default_rng(1).normal(size=(64, 3)) * 1.5
  exact = lg.log_px(x).mean()
  key = jax.random.PRNGKey(0)
  bounds = {}
  for k in (1, 100, 5000):
    reps = []
    for r in range(3):
      lw = lg.log_weights(x, jax.random.fold_in(key, 10 * k + r), k)
      reps.append(float(np.mean(objectives.iw_bound(jnp.asarray(lw)))))
    bounds[k] = np.mean(reps)
  assert bounds[1] < bounds[100] < bounds[5000] <= exact + 1e-3
  assert exact - bounds[1] > 0.05              # the encoder is deliberately imperfect
  assert exact - bounds[5000] < 0.1 * (exact - bounds[1])   # converging to log p(x)


# ----------------------------------------------------------------------------
MODEL = MLPHierarchicalVAE((3, 2), (8, 8), num_pixels=6, initialization="lecun_normal")
X = (jax.random.uniform(jax.random.PRNGKey(2), (10, 6)) < 0.5).astype(jnp.float32)
PARAMS = jax.jit(MODEL.init)(jax.random.PRNGKey(0), X, jax.random.PRNGKey(1))["params"]


def _written_out_iw_bound(key, num_samples, chunk):
  """L_K from the log weights of the K paths the chunked scan draws (chunk c's keys:
  split(fold_in(key, c), chunk)), log-mean-exp'd at once."""
  keys = jnp.concatenate([jax.random.split(jax.random.fold_in(key, c), chunk)
                          for c in range(num_samples // chunk)])
  log_w = jax.jit(jax.vmap(lambda k: objectives.layer_terms(MODEL, PARAMS, X, k).log_weight))(
      keys)
  return jax.scipy.special.logsumexp(log_w, axis=0) - math.log(num_samples), log_w


def test_chunked_iw_bound_is_the_logmeanexp_over_every_chunk():
  """The running logsumexp over chunks equals L_K over all K log weights at once (a
  missing -log K, a chunk dropped, or one key reused for every chunk fails)."""
  key = jax.random.PRNGKey(7)
  got = evaluation.iw_bound_batch(MODEL, PARAMS, X, key, 40, 8)
  want, log_w = _written_out_iw_bound(key, 40, 8)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  assert float(jnp.std(log_w[:8].mean(0) - log_w[8:16].mean(0))) > 1e-3   # chunks differ
  unchunked = evaluation.iw_bound_batch(MODEL, PARAMS, X, key, 40, 40)
  np.testing.assert_allclose(unchunked, _written_out_iw_bound(key, 40, 40)[0], rtol=1e-5,
                             atol=1e-5)
  with pytest.raises(ValueError, match="multiple of chunk"):
    evaluation.iw_bound_batch(MODEL, PARAMS, X, key, 10, 3)


def _constructed_params():
  """Encoder q(z1|x): unit 0 copies x_0 (active), units 1, 2 constant (inactive).
  q(z2|z1): unit 0 copies z1's unit 1 (pure noise: conditionally active, x-inactive),
  unit 1 copies z1's unit 0 (active in both counts)."""
  p = jax.tree_util.tree_map(jnp.zeros_like, PARAMS)

  def set_layer(name, pick):
    # mlp: two tanh layers of width 8; route input unit j -> hidden j -> hidden j, small
    # weights keep tanh near-linear: tanh(0.1 a) ~ 0.1 a.
    layer = dict(p[name])
    mlp = dict(layer["mlp"])
    n_in = mlp["dense_0"]["kernel"].shape[0]
    k0 = np.zeros((n_in, 8)); k1 = np.zeros((8, 8)); kl = np.zeros((8, layer["loc"]["kernel"].shape[1]))
    for out_unit, in_unit in pick.items():
      k0[in_unit, out_unit] = 0.1
      k1[out_unit, out_unit] = 10.0
      kl[out_unit, out_unit] = 1.0
    mlp["dense_0"] = {"kernel": jnp.asarray(k0, jnp.float32), "bias": jnp.zeros(8)}
    mlp["dense_1"] = {"kernel": jnp.asarray(k1, jnp.float32), "bias": jnp.zeros(8)}
    layer["mlp"] = mlp
    layer["loc"] = {"kernel": jnp.asarray(kl, jnp.float32), "bias": layer["loc"]["bias"]}
    # scale = softplus(-20) + 1e-3 ~ 1e-3 for q(z1|x) (sharp), softplus(0) ~ 0.69 above.
    layer["scale"] = {"kernel": layer["scale"]["kernel"],
                      "bias": jnp.full_like(layer["scale"]["bias"], -20.0 if name == "q_z1" else 0.0)}
    p[name] = layer

  p = dict(p)
  set_layer("q_z1", {0: 0})            # z1_0 ~ f(x_0); z1_1, z1_2 = 0 + tiny noise
  # Give z1 unit 1 real noise: bias of scale for unit 1 large -> scale ~ softplus(3) ~ 3.
  q1 = dict(p["q_z1"])
  q1["scale"] = {"kernel": q1["scale"]["kernel"],
                 "bias": jnp.array([-20.0, 3.0, -20.0])}
  p["q_z1"] = q1
  set_layer("q_z2", {0: 1, 1: 0})
  return p


def test_active_units_on_constructed_encoder():
  x = (jax.random.uniform(jax.random.PRNGKey(4), (400, 6)) < 0.5).astype(jnp.float32)
  params = _constructed_params()
  means = evaluation.posterior_means(MODEL, params, x, 50, jax.random.PRNGKey(0))
  # Noise-corrected x-based variance (what evaluate_dataset counts), and the raw one.
  var_x = [np.var(np.asarray(m), axis=0) - np.mean(np.asarray(n), axis=0) for m, _, n, _, _ in means]
  raw_x = [np.var(np.asarray(m), axis=0) for m, _, _, _, _ in means]
  var_c = [np.var(np.asarray(m_c), axis=0) for _, m_c, _, _, _ in means]
  # Layer 1: only unit 0 depends on x (identical counts: E[z1|x] needs no sampling).
  assert (var_x[0] > 0.01).tolist() == [True, False, False]
  # Layer 2: unit 0 follows z1's pure-noise unit -> conditionally active only.
  assert (var_c[1] > 0.01).tolist() == [True, True]
  assert (var_x[1] > 0.01).tolist() == [False, True]
  # Without the correction, 50 paths leave noise variance ~v/50 > 0.01 in unit 0.
  assert raw_x[1][0] > 0.01 and abs(var_x[1][0]) < 0.01
  counts = evaluation.evaluate_dataset(MODEL, params, [(x, jnp.ones(400))],
                                       jax.random.PRNGKey(0), au_samples=50)
  assert counts["active_units_x"] == [1, 1] and counts["active_units_conditional"] == [1, 2]


def test_mutual_information_constructed():
  x = (jax.random.uniform(jax.random.PRNGKey(4), (256, 6)) < 0.5).astype(jnp.float32)
  params = _constructed_params()
  mi = np.asarray(evaluation.mutual_information_batch(MODEL, params, x, 16, jax.random.PRNGKey(1)))
  # z1_0 is a sharp function of the binary x_0: I = H(x_0) = log 2 (bounded by log 256).
  assert abs(mi[0] - math.log(2)) < 0.1
  # A fully collapsed model (all weights zero) carries no information.
  zero = jax.tree_util.tree_map(jnp.zeros_like, PARAMS)
  mi0 = np.asarray(evaluation.mutual_information_batch(MODEL, zero, x, 16, jax.random.PRNGKey(1)))
  assert np.all(np.abs(mi0) < 1e-4)


def test_mutual_information_of_a_layer_that_follows_only_the_noise_below_is_zero():
  """z2 copies z1's pure-noise unit (z1_1 ~ N(0, 3^2) whatever x) and nothing else: by the
  data-processing inequality I(x; z2) <= I(x; z1_1) = 0. Estimating q(z2|x) with the
  sample's own path in the mixture reports log(batch) = 4.85 nats here (the sample sits
  on its own sharp component, far from every other); the estimator leaves that path
  out, and its estimate is then at most about 0 (negative: the paths cannot resolve
  q(z2|x), no evidence of information about x)."""
  x = (jax.random.uniform(jax.random.PRNGKey(4), (128, 6)) < 0.5).astype(jnp.float32)
  params = dict(_constructed_params())
  q2 = jax.tree_util.tree_map(lambda a: a, params["q_z2"])
  q2["mlp"]["dense_0"]["kernel"] = q2["mlp"]["dense_0"]["kernel"].at[0, :].set(0.0)
  q2["scale"]["bias"] = jnp.full_like(q2["scale"]["bias"], -8.0)     # sharp: scale ~ 1e-3
  params["q_z2"] = q2
  mi = np.asarray(evaluation.mutual_information_batch(MODEL, params, x, 16,
                                                      jax.random.PRNGKey(1)))
  assert abs(mi[0] - math.log(2)) < 0.1                 # z1 still carries x_0
  assert mi[1] < 0.15, mi
  with pytest.raises(ValueError, match="num_paths=1"):
    evaluation.mutual_information_batch(MODEL, params, x, 1, jax.random.PRNGKey(1))


def test_evaluate_dataset_bounds_are_those_of_their_k():
  """Each reported L_K is the bound with that K on the batch's IW key (an IW bound
  computed with the wrong K, or an ELBO reported as L_1 from another key, fails)."""
  key = jax.random.PRNGKey(0)
  out = evaluation.evaluate_dataset(MODEL, PARAMS, [(X, jnp.ones(10))], key, au_samples=5,
                                    iw_samples=(1, 20), iw_chunk=10, mi_paths=4)
  iw_key = jax.random.fold_in(jax.random.fold_in(key, 0), 2)     # batch 0, the IW stream
  for k in (1, 20):
    want = evaluation.iw_bound_batch(MODEL, PARAMS, X, iw_key, k, math.gcd(k, 10))
    assert out[f"iw_bound_k{k}"] == pytest.approx(float(jnp.mean(want)), rel=1e-5)
  assert out["iw_bound_k20"] > out["iw_bound_k1"] + 0.1
  assert out["bits_per_dim_k20"] == pytest.approx(-out["iw_bound_k20"] / (6 * math.log(2)))
  assert out["bits_per_dim_elbo"] == pytest.approx(-out["elbo_nats"] / (6 * math.log(2)))
  assert len(out["mutual_information_nats"]) == 2
  assert len(out["active_units_x"]) == len(out["active_units_conditional"]) == 2


# ----------------------------------------------------------------------------
# The library's own log weights and L_K on a model with a closed-form log p(x):
# p(z2) = N(0, 1), p(z1|z2) = N(a z2 + b, s^2), p(x|z1) = Bernoulli(sigmoid(w z1 + c)),
# encoder q(z1|x) = p(z1) (the marginal N(b, a^2 + s^2)), q(z2|z1) = p(z2|z1) (exact).
# Then log p(x, z) - log q(z|x) = log p(x|z1) exactly, and log p(x) =
# log E_{p(z1)} p(x|z1), a 1-D integral computed by Gauss-Hermite quadrature.

import flax.linen as nn  # pylint: disable=g-import-not-at-top,wrong-import-position

LG_A, LG_B, LG_S = 1.3, 0.4, 0.6
LG_W = np.array([2.0, -1.5, 0.7, 3.0])
LG_C = np.array([0.1, 0.5, -0.3, -1.0])


class _LinearGaussianChain(nn.Module):
  likelihood: str = "bernoulli"
  latent_dims: tuple = (1, 1)

  def encode_layer(self, i, h):
    if i == 0:   # q(z1|x) = p(z1), independent of x
      tau = math.sqrt(LG_A**2 + LG_S**2)
      return jnp.full(h.shape[:-1] + (1,), LG_B), jnp.full(h.shape[:-1] + (1,), tau)
    v = LG_A**2 + LG_S**2   # q(z2|z1) = p(z2|z1)
    return LG_A * (h - LG_B) / v, jnp.full_like(h, math.sqrt(LG_S**2 / v))

  def generate_layer(self, i, z_above):
    del i
    return LG_A * z_above + LG_B, jnp.full_like(z_above, LG_S)

  def decode(self, z1):
    return z1 * LG_W + LG_C

  def __call__(self, x, key):
    return self.decode(self.encode_layer(0, x)[0])


def _lg_log_px(x):
  nodes, weights = np.polynomial.hermite_e.hermegauss(120)   # E over N(0, 1)
  z1 = LG_B + math.sqrt(LG_A**2 + LG_S**2) * nodes            # [Q]
  logits = z1[:, None] * LG_W + LG_C                           # [Q, D]
  log_lik = (x[:, None, :] * logits - np.logaddexp(0, logits)).sum(-1)   # [B, Q]
  return np.log(np.exp(log_lik) @ (weights / weights.sum()))


def test_log_weight_and_iw_bound_against_closed_form():
  model = _LinearGaussianChain()
  x = jnp.asarray([[(b >> j) & 1 for j in range(4)] for b in range(16)], jnp.float32)
  exact = _lg_log_px(np.asarray(x, np.float64))
  key = jax.random.PRNGKey(0)
  terms = objectives.layer_terms(model, {}, x, key)
  # q(z|x) cancels p(z1|z2) p(z2) exactly: the log weight is log p(x|z1) per sample.
  np.testing.assert_allclose(terms.log_weight, terms.log_px, atol=1e-5)
  # The Monte-Carlo standard error of L_K from 20k independent log weights.
  log_w = np.asarray(jax.vmap(lambda k: objectives.layer_terms(model, {}, x, k).log_weight)(
      jax.random.split(jax.random.PRNGKey(1), 20_000)), np.float64)
  w = np.exp(log_w - log_w.max(0))
  std_err = w.std(0) / w.mean(0) / np.sqrt(5000)
  assert np.all(exact - log_w.mean(0) > 0.1)                 # the encoder is imperfect
  # L_5000 in chunks of 10 (fresh samples per chunk) converges to log p(x).
  l5000 = np.asarray(evaluation.iw_bound_batch(model, {}, x, key, 5000, 10), np.float64)
  assert np.all(np.abs(l5000 - exact) < 5 * std_err + 5e-3), (l5000 - exact, std_err)
  assert abs(np.mean(l5000 - exact)) < 5 * np.sqrt(np.mean(std_err**2) / 16) + 2e-3


def test_evaluate_dataset_rejects_empty_input():
  with pytest.raises(ValueError, match="no examples"):
    evaluation.evaluate_dataset(MODEL, PARAMS, iter(()), jax.random.PRNGKey(0))
  with pytest.raises(ValueError, match="no examples"):
    evaluation.evaluate_dataset(MODEL, PARAMS, [(X, jnp.zeros(10))], jax.random.PRNGKey(0))


def test_example_cap_and_padding_count_each_example_once():
  """21 of 37 examples in batches of 8: the padded rows of the last batch are in no sum
  (the ELBO equals the mean over exactly the 21 real rows; an unmasked padded row fails)."""
  from hermite_vae import data
  images = (np.arange(37 * 6) % 2).reshape(37, 6, 1, 1).astype(np.uint8)
  images[21:] = 1 - images[21:]     # the examples beyond the cap differ from the first 21
  batches = list(data.eval_batches(images, 8, state_lib.make_mesh(), max_examples=21))
  assert len(batches) == 3 and float(sum(m.sum() for _, m in batches)) == 21
  key = jax.random.PRNGKey(0)
  out = evaluation.evaluate_dataset(MODEL, PARAMS, iter(batches), key, au_samples=2)
  assert out["num_examples"] == 21
  elbos, kls = [], []
  for b, (x, mask) in enumerate(batches):
    terms = objectives.layer_terms(MODEL, PARAMS, x, jax.random.fold_in(
        jax.random.fold_in(key, b), 0))
    keep = np.asarray(mask) > 0
    elbos.append(np.asarray(terms.elbo)[keep])
    kls.append(np.asarray(terms.kl)[:, keep])
  assert sum(len(e) for e in elbos) == 21
  np.testing.assert_allclose(out["elbo_nats"], np.concatenate(elbos).mean(), rtol=1e-5)
  np.testing.assert_allclose(out["kl_per_layer_nats"], np.concatenate(kls, 1).mean(1),
                             rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------
# I(x; z) precision and the scale-free activity share.

def _pairwise_float64(z, loc, scale):
  z, loc, scale = (np.asarray(a, np.float64) for a in (z, loc, scale))
  diff = (z[:, None, :] - loc[None]) / scale[None]
  return (-0.5 * (diff ** 2).sum(-1) - np.log(scale).sum(-1)[None]
          - 0.5 * z.shape[-1] * np.log(2 * np.pi))


def test_pairwise_log_normal_of_a_sharp_layer_matches_float64():
  """A 40-unit layer of scale 1e-3 whose means sit around 3: the expanded quadratic form
  (z^2/s^2 - 2 z loc/s^2 + loc^2/s^2, terms of ~1e7 per unit) loses tens of nats in
  float32; the direct distance stays within a fraction of a nat of float64."""
  r = np.random.default_rng(0)
  loc = (3.0 + r.normal(size=(32, 40))).astype(np.float32)
  scale = np.full((32, 40), 1e-3, np.float32)
  z = (loc + scale * r.normal(size=(32, 40))).astype(np.float32)
  want = _pairwise_float64(z, loc, scale)
  got = np.asarray(evaluation.pairwise_log_normal(jnp.asarray(z), jnp.asarray(loc),
                                                  jnp.asarray(scale)), np.float64)
  diag = np.diagonal(want)                                 # the values that matter: ~ +250
  assert np.abs(np.diagonal(got) - diag).max() < 0.05 * 40
  assert np.all(np.abs(got - want) <= 1e-5 * np.abs(want) + 0.05)


class _SharpEncoder(nn.Module):
  """A two-layer encoder q(z1|x) = N(x W1 + 3, s^2 I), q(z2|z1) = N(z1 W2 / 4 + 3, s^2 I),
  for the I(x; z_i) estimator alone."""
  scale: float
  latent_dims: tuple = (12, 12)

  def setup(self):
    self.w = [self.param(f"w{i}", nn.initializers.normal(1.0), (6 if i == 0 else 12, 12))
              for i in range(2)]

  def encode_layer(self, i, h):
    loc = h @ self.w[i] * (1.0 if i == 0 else 0.25) + 3.0
    return loc, jnp.full_like(loc, self.scale)

  def __call__(self, x):
    return self.encode_layer(1, self.encode_layer(0, x)[0])


@pytest.mark.parametrize("scale", [0.1, 0.01, 1e-3])
def test_mutual_information_estimator_on_sharp_posteriors_matches_float64(scale):
  """``mutual_information_batch`` itself against the same estimate in float64 from the
  same paths: 8 groups of 4 nearly equal x (I(x; z) between log 8 and log 32, set by how
  sharp q is). Bugs caught: the distance by the expanded square (matmul) in float32,
  which loses nats per entry at scale 1e-3 around 3; path 0 left in q(z2|x)'s mixture
  (z2's loc depends on the path)."""
  from hermite_vae.models import hierarchy  # pylint: disable=g-import-not-at-top
  model = _SharpEncoder(scale)
  distinct = (jax.random.uniform(jax.random.PRNGKey(0), (8, 6)) < 0.5).astype(jnp.float32)
  x = (jnp.tile(distinct, (4, 1)) +
       2e-3 * jax.random.normal(jax.random.PRNGKey(5), (32, 6)))
  params = model.init(jax.random.PRNGKey(1), x)["params"]
  key, paths = jax.random.PRNGKey(2), 6
  got = np.asarray(evaluation.mutual_information_batch(model, params, x, paths, key))
  keys = jax.random.split(key, paths)
  for i, layer in enumerate(jax.vmap(lambda k: hierarchy.encode_path(model, params, x, k))(
      keys)):
    z, loc, sc = (np.asarray(a, np.float64) for a in layer)
    pair = np.stack([_pairwise_float64(z[0], loc[s], sc[s]) for s in range(1, paths)])
    log_cond = np.logaddexp.reduce(pair, axis=0) - np.log(paths - 1)        # [B, B']
    log_agg = np.logaddexp.reduce(log_cond, axis=1) - np.log(len(x))
    want = float(np.mean(np.diagonal(log_cond) - log_agg))
    assert 0.5 < want < np.log(32) + 0.1          # informative, and below log B
    assert abs(got[i] - want) < 0.01, (i, got[i], want)


def test_pairwise_log_normal_runs_no_matmul():
  """No dot_general in the distance: its precision cannot depend on the backend's matmul
  precision (TF32 on NVIDIA GPUs by default, bfloat16 passes on TPUs)."""
  z, loc, scale = jnp.ones((4, 3)), jnp.zeros((5, 3)), jnp.ones((5, 3))
  jaxpr = str(jax.make_jaxpr(evaluation.pairwise_log_normal)(z, loc, scale))
  assert "dot_general" not in jaxpr
  # Under the lowest matmul precision the values do not move.
  with jax.default_matmul_precision("bfloat16"):
    low = evaluation.pairwise_log_normal(z + 0.123456, loc, scale)
  np.testing.assert_array_equal(low, evaluation.pairwise_log_normal(z + 0.123456, loc, scale))


def test_x_variance_share_is_the_explained_share_and_scale_free():
  np.testing.assert_allclose(evaluation.x_variance_share([0.5, -0.1, 2.0], [1.0, 1.0, 1.0]),
                             [0.5, 0.0, 1.0])
  np.testing.assert_allclose(evaluation.x_variance_share([0.5 * 1e-6], [1e-6]), [0.5])


def test_x_share_on_constructed_encoder():
  """z1_0 is a function of x (share ~ 1); z1_1 is pure noise (share ~ 0); z2_0 follows
  only that noise (share ~ 0: it is counted by neither the x-based count nor the share,
  though conditionally active), z2_1 follows z1_0 (share ~ 1)."""
  x = (jax.random.uniform(jax.random.PRNGKey(4), (400, 6)) < 0.5).astype(jnp.float32)
  out = evaluation.evaluate_dataset(MODEL, _constructed_params(), [(x, jnp.ones(400))],
                                    jax.random.PRNGKey(0), au_samples=50)
  assert out["x_share_units"] == [1, 1]
  assert out["x_share_threshold"] == 0.1


def test_pooled_variance_gives_a_known_share_over_a_partial_batch():
  """Unit u of example b: z = a_b u-th column + sigma_u eps over S paths, so the x-explained
  share is Var(a) / (Var(a) + sigma^2); two batches, the second half masked out (its
  values huge, so counting them would show). Bug caught: the pooled variance counting
  masked rows, or dropping the within-example term (share 1)."""
  gen = np.random.default_rng(0)
  sigma = np.array([0.5, 2.0, 1e-3])
  moments_x, pooled = evaluation._Moments(), evaluation._PooledVariance()  # pylint: disable=protected-access
  everything = []
  for batch in range(2):
    a = gen.normal(size=(200, 3))
    z = a[None] + sigma * gen.normal(size=(400, 200, 3))
    mask = np.ones(200) if batch == 0 else np.r_[np.ones(100), np.zeros(100)]
    z[:, mask == 0] = 1e6
    moments_x.add(z.mean(0), mask)
    pooled.add(z.mean(0), z.var(0), mask)
    everything.append(z[:, mask > 0].reshape(-1, 3))
  np.testing.assert_allclose(pooled.variance(), np.concatenate(everything).var(0), rtol=1e-9)
  share = evaluation.x_variance_share(moments_x.variance(), pooled.variance())
  np.testing.assert_allclose(share, 1 / (1 + sigma**2), atol=0.06)


def test_x_share_equals_the_share_of_every_pooled_sample():
  """``evaluate_dataset`` pools on the device's per-example path moments; the same share
  from every sampled z_i kept (the former host-side pooling), on a partial last batch.
  Bug caught: ``posterior_means`` returning another statistic than the paths' mean and
  variance (e.g. ddof=1), or the mask dropped."""
  from hermite_vae.models import hierarchy  # pylint: disable=g-import-not-at-top
  x = (jax.random.uniform(jax.random.PRNGKey(4), (30, 6)) < 0.5).astype(jnp.float32)
  batches = [(x[:20], jnp.ones(20)), (jnp.concatenate([x[20:], x[:10]]),
                                      jnp.r_[jnp.ones(10), jnp.zeros(10)])]
  key, samples = jax.random.PRNGKey(7), 9
  out = evaluation.evaluate_dataset(MODEL, PARAMS, batches, key, au_samples=samples,
                                    share_threshold=0.3)
  zs, means, noise = [[], []], [[], []], [[], []]
  for b, (xb, mask) in enumerate(batches):
    keep = np.asarray(mask) > 0
    keys = jax.random.split(jax.random.fold_in(jax.random.fold_in(key, b), 1), samples)
    paths = jax.vmap(lambda k, xb=xb: hierarchy.encode_path(MODEL, PARAMS, xb, k))(keys)
    for i, (z, loc, _) in enumerate(paths):
      loc = np.asarray(loc, np.float64)[:, keep]
      zs[i].append(np.asarray(z, np.float64)[:, keep].reshape(-1, z.shape[-1]))
      means[i].append(loc.mean(0))
      noise[i].append(loc.var(0, ddof=1) / samples)
  for i in range(2):
    total = np.concatenate(zs[i]).var(0)
    explained = np.concatenate(means[i]).var(0) - np.concatenate(noise[i]).mean(0)
    want = np.clip(np.maximum(explained, 0).sum() / total.sum(), 0, 1)
    assert 0.01 < want < 0.99   # a share the clip does not decide
    assert out["x_share_layer"][i] == pytest.approx(want, rel=1e-4)
    assert out["x_share_units"][i] == int((np.clip(explained / total, 0, 1) >= 0.3).sum())
