"""Normalized (probabilists') Hermite polynomials h_k = He_k / sqrt(k!) (paper §2.1).

They are orthonormal under the standard Gaussian measure and eigenfunctions of the OU
operator: U_rho h_k = rho^k h_k. Used by the tests and for spectral diagnostics.
"""
from __future__ import annotations

import math

import jax.numpy as jnp


def hermite_he(k: int, z):
  """Probabilists' Hermite polynomial He_k(z) by the three-term recurrence."""
  if k < 0:
    raise ValueError(f"k must be >= 0, got k={k}")
  prev, cur = jnp.ones_like(z), z
  if k == 0:
    return prev
  for j in range(1, k):
    prev, cur = cur, z * cur - j * prev
  return cur


def hermite(k: int, z):
  """Normalized Hermite polynomial h_k(z) = He_k(z) / sqrt(k!); E[h_j h_k] = delta_jk."""
  return hermite_he(k, z) / math.sqrt(math.factorial(k))


def hermite_coefficient(fn, alpha, z_samples):
  """Monte-Carlo estimate of f_hat(alpha) = E_gamma[f(z) h_alpha(z)] (multi-index alpha).

  Args:
    fn: maps a batch ``[N, d]`` to values ``[N]``.
    alpha: sequence of d non-negative integers.
    z_samples: ``[N, d]`` standard Gaussian samples.
  """
  h = jnp.ones(z_samples.shape[0], z_samples.dtype)
  for i, a in enumerate(alpha):
    h = h * hermite(int(a), z_samples[:, i])
  return jnp.mean(fn(z_samples) * h)
