"""The default configuration. Every key is documented once, in
``hermite_vae.config_lib.default_config`` (the library's one source of defaults, which a
saved run's config is also read back over); presets here start from it and change a few
fields. Override any key on the command line: ``--config.rho=0.95``.
"""
from hermite_vae import config_lib


def get_config():
  return config_lib.default_config()
