import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

# Tests compile the same tiny models in many processes (the experiment scripts run as
# subprocesses): a persistent compilation cache shared by them saves most compile time.
import tempfile  # pylint: disable=g-import-not-at-top,wrong-import-position

os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.join(tempfile.gettempdir(), "hermite_vae_test_jax_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.3")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
# The tests' models are tiny: compiling them dominates their time. XLA's backend
# optimizations (LLVM) are turned off for the suite, which compiles about twice as fast;
# every property tested compares programs compiled the same way.
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")


def pytest_collection_modifyitems(items):
  """The longest tests (they start subprocesses) first: under ``-n 2`` they then run
  beside the many short ones instead of after them."""
  first = ("test_multiprocess.py", "test_guarantees.py")
  items.sort(key=lambda item: 0 if os.path.basename(str(item.fspath)) in first else 1)
