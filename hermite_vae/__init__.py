"""hermite-vae: Hermite variational autoencoders (OU-smoothed hierarchical VAEs) in JAX.

The OU primitives load with the package; the trainer (``train_and_evaluate``) and the
config defaults (``default_config``) load on first use, so ``import hermite_vae`` stays
light. Nothing here imports plotting or experiment code (that lives in ``experiments/``).
"""
from hermite_vae.ou import correlated_samples, kappa, ou_expectation, rho_for_kappa, smooth

__version__ = "0.1.0"
__all__ = ["correlated_samples", "kappa", "ou_expectation", "rho_for_kappa", "smooth",
           "train_and_evaluate", "default_config"]


def __getattr__(name):
  if name == "train_and_evaluate":
    from hermite_vae.train import train_and_evaluate  # pylint: disable=g-import-not-at-top
    return train_and_evaluate
  if name == "default_config":
    from hermite_vae.config_lib import default_config  # pylint: disable=g-import-not-at-top
    return default_config
  raise AttributeError(f"module 'hermite_vae' has no attribute {name!r}")
