"""Fixtures of the store tests: a throwaway PostgreSQL database per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

PG_URL = os.environ.get("BENCH_TEST_POSTGRES_URL")
NO_POSTGRES = ("BENCH_TEST_POSTGRES_URL is unset: start a server with `bash .ci/postgres start "
               "DIR` and export the URL it prints (CI does)")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty database on the test server (dropped afterwards), as a SQLAlchemy URL."""
    if not PG_URL:
        pytest.skip(NO_POSTGRES)
    import sqlalchemy as sa

    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    name = f"bench_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield sa.make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
