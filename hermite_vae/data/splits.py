"""TFDS split syntax ('train', 'train[:50000]', 'test[90%:]', 'train[:10]+test') for
every source, resolved with TFDS's own parser so the meaning is identical to TFDS."""
from __future__ import annotations

import types

import numpy as np


def split_names(spec: str) -> list[str]:
  """The base split names a split spec reads, e.g. 'train[:5]+test' -> ['train', 'test']."""
  from tensorflow_datasets.core import splits as tfds_splits  # pylint: disable=g-import-not-at-top
  try:
    instruction = tfds_splits.ReadInstruction.from_spec(spec)
  except (ValueError, AssertionError) as e:
    raise ValueError(f"Invalid split {spec!r}: {e}") from e
  del instruction  # parsed only to validate the syntax
  return [part.split("[")[0].strip() for part in spec.split("+")]


def _ranges(spec: str, sizes: dict[str, int]):
  from tensorflow_datasets.core import splits as tfds_splits  # pylint: disable=g-import-not-at-top
  infos = {k: types.SimpleNamespace(num_examples=v) for k, v in sizes.items()}
  return [(a.splitname, a.from_ or 0, sizes[a.splitname] if a.to is None else a.to)
          for a in tfds_splits.ReadInstruction.from_spec(spec).to_absolute(infos)]


def shared_examples(spec_a: str, spec_b: str, sizes: dict[str, int]) -> int:
  """How many examples the two split specs both select (``sizes``: each base split's
  number of examples)."""
  shared = 0
  for name_a, lo_a, hi_a in _ranges(spec_a, sizes):
    for name_b, lo_b, hi_b in _ranges(spec_b, sizes):
      if name_a == name_b:
        shared += max(0, min(hi_a, hi_b) - max(lo_a, lo_b))
  return shared


def select(spec: str, arrays: dict[str, np.ndarray]) -> np.ndarray:
  """Applies a TFDS split spec to full splits held in memory."""
  from tensorflow_datasets.core import splits as tfds_splits  # pylint: disable=g-import-not-at-top
  infos = {k: types.SimpleNamespace(num_examples=len(v)) for k, v in arrays.items()}
  try:
    absolute = tfds_splits.ReadInstruction.from_spec(spec).to_absolute(infos)
  except (ValueError, AssertionError) as e:
    raise ValueError(f"Invalid split {spec!r} (available: {sorted(arrays)}): {e}") from e
  parts = [arrays[a.splitname][a.from_:a.to] for a in absolute]
  out = np.concatenate(parts) if len(parts) > 1 else parts[0]
  if len(out) == 0:
    raise ValueError(f"Split {spec!r} selects no examples (sizes: "
                     f"{ {k: len(v) for k, v in arrays.items()} })")
  return out
