"""An independent PyTorch implementation of the MLP hierarchical VAE, to check results of
the library that look like properties of the model (it imports nothing from hermite_vae).

Same model as ``configs/mnist_mlp.py`` with ``method=vae``: two tanh layers of ``--hidden``
units before every Gaussian layer, scale = 3 tanh(softplus(raw) / 3) + 1e-3, top layer
N(0, I), Bernoulli decoder; Adam 1e-3, batch 100, global-norm clipping 100, dynamic
binarization; the first 9,000 MNIST test digits for training, the last 1,000 (binarized
once) for evaluation. ``--init``: torch (PyTorch's default), lecun (truncated normal of
variance 1/fan_in, zero biases: Flax's default) or small_heads (lecun, with the Gaussian
heads' kernels divided by sqrt(d) and the scale bias at scale 1: the library's default).

    pip install torch numpy
    python experiments/reference/torch_vae.py --data_dir=../shared/data/mnist \
      --latent=200,200,200 --init=small_heads --steps=3000 --seed=0
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
args = p.parse_args()
torch.manual_seed(args.seed)
rng = np.random.default_rng(args.seed)
with gzip.open(os.path.join(args.data_dir, "t10k-images-idx3-ubyte.gz")) as f:
  images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 784) / 255.0
train_x = torch.tensor(images[:9000], dtype=torch.float32)
eval_x = torch.tensor(np.random.default_rng(1234).random((1000, 784)) < images[9000:],
                      dtype=torch.float32)
latent = [int(v) for v in args.latent.split(",")]
UNIT_RAW = math.log(math.expm1(3 * math.atanh((1 - 1e-3) / 3)))   # raw giving scale 1


def linear(n_in, n_out, head=False):
  layer = nn.Linear(n_in, n_out)
  if args.init != "torch":
    std = 1 / math.sqrt(n_in * (n_out if head and args.init == "small_heads" else 1))
    nn.init.trunc_normal_(layer.weight, std=std / 0.87962566, a=-2 * std / 0.87962566,
                          b=2 * std / 0.87962566)
    nn.init.zeros_(layer.bias)
  return layer


class Gaussian(nn.Module):
  def __init__(self, n_in, d):
    super().__init__()
    self.trunk = nn.Sequential(linear(n_in, args.hidden), nn.Tanh(),
                               linear(args.hidden, args.hidden), nn.Tanh())
    self.loc, self.raw = linear(args.hidden, d, True), linear(args.hidden, d, True)
    if args.init == "small_heads":
      nn.init.constant_(self.raw.bias, UNIT_RAW)

  def forward(self, h):
    h = self.trunk(h)
    return self.loc(h), 3 * torch.tanh(nn.functional.softplus(self.raw(h)) / 3) + 1e-3


def log_normal(z, loc, scale):
  return (-0.5 * ((z - loc) / scale) ** 2 - scale.log() - 0.5 * math.log(2 * math.pi)).sum(-1)


enc = nn.ModuleList([Gaussian(n, d) for n, d in zip([784] + latent[:-1], latent)])
gen = nn.ModuleList([Gaussian(latent[i + 1], latent[i]) for i in range(len(latent) - 1)])
dec = nn.Sequential(linear(latent[0], args.hidden), nn.Tanh(), linear(args.hidden, args.hidden),
                    nn.Tanh(), linear(args.hidden, 784))
params = list(enc.parameters()) + list(gen.parameters()) + list(dec.parameters())
opt = torch.optim.Adam(params, lr=1e-3)


def elbo_terms(x):
  h, path = x, []
  for q in enc:
    loc, scale = q(h)
    h = loc + scale * torch.randn_like(loc)
    path.append((h, loc, scale))
  log_px = -nn.functional.binary_cross_entropy_with_logits(dec(path[0][0]), x,
                                                           reduction="none").sum(-1)
  kls = [log_normal(*path[i]) - log_normal(path[i][0], *gen[i](path[i + 1][0]))
         for i in range(len(latent) - 1)]
  _, loc, scale = path[-1]
  kls.append((0.5 * (loc ** 2 + scale ** 2 - 1) - scale.log()).sum(-1))
  return log_px, torch.stack(kls), path


with torch.no_grad():
  print("initial KL per layer", [round(v, 1) for v in elbo_terms(eval_x)[1].mean(1).tolist()])
for step in range(1, args.steps + 1):
  x = torch.bernoulli(train_x[torch.tensor(rng.integers(0, 9000, 100))])
  log_px, kl, _ = elbo_terms(x)
  loss = -(log_px - kl.sum(0)).mean()
  opt.zero_grad()
  loss.backward()
  nn.utils.clip_grad_norm_(params, 100.0)
  opt.step()
  if step % 1000 == 0:
    print(f"step {step} train ELBO {-loss.item():.1f} KL {kl.mean(1).tolist()}")
with torch.no_grad():
  log_px, kl, path = elbo_terms(eval_x)
  active = int((enc[0](eval_x)[0].var(0) > 0.01).sum())
print(f"RESULT init={args.init} latent={latent} seed={args.seed} steps={args.steps} "
      f"eval ELBO {(log_px - kl.sum(0)).mean().item():.1f} KL per layer "
      f"{[round(v, 2) for v in kl.mean(1).tolist()]} active units z1 {active}")
