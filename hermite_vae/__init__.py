"""hermite-vae: Hermite variational autoencoders (OU-smoothed hierarchical VAEs) in JAX."""
from hermite_vae.ou import correlated_samples, ou_expectation, smooth

__version__ = "0.1.0"
__all__ = ["correlated_samples", "ou_expectation", "smooth"]
