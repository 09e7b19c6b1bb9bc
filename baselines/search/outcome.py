"""What a trial function returns, what a search returns, and the trial statuses they carry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CUT", "DIVERGED", "DONE", "FAILED", "PRUNED", "SearchOutcome", "TrialFn", "TrialOutcome",
]

# Trial statuses kept in the trial's user attributes ("status"); only "done" can be selected.
DONE, PRUNED, CUT, DIVERGED, FAILED = "done", "pruned", "cut", "diverged", "failed"


@dataclass
class TrialOutcome:
    """What a trial function returns: its status (``done``, ``diverged`` or ``failed``), its
    validation and test metric (lower is better), its whole cost, and a record to keep."""

    status: str
    value: float | None
    test: float | None
    cost_steps: float
    cost_seconds: float
    record: dict[str, Any] = field(default_factory=dict)


@dataclass
class SearchOutcome:
    """A finished (or budget-exhausted) search.

    Attributes:
        trials: one dict per trial, by number: ``number``, ``params``, ``status``, ``value``,
            ``test``, ``cost_steps``, ``cost_seconds``, ``record``.
        best: the selected trial (lowest validation value among ``done`` trials) or ``None``.
        best_so_far: after each trial, ``cost_steps``, ``cost_seconds`` (cumulative),
            ``trials`` (how many so far), ``value`` and ``test`` of the best so far (or None).
        cost_steps, cost_seconds: the sums over every trial.
        total: the budget in its unit (None while unknown); ``resumed``: trials read back.
    """

    trials: list[dict[str, Any]]
    best: dict[str, Any] | None
    best_so_far: list[dict[str, Any]]
    cost_steps: float
    cost_seconds: float
    total: float | None
    resumed: int


TrialFn = Callable[[dict[str, float], Callable[[int, float, float, float], bool]], TrialOutcome]
