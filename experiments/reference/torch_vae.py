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
"""
import argparse, gzip, math, os  # noqa: E401
import numpy as np
import torch
from torch import nn

p = argparse.ArgumentParser()
p.add_argument("--data_dir", required=True)
p.add_argument("--latent", default="200,200,200")
p.add_argument("--hidden", type=int, default=200)
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
args = p.parse_args()
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
latent = [int(v) for v in args.latent.split(",")]
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
  """Two tanh layers; the first reads [h, context]."""
  def __init__(self, n_in, extra=0):
    super().__init__()
    self.l0, self.l1 = linear(n_in, args.hidden, extra=extra), linear(args.hidden, args.hidden)

  def forward(self, h, ctx=None):
    h = h if ctx is None else torch.cat([h, ctx], -1)
    return torch.tanh(self.l1(torch.tanh(self.l0(h))))


class Gaussian(nn.Module):
  def __init__(self, n_in, d, extra=0):
    super().__init__()
    self.trunk = Trunk(n_in, extra)
    self.loc, self.raw = linear(args.hidden, d, True), linear(args.hidden, d, True)
    if args.init == "small_heads":
      nn.init.constant_(self.raw.bias, UNIT_RAW)

  def forward(self, h, ctx=None):
    h = self.trunk(h, ctx)
    raw = nn.functional.softplus(self.raw(h))
    return self.loc(h), (raw if args.scale == "softplus" else 3 * torch.tanh(raw / 3)) + 1e-3


def log_normal(z, loc, scale):
  return (-0.5 * ((z - loc) / scale) ** 2 - scale.log() - 0.5 * math.log(2 * math.pi)).sum(-1)


enc = nn.ModuleList([Gaussian(n, d) for n, d in zip([784] + latent[:-1], latent)])
L, H = len(latent), args.hidden
ctx_size = lambda j: H if args.skips and j <= L else 0    # size of the state S_j (1-based)
gen = nn.ModuleList([Gaussian(latent[i + 1], latent[i], ctx_size(i + 3)) for i in range(L - 1)])
dec_trunk, dec_out = Trunk(latent[0], ctx_size(2)), linear(H, 784)
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


def elbo_terms(x):
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
  _, loc, scale = path[-1]
  kls.append((0.5 * (loc ** 2 + scale ** 2 - 1) - scale.log()).sum(-1))
  return log_px, torch.stack(kls), path


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
      log_px, kl, _ = elbo_terms(xb.repeat(m, 1))   # sampled KL terms: log p(x|z) - sum kl
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


record = {"args": vars(args), "curve": [], "stopped": None}
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
  log_px, kl, _ = elbo_terms(x)
  loss = -(log_px - kl.sum(0)).mean()
  if not torch.isfinite(loss):
    record["stopped"] = f"non-finite loss at step {step}"
    print(record["stopped"], flush=True)
    break
  opt.zero_grad()
  loss.backward()
  if args.clip:
    nn.utils.clip_grad_norm_(params, args.clip)
  opt.step()
  if step % 1000 == 0:
    print(f"step {step} train ELBO {-loss.item():.1f} KL {kl.mean(1).tolist()}", flush=True)
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
      f"eval ELBO {(log_px - kl.sum(0)).mean().item():.1f} KL per layer "
      f"{[round(v, 2) for v in kl.mean(1).tolist()]} active units z1 {active}")
if args.json:
  with open(args.json, "w") as f:
    json.dump(record, f, indent=1)
