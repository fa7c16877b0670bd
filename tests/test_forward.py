"""The model as one forward pass: ``model.apply(variables, x, key, smoothing)`` computes
the same numbers — bit for bit — as the same terms put together from one ``apply`` per
layer (how the objective was built before, and how a layer-wise model of one's own is
still evaluated): values, gradients and a 1,000-step training run."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import smoke
from hermite_vae import objectives, train
from hermite_vae import state as state_lib
from hermite_vae.models import hierarchy, terms
from hermite_vae.models.mlp import MLPHierarchicalVAE

X = (jax.random.uniform(jax.random.PRNGKey(5), (6, 20)) < 0.4).astype(jnp.float32)
KEY = jax.random.PRNGKey(3)


def _per_layer(model, params, x, key, smoothing=None):
  return terms.forward(hierarchy.applied_layers(model, params), x, key, smoothing)


def _equal(a, b):
  la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
  return len(la) == len(lb) and all(np.array_equal(u, v) for u, v in zip(la, lb))


SMOOTHINGS = [None, terms.Smoothing(0.5, 4), terms.Smoothing(0.5, 4, "ratio", chain=True),
              terms.Smoothing(0.7, 3, gradient="jacobian")]
# Each smoothing once by default (with and without skips alternating); the rest is slow.
CASES = [pytest.param(s, k, marks=() if (i % 2 == 0) == k else pytest.mark.slow)
         for i, s in enumerate(SMOOTHINGS) for k in (False, True)]


@pytest.mark.parametrize("smoothing,skips", CASES)
def test_forward_pass_equals_the_per_layer_terms_bit_for_bit(skips, smoothing):
  model = MLPHierarchicalVAE((5, 4, 3), (16, 12, 8), num_pixels=20, skip_connections=skips,
                             initialization="lecun_normal", skip_init="joint")
  params = model.init(jax.random.PRNGKey(0), X, jax.random.PRNGKey(1))["params"]
  loss = lambda f: (lambda p: -jnp.mean(f(model, p, X, KEY, smoothing).elbo))
  one = lambda m, p, x, k, s: m.apply({"params": p}, x, k, s)
  for f in (jax.jit(jax.value_and_grad(loss(one))),):
    v1, g1 = f(params)
  v2, g2 = jax.jit(jax.value_and_grad(loss(_per_layer)))(params)
  assert float(v1) == float(v2) and _equal(g1, g2)
  assert _equal(one(model, params, X, KEY, smoothing), _per_layer(model, params, X, KEY,
                                                                  smoothing))


def test_a_thousand_training_steps_are_bit_identical(monkeypatch):
  config = smoke.with_overrides(method="hvae", rho=0.6, num_ou_samples=3)
  model = state_lib.create_model(config, 784)
  tx = state_lib.create_optimizer(config)
  x = (jax.random.uniform(jax.random.PRNGKey(0), (1000, config.batch_size, 784)) < 0.3
       ).astype(jnp.float32)

  def run():
    state = state_lib.create_train_state(model, tx, jax.random.PRNGKey(0), 784)
    steps = jax.jit(lambda s, xs: train.train_steps(
        s, xs, jax.random.PRNGKey(1), model=model, tx=tx,
        cfg=objectives.ObjectiveConfig.from_config(config), stop_on_nonfinite=True))
    state, metrics = steps(state, x)
    return state.params, metrics["loss"]

  params1, loss1 = run()
  monkeypatch.setattr(objectives, "layer_terms", _per_layer)
  params2, loss2 = run()
  assert _equal(loss1, loss2) and _equal(params1, params2)
  assert float(loss1[-1]) < float(loss1[0])               # it trained
