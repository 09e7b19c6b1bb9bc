"""One table of runs (a pandas DataFrame, a row per run) that every section of a report reads.

Errors are shown in percent; bits per character as they are. A *setting* is the workload, with
the device kind appended when a result set holds more than one (``mnist-mlp (cuda)``), so that
numbers measured on different hardware are never averaged together.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from bench.config import device_kind
from bench.record import DONE, RunResult
from bench.report.structure import method_info

MIB = 2**20

COLUMNS = (
    "run_id", "workload", "device", "setting", "method", "seed", "budget", "status", "error",
    "diverged_step", "metric", "score", "val_score", "step_time", "memory", "memory_kind",
    "cost_steps", "cost_seconds", "family", "base", "height", "lr0", "template", "parent",
    "shared_gpu", "result",
)


def runs_frame(results: Iterable[RunResult]) -> pd.DataFrame:
    """A row per run with the columns in ``COLUMNS`` (``result`` holds the record itself)."""
    rows = [_row(r) for r in results]
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    if frame["device"].nunique() > 1:
        frame["setting"] = frame["workload"] + " (" + frame["device"] + ")"
    frame["template"] = _templates(frame)
    return frame.sort_values(["setting", "method", "seed"], kind="stable").reset_index(drop=True)


def _templates(frame: pd.DataFrame, points: int = 3) -> pd.Series:
    """Each run's template: the level-0 one, unless only the tied one forms a grid.

    ``sgd(0.1)/sgd(0.01)`` in a grid over the level-0 step size keeps ``sgd(·)/sgd(0.01)``; in a
    grid where every level starts at the same step size it becomes ``sgd(·)/sgd(·)``.
    """
    if frame.empty:
        return frame["template"]
    tied = frame["method"].map(lambda m: method_info(m).tied_template)
    lr0 = frame["lr0"]
    per_template = lr0.groupby([frame["setting"], frame["template"]]).transform("nunique")
    per_tied = lr0.groupby([frame["setting"], tied]).transform("nunique")
    use_tied = (per_template < points) & (per_tied >= points)
    return frame["template"].where(~use_tied, tied)


def _row(r: RunResult) -> dict[str, Any]:
    c, m = r.config, r.metrics
    info = method_info(str(c.get("method")))
    metric, score, val = _score(m)
    memory, memory_kind = _memory(r.memory)
    options = c.get("options") or {}
    return {
        "run_id": r.run_id,
        "workload": str(c.get("workload")),
        "device": device_kind(str(c.get("device", "cpu"))),
        "setting": str(c.get("workload")),
        "method": info.name,
        "seed": int(c.get("seed", 0)),
        "budget": budget_label(c.get("budget") or {}),
        "status": r.status,
        "error": r.error,
        "diverged_step": r.diverged_step,
        "metric": metric,
        "score": score,
        "val_score": val,
        "step_time": r.timing.get("step_time_median"),
        "memory": memory,
        "memory_kind": memory_kind,
        "cost_steps": r.cost.get("steps"),
        "cost_seconds": r.cost.get("device_seconds"),
        "family": info.family,
        "base": info.base,
        "height": info.height,
        "lr0": info.lr0,
        "template": info.template,
        "parent": options.get("parent"),
        "shared_gpu": int(options.get("jobs_per_gpu", 1) or 1) > 1,
        "result": r,
    }


def _score(metrics: dict[str, float]) -> tuple[str, float | None, float | None]:
    """The workload's metric: test error in percent, or bits per character."""
    if "test_bpc" in metrics:
        return "bpc", _finite(metrics.get("test_bpc")), _finite(metrics.get("val_bpc"))
    test, val = _finite(metrics.get("test_error")), _finite(metrics.get("val_error"))
    return "error", _pct(test), _pct(val)


def _memory(memory: dict[str, float]) -> tuple[float | None, str]:
    """CUDA peak on a GPU; on the CPU the optimizer's bytes (peak RSS is the whole process's)."""
    if memory.get("cuda_peak_bytes") is not None:
        return float(memory["cuda_peak_bytes"]), "CUDA peak allocated"
    if memory.get("optimizer_bytes") is not None:
        return float(memory["optimizer_bytes"]), "optimizer state and saved tensors"
    return None, ""


def _finite(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _pct(value: float | None) -> float | None:
    return None if value is None else 100.0 * value


def budget_label(budget: dict[str, Any]) -> str:
    """``{"steps": 200}`` -> ``200 steps``, as ``bench.config.Budget.label`` writes it."""
    parts = []
    if budget.get("steps") is not None:
        parts.append(f"{int(budget['steps'])} steps")
    if budget.get("epochs") is not None:
        parts.append(f"{float(budget['epochs']):g} epochs")
    if budget.get("seconds") is not None:
        parts.append(f"{float(budget['seconds']):g} s")
    return ", ".join(parts) or "workload default"


def done(frame: pd.DataFrame) -> pd.DataFrame:
    """The runs whose numbers are results (status ``done``)."""
    return frame[frame["status"] == DONE]


def metric_title(metric: str) -> str:
    return "test error (%)" if metric == "error" else "test bits per character"


def mean_std(values: Sequence[float] | pd.Series, digits: int = 2) -> str:
    """``2.13 ± 0.05`` (sample std; a single value has none); empty input gives ``—``."""
    v = np.asarray([x for x in values if x is not None and not pd.isna(x)], dtype=float)
    if v.size == 0:
        return "—"
    if v.size == 1:
        return f"{v[0]:.{digits}f}"
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}"


def num(value: Any, digits: int = 3) -> str:
    """A number in ``digits`` significant figures, ``—`` when absent."""
    if value is None or pd.isna(value):
        return "—"
    return f"{float(value):.{digits}g}"


def ratio(numerator: Any, denominator: Any) -> str:
    """``1.23×``, or ``—`` when either side is missing or the denominator is zero."""
    if numerator is None or denominator is None or pd.isna(numerator) or pd.isna(denominator):
        return "—"
    if denominator == 0:
        return "—"
    return f"{numerator / denominator:.2f}×"
