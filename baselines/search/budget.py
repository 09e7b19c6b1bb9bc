"""The budget of a search: a multiple of one full run, in steps or measured device-seconds."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["UNITS", "SearchBudget"]

UNITS = ("steps", "seconds")


@dataclass(frozen=True)
class SearchBudget:
    """``runs`` x one full run, counted in ``unit`` (``steps`` or device-``seconds``).

    ``per_run`` is one full run's cost in that unit; ``None`` (seconds only) measures it from the
    first trial that completes. ``run_steps`` is one full run's number of steps (a report at that
    step is a trial's last: never stopped, never pruned).
    """

    runs: float
    unit: str
    run_steps: int
    per_run: float | None

    def __post_init__(self) -> None:
        if not self.runs > 0:
            raise ValueError(f"budget must be > 0 (a multiple of one run), but got {self.runs}")
        if self.unit not in UNITS:
            raise ValueError(f"unit must be one of {', '.join(UNITS)}, but got {self.unit!r}")
        if self.unit == "steps" and self.per_run is None:
            raise ValueError("a budget in steps needs per_run (one run's steps)")
