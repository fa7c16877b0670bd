"""The README's Python examples run as written."""
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_readme_python_blocks_run():
  text = open(os.path.join(ROOT, "README.md")).read()
  blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
  assert blocks
  for block in blocks:
    exec(compile(block, "README.md", "exec"), {})  # pylint: disable=exec-used


def test_ci_runs_the_readme_test_command():
  readme = open(os.path.join(ROOT, "README.md")).read()
  ci = open(os.path.join(ROOT, ".ci", "run")).read()
  command = re.search(r"python -m pytest[^\n`]*", readme).group(0)
  assert command in ci
