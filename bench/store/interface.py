"""What every results store guarantees: the contract the scheduler, the workers, the CLI and the
reports rely on, whichever database holds the runs (``bench.store.sqlite``: a SQLite file;
``bench.store.postgres``: a PostgreSQL server). ``tests/bench/test_store_contract.py`` runs the
same tests on both.
"""

from __future__ import annotations

import abc
import os
from pathlib import Path

from bench.errors import BenchError
from bench.record import RunResult
from bench.store.export import write_export

# A run being trained is leased to its invocation (``claim``), which renews the lease every
# ``HEARTBEAT_SECONDS``; one not renewed for ``LEASE_SECONDS`` belongs to an invocation that died,
# and another may take the run over (as Optuna's heartbeats do for trials).
LEASE_SECONDS = 60.0
HEARTBEAT_SECONDS = 10.0
# What ``claim`` answers.
CLAIMED, STORED, HELD = "claimed", "stored", "held"


class StoreWriteError(BenchError):
    """Neither the store nor its side file could take a result."""


class ResultStore(abc.ABC):
    """A store of run records, one per run id. An implementation must guarantee the following.

    **Atomic rows**

    ``put`` writes a record in one transaction: a process killed at any moment leaves the old row,
    the new one, or none, never half of one. ``get`` and ``results`` return every field exactly
    as it was put (floats bit for bit, NaN included).

    **Concurrent writers**

    Any number of processes may open the same store and ``put`` at once without coordinating:
    each waits for the others' transactions (up to the ``timeout`` it was opened with) rather
    than failing, and concurrent puts of one run id leave one of them whole. A store object must
    not cross a ``fork``: each process opens its own.

    **What is kept**

    The statuses are ordered: ``done`` and ``diverged`` (``bench.record.KEPT``) are results,
    ``failed`` and ``interrupted`` are only records. A put replaces a row unless the row is kept
    and the new record is not: a forced re-run that crashes, or a second invocation dying, never
    loses a result. ``has`` is true exactly when a kept result is stored: what it says is cached
    and never trained again; a ``failed`` or ``interrupted`` run is trained again.

    **Leases**

    Several invocations on one store train each run once. ``claim`` leases a run to one owner (an
    invocation's id) in one transaction, so two owners never both get ``CLAIMED``; the others get
    ``HELD`` while the lease lives, and ``STORED`` once a kept result is there. The owner renews
    its leases with ``heartbeat`` at least every ``HEARTBEAT_SECONDS`` and ends one with
    ``release``. A lease not renewed for ``LEASE_SECONDS`` belonged to an invocation that died:
    another may claim the run and train it from the start. A taker-over may assume that the dead
    owner stored nothing kept for that run (else it is ``STORED``); the dead owner's ``failed``
    or ``interrupted`` record, if any, is replaced by its own. Nothing fences the first owner
    out: if it was only slow and puts after all, the later of two kept records stays.

    **A result is not lost to a failing write**

    ``put`` either stores the record or says where it went. The SQLite store retries a locked or
    failing write for ``bench.store.sqlite.WRITE_RETRY_SECONDS`` (30 s), then appends the record
    to a side file beside the store (``STORE.pending.jsonl``, one JSON record a line), which the
    next write-opening of that store imports (and says so); ``StoreWriteError`` only when the
    side file fails too. The PostgreSQL store writes in one statement and raises the server's
    error.

    **Opening checks the store**

    Opening a store checks it before anything trains, and creates its tables if missing: a
    corrupt file or an unreachable server is a ``UserError`` that says what to do. The SQLite
    store also checks the schema: one of a newer ``bench.store.schema.SCHEMA_VERSION`` than this
    code's, or a ``runs`` table with other columns, is a ``UserError``; one of an older version
    of the same columns opens and is marked with the current version. (The PostgreSQL store
    records no version yet: there has been one schema.) ``check_writable`` raises ``UserError``
    for a store this process could not write.
    """

    # -- writing -------------------------------------------------------------------------------

    @abc.abstractmethod
    def check_writable(self) -> None:
        """Raise ``UserError`` now, before anything trains, if a result could not be written."""

    @abc.abstractmethod
    def put(self, result: RunResult) -> None:
        """Write ``result``'s row in one transaction; a kept row is replaced only by a kept one.

        Raises:
            StoreWriteError: neither the store nor its side file could take it (SQLite).
        """

    @abc.abstractmethod
    def delete(self, run_id: str) -> None:
        """Remove a run's row (nothing if absent)."""

    # -- leases: one invocation trains a run ---------------------------------------------------

    @abc.abstractmethod
    def claim(self, run_id: str, owner: str, now: float | None = None) -> str:
        """Lease ``run_id`` to ``owner`` unless a kept result is stored or another live owner
        holds it; ``now`` (seconds since the epoch) defaults to the clock.

        Returns:
            ``CLAIMED`` (``owner`` holds it now, also when it already did), ``STORED`` or
            ``HELD``.
        """

    @abc.abstractmethod
    def heartbeat(self, owner: str) -> None:
        """Renew every lease ``owner`` holds."""

    @abc.abstractmethod
    def release(self, run_id: str, owner: str) -> None:
        """End ``owner``'s lease of ``run_id`` (nothing if it holds none)."""

    # -- reading -------------------------------------------------------------------------------

    @abc.abstractmethod
    def get(self, run_id: str) -> RunResult | None:
        """The stored result of ``run_id``, whatever its status, or ``None``."""

    @abc.abstractmethod
    def has(self, run_id: str) -> bool:
        """True when a result worth keeping (``done`` or ``diverged``) is stored."""

    def results(
        self,
        run_ids: list[str] | None = None,
        *,
        workload: str | None = None,
        method: str | None = None,
        status: str | None = None,
    ) -> list[RunResult]:
        """Stored results, filtered (``run_ids=[]``: none); ordered by workload, method, seed,
        run id."""
        if run_ids is not None and not run_ids:
            return []
        equal = {column: value for column, value in
                 (("workload", workload), ("method", method), ("status", status))
                 if value is not None}
        return self._matching(None if run_ids is None else list(run_ids), equal)

    @abc.abstractmethod
    def _matching(self, run_ids: list[str] | None, equal: dict[str, str]) -> list[RunResult]:
        """The results whose id is in ``run_ids`` (``None``: any, never empty) and whose
        columns equal ``equal``'s values, in ``results``' order."""

    @abc.abstractmethod
    def __len__(self) -> int:
        """How many runs are stored, whatever their status."""

    def export(self, path: str | os.PathLike[str], format: str = "csv") -> Path:
        """Write every run as one flat row (``bench.store.export.flat_row``).

        Args:
            path: the output file (its folder is created).
            format: ``"csv"`` or ``"parquet"`` (pyarrow).

        Returns:
            The path written.
        """
        return write_export(self.results(), path, format)

    # -- lifetime ------------------------------------------------------------------------------

    @abc.abstractmethod
    def close(self) -> None:
        """Release the connection(s); the store is not used afterwards."""

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
