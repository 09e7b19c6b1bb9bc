"""The results store in a SQLite file: one row per run, safe for several processes of one machine
writing at once (``bench.store.interface.ResultStore`` states the guarantees).

How this store keeps them:

- A put is one ``BEGIN IMMEDIATE`` transaction, whose upsert replaces a kept row only by a kept
  one; rows are serialised before the lock is taken, so the transaction only writes.
- The database runs in WAL mode (readers never block the writer) and every connection waits up
  to ``timeout`` seconds for the write lock (``busy_timeout``) instead of failing with "database
  is locked".
- A write still failing after ``WRITE_RETRY_SECONDS`` goes to the side file ``NAME.pending.jsonl``
  beside the store, imported by the next ``Store`` opened on that path for writing.
- The schema is checked when the file is opened (``PRAGMA user_version`` and the columns).
  ``readonly=True`` opens a store that cannot be written (a read-only mount) for ``export`` and
  ``report``; ``checkpoint`` folds the write-ahead log into the file before a copy.

A connection is opened per ``Store`` object and must not be shared between processes: each
worker opens its own ``Store(path)``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

from bench.errors import UserError
from bench.record import KEPT, RunResult
from bench.store.interface import (
    CLAIMED,
    HELD,
    LEASE_SECONDS,
    STORED,
    ResultStore,
    StoreWriteError,
)
from bench.store.location import default_location
from bench.store.schema import (
    COLUMNS,
    READ,
    SCHEMA_VERSION,
    TABLES,
    WRITTEN,
    Table,
    from_row,
    to_row,
)

# How long ``put`` keeps retrying a write that fails (a lock held by another process, a disk
# error) before it falls back to the side file.
WRITE_RETRY_SECONDS = 30.0
PENDING_SUFFIX = ".pending.jsonl"
_NOW = "strftime('%Y-%m-%dT%H:%M:%SZ', 'now')"
_TYPES = {"text": "TEXT", "integer": "INTEGER", "real": "REAL", "timestamp": "TEXT"}
_KEPT = ", ".join(f"'{s}'" for s in KEPT)


def _ddl(table: Table) -> str:
    """``CREATE TABLE IF NOT EXISTS`` and its indexes, as SQLite text."""
    lines = []
    for column in table.columns:
        words = [column.name, _TYPES[column.type]]
        if column.primary_key:
            words.append("PRIMARY KEY")
        elif not column.nullable:
            words.append("NOT NULL")
        if column.type == "timestamp":
            words.append(f"DEFAULT ({_NOW})")
        lines.append("    " + " ".join(words))
    statements = [f"CREATE TABLE IF NOT EXISTS {table.name} (\n" + ",\n".join(lines) + "\n);"]
    statements += [f"CREATE INDEX IF NOT EXISTS {name} ON {table.name} ({', '.join(columns)});"
                   for name, columns in table.indexes]
    return "\n".join(statements)


_SCHEMA = "\n".join(_ddl(table) for table in TABLES)
# The upsert of one run: a kept row is replaced only by another kept one (its WHERE).
_PUT = (
    f"INSERT INTO runs ({', '.join(WRITTEN)}) VALUES ({', '.join('?' * len(WRITTEN))})"
    " ON CONFLICT (run_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in WRITTEN[1:])
    + f", created = {_NOW}"
    + f" WHERE excluded.status IN ({_KEPT}) OR runs.status NOT IN ({_KEPT})"
)


class Store(ResultStore):
    """Results in a SQLite file (see the module docstring).

    Args:
        path: the database file (created with its folder if missing); default
            ``default_location()``.
        timeout: seconds a write waits for another process's transaction before failing.
        readonly: only read: a file on a read-only mount opens.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, timeout: float = 60.0,
                 readonly: bool = False):
        self.path = Path(path) if path is not None else Path(default_location())
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
        if set(columns) != set(COLUMNS):
            raise UserError(f"{where} is not a hypergrad-bench store (its runs table has columns "
                            f"{', '.join(columns) or 'none'}); give --store another file")

    # -- writing -------------------------------------------------------------------------------

    @property
    def pending_path(self) -> Path:
        """The side file of results that could not be written (imported at the next open)."""
        return self.path.with_name(self.path.name + PENDING_SUFFIX)

    def check_writable(self) -> None:
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
        """Write ``result``'s row; a failing write is retried, then kept in the side file."""
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
        # Serialise before taking the lock: the transaction only writes.
        self._write(_PUT, tuple(to_row(result).values()))

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
        self._write("DELETE FROM runs WHERE run_id = ?", (run_id,))

    # -- leases --------------------------------------------------------------------------------

    def claim(self, run_id: str, owner: str, now: float | None = None) -> str:
        """One ``BEGIN IMMEDIATE`` transaction: no two owners claim."""
        now = time.time() if now is None else now
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            if self._conn.execute(f"SELECT 1 FROM runs WHERE run_id = ? AND status IN ({_KEPT})",
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
        self._write("UPDATE leases SET heartbeat = ? WHERE owner = ?", (time.time(), owner))

    def release(self, run_id: str, owner: str) -> None:
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
        rows = self._select("WHERE run_id = ?", (run_id,))
        return rows[0] if rows else None

    def has(self, run_id: str) -> bool:
        cur = self._conn.execute(f"SELECT 1 FROM runs WHERE run_id = ? AND status IN ({_KEPT})",
                                 (run_id,))
        return cur.fetchone() is not None

    def _matching(self, run_ids: list[str] | None, equal: dict[str, str]) -> list[RunResult]:
        clauses, params = [], []
        if run_ids is not None:
            clauses.append(f"run_id IN ({', '.join('?' * len(run_ids))})")
            params.extend(run_ids)
        for column, value in equal.items():
            clauses.append(f"{column} = ?")
            params.append(value)
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        return self._select(where + " ORDER BY workload, method, seed, run_id", tuple(params))

    def _select(self, tail: str, params: tuple[Any, ...]) -> list[RunResult]:
        cur = self._conn.execute(f"SELECT {', '.join(READ)} FROM runs {tail}", params)
        return [from_row(dict(zip(READ, row, strict=True))) for row in cur.fetchall()]

    def __len__(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0])

    def close(self) -> None:
        self._conn.close()


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
