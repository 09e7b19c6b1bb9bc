"""The results store: one record per run, in a SQLite file (``sqlite``) or a PostgreSQL server
(``postgres``), both keeping the contract of ``interface.ResultStore`` over the one schema of
``schema``. ``open_store`` opens the store a ``--store`` value names (``location``).
"""

from __future__ import annotations

import os

from bench.errors import UserError
from bench.store.export import EXPORT_FORMATS, flat_row
from bench.store.interface import (
    CLAIMED,
    HEARTBEAT_SECONDS,
    HELD,
    LEASE_SECONDS,
    STORED,
    ResultStore,
    StoreWriteError,
)
from bench.store.location import (
    DEFAULT_PATH,
    default_location,
    is_database_url,
    safe_url,
    store_exists,
)
from bench.store.schema import SCHEMA_VERSION
from bench.store.sqlite import PENDING_SUFFIX, WRITE_RETRY_SECONDS, Store

__all__ = [
    "CLAIMED", "DEFAULT_PATH", "EXPORT_FORMATS", "HEARTBEAT_SECONDS", "HELD", "LEASE_SECONDS",
    "PENDING_SUFFIX", "SCHEMA_VERSION", "STORED", "WRITE_RETRY_SECONDS", "ResultStore", "Store",
    "StoreWriteError", "default_location", "flat_row", "is_database_url",
    "open_store", "safe_url", "store_exists",
]


def open_store(location: str | os.PathLike[str] | None = None, *,
               timeout: float = 60.0, readonly: bool = False) -> ResultStore:
    """The results store a ``--store`` value names: same contract whichever it is.

    Args:
        location: a path or ``sqlite:///path`` (``Store``, a SQLite file), or a PostgreSQL URL
            such as ``postgresql+psycopg://user@host:5432/db`` (``bench.store.postgres.SQLStore``,
            for many machines); default ``default_location()``.
        timeout: seconds a write (or a connection) waits before failing.
        readonly: only read (``export``, ``report``): a SQLite file on a read-only mount opens.

    Raises:
        UserError: a URL of another database (the message lists the accepted forms).
    """
    text = os.fspath(location) if location is not None else default_location()
    if is_database_url(text):
        from bench.store.postgres import SQLStore  # SQLAlchemy is imported for a server only

        return SQLStore(str(text), timeout=timeout)
    if isinstance(text, str) and "://" in text:
        scheme, _, rest = text.partition("://")
        if scheme != "sqlite":
            raise UserError(f"unsupported results store URL {safe_url(text)!r}; give a file path, "
                            "sqlite:///PATH or postgresql+psycopg://USER@HOST:PORT/DB")
        text = rest[1:] if rest.startswith("/") else rest  # sqlite:///rel, sqlite:////abs
    return Store(text, timeout=timeout, readonly=readonly)
