"""The config files of ``configs/`` loaded by name, from any working directory."""
from __future__ import annotations

import importlib.util
import os

from hermite_vae import config_lib

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


# Schedules of the hvae preset: they change memory and time, never values or gradients.
HVAE_SCHEDULES = {"hvae_sequential": {"ou_sequential": True},
                  "hvae_chained": {"ou_chain_layers": True}}
METHODS = config_lib.METHOD_PRESETS + tuple(HVAE_SCHEDULES)


def method_config(preset: str, name: str):
  """``configs/<preset>.py`` with method preset ``name`` applied: one of
  ``config_lib.METHOD_PRESETS`` or of ``HVAE_SCHEDULES``."""
  if name not in METHODS:
    raise ValueError(f"unknown method {name!r}; known: {METHODS}")
  config = load_config(preset)
  config_lib.apply_method(config, "hvae" if name in HVAE_SCHEDULES else name)
  for key, value in HVAE_SCHEDULES.get(name, {}).items():
    config[key] = value
  return config
