"""Where metrics go: ``workdir/metrics.jsonl`` (one JSON object per logged point),
TensorBoard event files (``workdir/tensorboard``) and a progress line/bar with ETA."""
from __future__ import annotations

import json
import logging
import math
import os
import time

import numpy as np

log = logging.getLogger(__name__)


def _jsonable(v):
  """Arrays/numpy scalars -> JSON values; non-finite floats -> 'nan'/'inf' strings."""
  if v is None or isinstance(v, (str, bool)):
    return v
  if isinstance(v, dict):
    return {k: _jsonable(u) for k, u in v.items()}
  if isinstance(v, (list, tuple)):
    return [_jsonable(u) for u in v]
  a = np.asarray(v)
  if a.ndim:
    return [_jsonable(u) for u in a]
  if a.dtype.kind == "f":
    return float(a) if math.isfinite(float(a)) else str(float(a))
  if a.dtype.kind in "iub":
    return a.item()
  return str(v)


class MetricsWriter:
  """Appends to metrics.jsonl and TensorBoard; only process 0 writes."""

  def __init__(self, workdir: str, enabled: bool = True):
    self.enabled = enabled
    self.path = os.path.join(workdir, "metrics.jsonl")
    self._tb = None
    if enabled:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

  def truncate_after(self, step: int) -> None:
    """Drops points logged after ``step`` (a resumed run redoes those steps; 0: a run
    starting afresh keeps none) and a torn last line (a kill mid-write), with a warning."""
    if not self.enabled or not os.path.exists(self.path):
      return
    records = _parse_lines(self.path)
    with open(self.path, "w") as f:
      f.writelines(json.dumps(r) + "\n" for r in records if r["step"] <= step)

  def write(self, step: int, split: str, values: dict) -> None:
    if not self.enabled:
      return
    record = {"step": int(step), "split": split}
    record.update({k: _jsonable(v) for k, v in values.items()})
    with open(self.path, "a") as f:
      f.write(json.dumps(record) + "\n")
    for k, v in values.items():
      arr = np.asarray(v)
      if arr.dtype.kind not in "fiu":
        continue
      if arr.ndim == 0:
        self._tb.add_scalar(f"{split}/{k}", float(arr), step)
      else:
        for j, u in enumerate(arr.ravel()):
          self._tb.add_scalar(f"{split}/{k}/layer{j + 1}", float(u), step)
    self._tb.flush()

  def close(self):
    if self._tb is not None:
      self._tb.close()


def _parse_lines(path: str) -> list[dict]:
  """The records of a metrics file; an unreadable *last* line (torn by a kill while it
  was written) is dropped with a warning, an unreadable earlier one is an error."""
  with open(path) as f:
    lines = [l for l in f if l.strip()]
  records = []
  for i, line in enumerate(lines):
    try:
      records.append(json.loads(line))
    except json.JSONDecodeError as e:
      if i < len(lines) - 1:
        raise ValueError(f"{path}, line {i + 1}: not a JSON record ({e})") from e
      log.warning("%s: dropping a torn last line (%d characters; a process was killed "
                  "while writing it)", path, len(line))
  return records


def read_metrics(workdir: str) -> list[dict]:
  return _parse_lines(os.path.join(workdir, "metrics.jsonl"))


class Progress:
  """A tqdm bar (or plain log lines) with steps/s and ETA. :meth:`advance` moves the bar
  after every dispatch; :meth:`update` also logs a line (at each log step)."""

  def __init__(self, total: int, initial: int, bar: bool):
    self.total, self.start_step, self.t0 = total, initial, time.time()
    self._bar = None
    if bar:
      from tqdm import tqdm  # pylint: disable=g-import-not-at-top
      self._bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True)
    self._last = initial

  def advance(self, step: int) -> None:
    """Moves the bar to ``step`` (no log line)."""
    if self._bar is not None:
      self._bar.update(step - self._last)
      self._last = step

  def update(self, step: int, summary: str) -> None:
    done = step - self.start_step
    rate = done / max(time.time() - self.t0, 1e-9)
    eta = (self.total - step) / max(rate, 1e-9)
    if self._bar is not None:
      self._bar.update(step - self._last)
      self._bar.set_postfix_str(summary)
    else:
      log.info("step %d/%d  %.1f steps/s  ETA %s  %s", step, self.total, rate,
                   time.strftime("%H:%M:%S", time.gmtime(eta)), summary)
    self._last = step

  def close(self):
    if self._bar is not None:
      self._bar.close()
