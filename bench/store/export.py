"""A store's runs as a flat table (CSV or Parquet): one row per run, a column per config field,
status, metric, timing, memory and cost number. The same table from every store."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

from bench.errors import UserError
from bench.record import RunResult

EXPORT_FORMATS = ("csv", "parquet")


def write_export(results: list[RunResult], path: str | os.PathLike[str],
                 format: str = "csv") -> Path:
    """Write ``results`` as flat rows (``flat_row``) to ``path`` (its folder is created)."""
    if format not in EXPORT_FORMATS:
        raise UserError(f"unknown export format {format!r}; valid formats: csv, parquet")
    rows = [flat_row(r) for r in results]
    columns = _columns(rows)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if format == "csv":
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        data = {c: _uniform([row.get(c) for row in rows]) for c in columns}
        pq.write_table(pa.table(data), path)
    return path


def flat_row(result: RunResult) -> dict[str, Any]:
    """One run as flat columns (``metric.test_error``, ``timing.step_time_median``, ...)."""
    config = result.config
    row: dict[str, Any] = {
        "run_id": result.run_id,
        "workload": config.get("workload"),
        "method": config.get("method"),
        "seed": config.get("seed"),
        "device": config.get("device"),
    }
    for key, value in sorted((config.get("budget") or {}).items()):
        row[f"budget_{key}"] = value
    row["options"] = json.dumps(config.get("options") or {}, sort_keys=True)
    row["status"] = result.status
    row["error"] = result.error
    row["diverged_step"] = result.diverged_step
    for prefix, values in (
        ("metric", result.metrics),
        ("timing", result.timing),
        ("memory", result.memory),
        ("cost", result.cost),
    ):
        for key, value in sorted(values.items()):
            row[f"{prefix}.{key}"] = value
    row["env.commit"] = result.env.get("commit")
    row["env.device_name"] = result.env.get("device_name")
    row["env.started"] = result.env.get("started")
    return row


def _uniform(values: list[Any]) -> list[Any]:
    """A column with ints and floats mixed becomes floats (parquet columns have one type)."""
    kinds = {type(v) for v in values if v is not None}
    if kinds == {int, float}:
        return [None if v is None else float(v) for v in values]
    if len(kinds) > 1:
        return [None if v is None else str(v) for v in values]
    return values


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    """The union of the rows' keys, in first-seen order (fixed columns first)."""
    seen: dict[str, None] = {}
    for row in rows:
        for key in row:
            seen.setdefault(key, None)
    return list(seen)
