r"""How a learned hyperparameter is kept valid: its value is a function of a raw number.

The level above descends the raw number, which may take any value; the value in use is
``forward(raw)``. As in the paper (and its code, ``gdtuo``): :math:`\beta_1, \beta_2, \gamma`
through :math:`(\tanh x + 1)/2` (:data:`UNIT`), RMSProp's step size stored as its square root
(:data:`SQUARE`), every other value as it is (:data:`IDENTITY`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor


@dataclass(frozen=True)
class Parametrisation:
    """How a learned hyperparameter is kept valid: ``value = f(raw)``.

    Attributes:
        name: a short label.
        forward: raw tensor -> (value, d value / d raw), elementwise.
        number: the same for one Python float (the CPU path).
        inverse: value -> raw (tensors).
    """

    name: str
    forward: Callable[[Tensor], tuple[Tensor, Tensor]]
    number: Callable[[float], tuple[float, float]]
    inverse: Callable[[Tensor], Tensor]


def _unit(x: Tensor) -> tuple[Tensor, Tensor]:
    t = x.tanh()
    return (t + 1.0) / 2.0, (1.0 - t * t) / 2.0  # gdtuo's clamp, and its autograd derivative


def _unit_number(x: float) -> tuple[float, float]:
    t = math.tanh(x)
    return (t + 1.0) / 2.0, (1.0 - t * t) / 2.0


def _unit_inverse(y: Tensor) -> Tensor:
    z = y * 2.0 - 1.0
    return ((1.0 + z) / (1.0 - z)).log() / 2.0  # gdtuo's unclamp, operation for operation


def _identity(x: Tensor) -> tuple[Tensor, Tensor]:
    return x.clone(), torch.ones_like(x)


def _identity_number(x: float) -> tuple[float, float]:
    return x, 1.0


def _square(x: Any) -> tuple[Any, Any]:
    return x * x, x * 2.0


IDENTITY = Parametrisation("identity", _identity, _identity_number, torch.clone)
SQUARE = Parametrisation("square", _square, _square, torch.sqrt)
"""The value is the square of the raw number (the paper's RMSProp step size)."""
UNIT = Parametrisation("unit", _unit, _unit_number, _unit_inverse)
"""The value is ``(tanh(raw) + 1) / 2``, always in (0, 1) (the paper's betas and gamma)."""
