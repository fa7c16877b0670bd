"""The random keys of a run, named and split once.

A run of seed ``s`` draws everything from ``jax.random.PRNGKey(s)`` split into four named
streams (:func:`run_keys`): ``data`` (example order and dynamic binarization), ``init``
(parameters), ``train`` (the step key is ``fold_in(train, step)``), ``eval``. No two
streams share a key.

A step's key is split once more by :func:`terms_keys` into the key of the posterior path
(``fold_in(path, i)``: layer i's reparameterization noise) and the key of the OU samples
(``fold_in(ou, i)``: the n correlated samples of generator layer i), so the posterior
noise and the OU noise never coincide whatever the number of layers.
"""
from __future__ import annotations

import jax

RUN_STREAMS = ("data", "init", "train", "eval")
# The version of how a run's keys are derived from its seed (saved in config.json): a
# resume under another scheme would silently change data order and step keys, so it is
# refused. 2: ``run_keys`` (one split into the four streams); 1: before it.
KEY_SCHEME = 2
# Scheme 2 came in before ``x_share_threshold`` joined the config, and the scheme was
# recorded only later: a config.json without ``key_scheme`` whose config holds that key
# was written by a scheme-2 version; one without it, by scheme 1.
_SCHEME_2_MARKER = "x_share_threshold"


def saved_key_scheme(saved: dict) -> int:
  """The key scheme of a run from its ``config.json`` contents (``{"config": ..., ...}``):
  the recorded ``key_scheme``, else inferred from the config's keys (see above)."""
  if "key_scheme" in saved:
    return int(saved["key_scheme"])
  return 2 if _SCHEME_2_MARKER in saved.get("config", {}) else 1


def run_keys(seed: int) -> dict:
  """{'data', 'init', 'train', 'eval'}: the four independent keys of a run of ``seed``."""
  return dict(zip(RUN_STREAMS, jax.random.split(jax.random.PRNGKey(int(seed)),
                                                len(RUN_STREAMS))))


def terms_keys(key):
  """(path_key, ou_key) of one evaluation of the per-layer terms."""
  path_key, ou_key = jax.random.split(key)
  return path_key, ou_key


def ou_layer_key(ou_key, i: int):
  """The key of generator layer i's OU samples."""
  return jax.random.fold_in(ou_key, i)
