"""Memory of one training step, from XLA's memory analysis of the trainer's compiled
dispatch (``train.make_train_steps``, one step per dispatch), per preset and method.
Nothing is allocated or run: the state and batch are abstract shapes.

    python experiments/memory.py --presets=mnist_resnet,cifar10_resnet \
        --batch_sizes=32,64 --methods=vae,hvae,hvae_sequential
    python experiments/memory.py --presets=mnist_mlp --methods=vae,hvae,hvae_jacobian \
        --num_ou_samples=5

``hvae_sequential`` and ``hvae_chained`` are the ``hvae`` preset with ``ou_sequential=True``
and ``ou_chain_layers=True`` (``lab.presets.HVAE_SCHEDULES``). ``args`` is the
state (parameters, Adam moments, step) plus the batch, ``temp`` XLA's scratch space
(activations kept for the backward pass and intermediate values); ``peak`` is
args + outputs - aliased (donated) + temp, per device (the batch is split over devices).
"""
import jax
import jax.numpy as jnp

from absl import app, flags  # pylint: disable=g-multiple-import
from hermite_vae import config_lib, train
from hermite_vae.data import registry
from hermite_vae.models.mlp import count_params
from hermite_vae import state as state_lib
from lab.flops import compiled_memory_mib
from lab.presets import METHODS, method_config

flags.DEFINE_list("presets", ["mnist_resnet", "cifar10_resnet"], "Model configs of configs/.")
flags.DEFINE_list("batch_sizes", [], "Global batch size per preset (default: the config's).")
flags.DEFINE_list("methods", ["vae", "hvae", "hvae_sequential"],
                  f"Methods of {METHODS}.")
flags.DEFINE_integer("num_ou_samples", 0, "n of the hvae rows (0: the config's).")
FLAGS = flags.FLAGS


def step_memory(config) -> dict:
  """MiB of the compiled training step for ``config`` (one step per dispatch)."""
  shape = registry.get_spec(config.dataset).image_shape
  num_pixels = shape[0] * shape[1] * shape[2]
  model = state_lib.create_model(config, num_pixels)
  tx = state_lib.create_optimizer(config)
  state = jax.eval_shape(lambda k: state_lib.create_train_state(model, tx, k, num_pixels),
                         jax.random.PRNGKey(0))
  xs = jax.ShapeDtypeStruct((1, config.batch_size) + shape, jnp.float32)
  fn = train.make_train_steps(model, tx, config, state_lib.make_mesh())
  mem = compiled_memory_mib(fn.lower(state, xs, jax.random.PRNGKey(0)).compile())
  if mem is None:
    raise RuntimeError(f"{jax.devices()[0].platform} gives no XLA memory analysis")
  return dict(mem, parameters=count_params(state.params))


def main(argv):
  del argv
  if FLAGS.batch_sizes and len(FLAGS.batch_sizes) != len(FLAGS.presets):
    raise app.UsageError("--batch_sizes needs one value per preset")
  print(f"{jax.devices()[0].platform}, {jax.device_count()} device(s), JAX {jax.__version__}")
  print("| preset | batch | method | parameters | args MiB | temp MiB | peak MiB | vs vae |")
  print("|---|---|---|---|---|---|---|---|")
  for i, preset in enumerate(FLAGS.presets):
    base = None
    for method in FLAGS.methods:
      config = method_config(preset, method)
      config.steps_per_dispatch = 1
      if FLAGS.num_ou_samples:
        config.num_ou_samples = FLAGS.num_ou_samples
      if FLAGS.batch_sizes:
        config.batch_size = int(FLAGS.batch_sizes[i])
      config_lib.validate(config)
      m = step_memory(config)
      base = base or (m["peak_mib"] if method == "vae" else None)
      ratio = f"{m['peak_mib'] / base:.2f}" if base else "–"
      print(f"| {preset} | {config.batch_size} | {method} | {m['parameters']:,} | "
            f"{m['args_mib']:.2f} | {m['temp_mib']:.2f} | {m['peak_mib']:.2f} | {ratio} |",
            flush=True)


if __name__ == "__main__":
  app.run(main)
