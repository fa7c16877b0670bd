"""The model as one forward pass: ``model.apply(variables, x, key, smoothing)`` computes
the terms of a posterior path written out here layer by layer from the model's own
methods (values and gradients, with and without skips, under every smoothing), and the
same numbers, bit for bit, as ``terms.forward`` over one ``apply`` per layer (how a
layer-wise model of one's own is evaluated)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hermite_vae import rng
from hermite_vae.models import hierarchy, layers, terms
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


def _written_out(model, params, x, key, smoothing=None):
  """-mean ELBO of one posterior path, from the model's layer methods: z_i = loc + scale *
  N(0, I) with fold_in(path_key, i); the skip states S[j] of the latents from z_j up
  (generator i reads S[i+2], the decoder S[1]); for a smoothed generator the n OU points
  of eq. 4 around z_{i+1} with the layer's OU key, and log N at their mean (mu, sigma) —
  substituted for the gradient only, or (jacobian) only the Jacobian of the means."""
  apply = lambda *a, method: model.apply({"params": params}, *a, method=method)
  path_key, ou_key = rng.terms_keys(key)
  h, path = x, []
  for i in range(len(model.latent_dims)):
    loc, scale = apply(i, h, method=model.encode_layer)
    z = loc + scale * jax.random.normal(jax.random.fold_in(path_key, i), loc.shape)
    path.append((z, loc, scale))
    h = z
  num = len(path)
  states = apply([z for z, _, _ in path], method=model.top_down_states)
  ctx = lambda j: states[j] if j < num else None
  gen = lambda i, h: (apply(i, h, method=model.generate_layer) if ctx(i + 2) is None else
                      apply(i, h, ctx(i + 2), method=model.generate_layer))
  out = (apply(path[0][0], method=model.decode) if ctx(1) is None else
         apply(path[0][0], ctx(1), method=model.decode))
  elbo = layers.log_likelihood(model.likelihood, x, out)
  sg = jax.lax.stop_gradient
  for i in range(num - 1):
    (z, q_loc, q_scale), (z_above, loc, scale) = path[i], path[i + 1]
    mu0, sigma0 = gen(i, z_above)
    log_p = layers.gaussian_log_prob(z, mu0, sigma0)
    if smoothing is not None:
      rho, n = smoothing.rho, smoothing.num_ou_samples
      eps = jax.random.normal(rng.ou_layer_key(ou_key, i), (n,) + z_above.shape)
      points = rho * z_above + (1 - rho) * loc + scale * np.sqrt(1 - rho**2) * eps
      mus, sigmas = jax.vmap(lambda h, i=i: gen(i, h))(points)
      if smoothing.target == "ratio":
        u_ratio, u_sigma = (mus / sigmas).mean(0), sigmas.mean(0)
        smoothed = layers.gaussian_log_prob(z, u_ratio * u_sigma, u_sigma)
      else:
        u_mu, u_sigma = mus.mean(0), sigmas.mean(0)
        if smoothing.gradient == "jacobian":   # log N at the original, Jacobian of U
          u_mu, u_sigma = sg(mu0) + u_mu - sg(u_mu), sg(sigma0) + u_sigma - sg(u_sigma)
        smoothed = layers.gaussian_log_prob(z, u_mu, u_sigma)
      log_p = sg(log_p - smoothed) + smoothed
    elbo = elbo - (layers.gaussian_log_prob(z, q_loc, q_scale) - log_p)
  elbo = elbo - layers.kl_to_standard_normal(path[-1][1], path[-1][2])
  return -jnp.mean(elbo)


@pytest.mark.parametrize("smoothing,skips", CASES)
def test_forward_pass_equals_the_written_out_terms(skips, smoothing):
  """Bugs caught (each planted once): the decoder reading S[2] instead of S[1]; a
  generator's OU key of layer i + 1; the KL term's sign; the posterior path drawn with
  the OU key."""
  model = MLPHierarchicalVAE((5, 4, 3), (16, 12, 8), num_pixels=20, skip_connections=skips,
                             initialization="lecun_normal", skip_init="joint")
  params = model.init(jax.random.PRNGKey(0), X, jax.random.PRNGKey(1))["params"]
  lib = lambda p: -jnp.mean(model.apply({"params": p}, X, KEY, smoothing).elbo)
  v1, g1 = jax.jit(jax.value_and_grad(lib))(params)
  v2, g2 = jax.jit(jax.value_and_grad(
      lambda p: _written_out(model, p, X, KEY, smoothing)))(params)
  np.testing.assert_allclose(v1, v2, rtol=1e-6)
  for a, b in zip(jax.tree_util.tree_leaves(g1), jax.tree_util.tree_leaves(g2)):
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-6)


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
