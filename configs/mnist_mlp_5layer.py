"""Dynamic-MNIST 5-layer model of Table 2: 64-32-16-8-4 latents, 2x(512..32) tanh units."""
from hermite_vae import config_lib


def get_config():
  c = config_lib.default_config()
  c.dataset = "mnist"
  c.latent_dims = (64, 32, 16, 8, 4)
  c.hidden_dims = (512, 256, 128, 64, 32)
  return c
