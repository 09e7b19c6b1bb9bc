"""The results store: one SQLite row per run, safe for several processes writing at once.

Guarantees (the contract the scheduler, the CLI and the reports rely on):

- A row is complete or absent: ``put`` writes it in one transaction, so a process killed at any
  moment leaves either the old row, the new one, or none, never a half-written one.
- Several processes may open the same file and ``put`` concurrently: the database runs in WAL
  mode (readers never block the writer) and every connection waits up to ``timeout`` seconds for
  the write lock (``busy_timeout``) instead of failing with "database is locked".
- ``has`` is true only for results worth keeping (``done`` and ``diverged``): a ``failed`` or
  ``interrupted`` run is recorded for the report but never treated as cached, and never replaces
  a kept one (``put`` keeps the ``done`` row of a forced re-run that crashed).
- A trained result is not lost to a failing write: ``put`` retries a locked or failing database
  for ``WRITE_RETRY_SECONDS``, then appends the record to a side file beside the store
  (``NAME.pending.jsonl``), which the next ``Store`` opened on that path imports (and says so).
- Several invocations on one store train each run once: ``claim`` leases a run to one of them
  (the others see it ``held``, then ``stored``), ``heartbeat`` renews its leases, ``release``
  ends one; a lease not renewed for ``LEASE_SECONDS`` (its invocation died) can be claimed.
- The schema is checked when the file is opened (``PRAGMA user_version`` and the columns): a
  store of a newer version, a corrupt file, or one that cannot be written (for commands that
  write) is a clear error before anything trains. ``readonly=True`` opens a store that cannot be
  written (a read-only mount) for ``export`` and ``report``.

A connection is opened per ``Store`` object and must not be shared between processes: each
worker opens its own ``Store(path)``.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import sqlite3
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.errors import BenchError, UserError
from bench.record import DIVERGED, DONE, KEPT, RunResult

DEFAULT_PATH = Path("results") / "bench.sqlite"
EXPORT_FORMATS = ("csv", "parquet")
# The schema this code writes and reads (``PRAGMA user_version``; 0 is a file from before it was
# recorded, whose columns are the same).
SCHEMA_VERSION = 1
# How long ``put`` keeps retrying a write that fails (a lock held by another process, a disk
# error) before it falls back to the side file.
WRITE_RETRY_SECONDS = 30.0
PENDING_SUFFIX = ".pending.jsonl"
# A run being trained is leased to its invocation (``claim``), which renews the lease every
# ``HEARTBEAT_SECONDS``; one not renewed for ``LEASE_SECONDS`` belongs to an invocation that died,
# and another may take the run over (as Optuna's heartbeats do for trials).
LEASE_SECONDS = 60.0
HEARTBEAT_SECONDS = 10.0
CLAIMED, STORED, HELD = "claimed", "stored", "held"


class StoreWriteError(BenchError):
    """Neither the store nor its side file could take a result."""

# JSON columns, in the record's field order.
_JSON_FIELDS = ("config", "metrics", "curves", "timing", "memory", "cost", "env")

_COLUMNS = ("run_id", "workload", "method", "seed", "status", *_JSON_FIELDS, "error",
            "diverged_step", "created")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    workload TEXT NOT NULL,
    method TEXT NOT NULL,
    seed INTEGER NOT NULL,
    status TEXT NOT NULL,
    config TEXT NOT NULL,
    metrics TEXT NOT NULL,
    curves TEXT NOT NULL,
    timing TEXT NOT NULL,
    memory TEXT NOT NULL,
    cost TEXT NOT NULL,
    env TEXT NOT NULL,
    error TEXT,
    diverged_step INTEGER,
    created TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
);
CREATE INDEX IF NOT EXISTS runs_workload_method ON runs (workload, method);
CREATE TABLE IF NOT EXISTS leases (
    run_id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    heartbeat REAL NOT NULL
);
"""


def default_path() -> Path:
    """``$BENCH_STORE`` if set, else ``results/bench.sqlite`` under the current directory."""
    return Path(os.environ.get("BENCH_STORE") or DEFAULT_PATH)


# -- a path or a database URL (``--store``) -------------------------------------------------------


def default_location() -> str:
    """``$BENCH_STORE`` as given (a path or a database URL), else ``results/bench.sqlite``."""
    return os.environ.get("BENCH_STORE") or str(DEFAULT_PATH)


def open_store(location: str | os.PathLike[str] | None = None, *,
               timeout: float = 60.0, readonly: bool = False) -> Any:
    """The results store a ``--store`` value names: same contract whichever it is.

    Args:
        location: a path or ``sqlite:///path`` (``Store``, a SQLite file), or a PostgreSQL URL
            such as ``postgresql+psycopg://user@host:5432/db`` (``bench.sqlstore.SQLStore``, for
            many machines); default ``default_location()``.
        timeout: seconds a write (or a connection) waits before failing.
        readonly: only read (``export``, ``report``): a SQLite file on a read-only mount opens.

    Raises:
        UserError: a URL of another database (the message lists the accepted forms).
    """
    from bench.sqlstore import SQLStore, is_database_url, safe_url

    text = os.fspath(location) if location is not None else default_location()
    if is_database_url(text):
        return SQLStore(str(text), timeout=timeout)
    if isinstance(text, str) and "://" in text:
        scheme, _, rest = text.partition("://")
        if scheme != "sqlite":
            raise UserError(f"unsupported results store URL {safe_url(text)!r}; give a file path, "
                            "sqlite:///PATH or postgresql+psycopg://USER@HOST:PORT/DB")
        text = rest[1:] if rest.startswith("/") else rest  # sqlite:///rel, sqlite:////abs
    return Store(text, timeout=timeout, readonly=readonly)


@contextlib.contextmanager
def as_default_store(location: str | os.PathLike[str] | None) -> Iterator[None]:
    """Inside the block ``$BENCH_STORE`` names ``location`` (nothing changes for ``None``).

    What reads the default store from the environment follows it: a search's Optuna storage is
    kept beside a SQLite store, and in the database of a PostgreSQL one.
    """
    if location is None:
        yield
        return
    previous = os.environ.get("BENCH_STORE")
    os.environ["BENCH_STORE"] = os.fspath(location)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("BENCH_STORE", None)
        else:
            os.environ["BENCH_STORE"] = previous


def store_exists(location: str | os.PathLike[str]) -> bool:
    """A database URL (its server holds the data) or a SQLite file that is already there."""
    from bench.sqlstore import is_database_url

    text = os.fspath(location)
    if is_database_url(text):
        return True
    if isinstance(text, str) and text.startswith("sqlite://"):
        text = text.partition("://")[2][1:]
    return Path(text).is_file()


class Store:
    """Results in a SQLite file (see the module docstring for the guarantees).

    Args:
        path: the database file (created with its folder if missing); default ``default_path()``.
        timeout: seconds a write waits for another process's transaction before failing.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, timeout: float = 60.0,
                 readonly: bool = False):
        self.path = Path(path) if path is not None else default_path()
        self.readonly = readonly
        where = f"results store {str(self.path)!r}"
        if self.path.is_dir():
            raise UserError(f"store path {str(self.path)!r} is a folder; give a file name")
        if readonly and not self.path.is_file():
            raise UserError(f"{where} does not exist; give the path of a store that runs wrote")
        blocking = next((p for p in self.path.parents if p.exists() and not p.is_dir()), None)
        if blocking is not None:
            raise UserError(f"cannot create {where}: {str(blocking)!r} is a file, not a folder")
        try:
            if not readonly:
                self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"cannot create the folder of {where}: {e.strerror or e}; give "
                            "--store a path in a folder you can write") from None
        try:
            self._conn = self._connect(timeout)
            self._check_schema()
        except sqlite3.DatabaseError as e:
            raise UserError(_database_error(where, e)) from None
        if not readonly:
            self._import_pending()

    def _connect(self, timeout: float) -> sqlite3.Connection:
        if self.readonly:
            # A store on a read-only mount cannot even hold WAL's shared memory: open it as an
            # immutable file then (nothing else may write it meanwhile, which is the case).
            uri = self.path.resolve().as_uri()
            try:
                conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=timeout)
                conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
                return conn
            except sqlite3.OperationalError:
                return sqlite3.connect(f"{uri}?immutable=1", uri=True, timeout=timeout)
        # isolation_level=None: we issue BEGIN IMMEDIATE / COMMIT ourselves, so a write
        # transaction takes the lock up front instead of failing when it upgrades.
        conn = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")  # durable at checkpoints in WAL
        return conn

    def _check_schema(self) -> None:
        """A newer schema, other columns or a corrupt file stop here, before any training."""
        where = f"results store {str(self.path)!r}"
        version = int(self._conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise UserError(f"{where} has schema version {version}, newer than this "
                            f"hypergrad-bench's {SCHEMA_VERSION}; upgrade hypergrad-bench, or "
                            "give --store another file")
        check = self._conn.execute("PRAGMA quick_check(1)").fetchone()[0]
        if check != "ok":
            first = " ".join(check.replace("*** in database main ***", "").split())[:120]
            raise UserError(f"{where} is corrupt ({first}); restore it from a copy, or move it "
                            "away: its runs are then trained again")
        if not self.readonly:
            self._conn.executescript(_SCHEMA)
            if version < SCHEMA_VERSION:
                self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        columns = tuple(row[1] for row in self._conn.execute("PRAGMA table_info(runs)"))
        if set(columns) != set(_COLUMNS):
            raise UserError(f"{where} is not a hypergrad-bench store (its runs table has columns "
                            f"{', '.join(columns) or 'none'}); give --store another file")

    # -- writing -------------------------------------------------------------------------------

    @property
    def pending_path(self) -> Path:
        """The side file of results that could not be written (imported at the next open)."""
        return self.path.with_name(self.path.name + PENDING_SUFFIX)

    def check_writable(self) -> None:
        """Raise ``UserError`` now, before anything trains, if a result could not be written."""
        where = f"results store {str(self.path)!r}"
        if self.readonly:
            raise UserError(f"{where} was opened read-only")
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.execute("ROLLBACK")
            # A read-only file opens and even locks: only a write tells.
            self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except sqlite3.DatabaseError as e:
            raise UserError(_database_error(where, e)) from None

    def put(self, result: RunResult) -> None:
        """Write ``result``'s row in one transaction (see the module docstring: kept statuses
        win, a failing write is retried, then kept in the side file).

        Raises:
            StoreWriteError: neither the store nor the side file could take it.
        """
        deadline = time.monotonic() + WRITE_RETRY_SECONDS
        while True:
            try:
                self._put(result)
                return
            except sqlite3.DatabaseError as e:
                error = e
            except OverflowError as e:  # a number SQLite cannot hold: retrying will not help
                error = e
                break
            if time.monotonic() >= deadline:
                break
            time.sleep(1.0)
        try:
            with self.pending_path.open("a") as f:
                f.write(json.dumps(result.to_dict(), sort_keys=True) + "\n")
        except OSError as e:
            raise StoreWriteError(f"run {result.run_id}: writing {str(self.path)!r} failed "
                                  f"({error}) and so did its side file ({e})") from None
        print(f"warning: run {result.run_id} could not be written to {str(self.path)!r} "
              f"({error}); kept in {str(self.pending_path)!r}, imported the next time the store "
              "is opened", file=sys.stderr, flush=True)

    def _put(self, result: RunResult) -> None:
        config = result.config
        row = (
            result.run_id,
            config.get("workload", ""),
            config.get("method", ""),
            int(config.get("seed", 0)),
            result.status,
            *(json.dumps(getattr(result, name), sort_keys=True) for name in _JSON_FIELDS),
            result.error,
            result.diverged_step,
        )
        kept = ", ".join(f"'{s}'" for s in KEPT)
        # Serialise before taking the lock: the transaction only writes. A kept row is replaced
        # only by another kept one (the upsert's WHERE).
        self._write(
            "INSERT INTO runs (run_id, workload, method, seed, status, "
            + ", ".join(_JSON_FIELDS)
            + ", error, diverged_step) VALUES ("
            + ", ".join("?" * len(row))
            + ") ON CONFLICT (run_id) DO UPDATE SET "
            + ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS[1:-1])
            + ", created = strftime('%Y-%m-%dT%H:%M:%SZ', 'now')"
            + f" WHERE excluded.status IN ({kept}) OR runs.status NOT IN ({kept})",
            row,
        )

    def _import_pending(self) -> None:
        """Write the results an earlier invocation left in the side file, then remove it."""
        path = self.pending_path
        if not path.is_file():
            return
        imported, kept = 0, []
        for number, line in enumerate(path.read_text().splitlines(), 1):
            try:
                result = RunResult.from_dict(json.loads(line))
            except (ValueError, TypeError) as e:
                # A line cut short by a kill: the rest are still worth having.
                print(f"warning: {path}:{number}: not a result ({e}); skipped", file=sys.stderr)
                continue
            try:
                self._put(result)
                imported += 1
            except (sqlite3.DatabaseError, OverflowError) as e:
                # Still not writable (a number SQLite cannot hold): keep it in the side file.
                print(f"warning: {path}:{number}: run {result.run_id} still cannot be written "
                      f"({e}); left in the side file", file=sys.stderr)
                kept.append(line)
        if kept:
            path.write_text("".join(f"{line}\n" for line in kept))
        else:
            path.unlink()
        print(f"note: imported {imported} result(s) that an earlier run could not write "
              f"into {str(self.path)!r} (from {str(path)!r})", file=sys.stderr, flush=True)

    def checkpoint(self) -> None:
        """Fold the write-ahead log into the file, so that the ``.sqlite`` alone holds every
        committed row (to copy the store: run this, then copy, or use ``sqlite3 .backup``)."""
        self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def delete(self, run_id: str) -> None:
        """Remove a run's row (nothing if absent)."""
        self._write("DELETE FROM runs WHERE run_id = ?", (run_id,))

    # -- leases: one invocation trains a run -----------------------------------------------------

    def claim(self, run_id: str, owner: str, now: float | None = None) -> str:
        """Lease ``run_id`` to ``owner`` unless it is stored or another live owner holds it;
        returns ``CLAIMED``, ``STORED`` or ``HELD`` (one transaction: no two owners claim)."""
        now = time.time() if now is None else now
        kept = ", ".join(f"'{s}'" for s in KEPT)
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            if self._conn.execute(f"SELECT 1 FROM runs WHERE run_id = ? AND status IN ({kept})",
                                  (run_id,)).fetchone():
                outcome = STORED
            else:
                row = self._conn.execute("SELECT owner, heartbeat FROM leases WHERE run_id = ?",
                                         (run_id,)).fetchone()
                if row is not None and row[0] != owner and row[1] > now - LEASE_SECONDS:
                    outcome = HELD
                else:
                    self._conn.execute("INSERT OR REPLACE INTO leases VALUES (?, ?, ?)",
                                       (run_id, owner, now))
                    outcome = CLAIMED
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")
        return outcome

    def heartbeat(self, owner: str) -> None:
        """Renew every lease ``owner`` holds."""
        self._write("UPDATE leases SET heartbeat = ? WHERE owner = ?", (time.time(), owner))

    def release(self, run_id: str, owner: str) -> None:
        """End ``owner``'s lease of ``run_id`` (nothing if it holds none)."""
        self._write("DELETE FROM leases WHERE run_id = ? AND owner = ?", (run_id, owner))

    def _write(self, sql: str, params: tuple[Any, ...]) -> None:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            self._conn.execute(sql, params)
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    # -- reading -------------------------------------------------------------------------------

    def get(self, run_id: str) -> RunResult | None:
        """The stored result of ``run_id``, whatever its status, or ``None``."""
        rows = self._select("WHERE run_id = ?", (run_id,))
        return rows[0] if rows else None

    def has(self, run_id: str) -> bool:
        """True when a result worth keeping (``done`` or ``diverged``) is stored."""
        cur = self._conn.execute(
            "SELECT 1 FROM runs WHERE run_id = ? AND status IN (?, ?)", (run_id, DONE, DIVERGED)
        )
        return cur.fetchone() is not None

    def results(
        self,
        run_ids: list[str] | None = None,
        *,
        workload: str | None = None,
        method: str | None = None,
        status: str | None = None,
    ) -> list[RunResult]:
        """Stored results, filtered; ordered by workload, method, seed."""
        clauses, params = [], []
        if run_ids is not None:
            if not run_ids:
                return []
            clauses.append(f"run_id IN ({', '.join('?' * len(run_ids))})")
            params.extend(run_ids)
        for column, value in (("workload", workload), ("method", method), ("status", status)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        return self._select(where + " ORDER BY workload, method, seed, run_id", tuple(params))

    def _select(self, tail: str, params: tuple[Any, ...]) -> list[RunResult]:
        cur = self._conn.execute(
            "SELECT run_id, status, "
            + ", ".join(_JSON_FIELDS)
            + ", error, diverged_step FROM runs "
            + tail,
            params,
        )
        out = []
        for run_id, status, *rest in cur.fetchall():
            blobs, (error, diverged_step) = rest[: len(_JSON_FIELDS)], rest[len(_JSON_FIELDS) :]
            fields = {
                name: json.loads(blob) for name, blob in zip(_JSON_FIELDS, blobs, strict=True)
            }
            out.append(
                RunResult(
                    run_id=run_id,
                    status=status,
                    error=error,
                    diverged_step=diverged_step,
                    **fields,
                )
            )
        return out

    def __len__(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0])

    # -- export --------------------------------------------------------------------------------

    def export(self, path: str | os.PathLike[str], format: str = "csv") -> Path:
        """Write every run as one flat row: config fields, status, metrics, timing, memory, cost.

        Args:
            path: the output file (its folder is created).
            format: ``"csv"`` or ``"parquet"`` (pyarrow).

        Returns:
            The path written.
        """
        if format not in EXPORT_FORMATS:
            raise UserError(f"unknown export format {format!r}; valid formats: csv, parquet")
        rows = [flat_row(r) for r in self.results()]
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

    # -- lifetime ------------------------------------------------------------------------------

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _database_error(where: str, error: sqlite3.DatabaseError) -> str:
    """One line a user can act on, for SQLite's own messages."""
    text = str(error)
    if "readonly" in text or "read-only" in text:
        return (f"{where} cannot be written ({text}); give --store a file you can write "
                "(export and report read a read-only store)")
    if "malformed" in text or "not a database" in text:
        return (f"{where} is corrupt ({text}); restore it from a copy, or move it away: its "
                "runs are then trained again")
    if "unable to open" in text:
        return f"cannot open {where} ({text}); check that its folder exists and can be written"
    return f"cannot use {where}: {text}"


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
