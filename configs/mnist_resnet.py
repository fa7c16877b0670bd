"""Dynamic MNIST with the residual ConvNet hierarchy (paper §5.2.1, "Residual ConvNets"):
4 stochastic layers of 14x14 convolutional latents, 5 residual blocks before each.

The paper gives the depth (up to 4 stochastic layers), the blocks (up to 5) and the 14x14
maps; the 8 latent channels and 64 feature maps are our choice where it is silent.
"""
from hermite_vae import config_lib


def get_config():
  c = config_lib.default_config()
  c.dataset = "mnist"
  c.architecture = "resnet"
  c.latent_channels = (8, 8, 8, 8)
  c.resnet_channels = 64
  c.resnet_blocks = 5
  # One step per dispatch, without a loop: XLA:CPU runs convolutions inside a loop body
  # on a slow path (train.train_steps); on accelerators the dispatch costs little here.
  c.steps_per_dispatch = 1
  return c
