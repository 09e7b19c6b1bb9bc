"""What a suite's invocation reports while it trains: the summary of what it did, and the
progress lines (or, on a terminal, tqdm bars) of each slot. The local scheduler and the Ray
executor report through the same ``Progress``, so their output reads the same."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

from bench.config import RunConfig
from bench.record import DONE
from bench.slots import Slot
from bench.suite import LEARNED_FROM


@dataclass
class Summary:
    """What a scheduler run did."""

    planned: int = 0
    stored: int = 0  # already in the store, skipped
    done: int = 0
    diverged: int = 0
    failed: int = 0
    skipped: list[str] = field(default_factory=list)  # dependents that could not be made
    interrupted: int = 0  # running when stopped, discarded
    trained: list[str] = field(default_factory=list)  # run ids trained (any final status)
    workers: int = 0  # trained side by side (0: the executor cannot say, e.g. a Ray cluster)
    run_seconds: float = 0.0  # the trained runs' wall times, summed

    @property
    def finished(self) -> int:
        return self.done + self.diverged + self.failed

    def efficiency(self, seconds: float) -> float | None:
        """The scheduler's efficiency over a suite of ``seconds``: the runs' wall times over
        workers × ``seconds`` (1.0: no worker ever waited, for start-up, for a run or idle at
        the end); ``None`` when there is nothing to say."""
        if self.workers <= 0 or seconds <= 0 or not self.finished:
            return None
        return self.run_seconds / (self.workers * seconds)


def describe(config: RunConfig) -> str:
    """One short line naming a run."""
    parent = config.option(LEARNED_FROM)
    method = f"plain re-run of {config.method}" if parent else config.method
    return f"{config.workload} {method} seed={config.seed} [{config.budget.label()}]"


class Progress:
    """Runs done, failed and remaining, and what each slot is doing.

    On a terminal: tqdm bars (one for the suite, one line per slot). Elsewhere (logs, CI, the
    tests): one line per event on stdout, flushed.
    """

    def __init__(self, slots: list[Slot], *, live: bool | None = None) -> None:
        self.slots = slots
        self.live = sys.stdout.isatty() if live is None else live
        self.total = 0
        self.summary: Summary | None = None
        self.bars: dict[str, Any] = {}

    def start(self, summary: Summary, to_train: int) -> None:
        self.summary, self.total = summary, to_train
        self.line(f"plan: {summary.planned} runs, {summary.stored} already stored, "
                  f"{to_train} to train on {len(self.slots)} slots "
                  f"({', '.join(s.name for s in self.slots)})")
        if self.live:
            from tqdm import tqdm

            self.bars["all"] = tqdm(total=to_train, unit="run", position=0, dynamic_ncols=True)
            for i, slot in enumerate(self.slots, 1):
                self.bars[slot.name] = tqdm(total=0, position=i, bar_format="{desc}",
                                            desc=f"  {slot.name}: idle")

    def line(self, text: str) -> None:
        if self.live and "all" in self.bars:
            self.bars["all"].write(text)
        else:
            print(text, flush=True)

    def counts(self) -> str:
        s = self.summary
        assert s is not None
        left = self.total - s.finished
        return f"{s.finished}/{self.total} finished, {s.failed} failed, {left} left"

    def busy(self, slot: Slot, pid: int, config: RunConfig) -> None:
        if self.live:
            self.bars[slot.name].set_description_str(f"  {slot.name}: {describe(config)}")
        else:
            self.line(f"start [{slot.name} pid={pid}] {config.run_id} {describe(config)}")

    def step(self, slot: Slot, config: RunConfig, step: int, total: int) -> None:
        if self.live:
            self.bars[slot.name].set_description_str(
                f"  {slot.name}: {describe(config)} step {step}/{total}")

    def finished(self, slot: Slot, config: RunConfig, status: str, error: str | None,
                 seconds: float) -> None:
        why = f": {error}" if error and status != DONE else ""
        text = (f"{status} [{slot.name}] {config.run_id} {describe(config)} "
                f"in {seconds:.1f} s{why} ({self.counts()})")
        if self.live:
            self.bars[slot.name].set_description_str(f"  {slot.name}: idle")
            self.bars["all"].update(1)
            s = self.summary
            assert s is not None
            self.bars["all"].set_postfix_str(f"failed={s.failed}, left={self.total - s.finished}")
            if status != DONE:
                self.line(text)
        else:
            self.line(text)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
        self.bars.clear()
