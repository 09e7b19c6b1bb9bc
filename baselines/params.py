"""Parameters that several baselines' signatures share (``baselines.spec``'s ``Param``), with
torch.optim's names and defaults."""

from __future__ import annotations

from typing import Any

from baselines.spec import Param, fraction, non_negative, positive, unit_interval

WEIGHT_DECAY = Param("weight_decay", default=0.0, check=non_negative, rule=">= 0")
BETAS = (
    Param("beta1", default=0.9, check=unit_interval, rule="in [0, 1)"),
    Param("beta2", default=0.999, check=unit_interval, rule="in [0, 1)"),
)
WARMUP = Param("warmup", default=0.0, check=fraction, rule="in [0, 1] (a fraction of training)")


def momentum_param(default: float) -> Param:
    """A momentum coefficient, in [0, 1)."""
    return Param("momentum", default=default, check=unit_interval, rule="in [0, 1)")


def positive_param(name: str, default: Any, **more: Any) -> Param:
    """A number that must be > 0 (``more``: ``Param``'s other fields, e.g. ``shown``, ``doc``)."""
    return Param(name, default=default, check=positive, rule="> 0", **more)
