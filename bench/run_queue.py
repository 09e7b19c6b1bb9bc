"""The run queue: a suite's plan against a store, in the order the runs should train.

Both executors, the local scheduler (``bench.scheduler``) and the Ray executor
(``bench.executors.ray_executor``), take their runs from a ``RunQueue`` and hand back how each
ended, so that they plan, order and count alike:

- A run already in the store (``has``: done or diverged) is counted stored, not queued.
- A dependent run (a plain re-run of a tower with its learned values, option ``LEARNED_FROM``)
  waits for its parent's result; once the parent is stored it is resolved into its concrete run
  (``resolve_rerun``) and queued, or skipped with the reason.
- Longest first (estimated cost), so the slowest runs do not start last.

``resolve_rerun`` is also what ``bench report`` asks to tell a re-run that will never train from
one still to come.
"""

from __future__ import annotations

import heapq
from typing import Any

from bench.config import RunConfig
from bench.errors import UserError
from bench.estimates import estimate_seconds
from bench.progress import Progress, Summary, describe
from bench.record import DIVERGED, DONE, RunResult
from bench.slots import Slot
from bench.suite import LEARNED_FROM, resolve_dependent


def resolve_rerun(dependent: RunConfig, parent: RunResult | None) -> tuple[RunConfig | None, str]:
    """A planned re-run's concrete run, once its parent (``LEARNED_FROM``) has a record.

    Returns:
        ``(config, "")``, or ``(None, why)`` when it cannot be made: the parent is missing or
        not done, or its learned values make no valid run.
    """
    if parent is None or parent.status != DONE:
        status = parent.status if parent else "missing"
        return None, f"its parent {dependent.option(LEARNED_FROM)} is {status}"
    try:
        return resolve_dependent(dependent, parent), ""
    except UserError as e:
        return None, str(e)


class RunQueue:
    """The runs of a plan still to train, and the summary of what became of each.

    Args:
        progress: where skipped and finished runs are reported; its ``total`` (runs to train)
            shrinks when a waiting dependent turns out to need no training.
    """

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.store: Any = None
        self.summary = Summary()
        self.heap: list[tuple[float, str, int, int, RunConfig]] = []
        self.waiting: dict[str, list[RunConfig]] = {}  # parent id -> its dependents
        self.costs: dict[str, float] = {}
        self.order = 0

    @property
    def pending(self) -> bool:
        """Runs queued, or waiting for a parent that is still to finish."""
        return bool(self.heap or self.waiting)

    def prepare(self, plan: list[RunConfig], store: Any) -> int:
        """Queue what ``store`` does not hold yet; returns how many runs will train (dependents
        counted)."""
        self.store = store
        self.summary = Summary(planned=len(plan))
        planned_ids = {c.run_id for c in plan}
        to_train = 0
        for config in plan:
            parent = config.option(LEARNED_FROM)
            if parent is None:
                if store.has(config.run_id):
                    self.summary.stored += 1
                else:
                    self.push(config)
                    to_train += 1
            elif store.has(parent):
                to_train += self.release(config)
            elif parent in planned_ids:
                self.waiting.setdefault(parent, []).append(config)
                to_train += 1
            else:
                self.skip(config, f"its parent {parent} is neither stored nor planned")
        return to_train

    def push(self, config: RunConfig) -> None:
        """Queue ``config`` (again: a run another invocation held goes back in)."""
        cost = self.costs.setdefault(config.run_id, estimate_seconds(config))
        self.order += 1
        # Longest first; among equals, runs on the same data (workload and seed: the split)
        # together, so a worker's data cache keeps hitting instead of cycling through seeds.
        heapq.heappush(self.heap, (-cost, config.workload, config.seed, self.order, config))

    def pop(self) -> RunConfig | None:
        """The longest queued run, or ``None``."""
        return heapq.heappop(self.heap)[-1] if self.heap else None

    def release(self, dependent: RunConfig) -> int:
        """Its parent is stored: queue the dependent's concrete run (1) or skip it (0)."""
        config, why = resolve_rerun(dependent, self.store.get(dependent.option(LEARNED_FROM)))
        if config is None:
            self.skip(dependent, why)
            return 0
        if self.store.has(config.run_id):
            self.summary.stored += 1
            return 0
        self.push(config)
        return 1

    def release_dependents(self, parent_id: str) -> None:
        """A parent has its result: queue (or skip) the runs that waited for it."""
        for dependent in self.waiting.pop(parent_id, []):
            if not self.release(dependent):
                self.progress.total -= 1

    def skip(self, config: RunConfig, why: str) -> None:
        self.summary.skipped.append(f"{describe(config)}: {why}")
        self.progress.line(f"skipped {describe(config)}: {why}")

    def finished(self, slot: Slot, config: RunConfig, status: str, error: str | None,
                 seconds: float) -> None:
        """``config`` ended with ``status`` (its record stored): count it, report it, and queue
        what waited for it."""
        if status == DONE:
            self.summary.done += 1
        elif status == DIVERGED:
            self.summary.diverged += 1
        else:
            self.summary.failed += 1
        self.summary.trained.append(config.run_id)
        self.summary.run_seconds += seconds
        self.progress.finished(slot, config, status, error, seconds)
        self.release_dependents(config.run_id)

    def stored_elsewhere(self, config: RunConfig) -> None:
        """Another invocation stored ``config`` meanwhile: count it stored, free its
        dependents."""
        self.summary.stored += 1
        self.progress.total -= 1
        self.progress.line(f"stored by another invocation: {describe(config)}")
        self.release_dependents(config.run_id)
