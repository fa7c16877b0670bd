"""The config files of ``configs/`` loaded by name, from any working directory."""
from __future__ import annotations

import importlib.util
import os

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "configs")


def load_config(name: str, *args):
  """``configs/<name>.py``'s ``get_config(*args)``."""
  path = os.path.join(CONFIG_DIR, f"{name}.py")
  if not os.path.exists(path):
    known = sorted(f[:-3] for f in os.listdir(CONFIG_DIR) if f.endswith(".py"))
    raise ValueError(f"unknown config {name!r}; known: {known}")
  spec = importlib.util.spec_from_file_location(f"hermite_vae_config_{name}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(*args)
