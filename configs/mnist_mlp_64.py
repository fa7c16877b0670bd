"""Dynamic-MNIST 64-32-16-8 model of Table 3: 2x(512, 256, 128, 64) tanh units."""
from hermite_vae import config_lib


def get_config():
  c = config_lib.default_config()
  c.dataset = "mnist"
  c.latent_dims = (64, 32, 16, 8)
  c.hidden_dims = (512, 256, 128, 64)
  c.rho = 0.95
  return c
