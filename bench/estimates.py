"""Cost estimates: how many steps and roughly how long a planned run will take, before it runs.

They order the run queue (longest first, so the slowest runs do not start last) and give
``python -m bench suite --dry-run`` its table. The steps come from the run's plan
(``bench.run_plan.RunPlan``) with a known training-split size per dataset, so nothing is loaded;
the seconds from rough CPU figures, calibrated by the runs already in the store.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from bench.config import RunConfig
from bench.record import DONE
from bench.run_plan import RunPlan
from bench.slots import Slot
from bench.suite import LEARNED_FROM

# Rough single-thread CPU seconds per training step (at the workload's default batch size) and
# per evaluation (validation + test splits), by dataset prefix. Only their relative sizes matter
# much: they order the queue (longest first) and give a first time estimate on the CPU before the
# store holds measured runs. ``train_size`` is the whole training split a single run trains on
# (for the LSTM, in windows of 100 characters); a search's trials hold some out and take fewer.
_WORKLOAD_COSTS = {  # prefix: (train_size, step seconds, evaluation seconds)
    "mnist": (60_000, 0.01, 0.5),
    "fashion": (60_000, 0.01, 0.5),
    "cifar10s": (5_085, 0.6, 12.0),
    "cifar10": (50_000, 0.6, 120.0),
    "warpeace": (28_765, 0.15, 25.0),
}


def _workload_costs(workload: str) -> tuple[int, float, float]:
    return next((v for k, v in _WORKLOAD_COSTS.items() if workload.startswith(k)),
                (50_000, 0.05, 5.0))


def estimated_plan(config: RunConfig) -> RunPlan:
    """The run's plan, with the training split's size from ``_WORKLOAD_COSTS`` (no data loaded)."""
    size = _workload_costs(config.workload)[0]
    return RunPlan.from_epoch(config, _workload_class(config.workload),
                              lambda batch_size: max(1, math.ceil(size / batch_size)))


def estimate_steps(config: RunConfig) -> int:
    """Optimizer steps a run will take (a search: over all its trials), from its budget."""
    return max(1, round(estimated_plan(config).total_steps * _method_factor(config.method)))


def estimate_seconds(config: RunConfig) -> float:
    """A rough CPU time for a run: its steps plus its evaluations (see ``_WORKLOAD_COSTS``)."""
    cls = _workload_class(config.workload)
    _, step_s, eval_s = _workload_costs(config.workload)
    plan = estimated_plan(config)
    steps = estimate_steps(config)
    factor = _method_factor(config.method)
    evals = steps / plan.eval_every + factor  # one per interval, and one at each trial's end
    return steps * step_s * plan.batch_size / cls.batch_size + evals * eval_s


def _workload_class(name: str) -> Any:
    from bench.workloads import WORKLOADS

    return WORKLOADS[name]


def _method_factor(method: str) -> float:
    """A search's ``budget=k`` is k single-run budgets (``bench.methods.search``); others one."""
    from bench.methods import parse_method

    parsed = parse_method(method)
    if parsed.kind != "search":
        return 1.0
    return float(getattr(parsed, "args", {}).get("budget", 1.0))


def calibration(store: Any, device: str) -> dict[str, float]:
    """Per workload, measured wall time over ``estimate_seconds``: the median over stored runs.

    Multiplying an estimate by it turns the built-in CPU figures into this machine's and device's.
    """
    from datetime import datetime
    from statistics import median

    ratios: dict[str, list[float]] = {}
    for r in store.results(status=DONE):
        if r.config.get("device", "cpu").split(":")[0] != device.split(":")[0]:
            continue
        try:
            config = RunConfig.from_dict(r.config)
            wall = (datetime.fromisoformat(r.env["ended"]) -
                    datetime.fromisoformat(r.env["started"])).total_seconds()
            ratios.setdefault(config.workload, []).append(wall / estimate_seconds(config))
        except (KeyError, TypeError, ValueError):
            continue  # a record from another version of the harness: no calibration from it
    return {w: median(v) for w, v in ratios.items()}


def dry_run_text(name: str, plan: list[RunConfig], store_path: str | Path,
                 slots: list[Slot]) -> str:
    """The plan: runs per workload and method, their steps, and an estimated time.

    Time is the built-in CPU estimate (``estimate_seconds``), calibrated per workload by the runs
    already in the store when there are some (``calibration``); on a GPU without stored runs of a
    workload it is unknown.
    """
    from tabulate import tabulate

    from bench.store import open_store, store_exists

    device = slots[0].device
    stored: set[str] = set()
    factors: dict[str, float] = {}
    if store_exists(store_path):
        with open_store(store_path) as store:
            stored = {c.run_id for c in plan if store.has(c.run_id)}
            factors = calibration(store, device)
    rows: dict[tuple[str, str], list[Any]] = {}
    unknown = False
    for c in plan:
        key = (c.workload, f"plain re-run of {c.method}" if c.option(LEARNED_FROM) else c.method)
        row = rows.setdefault(key, [0, 0, 0, 0.0])
        row[0] += 1
        row[1] += c.run_id in stored
        row[2] += estimate_steps(c)
        factor = factors.get(c.workload, 1.0 if device == "cpu" else None)
        if c.run_id in stored:
            continue
        if factor is None:
            row[3], unknown = None, True
        elif row[3] is not None:
            row[3] += estimate_seconds(c) * factor
    table = [[w, m, n, s, f"{st:,}", "?" if t is None else _duration(t)]
             for (w, m), (n, s, st, t) in rows.items()]
    total_steps = sum(r[2] for r in rows.values())
    total_time = sum(r[3] or 0.0 for r in rows.values())
    todo = len(plan) - len(stored)
    head = (f"suite {name}: {len(plan)} runs ({todo} to train, {len(stored)} already stored), "
            f"{total_steps:,} steps in all, on {len(slots)} slots")
    source = (f"calibrated on the stored runs of {', '.join(sorted(factors))}" if factors
              else "rough built-in CPU figures; a store with past runs calibrates them")
    foot = (f"estimated time to train: {_duration(total_time)} of device time, about "
            f"{_duration(total_time / len(slots))} on {len(slots)} slots ({source})")
    if unknown:
        foot += "; '?': no stored runs of that workload on this device to estimate from"
    return "\n".join([head, tabulate(table, headers=["workload", "method", "runs", "stored",
                                                      "steps", "time"]), foot])


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
