"""The results store's schema, written once for both databases: its tables, their columns, and
how a ``RunResult`` becomes a row and comes back from one.

SQLite (``bench.store.sqlite``) turns the tables into DDL text, PostgreSQL
(``bench.store.postgres``) into SQLAlchemy tables; the columns and the JSON text of the record's
dictionaries are the same in both, so an export or a report cannot tell the stores apart.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bench.record import RunResult

# The schema this code writes and reads (SQLite's ``PRAGMA user_version``; 0 is a file from
# before it was recorded, whose columns are the same).
SCHEMA_VERSION = 1
# The record's dictionaries, stored as ``json.dumps`` text (floats come back bit for bit, NaN
# included), in the record's field order.
JSON_FIELDS = ("config", "metrics", "curves", "timing", "memory", "cost", "env")


@dataclass(frozen=True)
class Column:
    """One column. ``type`` is ``text``, ``integer``, ``real`` or ``timestamp`` (set by the
    database to the time of each write)."""

    name: str
    type: str
    nullable: bool = False
    primary_key: bool = False


@dataclass(frozen=True)
class Table:
    """A table and its indexes (``(name, columns)``)."""

    name: str
    columns: tuple[Column, ...]
    indexes: tuple[tuple[str, tuple[str, ...]], ...] = ()


# One row per run: the record's scalars, its dictionaries as JSON, when it was last written.
RUNS = Table(
    "runs",
    (
        Column("run_id", "text", primary_key=True),
        Column("workload", "text"),
        Column("method", "text"),
        Column("seed", "integer"),
        Column("status", "text"),
        *(Column(name, "text") for name in JSON_FIELDS),
        Column("error", "text", nullable=True),
        Column("diverged_step", "integer", nullable=True),
        Column("created", "timestamp"),
    ),
    indexes=(("runs_workload_method", ("workload", "method")),),
)
# Which invocation trains a run, and when it last said it was alive (``ResultStore.claim``).
LEASES = Table(
    "leases",
    (
        Column("run_id", "text", primary_key=True),
        Column("owner", "text"),
        Column("heartbeat", "real"),
    ),
)
TABLES = (RUNS, LEASES)
COLUMNS = tuple(column.name for column in RUNS.columns)
# What a put writes (every column but ``created``, which the database sets) and what a read
# needs to rebuild the record.
WRITTEN = COLUMNS[:-1]
READ = ("run_id", "status", *JSON_FIELDS, "error", "diverged_step")


def to_row(result: RunResult) -> dict[str, Any]:
    """``result`` as the values of ``WRITTEN``, in that order."""
    config = result.config
    return {
        "run_id": result.run_id,
        "workload": config.get("workload", ""),
        "method": config.get("method", ""),
        "seed": int(config.get("seed", 0)),
        "status": result.status,
        **{name: json.dumps(getattr(result, name), sort_keys=True) for name in JSON_FIELDS},
        "error": result.error,
        "diverged_step": result.diverged_step,
    }


def from_row(row: Mapping[str, Any]) -> RunResult:
    """The record a row of ``READ`` holds."""
    return RunResult(
        run_id=row["run_id"],
        status=row["status"],
        error=row["error"],
        diverged_step=row["diverged_step"],
        **{name: json.loads(row[name]) for name in JSON_FIELDS},
    )
