"""The package's import graph, read with ``ast``: no cycle (also none hidden in a
function-level import), and no model module reaching up into the objectives or trainer."""
import ast
import os

import hermite_vae

ROOT = os.path.dirname(hermite_vae.__file__)


def _module_name(path, root):
  rel = os.path.relpath(path, os.path.dirname(root))[:-3].replace(os.sep, ".")
  return rel[:-len(".__init__")] if rel.endswith(".__init__") else rel


def import_graph(root=ROOT):
  """{module: set of the package's modules it imports anywhere in its file}. ``from P
  import m`` with ``m`` a submodule counts as an import of ``P.m`` only (the package's
  ``__init__`` runs first, but only a name taken from it makes it a dependency)."""
  files = [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs if f.endswith(".py")]
  modules = {_module_name(p, root): p for p in files}
  graph = {}
  for name, path in modules.items():
    with open(path) as f:
      tree = ast.parse(f.read())
    deps = set()
    for node in ast.walk(tree):
      if isinstance(node, ast.Import):
        deps.update(a.name for a in node.names)
      elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        for a in node.names:
          sub = f"{node.module}.{a.name}"
          deps.add(sub if sub in modules else node.module)
    graph[name] = {d for d in deps if d in modules and d != name}
  return graph


def find_cycle(graph):
  """A list of modules forming a cycle, or None."""
  state, stack = {}, []

  def visit(node):
    state[node] = "open"
    stack.append(node)
    for dep in sorted(graph[node]):
      if state.get(dep) == "open":
        return stack[stack.index(dep):] + [dep]
      if dep not in state:
        found = visit(dep)
        if found:
          return found
    stack.pop()
    state[node] = "done"
    return None

  for node in sorted(graph):
    if node not in state:
      found = visit(node)
      if found:
        return found
  return None


def test_the_import_graph_has_no_cycle():
  graph = import_graph()
  assert "hermite_vae.train" in graph and "hermite_vae.workdir" in graph["hermite_vae.train"]
  assert find_cycle(graph) is None, find_cycle(graph)


def test_the_cycle_finder_finds_a_function_level_cycle(tmp_path):
  pkg = tmp_path / "hermite_vae"
  pkg.mkdir()
  (pkg / "__init__.py").write_text("")
  (pkg / "a.py").write_text("from hermite_vae import b\n")
  (pkg / "b.py").write_text("def f():\n  from hermite_vae import a\n")
  assert find_cycle(import_graph(str(pkg))) == ["hermite_vae.a", "hermite_vae.b",
                                                "hermite_vae.a"]


def test_no_model_module_imports_objectives_or_training():
  upward = {"hermite_vae.objectives", "hermite_vae.train", "hermite_vae.state",
            "hermite_vae.evaluation", "hermite_vae.diagnostics"}
  for name, deps in import_graph().items():
    if name.startswith("hermite_vae.models"):
      assert not deps & upward, (name, deps & upward)
