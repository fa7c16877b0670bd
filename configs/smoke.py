"""A tiny configuration that trains in seconds on a CPU (tests, trying things out)."""
from hermite_vae import config_lib


def get_config():
  c = config_lib.default_config()
  c.dataset = "mnist_embedded"
  c.data_source = "embedded"
  c.latent_dims = (4, 3, 2)
  c.hidden_dims = (16, 8, 8)
  c.batch_size = 8
  c.num_train_steps = 6
  c.log_every = 2
  c.eval_every = 6
  c.checkpoint_every = 2
  c.eval_batch_size = 40
  c.eval_max_examples = 100
  c.au_samples = 4
  c.progress_bar = False
  return c


def with_overrides(**overrides):
  """``get_config()`` with some keys changed (what the tests start from)."""
  c = get_config()
  for key, value in overrides.items():
    c[key] = value
  return c
