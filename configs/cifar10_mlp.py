"""CIFAR-10 with the MLP hierarchy and a discretized-logistic likelihood (bits/dim).

Not the paper's CIFAR-10 model (that is ``cifar10_resnet.py``, §5.2.2): an MLP over the
3072 sub-pixels, a cheaper way to try the objective on 8-bit images. Latents 64-32-16-8 with 2x(1000..125) tanh units per stochastic layer.
"""
from hermite_vae import config_lib


def get_config():
  c = config_lib.default_config()
  c.dataset = "cifar10"
  c.likelihood = "discretized_logistic"
  c.latent_dims = (64, 32, 16, 8)
  c.hidden_dims = (1000, 500, 250, 125)
  c.learning_rate = 5e-4
  return c
