"""The checks of an optimizer's arguments, shared by the families: numbers, the standard error
message (``adam: lr must be > 0, but got lr=-1.0``), and ``torch.optim``'s switches.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from torch import Tensor

from hypergrad._errors import HypergradError, UnsupportedError

SWITCHES = ("foreach", "fused", "capturable", "differentiable")
"""``torch.optim``'s implementation switches: accepted with torch's meaning where the tower can
honour it, never part of a spec."""

LR_PER = ("optimizer", "group", "tensor")
"""Where a learned step size lives: one for the optimizer, one per param group, one per tensor.
The default (``lr_per=None``) is one for the optimizer when every param group starts at the same
value, else one per group (per learned hyperparameter: each is shared while the groups agree)."""


def as_number(value: Any, name: str, owner: str) -> float:
    """A hyperparameter given as an int/float (or a 0-d tensor), as a float; bools are refused."""
    if isinstance(value, Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise HypergradError(f"{owner}: {name} must be a number, but got {name}={value!r}")
    return float(value)


def check(ok: bool, owner: str, name: str, rule: str, value: Any) -> None:
    """Raise the standard error when ``ok`` is false: ``adam: lr must be > 0, but got lr=-1.0``."""
    if not ok:
        raise HypergradError(f"{owner}: {name} must be {rule}, but got {name}={value!r}")


def positive(value: float) -> bool:
    return math.isfinite(value) and value > 0.0


def non_negative(value: float) -> bool:
    return math.isfinite(value) and value >= 0.0


def checked_number(config: dict[str, Any], name: str, owner: str,
                   test: Callable[[float], bool] = non_negative, rule: str = ">= 0") -> float:
    """``config[name]`` as a number (:func:`as_number`) that passes ``test``, else the standard
    error naming ``rule``."""
    value = as_number(config[name], name, owner)
    check(test(value), owner, name, rule, value)
    return value


def check_switches(owner: str, config: dict[str, Any]) -> dict[str, Any]:
    """The switches of torch's (``maximize`` and :data:`SWITCHES`) that ``config`` gives, checked:
    accepted at the values a tower honours, refused with :class:`UnsupportedError` at the others.
    """
    out: dict[str, Any] = {}
    o = owner
    if "maximize" in config:
        check(isinstance(config["maximize"], bool), o, "maximize", "true or false",
              config["maximize"])
        out["maximize"] = config["maximize"]
    if "foreach" in config:
        foreach = config["foreach"]
        check(foreach is None or isinstance(foreach, bool), o, "foreach",
              "None, True or False", foreach)
        out["foreach"] = foreach
    if "fused" in config:
        fused = config["fused"]
        if fused:
            raise UnsupportedError(
                f"{o}: fused=True is not supported: hypergrad has no fused kernels; use "
                "fused=None or False (on an accelerator each param group already steps as "
                "one flat vector, a few kernels per step)")
        check(fused is None or fused is False, o, "fused", "None or False", fused)
        out["fused"] = fused
    for name, why in (("capturable", "the tower replays its levels above 0 as a CUDA graph "
                       "itself (Tower.cuda_graphs); capture level 0 with torch.compile"),
                      ("differentiable", "a tower computes its hypergradients in closed "
                       "form; what learns the hyperparameters is the level above (hyper=)")):
        if name in config:
            value = config[name]
            if value:
                raise UnsupportedError(
                    f"{o}: {name}=True is not supported ({why}); use {name}=False")
            check(value is False, o, name, "False", value)
            out[name] = False
    return out
