"""The method-comparison presets (paper Tables 3–4) on the default config:

    --config=configs/methods.py:vae+kl

Names (``hermite_vae.config_lib.METHOD_PRESETS``): vae, iwae, vae+kl, vae+freebits,
hvae, hvae+kl, hvae_ratio, hvae+rho_anneal, hvae+freebits, hvae_jacobian (ablation).
KL annealing: weight 0 for 10,000 steps, then linear to 1 over 500,000 steps; free bits:
a floor of 1 nat on every layer's batch-mean term (``free_bits_layers='every'``, the
paper's baseline; set --config.free_bits to 0.5, 2 or 3).
"""
from hermite_vae import config_lib


def get_config(name="hvae"):
  return config_lib.apply_method(config_lib.default_config(), name)
