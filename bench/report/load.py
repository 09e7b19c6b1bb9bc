"""Reading result sets: a SQLite store, or an exported file (JSON lines, CSV, parquet).

The JSON-lines export is the complete record (``RunResult.to_dict()`` per line, curves, status,
error and environment included) in a stable order with sorted keys: it is the format of the
baselines committed to the repository, because it diffs line by line in review, needs no
database to read, and keeps everything ``bench compare`` and ``bench report`` use. CSV and
parquet (``python -m bench export``) are flat: they keep final numbers but no curves, so a report
made from them has no figures of curves.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bench.errors import UserError
from bench.record import STATUSES, RunResult

JSONL_SUFFIXES = (".jsonl", ".ndjson")
FLAT_SUFFIXES = (".csv", ".parquet")
_SQLITE_MAGIC = b"SQLite format 3\x00"

# Sections of a record that hold a flat ``{name: number}`` dict, in flat exports as columns
# named ``{section}.{name}`` (``bench.store.flat_row`` writes ``metric.test_error``,
# ``budget_steps``; ``{section}/{name}`` is accepted too).
_SECTIONS = ("metrics", "timing", "memory", "cost", "env", "budget", "options")
_ALIASES = {"metric": "metrics", "config": "config"}


def load_results(source: str | Path) -> list[RunResult]:
    """Every run record in ``source``: a store (SQLite file or database URL) or an export.

    Raises:
        UserError: the file is missing, or is neither a store nor a known export format.
    """
    if _is_url(source):
        return read_store(source)
    path = Path(source)
    if not path.is_file():
        raise UserError(
            f"results file {str(path)!r} does not exist; give a store (.sqlite) or an export "
            f"(.jsonl, .csv, .parquet) made by `python -m bench export`"
        )
    suffix = path.suffix.lower()
    if suffix in JSONL_SUFFIXES:
        return read_jsonl(path)
    if suffix in FLAT_SUFFIXES:
        return read_flat(path)
    with path.open("rb") as f:
        if f.read(len(_SQLITE_MAGIC)) != _SQLITE_MAGIC:
            raise UserError(
                f"{str(path)!r} is not a results store (SQLite) nor an export; valid export "
                f"suffixes: {', '.join(JSONL_SUFFIXES + FLAT_SUFFIXES)}"
            )
    return read_store(path)


def read_store(location: str | Path) -> list[RunResult]:
    """Every record of a store: a SQLite file (which must exist: it is not created) or a URL."""
    from bench.store import open_store, store_exists  # reading an export needs no store

    if not store_exists(location):
        raise UserError(f"no results store at {str(location)!r}; run a suite or give an export")
    store = open_store(location, readonly=True)
    try:
        return list(store.results())
    finally:
        store.close()


def _is_url(source: str | Path) -> bool:
    """A database URL (``sqlite:///...``, ``postgresql+psycopg://...``) rather than a file."""
    return isinstance(source, str) and "://" in source


def write_jsonl(results: Iterable[RunResult], path: str | Path, *, curves: bool = True) -> Path:
    """Write records as JSON lines, sorted by (workload, method, seed, run id), keys sorted.

    Args:
        results: the records.
        path: the file to write (parent folders are created).
        curves: keep the curves (``False`` makes a small file for final numbers only).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for result in sorted(results, key=_order):
        d = result.to_dict()
        if not curves:
            d["curves"] = {}
        lines.append(json.dumps(d, sort_keys=True, default=str))
    path.write_text("".join(line + "\n" for line in lines))
    return path


def read_jsonl(path: str | Path) -> list[RunResult]:
    """Records from a JSON-lines file written by ``write_jsonl``."""
    results = []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise TypeError(f"a JSON {type(record).__name__}, not an object")
            results.append(RunResult.from_dict(record))
        except (json.JSONDecodeError, TypeError, ValueError) as e:
            raise UserError(
                f"{path}:{number}: not a result record ({e}); a JSON-lines results file holds "
                f"one RunResult.to_dict() per line, as `python -m bench export --format jsonl` "
                f"writes it"
            ) from e
    return results


def read_flat(path: str | Path) -> list[RunResult]:
    """Records from a flat CSV or parquet export: final numbers, no curves."""
    import pandas as pd

    path = Path(path)
    try:
        frame = pd.read_parquet(path) if path.suffix.lower() == ".parquet" else pd.read_csv(path)
    except (OSError, ValueError, UnicodeDecodeError) as e:  # pyarrow's errors are among these
        first = " ".join(str(e).split())[:200]
        raise UserError(f"{str(path)!r} is not a readable {path.suffix[1:]} export ({first}); "
                        "make it again with `python -m bench export`") from None
    missing = [k for k in ("workload", "method", "status") if k not in _columns(frame)]
    if missing:
        raise UserError(
            f"{str(path)!r} has no column(s) {', '.join(missing)}; a results export needs at "
            f"least workload, method, seed and status (make one with `python -m bench export`)"
        )
    return [flat_to_result(row) for row in frame.to_dict(orient="records")]


def _columns(frame: Any) -> set[str]:
    names = set()
    for column in frame.columns:
        section, name = _split_column(str(column))
        names.add(name if section in (None, "config") else str(column))
    return names


def _split_column(column: str) -> tuple[str | None, str]:
    """``metric.test_error`` -> ``("metrics", "test_error")``; ``seed`` -> ``(None, "seed")``."""
    for sep in (".", "/", "_"):
        head, found, rest = column.partition(sep)
        head = _ALIASES.get(head, head)
        if found and head in (*_SECTIONS, "config") and (sep != "_" or head == "budget"):
            return head, rest
    return None, column


def flat_to_result(row: dict[str, Any]) -> RunResult:
    """One flat row (``section.name`` columns) back to a record; empty cells are left out."""
    parts: dict[str, dict[str, Any]] = {s: {} for s in _SECTIONS}
    top: dict[str, Any] = {}
    for column, value in row.items():
        if _empty(value):
            continue
        section, name = _split_column(str(column))
        if section in _SECTIONS:
            parts[section][name] = _plain(value)
        else:
            top[name] = _plain(value)
    if isinstance(top.get("options"), str):
        parts["options"] |= json.loads(top.pop("options"))
    if isinstance(top.get("budget"), str):
        parts["budget"] |= json.loads(top.pop("budget"))
    config = {
        "workload": top.get("workload"),
        "method": top.get("method"),
        "seed": int(top.get("seed", 0)),
        "budget": {k: parts["budget"].get(k) for k in ("steps", "epochs", "seconds")},
        "device": top.get("device", "cpu"),
        "options": parts["options"],
    }
    status = top.get("status")
    if status not in STATUSES:
        raise UserError(f"status must be one of {STATUSES}, but got {status!r} in an export row")
    step = top.get("diverged_step")
    return RunResult(
        run_id=str(top.get("run_id", "")),
        config=config,
        status=status,
        metrics=parts["metrics"],
        timing=parts["timing"],
        memory=parts["memory"],
        cost=parts["cost"],
        env=parts["env"],
        error=top.get("error"),
        diverged_step=int(step) if step is not None else None,
    )


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _plain(value: Any) -> Any:
    """numpy scalars (from pandas) to Python numbers, so records compare and serialise plainly."""
    return value.item() if hasattr(value, "item") else value


def _order(result: RunResult) -> tuple:
    c = result.config
    return (str(c.get("workload")), str(c.get("method")), int(c.get("seed", 0)), result.run_id)
