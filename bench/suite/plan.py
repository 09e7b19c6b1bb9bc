"""A loaded suite and its groups, expanded into the plan of runs (each once, parents before
their dependents)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.config import Budget, RunConfig
from bench.suite.dependent import LEARNED_FROM, is_hyperoptimized

__all__ = ["Group", "Suite"]


@dataclass(frozen=True)
class Group:
    """One ``[[group]]`` of a suite, defaults applied and ``vary`` expanded."""

    label: str
    workloads: tuple[str, ...]
    methods: tuple[str, ...]
    seeds: tuple[int, ...]
    budgets: tuple[Budget, ...]
    options: tuple[tuple[str, Any], ...] = ()
    rerun_learned: bool = False
    line: int = 0

    def configs(self, seeds: tuple[int, ...] | None, device: str,
                extra: dict[str, Any] | None = None) -> list[RunConfig]:
        """The group's runs: workloads x methods x seeds x budgets, dependents after parents.

        ``extra`` options (the scheduler's) are added to every run before ids are taken, so a
        dependent's ``learned_from`` names its parent's final id.
        """
        options = tuple(sorted((dict(self.options) | (extra or {})).items()))
        out: list[RunConfig] = []
        dependents: list[RunConfig] = []
        for workload, method, seed, budget in itertools.product(
            self.workloads, self.methods, seeds or self.seeds, self.budgets
        ):
            config = RunConfig(workload, method, seed, budget, device, options)
            out.append(config)
            if self.rerun_learned and is_hyperoptimized(method):
                dependents.append(config.with_options(**{LEARNED_FROM: config.run_id}))
        return out + dependents


@dataclass(frozen=True)
class Suite:
    """A loaded suite: its name, description, file and groups."""

    name: str
    description: str
    path: Path
    groups: tuple[Group, ...] = field(default_factory=tuple)

    def plan(
        self,
        seeds: tuple[int, ...] | list[int] | None = None,
        device: str = "cpu",
        jobs_per_gpu: int = 1,
    ) -> list[RunConfig]:
        """Every run of the suite, each once, parents before their dependents.

        Args:
            seeds: replaces every group's seeds when given (``--seeds``).
            device: ``"cpu"`` or ``"cuda"`` (the index is the scheduler's business).
            jobs_per_gpu: runs sharing one GPU; above 1 (on a GPU) it is recorded in each run's
                options, so it is part of the id: shared timings never stand in for exclusive ones.
        """
        seeds = tuple(seeds) if seeds else None
        extra: dict[str, Any] = {}
        if jobs_per_gpu > 1 and device.startswith("cuda"):
            extra["jobs_per_gpu"] = jobs_per_gpu
        seen: set[str] = set()
        plan: list[RunConfig] = []
        for group in self.groups:
            for config in group.configs(seeds, device, extra):
                if config.run_id not in seen:
                    seen.add(config.run_id)
                    plan.append(config)
        return plan
