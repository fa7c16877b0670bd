"""CIFAR-10 with the residual ConvNet hierarchy of the paper (§5.2.2, Table 5 "HVAE, L1",
3 layers): 3 stochastic layers of 8-channel 16x16 latents, 6 residual blocks of 100
feature maps before each, discretized-logistic likelihood (bits/dim). Without the
paper's stochastic skip connections: ``cifar10_resnet_skip.py`` is "HVAE+".
"""
from hermite_vae import config_lib


def get_config():
  c = config_lib.default_config()
  c.dataset = "cifar10"
  c.likelihood = "discretized_logistic"
  c.architecture = "resnet"
  c.latent_channels = (8, 8, 8)
  c.resnet_channels = 100
  c.resnet_blocks = 6
  c.batch_size = 64
  c.learning_rate = 5e-4
  c.eval_batch_size = 100
  # One step per dispatch, without a loop: XLA:CPU runs convolutions inside a loop body
  # on a slow path (train.train_steps); on accelerators the dispatch costs little here.
  c.steps_per_dispatch = 1
  return c
