"""The method-comparison presets (paper Tables 3–4 and the usual remedies), on top of any
base config:

    --config=configs/methods.py:vae+kl      (base: configs/default.py)

Names: vae, iwae, vae+kl, hvae, hvae+kl, hvae_ratio, hvae+rho_anneal, vae+freebits
(lambda = 1; set --config.free_bits to 0.5, 2 or 3), hvae+freebits, and the ablation
hvae_jacobian (smoothing with ``hvae_gradient='jacobian'``: log N differentiated at the
original mean and scale, not the paper's substitution).
KL annealing: weight 0 for 10,000 steps, then linear to 1 over 500,000 steps.
"""
from configs import default

METHODS = ("vae", "iwae", "vae+kl", "vae+freebits", "hvae", "hvae+kl", "hvae_ratio",
           "hvae+rho_anneal", "hvae+freebits", "hvae_jacobian")


def apply_method(c, name: str):
  """Sets the fields of method preset ``name`` on config ``c`` (in place)."""
  if name not in METHODS:
    raise ValueError(f"Unknown method preset {name!r}; known: {METHODS}")
  base, _, extra = name.partition("+")
  c.method = "hvae" if base.startswith("hvae") else base
  if base == "hvae_ratio":
    c.smooth_target = "ratio"
  if base == "hvae_jacobian":
    c.hvae_gradient = "jacobian"
  if base == "iwae":
    c.num_iw_samples = 5
  if extra == "kl":
    c.kl_warmup_start = 10_000
    c.kl_warmup_steps = 500_000
  elif extra == "freebits":
    c.free_bits = 1.0
  elif extra == "rho_anneal":
    c.rho_anneal_fraction = 0.5
  return c


def get_config(name="hvae"):
  return apply_method(default.get_config(), name)
