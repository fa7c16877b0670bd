"""The paper's static-MNIST HVAE (Table 4): 40-40-40-40 latents, 2x200 tanh units per
stochastic layer, rho = 0.9, n = 5 OU samples."""
from hermite_vae import config_lib


def get_config():
  c = config_lib.default_config()
  c.method = "hvae"
  c.rho = 0.9
  c.num_ou_samples = 5
  c.dataset = "binarized_mnist"
  return c
