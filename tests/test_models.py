"""Model shapes and parameter counts of the paper's presets."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import cifar10_mlp, cifar10_resnet, mnist_mlp, mnist_mlp_5layer, mnist_mlp_64, mnist_resnet
from hermite_vae.models.layers import gaussian_log_prob, gaussian_log_prob_ratio, kl_to_standard_normal
from hermite_vae.models.mlp import MLPHierarchicalVAE, count_params
from hermite_vae import state as state_lib


def _dense(a, b):
  return a * b + b


def _expected_params(latent, hidden, pixels=784, heads=1):
  """Two tanh layers before every stochastic layer (encoder and decoder), loc+scale heads."""
  total = 0
  ins = [pixels] + list(latent[:-1])
  for i, (d_in, d, h) in enumerate(zip(ins, latent, hidden)):   # q(z_{i+1} | .)
    total += _dense(d_in, h) + _dense(h, h) + 2 * _dense(h, d)
  for i in range(len(latent) - 1):                               # p(z_{i+1} | z_{i+2})
    h = hidden[i + 1]
    total += _dense(latent[i + 1], h) + _dense(h, h) + 2 * _dense(h, latent[i])
  h = hidden[0]                                                  # p(x | z1)
  total += _dense(latent[0], h) + _dense(h, h) + heads * _dense(h, pixels)
  return total


@pytest.mark.parametrize("module", [mnist_mlp, mnist_mlp_64, mnist_mlp_5layer])
def test_preset_parameter_counts(module):
  c = module.get_config()
  model = state_lib.create_model(c, 784)
  params = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 784)),
                                             jax.random.PRNGKey(1)))
  assert count_params(params) == _expected_params(c.latent_dims, c.hidden_dims)


def test_cifar10_preset_has_location_and_scale_heads():
  c = cifar10_mlp.get_config()
  model = state_lib.create_model(c, 3072)
  assert model.likelihood == "discretized_logistic"
  params = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 3072)),
                                             jax.random.PRNGKey(1)))
  assert count_params(params) == _expected_params(c.latent_dims, c.hidden_dims, 3072, heads=2)


def test_40x4_preset_values():
  # Closed form for the paper's Table 4 model, written out.
  enc = (784 * 200 + 200) + (200 * 200 + 200) + 2 * (200 * 40 + 40)
  mid = (40 * 200 + 200) + (200 * 200 + 200) + 2 * (200 * 40 + 40)
  dec = (40 * 200 + 200) + (200 * 200 + 200) + (200 * 784 + 784)
  assert _expected_params((40,) * 4, (200,) * 4) == enc + 3 * mid + 3 * mid + dec
  c = mnist_mlp.get_config()
  assert (c.method, c.rho, c.num_ou_samples) == ("hvae", 0.9, 5)
  assert tuple(c.latent_dims) == (40,) * 4 and tuple(c.hidden_dims) == (200,) * 4


def test_layer_names_and_mismatch():
  model = MLPHierarchicalVAE((3, 2), (8, 8), num_pixels=5)
  params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 5)), jax.random.PRNGKey(1))["params"]
  assert set(params) == {"q_z1", "q_z2", "p_z1", "p_x"}
  with pytest.raises(ValueError, match="latent_dims.*hidden_dims"):
    MLPHierarchicalVAE((3, 2), (8,), num_pixels=5).init(
        jax.random.PRNGKey(0), jnp.zeros((1, 5)), jax.random.PRNGKey(1))


def test_densities():
  z, loc, scale = jnp.array([[0.3, -1.0]]), jnp.array([[0.1, 0.5]]), jnp.array([[0.7, 2.0]])
  want = jax.scipy.stats.norm.logpdf(z, loc, scale).sum(-1)
  assert jnp.allclose(gaussian_log_prob(z, loc, scale), want)
  assert jnp.allclose(gaussian_log_prob_ratio(z, loc / scale, scale), want)
  # KL(N(m, s^2) || N(0,1)) = E_q[log q - log p] by Monte Carlo.
  eps = jax.random.normal(jax.random.PRNGKey(0), (200_000, 2))
  zs = loc + scale * eps
  mc = jnp.mean(gaussian_log_prob(zs, loc, scale) - gaussian_log_prob(zs, 0.0, 1.0))
  assert abs(float(kl_to_standard_normal(loc, scale)[0]) - float(mc)) < 0.02


def test_scale_bounds():
  from hermite_vae.models.layers import GaussianLayer
  h = jnp.linspace(-50, 50, 11)[:, None] * jnp.ones((1, 4))
  for max_scale in (0.0, 2.0):
    layer = GaussianLayer((8,), 3, min_scale=1e-3, max_scale=max_scale)
    params = layer.init(jax.random.PRNGKey(0), h)
    params = jax.tree_util.tree_map(lambda p: p * 10, params)  # push raw scales far out
    _, scale = layer.apply(params, h)
    assert float(scale.min()) >= 1e-3
    if max_scale:
      assert float(scale.max()) <= max_scale + 1e-3
    else:
      assert float(scale.max()) > 2.0


# ----------------------------------------------------------- 8-bit likelihood

def test_discretized_logistic_is_a_distribution_over_256_values():
  from hermite_vae.models.layers import discretized_logistic_log_prob
  values = jnp.arange(256.0)[:, None]                        # every 8-bit value, one pixel
  for loc, log_scale in [(0.0, -2.0), (0.7, -4.0), (-0.99, -1.0), (0.3, -7.0), (1.5, 0.5)]:
    lp = discretized_logistic_log_prob(values, jnp.full((256, 1), loc),
                                       jnp.full((256, 1), log_scale))
    assert abs(float(jnp.sum(jnp.exp(lp))) - 1.0) < 2e-3, (loc, log_scale)
  # An interior bin is the logistic CDF difference over [x - 1/255, x + 1/255].
  x, loc, s = 100.0, 0.1, 0.05
  centre = x / 127.5 - 1
  cdf = lambda t: 1 / (1 + jnp.exp(-(t - loc) / s))
  want = jnp.log(cdf(centre + 1 / 255) - cdf(centre - 1 / 255))
  got = discretized_logistic_log_prob(jnp.array([x]), jnp.array([loc]), jnp.log(jnp.array([s])))
  assert abs(float(got - want)) < 1e-4
  # Finite gradients at the edge bins and for a very sharp logistic.
  g = jax.grad(lambda l: jnp.sum(discretized_logistic_log_prob(
      jnp.array([0.0, 255.0, 128.0]), l, jnp.full(3, -7.0))))(jnp.array([0.5, -0.5, 0.9]))
  assert bool(jnp.all(jnp.isfinite(g)))


def test_discretized_logistic_model_shapes_and_bounds():
  from hermite_vae.models import layers
  model = MLPHierarchicalVAE((3, 2), (8, 8), num_pixels=12, likelihood="discretized_logistic")
  x = jnp.full((2, 12), 255.0)
  variables = model.init(jax.random.PRNGKey(0), x, jax.random.PRNGKey(1))
  z1 = jnp.zeros((2, 3))
  out = model.apply(variables, z1, method=model.decode)
  assert out.shape == (2, 24)
  assert float(jnp.min(out[:, 12:])) >= layers.MIN_LOG_SCALE
  # The first half is the location head, the second the (floored) log-scale head: written
  # out from the decoder's parameters (swapped halves fail).
  z1 = jax.random.normal(jax.random.PRNGKey(3), (2, 3))
  out = model.apply(variables, z1, method=model.decode)
  p = variables["params"]["p_x"]
  h = jnp.tanh(jnp.tanh(z1 @ p["mlp"]["dense_0"]["kernel"] + p["mlp"]["dense_0"]["bias"])
               @ p["mlp"]["dense_1"]["kernel"] + p["mlp"]["dense_1"]["bias"])
  loc = h @ p["loc"]["kernel"] + p["loc"]["bias"]
  log_scale = jnp.maximum(h @ p["log_scale"]["kernel"] + p["log_scale"]["bias"],
                          layers.MIN_LOG_SCALE)
  np.testing.assert_allclose(out[:, :12], loc, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(out[:, 12:], log_scale, rtol=1e-5, atol=1e-6)
  assert float(jnp.max(jnp.abs(loc - log_scale))) > 1e-2
  pixels = jnp.arange(24.0).reshape(2, 12) * 10
  np.testing.assert_allclose(
      layers.log_likelihood("discretized_logistic", pixels, out),
      layers.discretized_logistic_log_prob(pixels, loc, log_scale), rtol=1e-6)
  image = layers.mean_image("discretized_logistic", out)
  assert image.shape == (2, 12) and float(image.min()) >= 0 and float(image.max()) <= 1
  with pytest.raises(ValueError, match="likelihood"):
    MLPHierarchicalVAE((3, 2), (8, 8), num_pixels=12, likelihood="gaussian").init(
        jax.random.PRNGKey(0), x, jax.random.PRNGKey(1))


# ------------------------------------------------------------------ ResNets

def test_resnet_hierarchy_shapes_and_layer_names():
  from hermite_vae.models.resnet import ResNetHierarchicalVAE
  model = ResNetHierarchicalVAE((28, 28, 1), (3, 2), channels=4, num_blocks=1)
  assert model.latent_dims == (14 * 14 * 3, 14 * 14 * 2) and model.num_pixels == 784
  x = jnp.zeros((2, 784))
  variables = model.init(jax.random.PRNGKey(0), x, jax.random.PRNGKey(1))
  assert set(variables["params"]) == {"q_z1", "q_z2", "p_z1", "p_x"}
  assert model.apply(variables, x, jax.random.PRNGKey(1)).log_px.shape == (2,)
  loc, scale = model.apply(variables, 0, x, method=model.encode_layer)
  assert loc.shape == scale.shape == (2, 588) and float(scale.min()) > 0
  loc, scale = model.apply(variables, 0, jnp.zeros((5, 2, 392)), method=model.generate_layer)
  assert loc.shape == (5, 2, 588)   # extra leading axes (OU samples, IW samples) pass through
  # The generator p(z1|z2) and the encoder read their inputs (at the default
  # initialization too): changing z2 or x changes (loc, scale).
  z2 = jax.random.normal(jax.random.PRNGKey(4), (5, 2, 392))
  loc2, scale2 = jax.jit(lambda v, h: model.apply(v, 0, h, method=model.generate_layer))(
      variables, z2)
  assert float(jnp.max(jnp.abs(loc2 - loc))) > 1e-4
  assert float(jnp.max(jnp.abs(scale2 - scale))) > 1e-4
  assert not np.allclose(loc2[0, 0], loc2[0, 1])        # per-example, not one constant
  x1 = (jax.random.uniform(jax.random.PRNGKey(5), (2, 784)) < 0.3).astype(jnp.float32)
  q1 = model.apply(variables, 0, x1, method=model.encode_layer)[0]
  assert float(jnp.max(jnp.abs(q1 - model.apply(variables, 0, x,
                                                method=model.encode_layer)[0]))) > 1e-4
  # 8-bit colour images: location and log-scale per sub-pixel.
  colour = ResNetHierarchicalVAE((32, 32, 3), (2,), channels=4, num_blocks=0,
                                 likelihood="discretized_logistic")
  xc = jnp.full((2, 3072), 128.0)
  cv = colour.init(jax.random.PRNGKey(0), xc, jax.random.PRNGKey(1))
  out = colour.apply(cv, jnp.zeros((2, colour.latent_dims[0])), method=colour.decode)
  assert out.shape == (2, 2 * 3072)


def _conv(c_in, c_out):
  return 9 * c_in * c_out + c_out                 # 3x3 kernel + bias


def _expected_resnet_params(colours, latent, channels, blocks, heads):
  """conv_in, residual blocks (two convs each), loc and scale heads per Gaussian layer;
  the decoder: conv_in, blocks, a 3x3 transposed convolution, the likelihood heads."""
  gaussian = lambda c_in, c_out: (_conv(c_in, channels) + blocks * 2 * _conv(channels, channels)
                                  + 2 * _conv(channels, c_out))
  total = sum(gaussian(c_in, c_out) for c_in, c_out in zip((colours,) + latent[:-1], latent))
  total += sum(gaussian(latent[i + 1], latent[i]) for i in range(len(latent) - 1))
  total += (_conv(latent[0], channels) + blocks * 2 * _conv(channels, channels)
            + _conv(channels, channels) + heads * _conv(channels, colours))
  return total


@pytest.mark.parametrize("module,pixels,colours,heads,readme", [
    (mnist_resnet, 784, 1, 1, "3.1M"), (cifar10_resnet, 3072, 3, 2, "6.7M")])
def test_resnet_preset_parameter_counts_match_readme(module, pixels, colours, heads, readme):
  c = module.get_config()
  model = state_lib.create_model(c, pixels)
  params = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, pixels)),
                                             jax.random.PRNGKey(1)))
  expected = _expected_resnet_params(colours, tuple(c.latent_channels), c.resnet_channels,
                                     c.resnet_blocks, heads)
  assert count_params(params) == expected
  assert f"{expected / 1e6:.1f}M" == readme
  text = open(os.path.join(os.path.dirname(__file__), "..", "README.md")).read()
  assert f"{readme} parameters" in text


def test_residual_block_is_the_identity_at_initialisation():
  from hermite_vae.models.resnet import ResBlock
  h = jax.random.normal(jax.random.PRNGKey(0), (2, 5, 7, 6))
  block = ResBlock(6)
  params = block.init(jax.random.PRNGKey(1), h)
  np.testing.assert_array_equal(block.apply(params, h), h)
  # ... and not after a step that moves its second convolution.
  moved = jax.tree_util.tree_map(lambda p: p + 0.1, params)
  assert not np.allclose(block.apply(moved, h), h)


@pytest.mark.parametrize("module,pixels", [(mnist_resnet, 784), (cifar10_resnet, 3072)])
def test_resnet_presets_build(module, pixels):
  c = module.get_config()
  model = state_lib.create_model(c, pixels)
  params = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, pixels)),
                                             jax.random.PRNGKey(1)))
  # (exact parameter counts of both presets: test_resnet_preset_parameter_counts_match_readme)
  assert len(model.latent_dims) == len(c.latent_channels)
  assert {"q_z1", "p_z1", "p_x"} <= set(params["params"])
  with pytest.raises(ValueError, match="not 100 pixels"):
    state_lib.create_model(c, 100)


@pytest.mark.parametrize("architecture", ["mlp", "resnet"])
def test_a_model_built_by_hand_is_the_one_built_from_the_default_config(architecture):
  from hermite_vae import config_lib
  from hermite_vae.models.resnet import ResNetHierarchicalVAE
  config = config_lib.default_config()
  config.architecture = architecture
  config.dataset = "mnist"
  config.latent_channels = (2, 1)
  from_config = state_lib.create_model(config, 784)
  if architecture == "mlp":
    by_hand = MLPHierarchicalVAE(tuple(config.latent_dims), tuple(config.hidden_dims))
  else:
    by_hand = ResNetHierarchicalVAE((28, 28, 1), (2, 1), channels=config.resnet_channels,
                                    num_blocks=config.resnet_blocks)
  # Same fields (scale bounds, likelihood, depth), hence the same function.
  assert by_hand == from_config
  x = (jax.random.uniform(jax.random.PRNGKey(0), (3, 784)) < 0.5).astype(jnp.float32)
  params = by_hand.init(jax.random.PRNGKey(1), x, jax.random.PRNGKey(2))
  big = jax.tree_util.tree_map(lambda p: 50.0 * p, params)    # drive scales to the bound
  loc, scale = by_hand.apply(big, 0, x, method=by_hand.encode_layer)
  assert float(scale.max()) <= config.max_scale + config.min_scale
  np.testing.assert_array_equal(
      scale, from_config.apply(big, 0, x, method=from_config.encode_layer)[1])


def test_every_config_file_loads_by_path_from_outside_the_repository(tmp_path):
  """config_flags and lab.presets load configs/*.py by path: a preset that imports the
  ``configs`` package (not on sys.path outside the repository) would fail there. And
  every ResNet preset runs one step per dispatch (``train.train_steps``)."""
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  script = ("import sys; sys.path.insert(0, sys.argv[1])\n"
            "from lab.presets import load_config, CONFIG_DIR\n"
            "import os\n"
            "names = sorted(f[:-3] for f in os.listdir(CONFIG_DIR)\n"
            "               if f.endswith('.py') and f != '__init__.py')\n"
            "configs = [load_config(n) for n in names]\n"
            "print(len(configs), 'loaded')\n"
            "print('resnets in loops', [n for n, c in zip(names, configs)\n"
            "      if c.architecture == 'resnet' and c.steps_per_dispatch != 1])\n")
  proc = subprocess.run([sys.executable, "-c", script, os.path.join(root, "experiments")],
                        cwd=str(tmp_path), capture_output=True, text=True, timeout=120,
                        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert f"{len([f for f in os.listdir(os.path.join(root, 'configs')) if f.endswith('.py')]) - 1} loaded" in proc.stdout
  # XLA:CPU runs convolutions in loop bodies slowly: ResNet presets dispatch single steps.
  assert "resnets in loops []" in proc.stdout
