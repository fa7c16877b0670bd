"""What a run survives: two writers, a deleted config.json, changed data, stale or torn
metrics, a damaged checkpoint, SIGTERM, a rerun below the trained step, a longer budget
with a schedule over the whole run, another key scheme; and bad input refused before
compute. Each test names the one-line bug it catches."""
import gzip
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from configs import smoke
from hermite_vae import config_lib, metrics_io, rng, train
from hermite_vae import workdir as workdir_lib
from hermite_vae.data import sources

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cfg(**kw):
  base = dict(num_train_steps=4, log_every=2, eval_every=4, checkpoint_every=2,
              eval_max_examples=40)
  base.update(kw)
  return smoke.with_overrides(**base)


def _steps(workdir):
  return [r["step"] for r in metrics_io.read_metrics(workdir)]


# ------------------------------------------------------------- one writer

def test_a_second_writer_is_refused_naming_the_first(tmp_path):
  """Bug caught: no lock (``WorkdirLock`` never taken): both would train."""
  workdir = str(tmp_path / "run")
  os.makedirs(workdir)
  first = workdir_lib.WorkdirLock(workdir)
  try:
    with pytest.raises(RuntimeError, match=f"in use by process {os.getpid()}"):
      train.train_and_evaluate(_cfg(), workdir)
  finally:
    first.release()
  train.train_and_evaluate(_cfg(), workdir)   # released: trains
  assert _steps(workdir)[-1] == 4


# ------------------------------------------------------- resume that means it

def test_a_deleted_config_json_refuses_the_resume(tmp_path):
  """Bug caught: the resume check runs only when config.json exists."""
  workdir = str(tmp_path / "run")
  train.train_and_evaluate(_cfg(), workdir)
  os.remove(os.path.join(workdir, "config.json"))
  with pytest.raises(ValueError, match="holds checkpoints but no config.json"):
    train.train_and_evaluate(_cfg(num_train_steps=6, rho=0.5), workdir)


def _write_idx(path, n):
  images = np.random.default_rng(0).integers(0, 256, (n, 28, 28), dtype=np.uint8)
  raw = (2051).to_bytes(4, "big") + b"".join(v.to_bytes(4, "big") for v in (n, 28, 28))
  with gzip.open(path, "wb") as f:
    f.write(raw + images.tobytes())


def test_changed_data_on_resume_is_refused(tmp_path, monkeypatch):
  """Bug caught: ``_check_same_data`` not called: the run continues on the embedded
  digits after a resume without its data_dir."""
  data_dir = tmp_path / "data"
  data_dir.mkdir()
  _write_idx(str(data_dir / "train-images-idx3-ubyte.gz"), 60)
  _write_idx(str(data_dir / "t10k-images-idx3-ubyte.gz"), 10)
  monkeypatch.setattr(sources, "network_reachable", lambda timeout=3.0: False)
  workdir = str(tmp_path / "run")
  common = dict(dataset="mnist", data_source="auto", train_split="train[:50]",
                eval_split="train[50:]")
  train.train_and_evaluate(_cfg(data_dir=str(data_dir), **common), workdir)
  with pytest.raises(ValueError, match="other data than this config loads: data_used="):
    train.train_and_evaluate(_cfg(num_train_steps=6, data_dir="", **common), workdir)
  assert _steps(workdir)[-1] == 4


def test_another_key_scheme_is_refused(tmp_path):
  """Bug caught: ``key_scheme`` not compared: an old run resumes with new keys."""
  workdir = str(tmp_path / "run")
  train.train_and_evaluate(_cfg(), workdir)
  path = os.path.join(workdir, "config.json")
  with open(path) as f:
    info = json.load(f)
  assert info["key_scheme"] == rng.KEY_SCHEME
  # A workdir written by a scheme-2 version before the scheme was recorded: inferred from
  # its config's keys, it resumes.
  del info["key_scheme"]
  with open(path, "w") as f:
    json.dump(info, f)
  train.train_and_evaluate(_cfg(num_train_steps=6), workdir)
  assert _steps(workdir)[-1] == 6
  # One written before scheme 2 (its config lacks the keys added since): refused.
  with open(path) as f:
    info = json.load(f)
  del info["key_scheme"], info["config"]["x_share_threshold"]
  with open(path, "w") as f:
    json.dump(info, f)
  with pytest.raises(ValueError, match="key scheme 1"):
    train.train_and_evaluate(_cfg(num_train_steps=8), workdir)


def test_a_longer_budget_is_refused_when_a_schedule_spans_the_run(tmp_path):
  """Bug caught: ``_SCHEDULES_OVER_TRAINING`` ignored: the cosine decay would restart
  longer mid-run. With a constant schedule the continued run equals an uninterrupted
  run of the longer budget."""
  cosine = str(tmp_path / "cosine")
  train.train_and_evaluate(_cfg(lr_schedule="cosine"), cosine)
  with pytest.raises(ValueError, match="config.lr_schedule='cosine'"):
    train.train_and_evaluate(_cfg(lr_schedule="cosine", num_train_steps=8), cosine)
  anneal = str(tmp_path / "anneal")
  train.train_and_evaluate(_cfg(method="hvae", rho_anneal_fraction=0.5), anneal)
  with pytest.raises(ValueError, match="rho_anneal_fraction"):
    train.train_and_evaluate(_cfg(method="hvae", rho_anneal_fraction=0.5,
                                  num_train_steps=8), anneal)
  continued, whole = str(tmp_path / "continued"), str(tmp_path / "whole")
  train.train_and_evaluate(_cfg(eval_every=2), continued)
  train.train_and_evaluate(_cfg(eval_every=2, num_train_steps=8), continued)
  train.train_and_evaluate(_cfg(eval_every=2, num_train_steps=8), whole)
  strip = lambda rs: [{k: v for k, v in r.items() if k != "steps_per_sec"} for r in rs]
  assert strip(metrics_io.read_metrics(continued)) == strip(metrics_io.read_metrics(whole))


def test_skip_nonfinite_may_change_on_resume(tmp_path):
  """Bug caught: skip_nonfinite missing from RESUMABLE_KEYS, though the non-finite
  message tells the user to resume with it."""
  workdir = str(tmp_path / "run")
  train.train_and_evaluate(_cfg(), workdir)
  train.train_and_evaluate(_cfg(num_train_steps=6, skip_nonfinite=True), workdir)
  assert _steps(workdir)[-1] == 6


def test_a_rerun_below_the_trained_step_says_so_and_keeps_config_json(tmp_path, caplog):
  """Bug caught: the rerun rewrites config.json with the smaller budget."""
  workdir = str(tmp_path / "run")
  train.train_and_evaluate(_cfg(), workdir)
  before = open(os.path.join(workdir, "config.json")).read()
  with caplog.at_level(logging.WARNING, logger="hermite_vae.train"):
    result = train.train_and_evaluate(_cfg(num_train_steps=2), workdir)
  assert "already at step 4, past num_train_steps=2" in caplog.text
  assert "elbo_nats" in result
  assert open(os.path.join(workdir, "config.json")).read() == before


# ------------------------------------------------------------------- faults

def test_stale_and_torn_metric_lines(tmp_path, caplog):
  """Bugs caught: truncation only after a restored checkpoint (a rerun after a kill
  before the first checkpoint keeps lines 2, 4 and writes them again), and a torn last
  line failing every later read with a bare JSONDecodeError."""
  workdir = str(tmp_path / "run")
  os.makedirs(workdir)
  with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
    f.write('{"step": 2, "split": "train"}\n{"step": 4, "split": "train"}\n{"step": 6, "spl')
  with caplog.at_level(logging.WARNING):
    assert [r["step"] for r in metrics_io.read_metrics(workdir)] == [2, 4]
  assert "torn last line" in caplog.text
  train.train_and_evaluate(_cfg(checkpoint_every=4), workdir)  # no checkpoint to restore
  assert _steps(workdir) == [2, 4, 4]   # train 2, train 4, eval 4: nothing stale


def _damage(step_dir):
  """Truncates every array file of a checkpoint step (a kill or a full disk mid-write)."""
  hit = 0
  for root, _, files in os.walk(step_dir):
    for name in files:
      path = os.path.join(root, name)
      if "ocdbt" in root or name.startswith(("d", "manifest")):
        with open(path, "r+b") as f:
          f.truncate(max(0, os.path.getsize(path) // 3))
        hit += 1
  assert hit


def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, caplog):
  """Bug caught: ``restore_or_keep`` tries only the newest step (orbax's traceback)."""
  workdir = str(tmp_path / "run")
  train.train_and_evaluate(_cfg(keep_checkpoints=3), workdir)
  _damage(os.path.join(workdir, "checkpoints", "4"))
  with caplog.at_level(logging.WARNING, logger="hermite_vae.workdir"):
    train.train_and_evaluate(_cfg(num_train_steps=6, keep_checkpoints=3), workdir)
  assert "Checkpoint at step 4" in caplog.text and "Resuming from step 2" in caplog.text
  assert _steps(workdir)[-1] == 6
  for step in ("2", "6"):
    _damage(os.path.join(workdir, "checkpoints", step))
  shutil.rmtree(os.path.join(workdir, "checkpoints", "4"), ignore_errors=True)
  with pytest.raises(RuntimeError, match=r"No checkpoint .* can be restored: step 6 \("):
    train.train_and_evaluate(_cfg(num_train_steps=8, keep_checkpoints=3), workdir)


_SIGTERM_SCRIPT = """
import logging, sys
logging.basicConfig(level=logging.INFO)
sys.path.insert(0, {root!r})
from configs import smoke
from hermite_vae import train
train.train_and_evaluate(smoke.with_overrides(num_train_steps=100000, log_every=2,
                         eval_every=100000, checkpoint_every=2, steps_per_dispatch=2),
                         sys.argv[1])
"""


@pytest.mark.parametrize("sig,name", [(signal.SIGTERM, "SIGTERM"), (signal.SIGINT, "Ctrl-C")])
def test_a_signal_finishes_the_pending_save_and_says_where_to_resume(tmp_path, sig, name):
  """Bug caught: no SIGTERM handler: the process dies at once, leaving a
  ``*.orbax-checkpoint-tmp`` directory and no message (Ctrl-C alike)."""
  workdir = str(tmp_path / "run")
  proc = subprocess.Popen([sys.executable, "-c", _SIGTERM_SCRIPT.format(root=ROOT), workdir],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env=dict(os.environ, JAX_PLATFORMS="cpu"))
  deadline = time.time() + 120
  ckpt = os.path.join(workdir, "checkpoints")
  while time.time() < deadline and not (os.path.isdir(ckpt) and any(
      d.isdigit() for d in os.listdir(ckpt))):
    time.sleep(0.2)
  time.sleep(0.5)
  proc.send_signal(sig)
  out, _ = proc.communicate(timeout=60)
  assert proc.returncode != 0
  assert f"Stopped ({name}) at step" in out and "resume from step" in out, out[-2000:]
  assert not [d for d in os.listdir(ckpt) if "tmp" in d]


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize("key,value,match", [
    ("grad_clip_norm", float("nan"), "must be a finite number"),
    ("free_bits", float("nan"), "must be a finite number"),
    ("min_scale", -1.0, "must be > 0"),
    ("min_scale", 0.0, "must be > 0"),
    ("max_scale", 1e-4, "must be 0 \\(off\\) or above min_scale"),
])
def test_bad_floats_are_refused(key, value, match):
  """Bug caught: ``c[key] < 0`` is False for nan; scales never validated."""
  with pytest.raises(ValueError, match=f"config.{key}=.*{match}"):
    config_lib.validate(_cfg(**{key: value}))


def test_an_unknown_key_is_one_line_with_the_closest_keys():
  with pytest.raises(SystemExit, match="--config.rhoo: no such config key; did you mean rho"):
    config_lib.check_override_flags(["main.py", "--config.rhoo=0.5"])
  config_lib.check_override_flags(["main.py", "--config.rho=0.5", "--workdir=x"])


def test_a_workdir_that_is_a_file_is_named(tmp_path):
  path = tmp_path / "file"
  path.write_text("x")
  with pytest.raises(ValueError, match="is a file, not a directory$"):
    train.train_and_evaluate(_cfg(), str(path))
  with pytest.raises(ValueError, match="is a file, not a directory \\(the workdir would"):
    train.train_and_evaluate(_cfg(), str(path / "sub"))


def test_training_on_the_evaluation_digits_is_warned(caplog):
  with caplog.at_level(logging.WARNING, logger="hermite_vae.data.sources"):
    sources.load("mnist_embedded", "embedded", train_split="train", eval_split="train[4500:]")
  assert "share 500 examples" in caplog.text


# ------------------------------------------------ tools on a trained workdir

def test_tools_use_the_splits_the_run_used_and_need_a_checkpoint(tmp_path, monkeypatch):
  """Bug caught: ``load_run_config`` keeps the requested splits (test[:9000]) of a run
  that fell back to the embedded digits."""
  monkeypatch.setattr(sources, "network_reachable", lambda timeout=3.0: False)
  workdir = str(tmp_path / "run")
  train.train_and_evaluate(_cfg(dataset="mnist", data_source="auto",
                                train_split="test[:9000]", eval_split="test[9000:]"), workdir)
  config = workdir_lib.load_run_config(workdir)
  assert (config.train_split, config.eval_split) == ("train[:4500]", "train[4500:]")
  missing = str(tmp_path / "missing")
  with pytest.raises(FileNotFoundError, match="no checkpoint"):
    workdir_lib.restore_params(missing, config, 784)
  assert not os.path.exists(missing)   # nothing created


def test_a_sweep_names_the_data_a_fallback_trained_on(tmp_path, monkeypatch, caplog):
  """Bug caught: sweep tables and legends name the requested dataset while every run
  trained on the embedded digits."""
  sys.path.insert(0, os.path.join(ROOT, "experiments"))
  from lab import sweeps  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(sources, "network_reachable", lambda timeout=3.0: False)
  with caplog.at_level(logging.WARNING):
    [result] = sweeps.train_seeds(_cfg(dataset="mnist", data_source="auto", num_train_steps=2,
                                       eval_every=2), str(tmp_path), [0])
  assert result["data_used"] == "mnist_embedded (fallback for mnist)"
  assert "not the requested mnist" in caplog.text


def test_a_release_evaluates_like_its_workdir(tmp_path):
  """``experiments/release.py``: parameters alone (no optimizer state) in a directory that
  ``restore_params`` and the evaluation read like the workdir, with the same numbers."""
  sys.path.insert(0, os.path.join(ROOT, "experiments"))
  import release  # pylint: disable=g-import-not-at-top
  from lab.workdir_eval import evaluate_workdir  # pylint: disable=g-import-not-at-top
  workdir, out = str(tmp_path / "run"), str(tmp_path / "release")
  train.train_and_evaluate(_cfg(), workdir)
  meta = release.release(workdir, out)
  assert meta["step"] == 4 and sorted(os.listdir(out)) == [
      "config.json", "params.msgpack", "release.json"]
  kw = dict(num_importance_samples=5, chunk=5, max_examples=40, au_samples=4, mi_paths=0)
  a, b = evaluate_workdir(workdir, **kw), evaluate_workdir(out, **kw)
  for key in ("elbo_nats", "iw_bound_k5", "kl_per_layer_nats", "active_units_x"):
    np.testing.assert_allclose(a[key], b[key], rtol=1e-6, err_msg=key)
  assert b["step"] == 4
