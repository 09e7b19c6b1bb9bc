"""Small arithmetic shared by the families' kernels.

Hyperparameters reach a kernel as Python floats (fixed ones, and learned ones on the CPU) or as
tensors (learned ones on an accelerator), and the float path must be ``torch.optim``'s operation
for operation: these helpers take either and pick torch's spelling for a number. The inner
products (:data:`Inner`) are what a family's ``_vjp`` reduces a Jacobian column with.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor


def axmy_(y: Tensor, x: Tensor, a: float | Tensor) -> Tensor:
    """``y -= a * x`` in place (torch's ``param.add_(d, alpha=-lr)`` for a number)."""
    if isinstance(a, Tensor):
        return y.addcmul_(x, a, value=-1)
    return y.add_(x, alpha=-a)


def fdiv(a: float | Tensor, b: float | Tensor) -> float | Tensor:
    """``a / b`` with IEEE semantics for Python numbers: inf or nan where ``b == 0``.

    On the CPU learned values are Python floats, on the GPU 0-d tensors. A hyperparameter pushed
    onto its boundary (a learned beta rounded to exactly 1) must give the same result on both: a
    non-finite update, which a training loop reports as divergence, not a ``ZeroDivisionError``.
    """
    if isinstance(a, Tensor) or isinstance(b, Tensor) or b != 0:
        return a / b
    if a == 0 or math.isnan(a):
        return math.nan
    return math.copysign(math.inf, a) * math.copysign(1.0, b)


_SMALL = 4096


def dot(a: Tensor, b: Tensor) -> Tensor:
    """The 0-d inner product of two same-shaped tensors.

    Small CUDA tensors (the levels above 0 hold a few numbers) are multiplied and summed rather
    than handed to cuBLAS: those levels are captured as a CUDA graph on a side stream
    (:mod:`hypergrad._graph`), and cuBLAS would keep a workspace of 32 MiB for that stream.
    """
    if a.is_cuda and a.numel() <= _SMALL:
        return torch.mul(a, b).sum()
    if a.dim() == 1:
        return torch.dot(a, b)
    if a.is_contiguous() and b.is_contiguous():
        return torch.dot(a.view(-1), b.view(-1))
    return (a * b).sum()


def dot_total(a: Tensor, b: Tensor) -> Tensor:
    """``dot``, passed when the caller adds up the contributions of all tensors (every tensor
    shares the learned value): a family may then return one total (from :class:`Flat`)."""
    return dot(a, b)


def dot_number(a: Tensor, b: Tensor) -> float:
    """The inner product as a Python float (the CPU path: reading it costs nothing there)."""
    return dot(a, b).item()


def inner_all(inner: Inner, xs: list[Tensor], ys: list[Tensor]) -> list[Any]:
    """``inner(x, y)`` of each pair. As Python numbers (:func:`dot_number`), read from the
    tensors at once: a read (``.item()``) per pair costs more than the product itself on a
    model of many small tensors."""
    if inner is dot_number and len(xs) > 1:
        return torch.stack([dot(x, y) for x, y in zip(xs, ys, strict=True)]).tolist()
    return [inner(x, y) for x, y in zip(xs, ys, strict=True)]


def times(a: Tensor, b: Tensor) -> Tensor:
    """The elementwise product: the "inner product" of a value learned per element."""
    return a * b


Inner = Callable[[Tensor, Tensor], Any]
"""``dot`` (a 0-d tensor), ``dot_number`` (a float, on the CPU) or ``times`` (elementwise, for a
value learned per element). The families combine what it returns with operators only."""


def keep(state: dict[str, Any], key: str, value: Tensor) -> None:
    """Save a copy of ``value`` in ``state[key]``, into the buffer already there after the first
    step (what a hypergradient needs at the next step, when ``value`` may be gone)."""
    saved = state.get(key)
    if saved is None:
        state[key] = value.detach().clone()
    else:
        saved.copy_(value)


def bias_correction(beta: float | Tensor, t: int | Tensor) -> float | Tensor:
    r""":math:`1 - \beta^t`. A fixed ``beta`` with a step counter on the device (the levels above
    0 on the tensor path) takes :math:`-\mathrm{expm1}(t \ln\beta)`: in float32,
    ``1 - beta**t`` would lose the digits that rounding ``beta`` to float32 costs (0.999 is
    off by 1.3e-5 relative in ``1 - beta``)."""
    if isinstance(t, Tensor) and not isinstance(beta, Tensor):
        if beta == 0:
            return 1.0
        return torch.expm1(t * math.log(beta)).neg_()
    return 1 - beta**t


def as_dtype(x: float | Tensor, like: Tensor) -> float | Tensor:
    """A learned 0-d value in the dtype of the tensors it scales (the raw vector may be wider)."""
    return x.to(like.dtype) if isinstance(x, Tensor) and x.dtype != like.dtype else x
