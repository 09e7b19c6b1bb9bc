"""The Ray executor: each run of a suite a Ray task, on one machine or many.

``python -m bench suite NAME --executor ray [--address auto | ray://HOST:10001] [--gpus all]``

What it shares with the local scheduler: the run queue (``bench.run_queue.RunQueue``: runs already
stored are skipped, a dependent run is queued once its parent is stored, longest first), the
summary and the progress lines, and the ``suite`` command around it
(``bench.executors.command``: the closing line, the report, the exit codes). What differs:

- A run is a Ray task asking for one CPU or, with ``--gpus all``, one GPU (``1/N`` of one with
  ``--jobs-per-gpu N``); Ray places it and sets ``CUDA_VISIBLE_DEVICES``. The task calls
  ``bench.worker.run_one`` (the same ``bench.train.train`` the local worker calls) and writes the
  record to the store itself, in one transaction, before it returns: a finished run is durable
  whatever happens to the driver afterwards.
- Failure isolation: a run that raises is recorded ``failed`` by its task; a task whose worker
  process dies (segfault, SIGKILL, Ray's out-of-memory killer, a lost node) is recorded
  ``failed`` by the driver, with Ray's reason; the suite goes on. Tasks are never retried: a run
  that crashed a process would crash it again.
- Ctrl-C (or SIGTERM) cancels every outstanding task, killing running ones before they write (a
  write is one transaction): finished runs stay stored and the same command resumes.
- The store: a SQLite path serves one machine; with several nodes (or Ray Client) give a
  PostgreSQL URL (``--store postgresql+psycopg://USER@HOST:PORT/DB``) that every node reaches.
  A search's Optuna study then lives in the same database.
- ``--search-workers K``: each search run is K tasks sharing one Optuna study and its budget
  (``baselines.search``: TPE with ``constant_liar``; the budget is the study's, overspent by
  less than K evaluation intervals); every task ends with the same outcome and writes it.

Every node needs the project installed (``pip install -e '.[cluster]'``) and the data
(``BENCH_DATA_DIR`` exported before ``ray start``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from bench.config import RunConfig
from bench.errors import UserError
from bench.progress import Progress, Summary
from bench.record import DIVERGED, DONE, FAILED
from bench.run_queue import RunQueue
from bench.slots import Slot

TASK_PREFIX = "bench"  # a running task's process title is "ray::bench RUN_ID ..."


# --- the task ---------------------------------------------------------------------------------


def run_task(config: dict[str, Any], store: str, env: tuple[tuple[str, Any], ...],
             search_storage: str | None) -> tuple[str, str, str | None, float, str]:
    """One run inside a Ray worker: train it, write its record, say how it went.

    Args:
        config: ``RunConfig.to_dict()``.
        store: the results store (an absolute SQLite path or a database URL).
        env: recorded in the result's ``env`` (never in its id).
        search_storage: the Optuna storage of a search whose run names none, as the driver
            resolved it (its ``$BENCH_OPTUNA_STORAGE``, else the store's); ``None`` for a plan
            without searches.

    Returns:
        ``(run_id, status, error, seconds, where)``; ``where`` names the node (and GPU).
    """
    import ray
    import torch

    from bench.store import open_store
    from bench.worker import WorkerSpec, run_one

    threads = max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1)))
    torch.set_num_threads(threads)
    where = _where(ray)
    started = time.perf_counter()
    result = run_one(RunConfig.from_dict(config), WorkerSpec(where, store, threads, env=env),
                     storage=search_storage)
    with open_store(store) as results:
        results.put(result)
    return result.run_id, result.status, result.error, time.perf_counter() - started, where


def _where(ray: Any) -> str:
    gpus = ray.get_gpu_ids()
    node = ray.util.get_node_ip_address()
    return f"ray:{node}" + (f":gpu{','.join(str(g) for g in gpus)}" if gpus else "")


# --- the executor -----------------------------------------------------------------------------


@dataclass
class _Outcome:
    """How one task ended: ``written`` when the task itself stored the record."""

    status: str
    error: str | None
    seconds: float
    where: str
    written: bool


@dataclass
class _Run:
    """A submitted run: one task, or K for a search shared by ``--search-workers K``."""

    config: RunConfig
    tasks: int
    submitted: float
    started_iso: str
    outcomes: list[_Outcome] = field(default_factory=list)


class RayScheduler:
    """A plan's runs from a ``RunQueue``, every run a Ray task (see the module docstring).

    Args:
        store: an open store (``bench.store.open_store``), the driver's.
        location: that store's path (absolute: workers do not share the driver's folder) or URL.
        device: ``"cpu"`` or ``"cuda"``.
        jobs_per_gpu: runs sharing one GPU (each asks for ``1/jobs_per_gpu`` GPU).
        search_workers: tasks per search run, sharing its study.
        progress: where events go (default: one line per event).
        worker_env: recorded in every result's ``env``.
    """

    def __init__(self, store: Any, location: str, *, device: str = "cpu", jobs_per_gpu: int = 1,
                 search_workers: int = 1, progress: Progress | None = None,
                 worker_env: dict[str, Any] | None = None) -> None:
        import ray

        if search_workers < 1:
            raise UserError(f"--search-workers must be >= 1, but got {search_workers}")
        slot = Slot(f"ray cluster ({_resources_text(ray.cluster_resources())})", device, 1)
        self.store, self.store_path = store, str(location)
        self.progress = progress or Progress([slot], live=False)
        self.runs = RunQueue(self.progress)
        self.worker_env = tuple(sorted((worker_env or {}).items()))
        self.device, self.search_workers = device, search_workers
        # A GPU run gets a fresh process (max_calls=1, which Ray accepts only here, not in
        # .options()): CUDA, once initialised, keeps its GPU whatever CUDA_VISIBLE_DEVICES Ray
        # sets for the next task.
        resources: dict[str, float] = (
            {"num_gpus": 1.0 / jobs_per_gpu, "num_cpus": 1, "max_calls": 1} if device == "cuda"
            else {"num_cpus": 1}
        )
        self.task = ray.remote(**resources)(run_task)
        self.pending: dict[Any, _Run] = {}  # task reference -> its run
        self.search_storage: str | None = None  # resolved here, for every task alike

    @property
    def summary(self) -> Summary:
        """What this run of the plan did so far (stored, trained, failed, skipped)."""
        return self.runs.summary

    def run(self, plan: list[RunConfig]) -> Summary:
        """Train every run of ``plan`` not already stored; returns what happened.

        Raises:
            KeyboardInterrupt: after cancelling the outstanding tasks (finished runs stay).
        """
        if any(_is_search(config) for config in plan):
            from bench.methods.search import storage_url

            self.search_storage = storage_url(store=self.store_path)
        to_train = self.runs.prepare(plan, self.store)
        self.progress.start(self.summary, to_train)
        try:
            while self.runs.heap or self.pending:
                self.submit()
                self.collect(timeout=1.0)
        except BaseException:
            self.summary.interrupted = len({id(run) for run in self.pending.values()})
            self.cancel()
            raise
        finally:
            self.progress.close()
        return self.summary

    def submit(self) -> None:
        """Hand every queued run to Ray, longest first (Ray starts them in that order)."""
        from bench.measure import now_iso

        count = 0
        while (config := self.runs.pop()) is not None:
            tasks = self.search_workers if _is_search(config) else 1
            run = _Run(config, tasks, time.perf_counter(), now_iso())
            for k in range(tasks):
                name = f"{TASK_PREFIX} {config.run_id}" + (f" worker {k}" if tasks > 1 else "")
                ref = self.task.options(name=name, max_retries=0).remote(
                    config.to_dict(), self.store_path, self.worker_env, self.search_storage)
                self.pending[ref] = run
            count += 1
        if count:
            self.progress.line(f"submitted {count} runs to Ray")

    def collect(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for tasks to end, and record the runs they finish."""
        import ray

        refs = list(self.pending)
        if not refs:
            return
        ready, _ = ray.wait(refs, num_returns=1, timeout=timeout)
        if ready:  # and whatever else has ended meanwhile
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        for ref in ready:
            run = self.pending.pop(ref)
            run.outcomes.append(_outcome(ref, run))
            if len(run.outcomes) == run.tasks:
                self.finished(run)

    def finished(self, run: _Run) -> None:
        """Every task of ``run`` has ended: record it (the driver writes only for dead tasks)."""
        from bench.worker import failed_record

        kept = [o for o in run.outcomes if o.written]
        results = [o for o in kept if o.status in (DONE, DIVERGED)]
        chosen = (results or kept or run.outcomes)[0]
        if not chosen.written:  # no task lived to write a record: say why its worker died
            self.store.put(failed_record(run.config, chosen.error or "unknown",
                                         started=run.started_iso, in_worker=False))
        slot = Slot(chosen.where, self.device, 1)
        self.runs.finished(slot, run.config, chosen.status, chosen.error, chosen.seconds)

    def cancel(self) -> None:
        """Cancel every outstanding task; running ones are killed before they write."""
        import ray

        for ref in self.pending:
            try:
                ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - already finished, or the cluster is gone
                pass
        self.pending.clear()


def _outcome(ref: Any, run: _Run) -> _Outcome:
    import ray

    try:
        _, status, error, seconds, where = ray.get(ref)
        return _Outcome(status, error, seconds, where, written=True)
    except ray.exceptions.RayTaskError as e:  # raised by the task itself: not by train
        reason = f"the task raised {type(e.cause).__name__}: {e.cause}"
    except ray.exceptions.RayError as e:  # its worker process or its node died
        reason = f"worker died while running ({type(e).__name__}: {_first_line(e)})"
    return _Outcome(FAILED, " ".join(reason.split())[:500],
                    time.perf_counter() - run.submitted, "ray", written=False)


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else "no reason given"


def _is_search(config: RunConfig) -> bool:
    from bench.methods import parse_method

    return parse_method(config.method).kind == "search"


def _resources_text(resources: dict[str, float]) -> str:
    return f"{resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs"


# --- the cluster ------------------------------------------------------------------------------


@contextlib.contextmanager
def connected(address: str | None) -> Iterator[None]:
    """Inside the block, connected to the Ray cluster at ``address`` (None: a local one started
    for it); a connection made here is closed at its end, one found already open is left open.

    Raises:
        UserError: Ray is not installed, or the cluster cannot be reached.
    """
    try:
        import ray
    except ImportError:
        raise UserError("--executor ray needs Ray; install it with pip install -e '.[cluster]'"
                        ) from None
    if ray.is_initialized():
        yield
        return
    options: dict[str, Any] = {"logging_level": logging.WARNING}
    if address is None and not os.environ.get("RAY_ADDRESS"):
        options["include_dashboard"] = False  # a local instance for this suite: nothing to show
    try:
        ray.init(address=address, **options)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise UserError(f"cannot reach the Ray cluster at {address!r}: {_first_line(e)}; start "
                        "one with `ray start --head`, or leave --address out for a local one"
                        ) from None
    try:
        yield
    finally:
        ray.shutdown()


def check_cluster(device: str, location: str, address: str | None) -> None:
    """The cluster can run the plan: GPUs when asked for, a shared store when it has nodes."""
    import ray

    from bench.store import is_database_url

    resources = ray.cluster_resources()
    if device == "cuda" and resources.get("GPU", 0) <= 0:
        raise UserError(f"--gpus all asks each run for a GPU, but the Ray cluster has none "
                        f"({_resources_text(resources)}); leave --gpus out to run on CPUs")
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if not is_database_url(location) and (len(nodes) > 1 or str(address).startswith("ray://")):
        raise UserError(
            f"the store {location} is a SQLite file on this machine, but the Ray cluster has "
            f"{len(nodes)} nodes (or is reached through Ray Client); give every node the same "
            "store: --store postgresql+psycopg://USER@HOST:PORT/DB")


def create_optuna_tables(location: str) -> None:
    """Create Optuna's tables once, here, before K tasks of a search open the database at once."""
    from baselines.search import make_storage
    from bench.methods.search import storage_url
    from bench.store import is_database_url

    if not is_database_url(location) and not os.environ.get("BENCH_OPTUNA_STORAGE"):
        return  # SQLite beside the store: created under SQLite's lock, no race
    make_storage(storage_url(store=location))
