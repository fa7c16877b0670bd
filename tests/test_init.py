"""Initializations (``config.initialization``, ``models.layers.INITS``): what each one
promises, and the bound on a wide hierarchy's initial KL that the default keeps."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hermite_vae import config_lib, objectives
from hermite_vae.models import layers
from hermite_vae.models.mlp import MLPHierarchicalVAE
from hermite_vae.models.resnet import ResNetHierarchicalVAE

# Binary images with about MNIST's ink density (13%), 64 of them.
X = (jax.random.uniform(jax.random.PRNGKey(0), (64, 784)) < 0.13).astype(jnp.float32)
# The initial KL of the paper's 3 x 200 model (two 200-unit tanh layers per stochastic
# layer): under lecun_normal (the earlier default) about 120, 165 and 55 nats, after which
# the model collapses entirely (docs/results.md, "Initialization"); the default keeps each
# layer below this bound.
INITIAL_KL_BOUND_NATS = 5.0


def _initial_kl(init, latent=(200, 200, 200), hidden=(200, 200, 200), seed=0):
  model = MLPHierarchicalVAE(latent, hidden, initialization=init)
  params = jax.jit(model.init)(jax.random.PRNGKey(seed), X, jax.random.PRNGKey(1))["params"]
  kl = jax.jit(lambda p: objectives.layer_terms(model, p, X, jax.random.PRNGKey(2)).kl)(params)
  return np.asarray(jnp.mean(kl, axis=1))


def test_default_initialization_keeps_a_wide_hierarchys_initial_kl_bounded():
  assert config_lib.default_config().initialization == layers.DEFAULT_INIT == "small_heads"
  for seed in (0, 1):
    kl = _initial_kl(layers.DEFAULT_INIT, seed=seed)
    assert np.all(np.abs(kl) < INITIAL_KL_BOUND_NATS), kl
  # The bound is one the earlier default violates in every layer.
  assert np.all(_initial_kl("lecun_normal") > 10 * INITIAL_KL_BOUND_NATS)


def test_small_heads_initial_kl_does_not_grow_with_the_width():
  narrow, wide = _initial_kl("small_heads", (40,) * 3), _initial_kl("small_heads")
  assert np.all(wide < 2 * narrow + 0.5), (narrow, wide)
  assert np.all(narrow > 0.01)              # the encoder starts informative, not at N(0, I)


def test_zero_heads_start_every_gaussian_at_the_standard_normal():
  np.testing.assert_allclose(_initial_kl("zero_heads", (8, 8), (16, 16)), 0.0, atol=1e-5)
  for min_scale, max_scale in ((1e-3, 3.0), (1e-3, 0.0), (0.1, 2.0)):
    raw = layers.unit_scale_raw(min_scale, max_scale)
    assert float(layers.bounded_scale(jnp.float32(raw), min_scale, max_scale)) == (
        pytest.approx(1.0, abs=1e-5))


def _std(p):
  return float(jnp.std(p))


def test_kernel_and_bias_scales_of_each_initialization():
  x = jnp.zeros((1, 784))
  params = {init: MLPHierarchicalVAE((50, 20), (200, 200), initialization=init).init(
      jax.random.PRNGKey(0), x, jax.random.PRNGKey(1))["params"] for init in layers.INITS}
  # Trunk: lecun_normal variance 1/fan_in, torch uniform +-1/sqrt(fan_in) (var 1/(3 fan_in)).
  trunk = lambda init: params[init]["q_z2"]["mlp"]["dense_1"]        # fan_in 200
  assert _std(trunk("lecun_normal")["kernel"]) == pytest.approx(1 / math.sqrt(200), rel=0.05)
  assert _std(trunk("torch")["kernel"]) == pytest.approx(1 / math.sqrt(600), rel=0.05)
  bound = 1 / math.sqrt(200)
  assert float(jnp.max(jnp.abs(trunk("torch")["bias"]))) <= bound
  assert _std(trunk("torch")["bias"]) == pytest.approx(bound / math.sqrt(3), rel=0.15)
  assert float(jnp.max(jnp.abs(trunk("lecun_normal")["bias"]))) == 0.0
  # Heads of q(z1|x) (50 units) and p(z1|z2): small_heads 1/sqrt(fan_in * d), zero_prior
  # zero for the generator only.
  head = lambda init, layer, role: params[init][layer][role]
  assert _std(head("small_heads", "q_z1", "loc")["kernel"]) == pytest.approx(
      1 / math.sqrt(200 * 50), rel=0.05)
  unit = layers.unit_scale_raw(layers.MIN_SCALE, layers.MAX_SCALE)
  np.testing.assert_allclose(head("small_heads", "p_z1", "scale")["bias"], unit, rtol=1e-6)
  assert _std(head("zero_prior", "p_z1", "loc")["kernel"]) == 0.0
  assert _std(head("zero_prior", "q_z1", "loc")["kernel"]) == pytest.approx(
      1 / math.sqrt(200), rel=0.05)
  # Decoders keep the trunk's initialization under every head rule.
  assert _std(params["small_heads"]["p_x"]["logits"]["kernel"]) == pytest.approx(
      1 / math.sqrt(200), rel=0.05)


def test_resnet_heads_follow_the_initialization():
  model = ResNetHierarchicalVAE((4, 4, 1), (3, 2), channels=8, num_blocks=1)
  params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 16)), jax.random.PRNGKey(1))
  loc = params["params"]["p_z1"]["loc"]["kernel"]                 # 3x3x8 -> 3 channels
  assert _std(loc) == pytest.approx(1 / math.sqrt(9 * 8 * 3), rel=0.2)
  lecun = ResNetHierarchicalVAE((4, 4, 1), (3, 2), channels=8, num_blocks=1,
                                initialization="lecun_normal").init(
      jax.random.PRNGKey(0), jnp.zeros((1, 16)), jax.random.PRNGKey(1))
  assert _std(lecun["params"]["p_z1"]["loc"]["kernel"]) == pytest.approx(
      1 / math.sqrt(9 * 8), rel=0.2)


def test_unknown_initialization_is_refused_before_compute():
  config = config_lib.default_config()
  config.initialization = "xavier"
  with pytest.raises(ValueError, match="config.initialization='xavier'"):
    config_lib.validate(config)
  model = MLPHierarchicalVAE((2,), (4,), num_pixels=3, initialization="xavier")
  with pytest.raises(ValueError, match="init='xavier'"):
    model.init(jax.random.PRNGKey(0), jnp.zeros((1, 3)), jax.random.PRNGKey(1))
