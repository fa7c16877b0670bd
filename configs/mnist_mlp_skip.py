"""The paper's 40-40-40-40 MNIST HVAE (``mnist_mlp.py``) with stochastic skip connections
(HVAE+): each generator p(z_i|z_{i+1}, .) and the decoder also read a 200-unit tanh
top-down state of every latent above (README, "Skip connections")."""
from hermite_vae import config_lib


def get_config():
  c = config_lib.default_config()     # configs/mnist_mlp.py's settings, plus the skips
  c.method = "hvae"
  c.rho = 0.9
  c.num_ou_samples = 5
  c.dataset = "binarized_mnist"
  c.skip_connections = True
  return c
