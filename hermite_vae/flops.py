"""Counting the matmul FLOPs of a JAX function from its jaxpr (dot_general ops, including
those inside jit, custom_vjp, scan and cond), for achieved-FLOP/s measurements."""
from __future__ import annotations

import math

import jax
from jax.extend import core as jex_core


def _dot_flops(eqn) -> int:
  lhs, rhs = (v.aval for v in eqn.invars[:2])
  (lhs_contract, _), (lhs_batch, _) = eqn.params["dimension_numbers"]
  contract = math.prod(lhs.shape[d] for d in lhs_contract)
  out = math.prod(eqn.outvars[0].aval.shape)
  return 2 * out * contract


def _jaxpr_flops(jaxpr) -> int:
  total = 0
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "dot_general":
      total += _dot_flops(eqn)
    mult = eqn.params.get("length", 1) if eqn.primitive.name == "scan" else 1
    for param in eqn.params.values():
      for sub in (param if isinstance(param, (list, tuple)) else (param,)):
        if isinstance(sub, jex_core.ClosedJaxpr):
          total += mult * _jaxpr_flops(sub.jaxpr)
        elif isinstance(sub, jex_core.Jaxpr):
          total += mult * _jaxpr_flops(sub)
  return total


def matmul_flops(fn, *args, **kwargs) -> int:
  """Matmul FLOPs (2 x multiply-adds) of one call of ``fn(*args, **kwargs)``."""
  return _jaxpr_flops(jax.make_jaxpr(fn)(*args, **kwargs).jaxpr)
