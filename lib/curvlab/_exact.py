"""One switch between a method's training-time gradient and the network's true derivatives.

Some layers (``isaac.Linear``, ``isaac.Conv2d``) change what backward returns for their weights: the
preconditioned direction ζ*, not the true gradient. Curvature products, Jacobians and Hessians must
see the network function itself. The curvature core enters :func:`exact_derivatives` around every
evaluation it differentiates; such layers read :func:`exact_derivatives_active` and then compute a
plain ``F.linear`` / ``F.conv2d`` whose derivatives are exact to any order.

The switch lives in the core so that the core needs to know nothing about the methods (methods
depend on the core, never the other way round).
"""
from __future__ import annotations

import contextlib
import contextvars

__all__ = ["exact_derivatives", "exact_derivatives_active"]

_EXACT = contextvars.ContextVar("curvlab_exact_derivatives", default=False)


@contextlib.contextmanager
def exact_derivatives():
    """Within this block, layers with modified gradients behave as their plain counterparts."""
    token = _EXACT.set(True)
    try:
        yield
    finally:
        _EXACT.reset(token)


def exact_derivatives_active() -> bool:
    """True inside :func:`exact_derivatives`."""
    return _EXACT.get()
