"""The library against the independent PyTorch reference (``torch_vae.py``), with the
same numbers fed to both: where do the two 4 x 40 MLP VAEs part?

    python experiments/reference/cross_check.py --data_dir=../shared/data/mnist
    python experiments/reference/cross_check.py --data_dir=../shared/data/mnist --workdir=W
    python experiments/reference/cross_check.py --data_dir=../shared/data/mnist --train --seed=S
    python experiments/reference/cross_check.py --data_dir=../shared/data/mnist --lockstep=1000

Default: the loss and every kernel gradient of the library's VAE objective and of the
reference's, for the library's initial parameters, one batch and the same posterior
noise (the library's noise, read off its sampled path). ``--workdir``: the reference's
ELBO of a trained library checkpoint (MLP, no skips) on the library's evaluation digits.
``--train``: the reference's training loop started from the library's initial
parameters of ``--seed`` (its own batches and noise). ``--lockstep=N``: N steps of the
library's trainer and of the reference's update side by side from the same initial
parameters, on the library's batches with the library's posterior noise; prints how far
the two parameter sets drift apart. Needs ``torch``.
"""
import argparse, gzip, os, sys  # noqa: E401

import jax
import jax.numpy as jnp
import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(os.path.dirname(HERE)), os.path.dirname(HERE)]
from hermite_vae import objectives, rng, train  # noqa: E402
from hermite_vae import workdir as workdir_lib  # noqa: E402
from hermite_vae.data.batches import binarize_once  # noqa: E402
from hermite_vae.models import hierarchy  # noqa: E402
from hermite_vae import state as state_lib  # noqa: E402
from lab.presets import method_config  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--data_dir", required=True)
p.add_argument("--workdir", default="")
p.add_argument("--train", action="store_true")
p.add_argument("--lockstep", type=int, default=0)
p.add_argument("--steps", type=int, default=2000)
p.add_argument("--seed", type=int, default=0)
args = p.parse_args()
sys.argv = [sys.argv[0], f"--data_dir={args.data_dir}", "--latent=40,40,40,40",
            f"--steps={args.steps}", f"--seed={args.seed}"]
source = open(os.path.join(HERE, "torch_vae.py")).read()
model_part, training_part = source.split("# ---- training", 1)
training_part = training_part.split("\n", 1)[1]      # past the marker line
ref = {"__name__": "torch_vae"}
exec(compile(model_part, "torch_vae.py", "exec"), ref)   # pylint: disable=exec-used

if args.workdir:
  config = workdir_lib.load_run_config(args.workdir)
  model, params, step = workdir_lib.restore_params(args.workdir, config, 784)
else:
  config = method_config("mnist_mlp", "vae")
  model, tx = state_lib.create_model(config, 784), state_lib.create_optimizer(config)
  state = state_lib.create_train_state(model, tx, rng.run_keys(args.seed)["init"],
                                   784)                    # the trainer's init key
  params = state.params
pairs = []                                                 # (torch Linear, library path)
for prefix, stack in (("q_z", ref["enc"]), ("p_z", ref["gen"])):
  for i, layer in enumerate(stack):
    name = f"{prefix}{i + 1}"
    pairs += [(layer.trunk.l0, (name, "mlp", "dense_0")), (layer.trunk.l1, (name, "mlp", "dense_1")),
              (layer.loc, (name, "loc")), (layer.raw, (name, "scale"))]
pairs += [(ref["dec_trunk"].l0, ("p_x", "mlp", "dense_0")),
          (ref["dec_trunk"].l1, ("p_x", "mlp", "dense_1")), (ref["dec_out"], ("p_x", "logits"))]
at = lambda tree, path: tree[path[0]] if len(path) == 1 else at(tree[path[0]], path[1:])
with torch.no_grad():
  for linear, path in pairs:
    linear.weight.copy_(torch.tensor(np.asarray(at(params, path)["kernel"])).T)
    linear.bias.copy_(torch.tensor(np.asarray(at(params, path)["bias"])))


def use_library_noise(path):
  """The reference's next draws of posterior noise are the library's, read off ``path``."""
  noise = iter([torch.tensor(np.asarray((z - loc) / scale)) for z, loc, scale in path])
  torch.randn_like = lambda _: next(noise)


def largest_relative_difference(tree, torch_kernel):
  """max over layers of max |library kernel - torch_kernel(linear)| / max |torch_kernel|."""
  return max(float(np.abs(np.asarray(at(tree, path)["kernel"]).T - torch_kernel(linear)).max()
                   / np.abs(torch_kernel(linear)).max()) for linear, path in pairs)


def lockstep(state):
  import functools  # pylint: disable=g-import-not-at-top
  from hermite_vae import data  # pylint: disable=g-import-not-at-top
  loaded = data.load("mnist", "files", args.data_dir, "test[:9000]", "test[9000:]")
  batches = data.TrainBatches(loaded.train, config.batch_size, "dynamic", args.seed,
                              state_lib.make_mesh())
  base_key = rng.run_keys(args.seed)["train"]   # the trainer's
  step_fn = jax.jit(functools.partial(
      train.train_step, model=model, tx=tx, cfg=objectives.ObjectiveConfig.from_config(config),
      stop_on_nonfinite=True, grad_clip_norm=float(config.grad_clip_norm)))
  encode = jax.jit(lambda q, x, k: hierarchy.encode_path(model, q, x, k))
  for step in range(args.lockstep):
    x = batches(step)
    use_library_noise(encode(state.params, x, rng.terms_keys(jax.random.fold_in(base_key, step))[0]))
    log_px, kl, _ = ref["elbo_terms"](torch.tensor(np.asarray(x).reshape(len(x), 784)))
    loss = -(log_px - kl.sum(0)).mean()
    ref["opt"].zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(ref["params"], float(config.grad_clip_norm))
    ref["opt"].step()
    state, metrics = step_fn(state, x, base_key)
    if (step + 1) % max(1, args.lockstep // 10) == 0:
      drift = largest_relative_difference(state.params, lambda l: l.weight.detach().numpy())
      print(f"step {step + 1}: loss library {float(metrics['loss']):.3f}, reference "
            f"{loss.item():.3f}; largest relative kernel difference {drift:.1e}", flush=True)


if args.lockstep:
  lockstep(state)
elif args.train:
  exec(compile(training_part, "torch_vae.py", "exec"), ref)  # pylint: disable=exec-used
elif args.workdir:
  with gzip.open(os.path.join(args.data_dir, "t10k-images-idx3-ubyte.gz")) as f:
    images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 784)
  x = torch.tensor(binarize_once(images[9000:]).astype(np.float32))   # the library's digits
  torch.manual_seed(0)
  with torch.no_grad():
    elbos = [(lambda t: (t[0] - t[1].sum(0)).mean().item())(ref["elbo_terms"](x))
             for _ in range(10)]
  print(f"step {step}: reference ELBO of the library's parameters {np.mean(elbos):.2f} "
        f"(10 draws, sd {np.std(elbos):.2f}); compare the library's elbo_nats of this checkpoint")
else:
  x = (jax.random.uniform(jax.random.PRNGKey(7), (100, 784)) < 0.3).astype(jnp.float32)
  key, cfg = jax.random.PRNGKey(11), objectives.ObjectiveConfig.from_config(config)
  loss, grads = jax.value_and_grad(
      lambda q: objectives.loss_and_metrics(q, model, x, key, 0, cfg)[0])(params)
  use_library_noise(hierarchy.encode_path(model, params, x, rng.terms_keys(key)[0]))
  log_px, kl, _ = ref["elbo_terms"](torch.tensor(np.asarray(x)))
  ref_loss = -(log_px - kl.sum(0)).mean()
  ref_loss.backward()
  rel = largest_relative_difference(grads, lambda l: l.weight.grad.numpy())
  print(f"loss: library {float(loss):.4f}, reference {ref_loss.item():.4f}; largest relative "
        f"kernel-gradient difference over {len(pairs)} layers: {rel:.1e}")
