"""The result record: what one run produced, as the store keeps it and the report reads it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

# The fixed set of run statuses. Only ``done`` is a result; the others are recorded and shown.
DONE = "done"
DIVERGED = "diverged"
FAILED = "failed"
INTERRUPTED = "interrupted"
STATUSES = (DONE, DIVERGED, FAILED, INTERRUPTED)
# Results worth keeping: a store never lets a ``failed`` or ``interrupted`` record replace one of
# these (a forced re-run that crashes, or a second invocation dying, loses nothing).
KEPT = (DONE, DIVERGED)


@dataclass
class RunResult:
    """One run's record.

    Attributes:
        run_id: ``RunConfig.run_id``.
        config: ``RunConfig.to_dict()``.
        status: one of ``STATUSES``.
        metrics: final numbers, keyed ``{split}_{name}``: ``test_error``, ``test_loss``,
            ``val_error``, ``val_loss``, ``train_loss`` (``*_bpc`` for the language model);
            errors are fractions in [0, 1]. Final learned hyperparameters as ``hyper/{name}``.
        curves: ``eval``: a list of dicts (``step``, ``epoch``, ``cost_steps``, ``cost_seconds``,
            and the metrics above at that point); ``train_loss``: ``[[step, loss], ...]``;
            ``hyper``: ``{name: [[step, value], ...]}``; search methods add ``trials`` and
            ``best_so_far`` (``[{cost_steps, cost_seconds, val_error, test_error}, ...]``).
        timing: ``step_time_median``, ``step_time_p10``, ``step_time_p90`` (seconds),
            ``timed_steps``, ``warmup_steps``, ``train_seconds`` (sum of timed step durations).
        memory: ``cuda_peak_bytes`` on a GPU; ``optimizer_bytes`` (state and saved tensors) and
            ``peak_rss_bytes`` on the CPU.
        cost: ``steps`` and ``device_seconds`` everything this run trained (a search: all trials).
        env: ``device_name``, ``torch``, ``cuda``, ``commit``, ``host``, ``python``,
            ``started``, ``ended`` (ISO 8601, UTC).
        error: why a run failed or diverged (one line), else ``None``.
        diverged_step: the step at which a non-finite loss or parameter appeared.
    """

    run_id: str
    config: dict[str, Any]
    status: str
    metrics: dict[str, float] = field(default_factory=dict)
    curves: dict[str, Any] = field(default_factory=dict)
    timing: dict[str, float] = field(default_factory=dict)
    memory: dict[str, float] = field(default_factory=dict)
    cost: dict[str, float] = field(default_factory=dict)
    env: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    diverged_step: int | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, but got {self.status!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunResult:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})
