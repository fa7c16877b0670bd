"""The matmuls of a JAX function, read from its jaxpr (dot_general ops, including those
inside jit, custom_vjp, scan and cond): their FLOP count for achieved-FLOP/s measurements,
and their shapes, so that a benchmark can time the same matmuls alone; and the memory of a
compiled function from XLA's memory analysis."""
from __future__ import annotations

import collections
import math
from typing import NamedTuple

import jax
from jax.extend import core as jex_core


class DotOp(NamedTuple):
  """One dot_general of a jaxpr: operand shapes/dtypes and its static parameters."""
  lhs: jax.ShapeDtypeStruct
  rhs: jax.ShapeDtypeStruct
  dimension_numbers: tuple
  preferred_element_type: object

  @property
  def flops(self) -> int:
    (lhs_contract, _), _ = self.dimension_numbers
    contract = math.prod(self.lhs.shape[d] for d in lhs_contract)
    out = jax.eval_shape(lambda a, b: jax.lax.dot_general(a, b, self.dimension_numbers),
                         self.lhs, self.rhs)
    return 2 * math.prod(out.shape) * contract


def _op(eqn) -> DotOp:
  lhs, rhs = (v.aval for v in eqn.invars[:2])
  dn = eqn.params["dimension_numbers"]
  dn = tuple(tuple(tuple(d) for d in pair) for pair in dn)
  return DotOp(jax.ShapeDtypeStruct(lhs.shape, lhs.dtype),
               jax.ShapeDtypeStruct(rhs.shape, rhs.dtype), dn,
               eqn.params.get("preferred_element_type"))


def _collect(jaxpr, mult: int, counts: collections.Counter) -> None:
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "dot_general":
      counts[_op(eqn)] += mult
    inner = mult * (eqn.params.get("length", 1) if eqn.primitive.name == "scan" else 1)
    for param in eqn.params.values():
      for sub in (param if isinstance(param, (list, tuple)) else (param,)):
        if isinstance(sub, jex_core.ClosedJaxpr):
          _collect(sub.jaxpr, inner, counts)
        elif isinstance(sub, jex_core.Jaxpr):
          _collect(sub, inner, counts)


def matmul_ops(fn, *args, **kwargs) -> collections.Counter:
  """``Counter[DotOp -> number of executions]`` of one call of ``fn(*args, **kwargs)``.

  Both branches of a ``cond`` are counted (an upper bound where one is not taken)."""
  counts = collections.Counter()
  _collect(jax.make_jaxpr(fn)(*args, **kwargs).jaxpr, 1, counts)
  return counts


def matmul_flops(fn, *args, **kwargs) -> int:
  """Matmul FLOPs (2 x multiply-adds) of one call of ``fn(*args, **kwargs)``."""
  return sum(op.flops * n for op, n in matmul_ops(fn, *args, **kwargs).items())


def matmuls_alone(ops: collections.Counter, key=None):
  """``(fn, operands)``: ``fn(operands)`` runs every matmul of ``ops`` (as often as it is
  counted, each on its own random operands, all results returned) and nothing else: the
  time the same matmuls need without the rest of the computation."""
  key = jax.random.PRNGKey(0) if key is None else key
  flat = [op for op, n in ops.items() for _ in range(n)]
  operands = []
  for i, op in enumerate(flat):
    k1, k2 = jax.random.split(jax.random.fold_in(key, i))
    operands.append((jax.random.normal(k1, op.lhs.shape, op.lhs.dtype),
                     jax.random.normal(k2, op.rhs.shape, op.rhs.dtype)))

  def fn(operands):
    return [jax.lax.dot_general(a, b, op.dimension_numbers,
                                preferred_element_type=op.preferred_element_type)
            for (a, b), op in zip(operands, flat)]

  return jax.jit(fn), operands


def compiled_memory_mib(compiled) -> dict | None:
  """XLA's memory analysis of a compiled function, in MiB: ``args``, ``temp`` (scratch)
  and ``peak`` = args + outputs - aliased (donated) + temp; None where the backend gives
  no analysis."""
  mem = compiled.memory_analysis()
  if mem is None:
    return None
  mib = 2**20
  return {"args_mib": mem.argument_size_in_bytes / mib,
          "temp_mib": mem.temp_size_in_bytes / mib,
          "peak_mib": (mem.argument_size_in_bytes + mem.output_size_in_bytes -
                       mem.alias_size_in_bytes + mem.temp_size_in_bytes) / mib}
