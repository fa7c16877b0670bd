"""Training configs: the defaults (every key, documented once), method presets,
validation, and a saved run's config read back over the defaults.

Naming: ``config`` is an ``ml_collections.ConfigDict`` of this schema (``c`` inside the
small ``get_config()`` functions of ``configs/``); ``cfg`` is the hashable
:class:`hermite_vae.objectives.ObjectiveConfig` the jitted objective receives.
Every bad value fails in :func:`validate`, before any data or compute, with a message
naming the key.
"""
from __future__ import annotations

import math

import ml_collections
from ml_collections import config_dict

from hermite_vae import distributed, objectives, ou
from hermite_vae.data import registry, sources
from hermite_vae.models import layers


def default_config() -> ml_collections.ConfigDict:
  """Every key of a training config, with the paper's values where it gives them.

  The one source of defaults: presets (``configs/*.py``) start from it, a saved run's
  ``config.json`` is read back over it (:func:`from_saved`), and the model modules'
  own defaults equal its values. Override any key on the command line, e.g.
  ``--config.rho=0.95 --config.latent_dims='(64,32,16,8)'``.
  """
  c = ml_collections.ConfigDict()

  # Objective.
  c.method = "hvae"               # vae | iwae | hvae
  c.rho = 0.9                     # OU correlation in [0, 1]; 1 = plain VAE gradient
  c.rho_anneal_fraction = 0.0     # > 0: rho rises linearly to 1 over this fraction of training
  c.num_ou_samples = 5            # n correlated samples for U_rho (paper: 5-10)
  # The discount kappa = (1 - rho^2)(1 - 1/n) on the upper layers (docs/theory.md), as the
  # knob instead of rho: set, it fixes rho = rho_for_kappa(kappa, n) (apply_kappa; the
  # command line does it); unset (None), rho is used as given.
  c.kappa = config_dict.placeholder(float)
  c.smooth_target = "mean_std"    # mean_std | ratio (smooth (mu, sigma) or (mu/sigma, sigma))
  # Which gradient the smoothing gives (method=hvae). substitute (the paper's §2.2): the
  # gradient of log N(z_i; U_rho mu_i, U_rho sigma_i), derivative of log N taken at the
  # smoothed mean and scale. jacobian (ablation): log N differentiated at the original
  # (mu_i, sigma_i), only the Jacobian of (mu_i, sigma_i) smoothed.
  c.hvae_gradient = "substitute"
  # True: the backward pass evaluates the n OU samples one after another (lax.scan) instead
  # of at once; same gradient, the activation memory of one sample instead of n, fewer
  # samples in flight (slower on small models). Measured: docs/performance.md.
  c.ou_sequential = False
  # True: every smoothed layer's backward pass completes before the Monte-Carlo samples of
  # the layer below are evaluated (``smooth(..., after=...)``), so the n-sample activations
  # of one layer are held at a time instead of XLA overlapping several layers. Same values
  # and gradients; less parallelism between layers. ou_sequential saves more memory, at a
  # larger time cost. Measured: docs/performance.md.
  c.ou_chain_layers = False
  c.num_iw_samples = 5            # k for method=iwae
  c.kl_warmup_start = 0           # KL annealing: weight 0 for this many steps,
  c.kl_warmup_steps = 0           # then linear to 1 over this many (0, 0: off)
  c.free_bits = 0.0               # nats: a floor max(free_bits, .) on KL terms (0: off)
  # Which terms free_bits floors: top (the top layer's analytic KL, the only true KL) or
  # every (each layer's batch-mean term, the paper's baseline; below the top a floored
  # term passes no gradient: objectives.free_bits_kl).
  c.free_bits_layers = "top"

  # Model: the paper's static-MNIST MLP (Table 4): 4 layers of 40 units, 2x200 tanh.
  c.latent_dims = (40, 40, 40, 40)    # bottom (z1) to top (zL)
  c.hidden_dims = (200, 200, 200, 200)
  c.deterministic_layers = 2
  # architecture = 'resnet': convolutional latents of latent_channels[i] maps at half the
  # image resolution, resnet_blocks residual blocks of resnet_channels maps before every
  # stochastic layer (latent_dims, hidden_dims, deterministic_layers are then unused).
  c.architecture = "mlp"          # mlp | resnet
  c.latent_channels = (8, 8, 8)
  c.resnet_channels = 64
  c.resnet_blocks = 2
  c.min_scale = layers.MIN_SCALE
  # Smooth upper bound on every Gaussian scale (0: off). Collapsed intermediate layers
  # have q(z_i|.) ~ p(z_i|z_{i+1}) whatever their common scale, which then drifts upward
  # without anchor, feeding large inputs to the tanh layers above and causing loss
  # spikes (docs/stability.md).
  c.max_scale = layers.MAX_SCALE
  # How every kernel and bias starts: one of layers.INITS, default layers.DEFAULT_INIT
  # (small_heads). What each does and why the default: models/layers.py and
  # docs/results.md, "Initialization".
  c.initialization = layers.DEFAULT_INIT
  # Stochastic skip connections between latent layers (HVAE+ / LVAE+, the paper's best
  # CIFAR-10 row, Table 5): a deterministic top-down state carries every latent above a
  # layer into each generator p(z_i|.) and the decoder (models/hierarchy.py). The
  # Hermite VAE smooths only z_{i+1}, the state held fixed (README, "Skip connections").
  c.skip_connections = False
  # How the skips' context enters each layer that reads it (layers.SKIP_INITS): zero (its
  # kernel rows start at zero, so the hierarchy starts as the one without skips) or joint
  # (initialized with the other rows: the ablation; a 4 x 40 MLP then collapses at once).
  c.skip_init = layers.DEFAULT_SKIP_INIT

  # p(x|z_1): auto = bernoulli for binary images, discretized_logistic for 8-bit ones
  # (CIFAR-10); naming the other one for a dataset is an error.
  c.likelihood = "auto"

  # Data.
  c.dataset = "binarized_mnist"
  c.data_source = "auto"          # auto | files | tfds | embedded
  c.data_dir = ""
  c.train_split = ""              # '' = the dataset's default (TFDS slicing syntax)
  c.eval_split = ""
  # Seed of the one static binarization of binarized_mnist drawn from mnist.pkl.gz (not
  # used when Larochelle's .amat files are read, or for dynamically binarized datasets).
  c.binarization_seed = 0

  # Optimisation.
  c.batch_size = 100
  c.learning_rate = 1e-3
  c.lr_schedule = "constant"      # constant | cosine
  c.warmup_steps = 0
  # Global-norm clipping (0: off). On by default: an outlier batch under a sharp
  # p(z_1|z_2) can give a gradient orders of magnitude above the typical norm, from
  # which Adam does not recover (docs/stability.md).
  c.grad_clip_norm = 100.0
  # Skip (do not apply) an update whose gradient norm exceeds this (0: off), as VDVAE
  # does: parameters and Adam's moments stay as they were, the step counts; the logged
  # ``update_skipped`` is the fraction of an interval's steps skipped. Clipping bounds a
  # spike's step; skipping also keeps the spike out of Adam's moment estimates.
  c.grad_skip_norm = 0.0
  c.skip_nonfinite = False        # True: skip non-finite updates instead of stopping
  c.num_train_steps = 1_000_000
  # Optimizer steps per dispatch to the device (a lax.scan over train_step; chunks end on
  # log/eval/checkpoint steps, so results do not depend on it). Saves the per-step
  # dispatch and host round trip: see the README's Performance section.
  c.steps_per_dispatch = 10

  # Logging, evaluation, checkpoints.
  c.log_every = 1000
  c.eval_every = 10_000
  c.checkpoint_every = 10_000
  c.keep_checkpoints = 2
  c.eval_batch_size = 500
  c.eval_max_examples = 0         # 0: the whole eval split
  c.eval_iw_samples = 0           # K of an IW bound at each eval (0: off; evaluate.py does L5000)
  c.au_samples = 100              # sample paths for E_q[z_i|x] in the x-based active units
  c.au_threshold = 0.01
  # Scale-free activity beside the unit counts: a unit counts in x_share_units when x
  # explains at least this share of its variance, Var_x(E_q[u|x]) / Var(u).
  c.x_share_threshold = 0.1
  # Sample paths in the I(x; z_i) estimate (0: off, else >= 2). Upper layers' q(z_i|x) is
  # a mixture over the other paths: fewer paths bias the estimate down for sharp layers
  # (evaluation.py). Cost per eval batch of B: mi_paths * B^2 * d_i per layer.
  c.mi_paths = 100
  c.progress_bar = True
  # Live diagnostics (off: 0): every this many steps, per intermediate generator layer, the
  # variance of its KL term's gradient at the run's rho over diagnostics_draws draws and
  # Var[U_rho mu_i] / Var[mu_i], on the first 16 evaluation examples (split 'diagnostics'
  # in metrics.jsonl and TensorBoard). Cost: about 2 x diagnostics_draws gradient steps.
  c.diagnostics_every = 0
  c.diagnostics_draws = 16

  c.seed = 0
  # Several processes (see hermite_vae/distributed.py and the README's "Scaling out").
  c.distributed = False           # True: jax.distributed.initialize() detects the cluster
  c.coordinator_address = ""      # host:port of process 0 for an explicit cluster
  c.num_processes = 0             # with coordinator_address: the number of processes
  c.process_id = -1               # with coordinator_address: this process, 0-based
  c.distributed_timeout_s = 60    # joining the group fails after this many seconds

  # Dtype of the model's matmuls and convolutions: float32 | bfloat16 (accelerators).
  # Parameters, optimizer state, densities, losses and metrics stay float32.
  c.compute_dtype = "float32"
  return c


def _fail(key, value, why):
  raise ValueError(f"config.{key}={value!r}: {why}")


def validate(config) -> None:
  """Raises ValueError naming the first bad or missing key of ``config``."""
  c = config
  missing = sorted(set(default_config()) - set(c))
  if missing:
    raise ValueError(f"config lacks the keys {missing}: start from "
                     "hermite_vae.config_lib.default_config() (or configs/default.py)")
  if c.method not in objectives.METHODS:
    _fail("method", c.method, f"unknown method; expected one of {objectives.METHODS}")
  try:
    rho = float(c.rho)
  except (TypeError, ValueError):
    _fail("rho", c.rho, "must be a number in [0, 1]")
  if not 0.0 <= rho <= 1.0:
    _fail("rho", c.rho, "must be in [0, 1]")
  if c.kappa is not None:
    if c.method != "hvae":
      _fail("kappa", c.kappa, f"is the discount of method=hvae; method={c.method!r} would "
            "ignore it (unset it)")
    try:
      wanted = ou.rho_for_kappa(c.kappa, c.num_ou_samples)
    except ValueError as e:
      _fail("kappa", c.kappa, str(e))
    if not math.isclose(ou.kappa(rho, c.num_ou_samples), float(c.kappa), abs_tol=1e-9):
      _fail("kappa", c.kappa, f"disagrees with rho={rho:g} at num_ou_samples="
            f"{c.num_ou_samples} (kappa {ou.kappa(rho, c.num_ou_samples):.6g}); set "
            f"rho={wanted:.6g} or leave rho to config_lib.apply_kappa")
  if not 0.0 <= c.rho_anneal_fraction <= 1.0:
    _fail("rho_anneal_fraction", c.rho_anneal_fraction, "must be in [0, 1]")
  if c.smooth_target not in objectives.SMOOTH_TARGETS:
    _fail("smooth_target", c.smooth_target, f"expected one of {objectives.SMOOTH_TARGETS}")
  gradient = c.hvae_gradient
  if gradient not in objectives.HVAE_GRADIENTS:
    _fail("hvae_gradient", gradient, f"expected one of {objectives.HVAE_GRADIENTS}")
  for key in ("num_ou_samples", "num_iw_samples", "batch_size", "num_train_steps",
              "log_every", "eval_every", "checkpoint_every", "eval_batch_size",
              "deterministic_layers", "keep_checkpoints", "steps_per_dispatch",
              "diagnostics_draws"):
    value = c[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
      _fail(key, value, "must be an integer >= 1")
  for key in ("kl_warmup_start", "kl_warmup_steps", "warmup_steps", "au_samples", "mi_paths",
              "binarization_seed",
              "eval_iw_samples", "eval_max_examples", "num_processes", "diagnostics_every"):
    if not isinstance(c[key], int) or c[key] < 0:
      _fail(key, c[key], "must be an integer >= 0")
  if not 0.0 < c.x_share_threshold < 1.0:
    _fail("x_share_threshold", c.x_share_threshold, "must be in (0, 1)")
  if c.mi_paths == 1:
    _fail("mi_paths", c.mi_paths, "must be 0 (off) or >= 2: I(x; z_i) leaves the "
          "sample's own path out of the estimate of q(z_i|x)")
  for key in ("ou_sequential", "ou_chain_layers", "skip_connections"):
    if not isinstance(c[key], bool):
      _fail(key, c[key], "must be True or False")
  for key, value in c.items():  # nan passes every comparison below: refuse it first
    if isinstance(value, float) and not math.isfinite(value):
      _fail(key, value, "must be a finite number")
  for key in ("free_bits", "grad_clip_norm", "grad_skip_norm"):
    if c[key] < 0:
      _fail(key, c[key], "must be >= 0")
  if not c.min_scale > 0:
    _fail("min_scale", c.min_scale, "must be > 0 (the floor of every Gaussian scale)")
  if c.max_scale != 0 and not c.max_scale > c.min_scale:
    _fail("max_scale", c.max_scale, f"must be 0 (off) or above min_scale={c.min_scale}")
  if c.free_bits_layers not in objectives.FREE_BITS_LAYERS:
    _fail("free_bits_layers", c.free_bits_layers, f"expected one of "
          f"{objectives.FREE_BITS_LAYERS}")
  if c.free_bits_layers != "top" and not c.free_bits:
    _fail("free_bits_layers", c.free_bits_layers, "has no effect with free_bits=0; set "
          "free_bits or leave free_bits_layers='top'")
  if c.method == "iwae":
    # The IW bound is trained as it is: a KL weight or a KL floor has no place in it.
    for key in ("kl_warmup_start", "kl_warmup_steps", "free_bits"):
      if c[key]:
        _fail(key, c[key], "method=iwae trains the importance-weighted bound, which has "
              "no KL term to anneal or floor; set it to 0 or use method=vae/hvae")
  if not c.learning_rate > 0:
    _fail("learning_rate", c.learning_rate, "must be > 0")
  if c.lr_schedule not in ("constant", "cosine"):
    _fail("lr_schedule", c.lr_schedule, "expected 'constant' or 'cosine'")
  architecture = c.architecture
  if architecture not in ("mlp", "resnet"):
    _fail("architecture", architecture, "expected 'mlp' or 'resnet'")
  if architecture == "resnet":
    latent_key, latent = "latent_channels", tuple(c.latent_channels)
    if not latent or any((not isinstance(d, int)) or d < 1 for d in latent):
      _fail("latent_channels", c.latent_channels, "must be a non-empty tuple of positive "
            "integers")
    if not isinstance(c.resnet_channels, int) or c.resnet_channels < 1:
      _fail("resnet_channels", c.resnet_channels, "must be an integer >= 1")
    if not isinstance(c.resnet_blocks, int) or c.resnet_blocks < 0:
      _fail("resnet_blocks", c.resnet_blocks, "must be an integer >= 0")
  else:
    latent_key, latent, hidden = "latent_dims", tuple(c.latent_dims), tuple(c.hidden_dims)
    if not latent or any((not isinstance(d, int)) or d < 1 for d in latent):
      _fail("latent_dims", c.latent_dims, "must be a non-empty tuple of positive integers")
    if any((not isinstance(d, int)) or d < 1 for d in hidden):
      _fail("hidden_dims", c.hidden_dims, "must be a tuple of positive integers")
    if len(latent) != len(hidden):
      _fail("hidden_dims", c.hidden_dims,
            f"has {len(hidden)} entries but latent_dims={latent} has {len(latent)}: one "
            "hidden width per stochastic layer")
  if c.method == "hvae" and len(latent) < 2:
    _fail(latent_key, latent, "method=hvae smooths intermediate generator "
          "layers p(z_i|z_{i+1}) and needs at least 2 stochastic layers")
  if c.dataset not in registry.DATASETS:
    _fail("dataset", c.dataset, f"unknown dataset; known: {sorted(registry.DATASETS)}")
  requested = c.likelihood
  if requested != "auto" and requested not in layers.LIKELIHOODS:
    _fail("likelihood", requested, f"expected 'auto' or one of {sorted(layers.LIKELIHOODS)}")
  expected = likelihood(c)
  if requested not in ("auto", expected):
    pixels = "8-bit" if expected == "discretized_logistic" else "binary"
    _fail("likelihood", requested, f"dataset {c.dataset!r} has {pixels} pixels; use "
          f"{expected!r} (or 'auto')")
  distributed.validate(c)
  if c.initialization not in layers.INITS:
    _fail("initialization", c.initialization, f"expected one of {layers.INITS}")
  if c.get("skip_init", layers.DEFAULT_SKIP_INIT) not in layers.SKIP_INITS:
    _fail("skip_init", c.skip_init, f"expected one of {layers.SKIP_INITS}")
  if c.compute_dtype not in ("float32", "bfloat16"):
    _fail("compute_dtype", c.compute_dtype, "expected 'float32' or 'bfloat16'")
  if c.data_source not in sources.SOURCES:
    _fail("data_source", c.data_source, f"expected one of {sources.SOURCES}")


def apply_kappa(config, rho_given: bool = False):
  """Sets ``config.rho = rho_for_kappa(config.kappa, config.num_ou_samples)`` when kappa
  is set (in place; returns ``config``). ``rho_given``: the user also set rho explicitly,
  which is then refused unless it gives the same kappa. Errors name the key, and the
  smallest n that reaches an unreachable kappa."""
  if config.kappa is None:
    return config
  try:
    rho = ou.rho_for_kappa(config.kappa, config.num_ou_samples)
  except ValueError as e:
    _fail("kappa", config.kappa, str(e))
  if rho_given and not math.isclose(ou.kappa(float(config.rho), config.num_ou_samples),
                                    float(config.kappa), abs_tol=1e-9):
    _fail("rho", config.rho, f"set together with kappa={config.kappa:g}, which at "
          f"num_ou_samples={config.num_ou_samples} means rho={rho:.6g}: set one of them")
  config.rho = rho
  return config


def check_override_flags(argv, flag: str = "config") -> None:
  """Exits with one line naming the key and the closest known keys when a command line
  sets ``--config.KEY`` for a KEY the configs do not have (``ml_collections`` would fail
  later with a long traceback). Call before ``app.run``."""
  import difflib  # pylint: disable=g-import-not-at-top
  known = set(default_config())
  prefix = f"--{flag}."
  for arg in argv[1:]:
    if not arg.startswith(prefix):
      continue
    key = arg[len(prefix):].split("=")[0].split(".")[0]
    if key not in known:
      close = difflib.get_close_matches(key, sorted(known), n=3)
      raise SystemExit(f"{prefix}{key}: no such config key" +
                       (f"; did you mean {', '.join(close)}?" if close else
                        " (every key: hermite_vae/config_lib.py, default_config)"))


def likelihood(config) -> str:
  """p(x|z_1) for the config's dataset: ``bernoulli`` for binary (binarized) images,
  ``discretized_logistic`` for 8-bit ones (``config.likelihood='auto'`` picks this)."""
  binary = registry.DATASETS[config.dataset].binarization != "none"
  return "bernoulli" if binary else "discretized_logistic"


# ------------------------------------------------------------- method presets

# The method comparison (paper Tables 3-4), one spelling everywhere (configs/methods.py,
# experiments/compare.py, the benchmark, the README): ``vae``, ``iwae`` (k = 5),
# ``vae+kl`` (KL annealing: weight 0 for 10,000 steps, then linear to 1 over 500,000),
# ``vae+freebits`` (1 nat on every layer's term), ``hvae`` (the paper's substitution gradient),
# ``hvae+kl``, ``hvae+freebits``, ``hvae_ratio`` (smooth mu/sigma and sigma),
# ``hvae+rho_anneal`` (rho rising to 1 over the first half) and the ablation
# ``hvae_jacobian`` (only the Jacobian of (mu, sigma) smoothed, log N differentiated at
# the original values).
METHOD_PRESETS = ("vae", "iwae", "vae+kl", "vae+freebits", "hvae", "hvae+kl", "hvae_ratio",
                  "hvae+rho_anneal", "hvae+freebits", "hvae_jacobian")


def apply_method(config, name: str):
  """Sets the fields of method preset ``name`` on ``config`` (in place) and returns it."""
  if name not in METHOD_PRESETS:
    raise ValueError(f"Unknown method preset {name!r}; known: {METHOD_PRESETS}")
  base, _, extra = name.partition("+")
  config.method = "hvae" if base.startswith("hvae") else base
  if base == "hvae_ratio":
    config.smooth_target = "ratio"
  if base == "hvae_jacobian":
    config.hvae_gradient = "jacobian"
  if base == "iwae":
    config.num_iw_samples = 5
  if extra == "kl":
    config.kl_warmup_start = 10_000
    config.kl_warmup_steps = 500_000
  elif extra == "freebits":
    config.free_bits = 1.0
    config.free_bits_layers = "every"
  elif extra == "rho_anneal":
    config.rho_anneal_fraction = 0.5
  return config


# ------------------------------------------------------------ saved configs

_TUPLE_KEYS = ("latent_dims", "hidden_dims", "latent_channels")


# Keys a resumed run may change: how long it trains and how it logs, evaluates,
# checkpoints and is laid out over processes. Any other key defines the run (model,
# objective, data, optimizer, seed, numerics); changing one on resume would continue one
# run as another.
RESUMABLE_KEYS = frozenset((
    "num_train_steps", "steps_per_dispatch", "log_every", "eval_every", "checkpoint_every",
    "keep_checkpoints", "eval_batch_size", "eval_max_examples", "eval_iw_samples",
    "au_samples", "au_threshold", "x_share_threshold", "mi_paths", "progress_bar",
    "diagnostics_every", "diagnostics_draws", "data_dir", "distributed",
    "coordinator_address", "num_processes", "process_id", "distributed_timeout_s",
    "ou_sequential", "ou_chain_layers", "skip_nonfinite"))

# Schedules whose length is computed from num_train_steps: a resume that changes
# num_train_steps with one of them on would make the learning rate or rho jump.
_SCHEDULES_OVER_TRAINING = (("lr_schedule", lambda c: c.lr_schedule == "cosine"),
                            ("rho_anneal_fraction", lambda c: c.rho_anneal_fraction > 0))


def _same(a, b) -> bool:
  number = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
  if number(a) and number(b):
    return float(a) == float(b)
  if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
    return len(a) == len(b) and all(_same(u, v) for u, v in zip(a, b))
  return a == b


def check_resume(saved: dict, config, workdir: str) -> None:
  """Raises ValueError before any compute when ``config`` differs from the config the
  run in ``workdir`` saved (``config.json``'s ``config``) in a key outside
  RESUMABLE_KEYS."""
  old = from_saved(saved)
  changed = [k for k in sorted(old) if k not in RESUMABLE_KEYS and not _same(old[k], config[k])]
  if not changed and old.num_train_steps != config.num_train_steps:
    tied = [k for k, on in _SCHEDULES_OVER_TRAINING if on(old)]
    if tied:
      raise ValueError(
          f"{workdir!r}: config.num_train_steps={config.num_train_steps} (saved "
          f"{old.num_train_steps}) would change the length of the schedule set by "
          f"{', '.join(f'config.{k}={old[k]!r}' for k in tied)}, which spans the whole "
          "run: the learning rate or rho would jump at the resume. Train the longer run "
          "in a new workdir.")
  if changed:
    what = ", ".join(f"config.{k}={config[k]!r} (saved {old[k]!r})" for k in changed)
    raise ValueError(
        f"{workdir!r} holds a run trained with another config: {what}. Resuming would "
        f"continue that run as a different one; use a new workdir. Keys that may change "
        f"on resume: {', '.join(sorted(RESUMABLE_KEYS))}.")


def from_saved(saved: dict) -> ml_collections.ConfigDict:
  """A run's saved config (``config.json``'s ``config``) read over the defaults: keys
  added to the library since the run was saved take their default values."""
  config = default_config()
  unknown = sorted(set(saved) - set(config))
  if unknown:
    raise ValueError(f"saved config has keys this version does not know: {unknown}")
  for key, value in saved.items():
    config[key] = tuple(value) if key in _TUPLE_KEYS else value
  return config
