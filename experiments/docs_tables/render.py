"""Markdown from rows, and the regeneration of the generated blocks of a page.

A generated block sits between ``<!-- BEGIN GENERATED: name -->`` and
``<!-- END GENERATED: name -->``; ``render`` replaces everything between the two.
"""
from __future__ import annotations

import re
from typing import Callable, Mapping, Optional, Sequence

BLOCK = re.compile(r"(<!-- BEGIN GENERATED: (?P<name>[\w-]+) -->\n)(?P<body>.*?)"
                   r"(<!-- END GENERATED: (?P=name) -->)", re.S)


def layers(n) -> str:
  """'z1..z{n}', the per-layer header of ``n`` layers (an int, or a symbol such as 'L')."""
  return f"z1..z{n}"


def row(cells: Sequence) -> str:
  """One Markdown table line: '| c1 | c2 | ... |'."""
  return "| " + " | ".join(str(c) for c in cells) + " |"


def table(header: Sequence[str], rows: Sequence[Optional[Sequence]]) -> str:
  """The Markdown table of ``header`` and ``rows`` (each a sequence of cells; ``None`` is
  a blank spacer line '| | ... |'), its '|---|' separator generated from the header;
  one line each, ending in a newline."""
  blank = "|" + " |" * len(header)
  lines = [row(header), "|" + "---|" * len(header)]
  lines += [blank if r is None else row(r) for r in rows]
  return "\n".join(lines) + "\n"


def render(text: str, tables: Mapping[str, Callable[[], str]]) -> str:
  """``text`` with the body of every generated block named ``name`` replaced by
  ``tables[name]()``; a block whose name ``tables`` lacks raises KeyError."""
  def sub(m):
    name = m.group("name")
    if name not in tables:
      raise KeyError(f"generated block {name!r} has no entry in experiments/tables.py")
    return m.group(1) + tables[name]() + m.group(4)
  return BLOCK.sub(sub, text)
