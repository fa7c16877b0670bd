"""Default configuration: every key, with the paper's values where it gives them.

Presets import this and override a few fields. Every key can be overridden on the
command line, e.g. ``--config.rho=0.95 --config.latent_dims='(64,32,16,8)'``.
"""
import ml_collections


def get_config():
  c = ml_collections.ConfigDict()

  # Objective.
  c.method = "hvae"               # vae | iwae | hvae
  c.rho = 0.9                     # OU correlation in [0, 1]; 1 = plain VAE gradient
  c.rho_anneal_fraction = 0.0     # > 0: rho rises linearly to 1 over this fraction of training
  c.num_ou_samples = 5            # n correlated samples for U_rho (paper: 5-10)
  c.smooth_target = "mean_std"    # mean_std | ratio (smooth (mu, sigma) or (mu/sigma, sigma))
  # Which gradient the smoothing gives (method=hvae). substitute (the paper's §2.2): the
  # gradient of log N(z_i; U_rho mu_i, U_rho sigma_i), derivative of log N taken at the
  # smoothed mean and scale. jacobian (ablation): log N differentiated at the original
  # (mu_i, sigma_i), only the Jacobian of (mu_i, sigma_i) smoothed.
  c.hvae_gradient = "substitute"
  # True: the backward pass evaluates the n OU samples one after another (lax.scan) instead
  # of at once; same gradient, the memory of one sample (mnist_resnet, batch 32: HVAE peak
  # 560 -> 317 MiB, the VAE's 318); slower on small models (mnist_mlp hvae5 on a 2-core
  # CPU: 9.5 -> 13.2 ms/step).
  c.ou_sequential = False
  c.num_iw_samples = 5            # k for method=iwae
  c.kl_warmup_start = 0           # KL annealing: weight 0 for this many steps,
  c.kl_warmup_steps = 0           # then linear to 1 over this many (0, 0: off)
  c.free_bits = 0.0               # nats per stochastic layer (0: off)

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
  c.min_scale = 1e-3
  # Smooth upper bound on every Gaussian scale (0: off). Collapsed intermediate layers
  # have q(z_i|.) ~ p(z_i|z_{i+1}) whatever their common scale, which then drifts upward
  # without anchor (to ~24 after 20k steps on MNIST), feeding +-100 inputs to the tanh
  # layers above and causing loss spikes. Bounding it at 3 removed most spikes and
  # improved the 20k-step validation ELBO of the 40-40-40-40 HVAE from -138.0 to -118.6.
  c.max_scale = 3.0

  # p(x|z_1): auto = bernoulli for binary images, discretized_logistic for 8-bit ones
  # (CIFAR-10); naming the other one for a dataset is an error.
  c.likelihood = "auto"

  # Data.
  c.dataset = "binarized_mnist"
  c.data_source = "auto"          # auto | files | tfds | embedded
  c.data_dir = ""
  c.train_split = ""              # '' = the dataset's default (TFDS slicing syntax)
  c.eval_split = ""

  # Optimisation.
  c.batch_size = 100
  c.learning_rate = 1e-3
  c.lr_schedule = "constant"      # constant | cosine
  c.warmup_steps = 0
  # Global-norm clipping (0: off). On by default: without it the 40-40-40-40 model at
  # lr 1e-3 diverged after ~8k steps on MNIST (an outlier batch with a sharp p(z_1|z_2)
  # gave a gradient norm of 4e5 against a typical ~50, and Adam never recovered); with
  # clipping at 100 the same batch is absorbed.
  c.grad_clip_norm = 100.0
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
  c.mi_paths = 10                 # sample paths for q(z_i|x) in the I(x; z_i) estimate (0: off)
  c.progress_bar = True

  c.seed = 0
  c.distributed = False           # call jax.distributed.initialize() (multi-host)
  return c
