"""Objectives: smoothing only where the paper puts it; schedules; IW bound."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hermite_vae import objectives
from hermite_vae.models.mlp import HierarchicalVAE
from hermite_vae.models.resnet import HierarchicalResNetVAE
from hermite_vae.train import ObjectiveConfig

MODEL = HierarchicalVAE((5, 4, 3), (16, 12, 8), num_pixels=20)
X = (jax.random.uniform(jax.random.PRNGKey(5), (6, 20)) < 0.4).astype(jnp.float32)
PARAMS = MODEL.init(jax.random.PRNGKey(0), X, jax.random.PRNGKey(1))["params"]
# The convolutional hierarchy on 4x5 "images" (odd width: 2x3 latent maps, cropped decoder).
RESNET = HierarchicalResNetVAE((4, 5, 1), (2, 2, 1), channels=4, num_blocks=1)
RESNET_PARAMS = RESNET.init(jax.random.PRNGKey(0), X, jax.random.PRNGKey(1))["params"]
MODELS = {"mlp": (MODEL, PARAMS), "resnet": (RESNET, RESNET_PARAMS)}
KEY = jax.random.PRNGKey(3)
BASE = ObjectiveConfig(method="vae", rho=1.0, rho_anneal_steps=0, num_ou_samples=4,
                       smooth_target="mean_std", num_iw_samples=3, kl_warmup_start=0,
                       kl_warmup_steps=0, free_bits=0.0)


def _grads(arch="mlp", **kw):
  cfg = dataclasses.replace(BASE, **kw)
  model, params = MODELS[arch]
  return jax.grad(objectives.loss_and_metrics, has_aux=True)(params, model, X, KEY, 0, cfg)


def _close(a, b, **kw):
  return all(np.allclose(u, v, **kw) for u, v in
             zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


@pytest.mark.parametrize("arch", ["mlp", "resnet"])
@pytest.mark.parametrize("target", ["mean_std", "ratio"])
def test_hvae_at_rho_one_equals_vae(target, arch):
  g_vae, m_vae = _grads(arch)
  g_hvae, m_hvae = _grads(arch, method="hvae", rho=1.0, smooth_target=target)
  assert _close(g_vae, g_hvae, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(m_vae["elbo_nats"], m_hvae["elbo_nats"], rtol=1e-6)


@pytest.mark.parametrize("arch", ["mlp", "resnet"])
@pytest.mark.parametrize("target", ["mean_std", "ratio"])
def test_smoothing_only_on_intermediate_generator_layers(target, arch):
  g_vae, m_vae = _grads(arch)
  g_hvae, m_hvae = _grads(arch, method="hvae", rho=0.5, smooth_target=target)
  # Reported numbers are the original model's (the ratio form of the density differs
  # from the mean form only by float rounding).
  tol = 0 if target == "mean_std" else 1e-6
  np.testing.assert_allclose(m_vae["elbo_nats"], m_hvae["elbo_nats"], rtol=tol)
  np.testing.assert_allclose(m_vae["loss"], m_hvae["loss"], rtol=tol)
  # p(x|z1) is never smoothed and nothing it sees changes: identical gradient.
  assert _close(g_vae["p_x"], g_hvae["p_x"], rtol=1e-6, atol=1e-7)
  # Every intermediate generator layer p(z_i|z_{i+1}) is smoothed.
  for name in ("p_z1", "p_z2"):
    assert not _close(g_vae[name], g_hvae[name], rtol=1e-3, atol=1e-4), name


def test_iwae_bound_at_least_elbo_on_average():
  cfg = dataclasses.replace(BASE, method="iwae", num_iw_samples=50)
  keys = jax.random.split(KEY, 20)
  vals = [objectives.loss_and_metrics(PARAMS, MODEL, X, k, 0, cfg)[1] for k in keys]
  iw = np.mean([float(v["iw_bound_k50"]) for v in vals])
  elbo = np.mean([float(v["elbo_nats"]) for v in vals])
  assert iw > elbo


def test_schedules():
  assert float(objectives.kl_weight(0, 10, 100)) == 0.0
  assert float(objectives.kl_weight(10, 10, 100)) == 0.0
  assert float(objectives.kl_weight(60, 10, 100)) == pytest.approx(0.5)
  assert float(objectives.kl_weight(500, 10, 100)) == 1.0
  assert float(objectives.kl_weight(0, 0, 0)) == 1.0
  assert float(objectives.rho_at(0, 0.8, 100)) == pytest.approx(0.8)
  assert float(objectives.rho_at(50, 0.8, 100)) == pytest.approx(0.9)
  assert float(objectives.rho_at(1000, 0.8, 100)) == pytest.approx(1.0)
  assert float(objectives.rho_at(1000, 0.8, 0)) == pytest.approx(0.8)
  kl = jnp.array([0.2, 3.0])
  np.testing.assert_allclose(objectives.free_bits_kl(kl, 1.0), [1.0, 3.0])


def test_free_bits_and_annealing_change_loss_not_elbo():
  _, m = _grads()
  _, m_fb = _grads(free_bits=100.0)
  _, m_kl = _grads(kl_warmup_start=10, kl_warmup_steps=10)
  assert float(m_fb["elbo_nats"]) == float(m["elbo_nats"]) == float(m_kl["elbo_nats"])
  assert float(m_fb["loss"]) > float(m["loss"])           # KL floor of 100 nats per layer
  assert float(m_kl["loss"]) == pytest.approx(-float(m["reconstruction_nats"]))


@pytest.mark.parametrize("arch", ["mlp", "resnet"])
def test_sequential_ou_samples_give_the_same_gradient(arch):
  g_batched, m_batched = _grads(arch, method="hvae", rho=0.5)
  g_seq, m_seq = _grads(arch, method="hvae", rho=0.5, ou_sequential=True)
  assert float(m_batched["loss"]) == float(m_seq["loss"])
  assert _close(g_batched, g_seq, rtol=1e-4, atol=1e-6)
