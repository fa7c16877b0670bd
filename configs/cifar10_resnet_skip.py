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
import importlib.util
import os


def _sibling(name):
  """configs/<name>.py, loaded by path (config files are loaded by path, not as a package)."""
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), f"{name}.py")
  spec = importlib.util.spec_from_file_location(f"hermite_vae_configs_{name}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def get_config():
  c = _sibling("cifar10_resnet").get_config()
  c.skip_connections = True
  return c
