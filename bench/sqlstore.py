"""The results store in a PostgreSQL server, for many machines writing at once.

The same contract as ``bench.store.Store`` (the SQLite file), with a SQLAlchemy URL instead of a
path (``postgresql+psycopg://user@host:5432/db``); ``bench.store.open_store`` picks the one a
``--store`` value names. The same guarantees:

- A row is complete or absent: ``put`` is one ``INSERT ... ON CONFLICT DO UPDATE`` statement in
  its own transaction, so a writer killed at any moment (its connection dropped) leaves the old
  row or the new one, never half of one.
- Any number of processes, on any number of machines, may ``put`` at once: the server orders
  concurrent upserts of one run id (the second waits for the first's row lock), and writes of
  different run ids do not wait for each other.
- ``has`` is true only for ``done`` and ``diverged`` results.
- ``claim``/``heartbeat``/``release``: a run is leased to one invocation at a time (the run's
  lease row is locked with ``SELECT ... FOR UPDATE`` while it is checked and taken).

Rows hold the same columns as the SQLite store, with the record's dictionaries as JSON text
(``json.dumps``, so floats come back bit for bit, NaN included). Optuna's tables can live in the
same database (``bench.methods.search`` puts a search's study there when the store is a URL):
their names do not clash with ``runs``.

One ``SQLStore`` holds a small connection pool; open one per process (a pool must not cross a
``fork``) and ``close`` it when done.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from bench.errors import UserError
from bench.record import DIVERGED, DONE, KEPT, RunResult
from bench.store import CLAIMED, HELD, LEASE_SECONDS, STORED

# Database URL schemes this store serves (the SQLAlchemy dialect, with or without a driver).
SCHEMES = ("postgresql",)
# The JSON columns, in the record's field order (as in ``bench.store``).
_JSON_FIELDS = ("config", "metrics", "curves", "timing", "memory", "cost", "env")
# pg_advisory_xact_lock key: creating tables is serialised across every process that opens the
# store at once (CREATE TABLE IF NOT EXISTS alone races in PostgreSQL's catalogue).
_SCHEMA_LOCK = 0x68677262  # "hgrb"

_metadata = sa.MetaData()
runs = sa.Table(
    "runs",
    _metadata,
    sa.Column("run_id", sa.Text, primary_key=True),
    sa.Column("workload", sa.Text, nullable=False),
    sa.Column("method", sa.Text, nullable=False),
    sa.Column("seed", sa.Integer, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    *(sa.Column(name, sa.Text, nullable=False) for name in _JSON_FIELDS),
    sa.Column("error", sa.Text),
    sa.Column("diverged_step", sa.Integer),
    sa.Column("created", sa.DateTime(timezone=True), nullable=False,
              server_default=sa.func.now()),
    sa.Index("runs_workload_method", "workload", "method"),
)
# Which invocation trains a run (``bench.store``'s leases, the same rules).
leases = sa.Table(
    "leases",
    _metadata,
    sa.Column("run_id", sa.Text, primary_key=True),
    sa.Column("owner", sa.Text, nullable=False),
    sa.Column("heartbeat", sa.Float, nullable=False),
)


def is_database_url(location: str | os.PathLike[str] | None) -> bool:
    """True for a URL this store serves (``postgresql://``, ``postgresql+psycopg://``, ...)."""
    if location is None or isinstance(location, Path):
        return False
    scheme = str(location).partition("://")[0] if "://" in str(location) else ""
    return scheme.split("+")[0] in SCHEMES


def safe_url(url: str) -> str:
    """``url`` with its password hidden, for messages and logs."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return url


class SQLStore:
    """Results in a PostgreSQL database (see the module docstring for the guarantees).

    Args:
        url: a SQLAlchemy URL, ``postgresql+psycopg://user[:password]@host:port/database``
            (``postgresql://`` uses SQLAlchemy's default driver, psycopg 3 here).
        timeout: seconds to wait for a connection (and for the server at first).

    Raises:
        UserError: the URL is not a PostgreSQL URL, or the server cannot be reached (the message
            names the URL without its password and says what to check).
    """

    def __init__(self, url: str, *, timeout: float = 60.0) -> None:
        if not is_database_url(url):
            raise UserError(f"a database store needs a postgresql:// URL, but got "
                            f"{safe_url(str(url))!r}; e.g. postgresql+psycopg://user@host:5432/db")
        self.url = str(url)
        try:
            self._engine = sa.create_engine(
                self.url,
                pool_pre_ping=True,  # a long-lived worker survives a server restart
                pool_size=2,
                max_overflow=2,
                pool_timeout=timeout,
                connect_args={"connect_timeout": max(1, int(timeout))},
            )
            with self._engine.begin() as conn:
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_SCHEMA_LOCK)))
                _metadata.create_all(conn)
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as e:
            raise UserError(
                f"cannot open results store {safe_url(self.url)}: "
                f"{' '.join(str(e.orig or e).split())[:300]}; check that the server is running "
                "and accepts this user and database"
            ) from e
        except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError) as e:
            raise UserError(f"bad results store URL {safe_url(self.url)}: {e}") from e

    def __repr__(self) -> str:
        return f"SQLStore({safe_url(self.url)!r})"

    # -- writing -------------------------------------------------------------------------------

    def check_writable(self) -> None:
        """Raise ``UserError`` now, before anything trains, if this user may not write runs."""
        query = sa.text("SELECT has_table_privilege(current_user, 'runs', 'INSERT, UPDATE')")
        with self._engine.connect() as conn:
            if not conn.execute(query).scalar_one():
                raise UserError(f"results store {safe_url(self.url)}: this user may not write "
                                "the runs table; grant INSERT and UPDATE on it")

    def put(self, result: RunResult) -> None:
        """Insert or replace ``result``'s row, in one statement and one transaction; a
        ``failed`` or ``interrupted`` record never replaces a ``done`` or ``diverged`` one."""
        config = result.config
        row = {
            "run_id": result.run_id,
            "workload": config.get("workload", ""),
            "method": config.get("method", ""),
            "seed": int(config.get("seed", 0)),
            "status": result.status,
            **{name: json.dumps(getattr(result, name), sort_keys=True) for name in _JSON_FIELDS},
            "error": result.error,
            "diverged_step": result.diverged_step,
        }
        insert = postgresql.insert(runs).values(**row)
        replace = {name: insert.excluded[name] for name in row if name != "run_id"}
        statement = insert.on_conflict_do_update(
            index_elements=[runs.c.run_id], set_=replace | {"created": sa.func.now()},
            where=sa.or_(insert.excluded.status.in_(KEPT), runs.c.status.notin_(KEPT)),
        )
        with self._engine.begin() as conn:
            conn.execute(statement)

    def delete(self, run_id: str) -> None:
        """Remove a run's row (nothing if absent)."""
        with self._engine.begin() as conn:
            conn.execute(sa.delete(runs).where(runs.c.run_id == run_id))

    # -- leases ----------------------------------------------------------------------------------

    def claim(self, run_id: str, owner: str, now: float | None = None) -> str:
        """``bench.store.Store.claim``: ``CLAIMED``, ``STORED`` or ``HELD``."""
        import time

        now = time.time() if now is None else now
        with self._engine.begin() as conn:
            # Inserting first makes the lease row exist, so that FOR UPDATE has a row to lock.
            conn.execute(postgresql.insert(leases).values(run_id=run_id, owner=owner,
                                                          heartbeat=-1.0)
                         .on_conflict_do_nothing(index_elements=[leases.c.run_id]))
            row = conn.execute(sa.select(leases.c.owner, leases.c.heartbeat)
                               .where(leases.c.run_id == run_id).with_for_update()).one()
            stored = conn.execute(sa.select(runs.c.run_id).where(
                runs.c.run_id == run_id, runs.c.status.in_(KEPT))).first()
            if stored is not None:
                if row.heartbeat < 0:
                    conn.execute(sa.delete(leases).where(leases.c.run_id == run_id))
                return STORED
            if row.owner != owner and row.heartbeat > now - LEASE_SECONDS:
                return HELD
            conn.execute(sa.update(leases).where(leases.c.run_id == run_id)
                         .values(owner=owner, heartbeat=now))
            return CLAIMED

    def heartbeat(self, owner: str) -> None:
        import time

        with self._engine.begin() as conn:
            conn.execute(sa.update(leases).where(leases.c.owner == owner)
                         .values(heartbeat=time.time()))

    def release(self, run_id: str, owner: str) -> None:
        with self._engine.begin() as conn:
            conn.execute(sa.delete(leases).where(leases.c.run_id == run_id,
                                                 leases.c.owner == owner))

    # -- reading -------------------------------------------------------------------------------

    def get(self, run_id: str) -> RunResult | None:
        """The stored result of ``run_id``, whatever its status, or ``None``."""
        rows = self._select(sa.select(runs).where(runs.c.run_id == run_id))
        return rows[0] if rows else None

    def has(self, run_id: str) -> bool:
        """True when a result worth keeping (``done`` or ``diverged``) is stored."""
        query = sa.select(sa.literal(1)).where(
            runs.c.run_id == run_id, runs.c.status.in_((DONE, DIVERGED))
        )
        with self._engine.connect() as conn:
            return conn.execute(query).first() is not None

    def results(
        self,
        run_ids: list[str] | None = None,
        *,
        workload: str | None = None,
        method: str | None = None,
        status: str | None = None,
    ) -> list[RunResult]:
        """Stored results, filtered; ordered by workload, method, seed."""
        query = sa.select(runs)
        if run_ids is not None:
            if not run_ids:
                return []
            query = query.where(runs.c.run_id.in_(list(run_ids)))
        for column, value in (("workload", workload), ("method", method), ("status", status)):
            if value is not None:
                query = query.where(runs.c[column] == value)
        order = (runs.c.workload, runs.c.method, runs.c.seed, runs.c.run_id)
        return self._select(query.order_by(*order))

    def _select(self, query: sa.Select[Any]) -> list[RunResult]:
        with self._engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [
            RunResult(
                run_id=row["run_id"],
                status=row["status"],
                error=row["error"],
                diverged_step=row["diverged_step"],
                **{name: json.loads(row[name]) for name in _JSON_FIELDS},
            )
            for row in rows
        ]

    def __len__(self) -> int:
        with self._engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(runs)).scalar_one())

    # -- export --------------------------------------------------------------------------------

    def export(self, path: str | os.PathLike[str], format: str = "csv") -> Path:
        """Every run as one flat row, exactly as ``bench.store.Store.export`` writes it."""
        from bench.store import Store

        # Store.export only reads ``self.results()``: the one implementation serves both stores.
        return Store.export(self, path, format)  # type: ignore[arg-type]

    # -- lifetime ------------------------------------------------------------------------------

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> SQLStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
