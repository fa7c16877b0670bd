"""The paper's 40-40-40-40 MNIST HVAE (``mnist_mlp.py``) with stochastic skip connections
(HVAE+): each generator p(z_i|z_{i+1}, .) and the decoder also read a 200-unit tanh
top-down state of every latent above (README, "Skip connections")."""
from configs import mnist_mlp


def get_config():
  c = mnist_mlp.get_config()
  c.skip_connections = True
  return c
