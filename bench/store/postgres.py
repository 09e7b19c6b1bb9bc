"""The results store in a PostgreSQL server, for many machines writing at once
(``bench.store.interface.ResultStore`` states the guarantees).

A SQLAlchemy URL names it (``postgresql+psycopg://user@host:5432/db``); ``bench.store.open_store``
picks it for such a ``--store`` value. How this store keeps the guarantees:

- A put is one ``INSERT ... ON CONFLICT DO UPDATE`` statement in its own transaction, so a writer
  killed at any moment (its connection dropped) leaves the old row or the new one.
- The server orders concurrent upserts of one run id (the second waits for the first's row
  lock); writes of different run ids do not wait for each other.
- ``claim`` locks the run's lease row with ``SELECT ... FOR UPDATE`` while it checks and takes it.
- A write that fails raises the server's error (no side file: there is no shared folder).

Rows hold the columns of ``bench.store.schema``, with the record's dictionaries as JSON text.
Optuna's tables can live in the same database (``bench.methods.search`` puts a search's study
there when the store is a URL): their names do not clash with ``runs``.

One ``SQLStore`` holds a small connection pool; open one per process (a pool must not cross a
``fork``) and ``close`` it when done.
"""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from bench.errors import UserError
from bench.record import KEPT, RunResult
from bench.store.interface import CLAIMED, HELD, LEASE_SECONDS, STORED, ResultStore
from bench.store.location import is_database_url, safe_url
from bench.store.schema import LEASES, READ, RUNS, Table, from_row, to_row

# pg_advisory_xact_lock key: creating tables is serialised across every process that opens the
# store at once (CREATE TABLE IF NOT EXISTS alone races in PostgreSQL's catalogue).
_SCHEMA_LOCK = 0x68677262  # "hgrb"
_TYPES = {"text": sa.Text, "integer": sa.Integer, "real": sa.Float,
          "timestamp": sa.DateTime(timezone=True)}


def _table(metadata: sa.MetaData, table: Table) -> sa.Table:
    """``table`` as SQLAlchemy's (a timestamp column defaults to the time of the write)."""
    columns = [
        sa.Column(c.name, _TYPES[c.type], primary_key=c.primary_key, nullable=c.nullable,
                  **({"server_default": sa.func.now()} if c.type == "timestamp" else {}))
        for c in table.columns
    ]
    indexes = [sa.Index(name, *names) for name, names in table.indexes]
    return sa.Table(table.name, metadata, *columns, *indexes)


_metadata = sa.MetaData()
runs = _table(_metadata, RUNS)
leases = _table(_metadata, LEASES)


class SQLStore(ResultStore):
    """Results in a PostgreSQL database (see the module docstring).

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
        """Insert or replace ``result``'s row, in one statement and one transaction."""
        row = to_row(result)
        insert = postgresql.insert(runs).values(**row)
        replace = {name: insert.excluded[name] for name in row if name != "run_id"}
        statement = insert.on_conflict_do_update(
            index_elements=[runs.c.run_id], set_=replace | {"created": sa.func.now()},
            where=sa.or_(insert.excluded.status.in_(KEPT), runs.c.status.notin_(KEPT)),
        )
        with self._engine.begin() as conn:
            conn.execute(statement)

    def delete(self, run_id: str) -> None:
        with self._engine.begin() as conn:
            conn.execute(sa.delete(runs).where(runs.c.run_id == run_id))

    # -- leases ----------------------------------------------------------------------------------

    def claim(self, run_id: str, owner: str, now: float | None = None) -> str:
        """The run's lease row, locked ``FOR UPDATE`` while it is checked and taken."""
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
        with self._engine.begin() as conn:
            conn.execute(sa.update(leases).where(leases.c.owner == owner)
                         .values(heartbeat=time.time()))

    def release(self, run_id: str, owner: str) -> None:
        with self._engine.begin() as conn:
            conn.execute(sa.delete(leases).where(leases.c.run_id == run_id,
                                                 leases.c.owner == owner))

    # -- reading -------------------------------------------------------------------------------

    def get(self, run_id: str) -> RunResult | None:
        rows = self._select(self._query().where(runs.c.run_id == run_id))
        return rows[0] if rows else None

    def has(self, run_id: str) -> bool:
        query = sa.select(sa.literal(1)).where(runs.c.run_id == run_id, runs.c.status.in_(KEPT))
        with self._engine.connect() as conn:
            return conn.execute(query).first() is not None

    def _matching(self, run_ids: list[str] | None, equal: dict[str, str]) -> list[RunResult]:
        query = self._query()
        if run_ids is not None:
            query = query.where(runs.c.run_id.in_(run_ids))
        for column, value in equal.items():
            query = query.where(runs.c[column] == value)
        order = (runs.c.workload, runs.c.method, runs.c.seed, runs.c.run_id)
        return self._select(query.order_by(*order))

    @staticmethod
    def _query() -> sa.Select[Any]:
        return sa.select(*(runs.c[name] for name in READ))

    def _select(self, query: sa.Select[Any]) -> list[RunResult]:
        with self._engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [from_row(row) for row in rows]

    def __len__(self) -> int:
        with self._engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(runs)).scalar_one())

    def close(self) -> None:
        self._engine.dispose()
