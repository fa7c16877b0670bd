"""CIFAR-10 HVAE+ (the paper's Table 5 best row, "HVAE+, 3 layers, 3.42 bpd"): the
residual ConvNet hierarchy of ``cifar10_resnet.py`` with stochastic skip connections, a
top-down state of 100 maps at 16x16 carrying every latent above each layer into its
generator and the decoder (README, "Skip connections"). 6.98M parameters against the
paper's 9.95M: the paper does not give its exact blocks and widths; ours are
cifar10_resnet.py's plus the state (two 3x3 convolutions) and the wider inputs of the
generators and decoder.

    python experiments/main.py --config=configs/cifar10_resnet_skip.py --workdir=/tmp/c10+ \
      --config.data_dir=/path/to/cifar-10-batches-py --config.method=hvae
"""
from configs import cifar10_resnet


def get_config():
  c = cifar10_resnet.get_config()
  c.skip_connections = True
  return c
