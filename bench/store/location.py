"""Where a results store is: what a ``--store`` value (or ``$BENCH_STORE``) names, a SQLite file
path or a PostgreSQL URL, and whether it is already there. Nothing here opens a store."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_PATH = Path("results") / "bench.sqlite"
# Database URL schemes the PostgreSQL store serves (the SQLAlchemy dialect, with or without a
# driver).
SCHEMES = ("postgresql",)


def default_location() -> str:
    """``$BENCH_STORE`` as given (a path or a database URL), else ``results/bench.sqlite``."""
    return os.environ.get("BENCH_STORE") or str(DEFAULT_PATH)


def is_database_url(location: str | os.PathLike[str] | None) -> bool:
    """True for a URL the PostgreSQL store serves (``postgresql://``, ``postgresql+psycopg://``)."""
    if location is None or isinstance(location, Path):
        return False
    scheme = str(location).partition("://")[0] if "://" in str(location) else ""
    return scheme.split("+")[0] in SCHEMES


def safe_url(url: str) -> str:
    """``url`` with its password hidden, for messages and logs."""
    import sqlalchemy as sa  # only where a URL is shown

    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return url


def store_exists(location: str | os.PathLike[str]) -> bool:
    """A database URL (its server holds the data) or a SQLite file that is already there."""
    text = os.fspath(location)
    if is_database_url(text):
        return True
    if isinstance(text, str) and text.startswith("sqlite://"):
        text = text.partition("://")[2][1:]
    return Path(text).is_file()
