"""An independent PyTorch implementation of the MLP hierarchical VAE, to check results of
the library that look like properties of the model (it imports nothing from hermite_vae).

Same model as ``configs/mnist_mlp.py`` with ``method=vae``: two tanh layers of ``--hidden``
units before every Gaussian layer, scale = 3 tanh(softplus(raw) / 3) + 1e-3, top layer
N(0, I), Bernoulli decoder; Adam 1e-3, batch 100, global-norm clipping 100, dynamic
binarization; the first 9,000 MNIST test digits for training, the last 1,000 (binarized
once) for evaluation. ``--init``: torch (PyTorch's default), lecun (truncated normal of
variance 1/fan_in, zero biases: Flax's default) or small_heads (lecun, with the Gaussian
heads' kernels divided by sqrt(d) and the scale bias at scale 1: the library's default).
``--skips`` adds the stochastic skip connections of ``configs/mnist_mlp_skip.py``: a
top-down state S_j = tanh(W [S_{j+1}, z_j]) of ``--hidden`` units per latent above z_1;
generator p(z_i | z_{i+1}, S_{i+2}) and the decoder p(x | z_1, S_2) read it beside their
own input. ``--skip_init``: zero (the rows that read the state start at zero, the others
with the fan-in of the own input alone: the library's default) or joint.

    pip install torch numpy
    python experiments/reference/torch_vae.py --data_dir=../shared/data/mnist \
      --latent=200,200,200 --init=small_heads --steps=3000 --seed=0
    python experiments/reference/torch_vae.py --data_dir=../shared/data/mnist \
      --latent=40,40,40,40 --skips --skip_init=joint --steps=3000 --seed=0

``--data=pkl`` reads ``mnist.pkl.gz`` instead (the paper's 50k / 10k / 10k; docs/data.md):
training on its 50,000 training digits, binarized once (``--binarize=static``, a
Bernoulli draw of the script's own, seeded by ``--binarization_seed``, not the library's)
or at every batch (``dynamic``); ELBO and the importance-weighted L_K (``--eval_k``) on the
first ``--eval_examples`` validation digits every ``--eval_every`` steps, on all 10,000 at
the end, and L_K on the 10,000 test digits with ``--test_k``. The textbook choices:
``--scale=softplus`` (scale = softplus(raw) + 1e-3, no upper bound, in place of the
library's 3 tanh(softplus / 3) + 1e-3), ``--clip=0`` (no gradient clipping),
``--init=torch``. ``--json`` writes the curve and the final numbers; a non-finite loss
stops the run and is recorded there.

    python experiments/reference/torch_vae.py --data=pkl --data_dir=/tmp/mnist_pkl \
      --latent=40,40,40,40 --init=torch --scale=softplus --clip=0 --batches=epochs \
      --binarize=static --steps=100000 --eval_every=10000 --json=ref.json

``--hidden`` takes one width (every layer) or a comma list, one per stochastic layer, bottom
to top: hidden[i] (0-based) is the width of the two tanh layers of q(z_{i+1} | z_i)
(i = 0: q(z_1 | x)) and of the generator p(z_i | z_{i+1}) (i = 0: the decoder p(x | z_1)),
as in Burda et al.'s IWAE MLPs. ``--kl_warmup_start=S --kl_warmup_steps=W``: KL annealing,
the training objective E[log p(x | z_1)] - beta sum_i (log q - log p)_i with beta = 0 for
the first S steps, then rising linearly to 1 over W steps (0, 0: off).

``--method=hvae`` (the Hermite VAE; ``--rho``, ``--n``) trains on the gradient of a
smoothed objective: for each posterior sample z_{i+1} = mu + sigma eps_1 of q(z_{i+1} | z_i)
it draws n OU copies z'_k = rho z_{i+1} + (1 - rho) mu + sigma sqrt(1 - rho^2) eps_k (eq. 4;
each is again a sample of q) and replaces, in every intermediate generator layer
p(z_i | z_{i+1}), i = 1 .. L-1 (not the prior p(z_L) = N(0, I), not the decoder), the
density N(z_i | mu_i(z_{i+1}), sigma_i(z_{i+1})) by N(z_i | U mu_i, U sigma_i), with
U f = (1/n) sum_k f(z'_k), the Monte Carlo OU operator U_rho f(z) = E[f(rho z + sqrt(1 -
rho^2) eps)] (eq. 3). Nothing else changes, no gradient is stopped (``hermite_kls``), and
every reported number (training log, evaluation ELBO, L_K) is the original model's; at
rho = 1 it is the VAE exactly (``--selfcheck`` compares the two gradients on one batch).
Each smoothed layer runs its generator n times. The paper's Table 3 pair (64-32-16-8,
dynamic binarization) for 100,000 steps, VAE+KL and HVAE:

    python experiments/reference/torch_vae.py --data=pkl --data_dir=/tmp/mnist_pkl \
      --binarize=dynamic --latent=64,32,16,8 --hidden=512,256,128,64 --init=small_heads \
      --batches=epochs --steps=100000 --eval_every=10000 --test_k=1000 \
      --kl_warmup_start=1000 --kl_warmup_steps=50000 --json=vae_kl.json
    python experiments/reference/torch_vae.py --data=pkl --data_dir=/tmp/mnist_pkl \
      --binarize=dynamic --latent=64,32,16,8 --hidden=512,256,128,64 --init=small_heads \
      --batches=epochs --steps=100000 --eval_every=10000 --test_k=1000 \
      --method=hvae --rho=0.95 --n=5 --json=hvae.json
"""
import argparse, gzip, math, os  # noqa: E401
import numpy as np
import torch
from torch import nn


def widths(text):
  """--hidden: one int (every layer; kept an int, as before) or a comma list."""
  values = [int(v) for v in text.split(",")]
  return values[0] if len(values) == 1 else values


p = argparse.ArgumentParser()
p.add_argument("--data_dir", required=True)
p.add_argument("--latent", default="200,200,200")
p.add_argument("--hidden", type=widths, default="200",
               help="tanh width: one int, or one per stochastic layer, bottom to top")
p.add_argument("--init", default="small_heads", choices=["torch", "lecun", "small_heads"])
p.add_argument("--steps", type=int, default=3000)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--batches", default="replacement", choices=["replacement", "epochs"],
               help="draw each batch with replacement, or shuffle once per epoch (the library)")
p.add_argument("--skips", action="store_true")
p.add_argument("--skip_init", default="zero", choices=["zero", "joint"])
p.add_argument("--data", default="idx", choices=["idx", "pkl"],
               help="idx: the t10k digits (9,000 train / 1,000 eval); pkl: mnist.pkl.gz")
p.add_argument("--binarize", default="dynamic", choices=["dynamic", "static"])
p.add_argument("--binarization_seed", type=int, default=1234)
p.add_argument("--scale", default="bounded", choices=["bounded", "softplus"])
p.add_argument("--clip", type=float, default=100.0, help="global-norm clip; 0: none")
p.add_argument("--eval_every", type=int, default=0)
p.add_argument("--eval_examples", type=int, default=1000)
p.add_argument("--eval_k", type=int, default=100)
p.add_argument("--test_k", type=int, default=0)
p.add_argument("--json", default="")
p.add_argument("--kl_warmup_start", type=int, default=0,
               help="KL weight 0 for this many steps, then a linear rise (0, 0: off)")
p.add_argument("--kl_warmup_steps", type=int, default=0,
               help="steps of the linear rise of the KL weight from 0 to 1")
p.add_argument("--method", default="vae", choices=["vae", "hvae"],
               help="hvae: the gradient of the OU-smoothed objective (module docstring)")
p.add_argument("--rho", type=float, default=0.9, help="hvae: OU correlation, in [0, 1]")
p.add_argument("--n", type=int, default=5, help="hvae: OU samples per smoothed layer")
p.add_argument("--selfcheck", action="store_true",
               help="compare the hvae and vae loss and gradients on one batch, then exit")
args = p.parse_args()
latent = [int(v) for v in args.latent.split(",")]
# hidden[i] (0-based): width of the two tanh layers of q(z_{i+1} | z_i) (i = 0: q(z_1 | x))
# and of the generator p(z_i | z_{i+1}) (i = 0: the decoder p(x | z_1)).
hidden = (args.hidden if isinstance(args.hidden, list) else [args.hidden] * len(latent))
if len(hidden) != len(latent):
  p.error(f"--hidden has {len(hidden)} widths for {len(latent)} stochastic layers")
if args.skips and len(set(hidden)) > 1:
  p.error("--skips needs one --hidden width (the top-down state has that many units)")
if args.method == "hvae" and args.skips:
  p.error("--method=hvae is defined here for the stacked model only (no --skips)")
if not 0 <= args.rho <= 1 or args.n < 1:
  p.error("--rho must lie in [0, 1] and --n be at least 1")
if args.kl_warmup_start < 0 or args.kl_warmup_steps < 0:
  p.error("--kl_warmup_start and --kl_warmup_steps must not be negative")
torch.manual_seed(args.seed)
rng = np.random.default_rng(args.seed)
test_x = None
if args.data == "idx":
  with gzip.open(os.path.join(args.data_dir, "t10k-images-idx3-ubyte.gz")) as f:
    images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 784) / 255.0
  train_x = torch.tensor(images[:9000], dtype=torch.float32)
  eval_x = torch.tensor(np.random.default_rng(1234).random((1000, 784)) < images[9000:],
                        dtype=torch.float32)
else:
  import pickle  # noqa: E402
  with gzip.open(os.path.join(args.data_dir, "mnist.pkl.gz")) as f:
    parts = pickle.load(f, encoding="latin1")       # ((x, y) train, validation, test)
  draw = np.random.default_rng(args.binarization_seed)
  # Every part binarized once with the script's own draw; the training part stays
  # grey when binarized at every batch.
  binary = [(draw.random(x.shape) < x).astype(np.float32) for x, _ in parts]
  train_x = torch.tensor(binary[0] if args.binarize == "static" else parts[0][0])
  eval_x, test_x = torch.tensor(binary[1]), torch.tensor(binary[2])
num_train = len(train_x)
UNIT_RAW = math.log(math.expm1(3 * math.atanh((1 - 1e-3) / 3)))   # raw giving scale 1


def linear(n_in, n_out, head=False, extra=0):
  """Reads n_in inputs, then ``extra`` context inputs (skip connections)."""
  layer = nn.Linear(n_in + extra, n_out)
  fan = n_in if args.skip_init == "zero" else n_in + extra
  if args.init != "torch":
    std = 1 / math.sqrt(fan * (n_out if head and args.init == "small_heads" else 1))
    nn.init.trunc_normal_(layer.weight, std=std / 0.87962566, a=-2 * std / 0.87962566,
                          b=2 * std / 0.87962566)
    nn.init.zeros_(layer.bias)
  elif extra:
    nn.init.uniform_(layer.weight, -1 / math.sqrt(fan), 1 / math.sqrt(fan))
    nn.init.uniform_(layer.bias, -1 / math.sqrt(fan), 1 / math.sqrt(fan))
  if extra and args.skip_init == "zero":
    with torch.no_grad():
      layer.weight[:, n_in:] = 0
  return layer


class Trunk(nn.Module):
  """Two tanh layers of ``width`` units; the first reads [h, context]."""
  def __init__(self, n_in, width, extra=0):
    super().__init__()
    self.l0, self.l1 = linear(n_in, width, extra=extra), linear(width, width)

  def forward(self, h, ctx=None):
    h = h if ctx is None else torch.cat([h, ctx], -1)
    return torch.tanh(self.l1(torch.tanh(self.l0(h))))


class Gaussian(nn.Module):
  def __init__(self, n_in, d, width, extra=0):
    super().__init__()
    self.trunk = Trunk(n_in, width, extra)
    self.loc, self.raw = linear(width, d, True), linear(width, d, True)
    if args.init == "small_heads":
      nn.init.constant_(self.raw.bias, UNIT_RAW)

  def forward(self, h, ctx=None):
    h = self.trunk(h, ctx)
    raw = nn.functional.softplus(self.raw(h))
    return self.loc(h), (raw if args.scale == "softplus" else 3 * torch.tanh(raw / 3)) + 1e-3


def log_normal(z, loc, scale):
  return (-0.5 * ((z - loc) / scale) ** 2 - scale.log() - 0.5 * math.log(2 * math.pi)).sum(-1)


enc = nn.ModuleList([Gaussian(n, d, w) for n, d, w in zip([784] + latent[:-1], latent, hidden)])
L, H = len(latent), hidden[0]                              # H: the skip state's width
ctx_size = lambda j: H if args.skips and j <= L else 0    # size of the state S_j (1-based)
# gen[i] (0-based) is p(z_{i+1} | z_{i+2}) in the 1-based names: width hidden[i + 1].
gen = nn.ModuleList([Gaussian(latent[i + 1], latent[i], hidden[i + 1], ctx_size(i + 3))
                     for i in range(L - 1)])
dec_trunk, dec_out = Trunk(latent[0], hidden[0], ctx_size(2)), linear(hidden[0], 784)
# td[j - 1]: S_{j+1} = tanh(W [S_{j+2}, z_{j+1}]) for 0-based j = 1..L-1 (the top: z_L only).
# Built only with --skips, so that runs without skips draw the same random numbers as before.
td = nn.ModuleList([nn.Linear(latent[j] + (H if j < L - 1 else 0), H)
                    for j in (range(1, L) if args.skips else ())])
for layer in td:
  if args.init != "torch":
    std = 1 / math.sqrt(layer.in_features) / 0.87962566
    nn.init.trunc_normal_(layer.weight, std=std, a=-2 * std, b=2 * std)
    nn.init.zeros_(layer.bias)
modules = [enc, gen, dec_trunk, dec_out, td]
params = [p for m in modules for p in m.parameters()]
opt = torch.optim.Adam(params, lr=1e-3)


def elbo_terms(x, sampled_top=False):
  """log p(x | z_1), the KL terms (bottom to top) and the posterior path. The top term is
  the analytic KL(q(z_L | .) || N(0, I)) for the ELBO; ``sampled_top`` gives its sampled
  form log q(z_L | .) - log N(z_L; 0, I), which an importance weight needs (with the
  analytic term the weights are exp(-KL_top) in place of p(z_L) / q(z_L | .): still a
  lower bound, but one that does not tend to log p(x) as k grows)."""
  h, path = x, []
  for q in enc:
    loc, scale = q(h)
    h = loc + scale * torch.randn_like(loc)
    path.append((h, loc, scale))
  states, s = [None] * (L + 2), None                   # states[j] = S_j, 1-based
  for j in reversed(range(1, L) if args.skips else ()):
    z = path[j][0]
    s = torch.tanh(td[j - 1](z if s is None else torch.cat([s, z], -1)))
    states[j + 1] = s
  logits = dec_out(dec_trunk(path[0][0], states[2]))
  log_px = -nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)
  kls = [log_normal(*path[i]) - log_normal(path[i][0], *gen[i](path[i + 1][0], states[i + 3]))
         for i in range(L - 1)]
  z, loc, scale = path[-1]
  if sampled_top:
    kls.append(log_normal(z, loc, scale) - log_normal(z, torch.zeros_like(z),
                                                      torch.ones_like(z)))
  else:
    kls.append((0.5 * (loc ** 2 + scale ** 2 - 1) - scale.log()).sum(-1))
  return log_px, torch.stack(kls), path


def ou_samples(z, loc, scale, rho, n):
  """n OU-correlated copies of the posterior sample z = loc + scale * eps_1 (eq. 4):
  z' = rho z + (1 - rho) loc + scale sqrt(1 - rho^2) eps, fresh eps ~ N(0, I) per copy;
  z' = loc + scale (rho eps_1 + sqrt(1 - rho^2) eps) is again distributed as q. Shape
  (n, *z.shape). At rho = 1 every copy is z itself, bit for bit."""
  eps = torch.randn((n,) + tuple(z.shape), dtype=z.dtype)
  return rho * z + (1 - rho) * loc + scale * math.sqrt(1 - rho ** 2) * eps


def hermite_kls(path, rho=None, n=None):
  """The KL terms of the Hermite VAE's training objective, for the posterior ``path`` of
  ``elbo_terms`` (used for the gradient only; every reported number is the model's ELBO).

  Every intermediate generator layer p(z_i | z_{i+1}), i = 1 .. L-1, has its density
  N(z_i | mu_i(z_{i+1}), sigma_i(z_{i+1})) replaced by N(z_i | U mu_i, U sigma_i), where
  U f = (1/n) sum_k f(z'_k): the Monte Carlo OU operator U_rho f(z_{i+1}) = E[f(z')] (eq. 3,
  Sec. 2.2 "Algorithm") over n copies z'_k of z_{i+1} (eq. 4, ``ou_samples``). The terms
  log q(z_i | z_{i-1}) and the top KL(q(z_L | z_{L-1}) || N(0, I)) are the ELBO's own; the
  decoder p(x | z_1) is not smoothed (Sec. 2.2 "Complexity"). Cost: each smoothed layer runs
  its generator n times (n x batch rows in one pass) in place of once.

  Gradients: nothing is stopped. The paper defines the substituted density as a function of
  the reparameterized z_{i+1} and writes the OU copy itself as a reparameterized sample of q,
  z' = sigma (rho eps_1 + sqrt(1 - rho^2) eps_2) + mu (Sec. 2.1, the line before eq. 4), and
  says only that the smoothed functions are used "to compute gradients during training"
  (Sec. 2.2); no stop-gradient appears anywhere. So the encoder's loc and scale get
  gradient through z' (directly and through z: d z' / d loc = rho + (1 - rho) = 1, as for
  z), the generator's parameters through U mu and U sigma, and z_i (the density's argument)
  as in the VAE. With n = 1 the gradient is then, in expectation over the OU noise, the
  VAE's (z' has the law of z); stopping any part of eq. 4 would bias it."""
  rho = args.rho if rho is None else rho
  n = args.n if n is None else n
  kls = []
  for i in range(L - 1):                       # gen[i]: p(z_{i+1} | z_{i+2}), 1-based names
    z_above, loc_above, scale_above = path[i + 1]
    copies = ou_samples(z_above, loc_above, scale_above, rho, n)
    loc, scale = gen[i](copies.reshape(n * len(z_above), -1))
    loc = loc.view(n, len(z_above), -1).mean(0)
    scale = scale.view(n, len(z_above), -1).mean(0)
    kls.append(log_normal(*path[i]) - log_normal(path[i][0], loc, scale))
  _, loc, scale = path[-1]
  kls.append((0.5 * (loc ** 2 + scale ** 2 - 1) - scale.log()).sum(-1))
  return torch.stack(kls)


def kl_weight(step):
  """KL annealing: 0 for the first --kl_warmup_start steps (1-based), then a linear rise to
  1 over --kl_warmup_steps steps; 1 throughout when both are 0."""
  if step <= args.kl_warmup_start:
    return 0.0
  if not args.kl_warmup_steps:
    return 1.0
  return min(1.0, (step - args.kl_warmup_start) / args.kl_warmup_steps)


# ---- training (experiments/reference/cross_check.py runs only what is above this line)
import json, time  # noqa: E401,E402


def iw_bound(x, k, batch=100, rows=2000):
  """Mean over x of log (1/k) sum_j p(x, z^j) / q(z^j | x), z^j ~ q(z | x) (nats).
  The k samples of a batch go through the model ``rows // batch`` at a time, stacked along
  the batch axis (one forward of up to ``rows`` rows: the cost is k * len(x) passes)."""
  total, per = 0.0, max(1, rows // batch)
  for start in range(0, len(x), batch):
    xb = x[start:start + batch]
    log_w = []
    for done in range(0, k, per):
      m = min(per, k - done)
      log_px, kl, _ = elbo_terms(xb.repeat(m, 1), sampled_top=True)   # every term sampled
      log_w.append((log_px - kl.sum(0)).view(m, len(xb)))
    total += (torch.logsumexp(torch.cat(log_w), 0) - math.log(k)).sum().item()
  return total / len(x)


def evaluate(x, k):
  with torch.no_grad():
    log_px, kl, _ = elbo_terms(x)
    out = {"elbo": (log_px - kl.sum(0)).mean().item(),
           "kl_per_layer": [round(v, 3) for v in kl.mean(1).tolist()]}
    if k:
      out[f"iw_k{k}"] = iw_bound(x, k)
  return out


def selfcheck():
  """--selfcheck: loss and gradient of the hvae objective against the vae's on one batch with
  the same posterior noise (same seed), in float32 and float64. At rho = 1 every OU copy is
  z, so hvae must give the vae's loss and gradient (n = 1: the same operations; n > 1: up to
  the rounding of the average of n equal values); at rho < 1 the gradient differs while
  the reported loss (the model's ELBO) is the same."""
  x = torch.bernoulli(train_x[:100], generator=torch.Generator().manual_seed(0))
  rho = args.rho if args.rho < 1 else 0.9
  for dtype in (torch.float32, torch.float64):
    for m in modules:
      m.to(dtype)

    def run(method, rho, n):
      torch.manual_seed(args.seed + 1)
      log_px, kl, path = elbo_terms(x.to(dtype))
      reported = -(log_px - kl.sum(0)).mean()
      trained = hermite_kls(path, rho, n) if method == "hvae" else kl
      objective = -(log_px - trained.sum(0)).mean()
      grads = torch.autograd.grad(objective, params, allow_unused=True)
      flat = torch.cat([(torch.zeros_like(q) if g is None else g).flatten()
                        for g, q in zip(grads, params)])
      return reported.item(), objective.item(), flat

    ref_reported, ref_objective, ref_grad = run("vae", 1.0, 1)
    print(f"selfcheck {str(dtype)[6:]}: vae loss {ref_reported:.6f}, "
          f"max |grad| {ref_grad.abs().max().item():.3e}")
    for r, n in ((1.0, 1), (1.0, args.n), (rho, 1), (rho, args.n)):
      reported, objective, grad = run("hvae", r, n)
      diff = (grad - ref_grad).abs().max().item()
      print(f"  hvae rho={r} n={n}: reported loss {reported:.6f} "
            f"(== vae's: {reported == ref_reported}), objective {objective:.6f} "
            f"(vae - hvae {ref_objective - objective:.3e}), max |grad - vae grad| {diff:.3e}, "
            f"relative to max |vae grad| {diff / ref_grad.abs().max().item():.1e}")


if args.selfcheck:
  selfcheck()
  raise SystemExit(0)
record = {"args": vars(args), "curve": [], "stopped": None,
          "objective": {"method": args.method, "rho": args.rho, "n": args.n, "hidden": hidden,
                        "kl_warmup_start": args.kl_warmup_start,
                        "kl_warmup_steps": args.kl_warmup_steps,
                        # L_K's top term: sampled (before this field: the analytic KL)
                        "iw_top": "sampled"}}
print("parameters", sum(p.numel() for p in params))
with torch.no_grad():
  print("initial KL per layer", [round(v, 1) for v in elbo_terms(eval_x)[1].mean(1).tolist()])
per_epoch = num_train // 100
start_time = time.time()
for step in range(1, args.steps + 1):
  if args.batches == "epochs":
    if (step - 1) % per_epoch == 0:
      order = rng.permutation(num_train)
    idx = order[(step - 1) % per_epoch * 100:(step - 1) % per_epoch * 100 + 100]
  else:
    idx = rng.integers(0, num_train, 100)
  x = train_x[torch.tensor(idx)]
  if args.binarize == "dynamic":
    x = torch.bernoulli(x)
  log_px, kl, path = elbo_terms(x)
  loss = -(log_px - kl.sum(0)).mean()          # the model's ELBO (weight 1): every report
  objective, weight = loss, kl_weight(step)    # what is differentiated
  if args.method == "hvae" or weight != 1:     # (the vae at weight 1: loss itself, as before)
    trained = hermite_kls(path) if args.method == "hvae" else kl
    objective = -(log_px - weight * trained.sum(0)).mean()
  if not (torch.isfinite(loss) and torch.isfinite(objective)):
    record["stopped"] = f"non-finite loss at step {step}"
    print(record["stopped"], flush=True)
    break
  opt.zero_grad()
  objective.backward()
  if args.clip:
    nn.utils.clip_grad_norm_(params, args.clip)
  opt.step()
  if step % 1000 == 0:
    print(f"step {step} train ELBO {-loss.item():.1f} KL {kl.mean(1).tolist()}"
          + (f" KL weight {weight:.4f}" if args.kl_warmup_start or args.kl_warmup_steps
             else ""), flush=True)
  if args.eval_every and step % args.eval_every == 0:
    point = {"step": step, **evaluate(eval_x[:args.eval_examples], args.eval_k)}
    record["curve"].append(point)
    print("eval", json.dumps(point), flush=True)
record["train_seconds"] = time.time() - start_time
record["step"] = step
with torch.no_grad():
  log_px, kl, path = elbo_terms(eval_x)
  active = int((enc[0](eval_x)[0].var(0) > 0.01).sum())
  record["final_eval"] = {"examples": len(eval_x), **evaluate(eval_x, args.eval_k)}
  if args.test_k and test_x is not None:
    record["final_test"] = {"examples": len(test_x), f"iw_k{args.test_k}":
                            iw_bound(test_x, args.test_k)}
record["active_units_z1"] = active
print(f"RESULT init={args.init} latent={latent} skips={args.skips and args.skip_init} "
      f"seed={args.seed} steps={args.steps} "
      + (f"hidden={hidden} " if isinstance(args.hidden, list) else "")
      + (f"method=hvae rho={args.rho} n={args.n} " if args.method == "hvae" else "")
      + (f"kl_warmup={args.kl_warmup_start}+{args.kl_warmup_steps} "
         if args.kl_warmup_start or args.kl_warmup_steps else "") +
      f"eval ELBO {(log_px - kl.sum(0)).mean().item():.1f} KL per layer "
      f"{[round(v, 2) for v in kl.mean(1).tolist()]} active units z1 {active}")
if args.json:
  with open(args.json, "w") as f:
    json.dump(record, f, indent=1)
