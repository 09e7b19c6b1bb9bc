"""A run's derived numbers: batch size, steps per epoch, total steps, evaluation cadence.

The one place they are worked out from a ``RunConfig``, its workload's defaults and the size of
an epoch: the training loop (``bench.train``) plans with the loaded training split, a search
(``bench.methods.search``) sizes its budget with it, and the scheduler's cost estimates
(``bench.estimates``) plan with a known split size, before any data is loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.config import RunConfig
from bench.errors import UserError

HYPER_SAMPLES = 200  # default number of hyperparameter samples along a run
# A run has diverged when its training loss is not finite, or above this many times the loss of
# its first step (floored at 1): a blown-up run often stays finite (tanh saturates, softmax
# gradients are bounded), and training it on wastes the budget. ``diverge_factor`` overrides it
# (``inf`` turns the test off).
DIVERGE_FACTOR = 100.0


@dataclass(frozen=True)
class RunPlan:
    """The derived numbers of a run (all in steps), printed by the CLI before it starts."""

    batch_size: int
    steps_per_epoch: int
    total_steps: int
    eval_every: int
    hyper_every: int
    check_every: int
    warmup_steps: int
    diverge_factor: float
    seconds: float | None

    @classmethod
    def make(cls, config: RunConfig, workload: Any, data: Any) -> RunPlan:
        """The plan of a run on ``data`` (its training split sets the steps per epoch)."""
        return cls.from_epoch(config, workload,
                              lambda batch_size: workload.steps_per_epoch(data.train, batch_size))

    @classmethod
    def from_epoch(cls, config: RunConfig, workload: Any,
                   steps_per_epoch: Callable[[int], int]) -> RunPlan:
        """The plan of a run whose epoch takes ``steps_per_epoch(batch_size)`` steps.

        Args:
            workload: anything with the workload's ``batch_size`` and ``epochs`` (an instance
                or its class).

        Raises:
            UserError: an option (``batch_size``, ``eval_every``, ...) out of its range.
        """
        batch_size = _positive_int(config, "batch_size", workload.batch_size)
        epoch = steps_per_epoch(batch_size)
        budget = config.budget
        if budget.steps is not None:
            total = int(budget.steps)
        else:
            epochs = budget.epochs if budget.epochs is not None else workload.epochs
            total = max(1, round(epochs * epoch))
        eval_epochs = _positive_number(config, "eval_every", 1.0)
        return cls(
            batch_size=batch_size,
            steps_per_epoch=epoch,
            total_steps=total,
            eval_every=max(1, round(eval_epochs * epoch)),
            hyper_every=_positive_int(config, "hyper_every", max(1, total // HYPER_SAMPLES)),
            check_every=_positive_int(config, "check_every", 10),
            warmup_steps=_positive_int(config, "warmup_steps", 5, allow_zero=True),
            diverge_factor=_positive_number(config, "diverge_factor", DIVERGE_FACTOR),
            seconds=budget.seconds,
        )


def _positive_int(config: RunConfig, key: str, default: int, *, allow_zero: bool = False) -> int:
    value = config.option(key, default)
    low = 0 if allow_zero else 1
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise UserError(f"option {key} must be an integer >= {low}, but got {key}={value!r}")
    return value


def _positive_number(config: RunConfig, key: str, default: float) -> float:
    value = config.option(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise UserError(f"option {key} must be a number > 0, but got {key}={value!r}")
    return float(value)
