"""Dependent runs: the plain optimizer re-run with a parent tower's final learned values.

A dependent run is planned with ``learned_from = <parent run id>`` in its options; once the parent
is stored, ``resolve_dependent`` makes the concrete run (the parent's level-0 optimizer with its
learned hyperparameters, ``parent = <id>`` in its options).
"""

from __future__ import annotations

import re

from bench.config import RunConfig
from bench.errors import UserError
from bench.record import RunResult

__all__ = [
    "LEARNED_FROM", "is_hyperoptimized", "learned_values", "plain_method", "resolve_dependent",
]

# The option a dependent run carries until its parent's learned values are known.
LEARNED_FROM = "learned_from"


def _levels(spec: str) -> list[str]:
    """A tower spec's levels, leftmost first (``/`` outside brackets, ``hypergrad.grammar``)."""
    # Imported here: hypergrad's package imports torch, and loading a suite must not.
    from hypergrad.grammar import split_top

    return split_top(spec, "/", strict=False)


def is_hyperoptimized(method: str) -> bool:
    """A tower of height >= 1 (``/`` outside parentheses): its level-0 hyperparameters are learned.

    Schedules (``+``), HD, learning-rate-free and search methods have no top-level ``/``.
    """
    body = method.removeprefix("gdtuo:")
    return len(_levels(body)) > 1


def learned_values(result: RunResult) -> dict[str, float]:
    """The parent's final level-0 learned hyperparameters, ``{"lr": ..., "beta1": ...}``.

    Per-group or per-tensor values (``hyper/0.lr[3]``) have no single plain counterpart and are
    left out.
    """
    out = {}
    for key, value in result.metrics.items():
        m = re.fullmatch(r"hyper/0\.(\w+)", key)
        if m:
            out[m.group(1)] = float(value)
    return out


def plain_method(parent_method: str, values: dict[str, float]) -> str:
    """The parent's level-0 optimizer as a height-0 method, its hyperparameters set to ``values``.

    ``adam(lr=1e-3)/sgd(1e-5)`` with ``{"lr": 0.0021}`` gives ``adam(lr=0.0021)``; keyword
    arguments of level 0 that were not learned are kept, a leading positional one (the step size)
    is replaced when ``lr`` was learned. What the level above learned (``learn=``, ``lr_per=``, or
    a ``^...`` marker) is dropped: nothing is above it any more.
    """
    prefix = ""
    body = parent_method
    if body.startswith("gdtuo:"):
        prefix, body = "gdtuo:", body[len("gdtuo:"):]
    from hypergrad.grammar import split_call

    head, args = split_call(_levels(body)[0])
    m = re.fullmatch(r"([\w.\-]+)(\^[^()]*)?", head)
    if not m:
        raise UserError(f"cannot read the level-0 optimizer of {parent_method!r}")
    name = m.group(1)
    kept: dict[str, str] = {}
    for i, arg in enumerate(args):
        if "=" in arg:
            k, v = (s.strip() for s in arg.split("=", 1))
            if k not in ("learn", "lr_per"):  # what a level above learns: no level above now
                kept[k] = v
        elif i == 0:
            kept["lr"] = arg
    for k, v in values.items():
        # Six significant digits: the learned values as the paper reports them, and a short name.
        kept[k] = format(float(f"{v:.6g}"), "g")
    ordered = (["lr"] if "lr" in kept else []) + sorted(k for k in kept if k != "lr")
    return f"{prefix}{name}({', '.join(f'{k}={kept[k]}' for k in ordered)})"


def resolve_dependent(config: RunConfig, parent: RunResult) -> RunConfig:
    """The concrete run of a dependent ``config`` once its parent's result is stored.

    Raises:
        UserError: the parent learned nothing that can be re-run (no ``hyper/0.*`` metrics).
    """
    values = learned_values(parent)
    if not values:
        raise UserError(f"run {parent.run_id} ({config.method}) recorded no level-0 learned "
                        "hyperparameters (metrics hyper/0.*); its plain re-run cannot be made")
    from bench.methods import parse_method

    method = parse_method(plain_method(config.method, values)).name
    options = {k: v for k, v in config.options if k != LEARNED_FROM}
    options["parent"] = config.option(LEARNED_FROM)
    return RunConfig(config.workload, method, config.seed, config.budget, config.device,
                     tuple(sorted(options.items())))
