"""The scheduler: a plan of runs over slots (GPUs or CPU), one worker process per slot.

Guarantees:
    - Runs already in the store (``Store.has``: done or diverged) are skipped, so a re-run of a
      suite resumes where the last one stopped.
    - Runs are queued by dependency (a dependent run waits for its parent's result), longest
      first (estimated cost), so the slowest runs do not start last.
    - A run that raises, runs out of memory, or whose worker dies (segfault, SIGKILL) is recorded
      ``failed`` with the reason; a dead worker is replaced and the suite goes on.
    - Ctrl-C (or SIGTERM) stops: finished runs stay in the store, running ones are discarded
      (their workers are terminated before writing anything; a write is one transaction).
    - Two invocations on one store train each run once: a run is leased (``Store.claim``) before
      it is sent to a worker, the lease renewed while it trains; a run another live invocation
      holds waits, and is taken as stored when that one stores it (or taken over when its lease
      lapses: that invocation died).
"""

from __future__ import annotations

import contextlib
import heapq
import multiprocessing as mp
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from bench.config import RunConfig
from bench.errors import BenchError, UserError
from bench.estimates import dry_run_text, estimate_seconds
from bench.progress import Progress, Summary, describe
from bench.record import DIVERGED, DONE, FAILED
from bench.slots import Slot, cpu_slots, gpu_slots
from bench.store import HEARTBEAT_SECONDS, HELD, STORED
from bench.suite import LEARNED_FROM, resolve_dependent
from bench.worker import WorkerSpec, failed_record
from bench.worker import main as worker_main

# A worker that dies this many times in a row before it is ready is broken, not unlucky.
MAX_START_FAILURES = 3


# --- the scheduler ----------------------------------------------------------------------------


@dataclass
class _Worker:
    slot: Slot
    process: Any
    conn: Connection
    pid: int | None = None  # set when ready
    running: RunConfig | None = None
    started: float = 0.0
    started_iso: str | None = None


class Scheduler:
    """Runs a plan over slots, one spawned worker process per slot.

    Args:
        slots: from ``cpu_slots`` or ``gpu_slots``.
        store: an open ``bench.store.Store``; its path is given to the workers. It may be set
            later (``scheduler.store = ...``) when ``start_workers`` runs before it is opened.
        store_path: the path of that store.
        progress: where events go (default: a ``Progress`` over ``slots``).
        worker_env: recorded in every result's ``env`` (not the id).
    """

    def __init__(self, slots: list[Slot], store: Any | None, store_path: str, *,
                 progress: Progress | None = None,
                 worker_env: dict[str, Any] | None = None) -> None:
        if not slots:
            raise UserError("no slots to run on; give --gpus or --cpu-workers N (N >= 1)")
        self.slots, self.store, self.store_path = slots, store, str(store_path)
        self.progress = progress or Progress(slots)
        self.worker_env = tuple(sorted((worker_env or {}).items()))
        self.context = mp.get_context("spawn")
        self.workers: dict[str, _Worker] = {}
        self.start_failures: dict[str, int] = {}
        self.queue: list[tuple[float, str, int, int, RunConfig]] = []
        self.waiting: dict[str, list[RunConfig]] = {}
        self.costs: dict[str, float] = {}
        self.summary = Summary()
        self.order = 0
        # Leases: who this invocation is in the store, and the runs another one holds.
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.held: list[RunConfig] = []
        self.announced: set[str] = set()
        self.last_heartbeat = time.monotonic()

    # planning -------------------------------------------------------------------------------

    def prepare(self, plan: list[RunConfig]) -> int:
        """Queue what is not stored yet; returns how many runs will train (dependents counted)."""
        self.summary = Summary(planned=len(plan))
        planned_ids = {c.run_id for c in plan}
        to_train = 0
        for config in plan:
            parent = config.option(LEARNED_FROM)
            if parent is None:
                if self.store.has(config.run_id):
                    self.summary.stored += 1
                else:
                    self.push(config)
                    to_train += 1
            elif self.store.has(parent):
                to_train += self.release(config, parent)
            elif parent in planned_ids:
                self.waiting.setdefault(parent, []).append(config)
                to_train += 1
            else:
                self.skip(config, f"its parent {parent} is neither stored nor planned")
        return to_train

    def push(self, config: RunConfig) -> None:
        cost = self.costs.setdefault(config.run_id, estimate_seconds(config))
        self.order += 1
        # Longest first; among equals, runs on the same data (workload and seed: the split)
        # together, so a worker's data cache keeps hitting instead of cycling through seeds.
        heapq.heappush(self.queue, (-cost, config.workload, config.seed, self.order, config))

    def release(self, dependent: RunConfig, parent_id: str) -> int:
        """A parent is stored: queue its dependent's concrete run (1) or skip it (0)."""
        parent = self.store.get(parent_id)
        if parent is None or parent.status != DONE:
            status = parent.status if parent else "missing"
            self.skip(dependent, f"its parent {parent_id} is {status}")
            return 0
        try:
            config = resolve_dependent(dependent, parent)
        except UserError as e:
            self.skip(dependent, str(e))
            return 0
        if self.store.has(config.run_id):
            self.summary.stored += 1
            return 0
        self.push(config)
        return 1

    def release_dependents(self, parent_id: str) -> None:
        """A parent has its result: queue (or skip) the runs that waited for it."""
        for dependent in self.waiting.pop(parent_id, []):
            if not self.release(dependent, parent_id):
                self.progress.total -= 1

    def skip(self, config: RunConfig, why: str) -> None:
        self.summary.skipped.append(f"{describe(config)}: {why}")
        self.progress.line(f"skipped {describe(config)}: {why}")

    # running ---------------------------------------------------------------------------------

    def run(self, plan: list[RunConfig]) -> Summary:
        """Train every run of ``plan`` not already stored; returns what happened.

        Raises:
            KeyboardInterrupt: after stopping the workers (finished runs stay stored).
            BenchError: a worker could not even start (``MAX_START_FAILURES`` times in a row).
        """
        to_train = self.prepare(plan)
        self.progress.start(self.summary, to_train)
        try:
            if to_train == 0:
                self.terminate()  # workers started early have nothing to do
            for slot in self.slots[: max(0, to_train)]:
                if slot.name not in self.workers:
                    self.spawn(slot)
            while (self.queue or self.waiting or self.held
                   or any(w.running for w in self.workers.values())):
                self.dispatch()
                self.poll(timeout=1.0)
                self.renew()
        except BaseException:
            self.summary.interrupted = sum(1 for w in self.workers.values() if w.running)
            running = [w.running for w in self.workers.values() if w.running]
            self.terminate()
            for config in running:  # the next invocation need not wait for the leases to lapse
                with _suppressed():
                    self.store.release(config.run_id, self.owner)
            raise
        finally:
            self.progress.close()
        self.stop()
        return self.summary

    def start_workers(self) -> None:
        """Start a worker on every slot now: they import torch and the harness (seconds) while
        the caller still checks the suite. ``run`` starts any that are missing."""
        for slot in self.slots:
            if slot.name not in self.workers:
                self.spawn(slot)

    def spawn(self, slot: Slot) -> None:
        parent_conn, child_conn = self.context.Pipe(duplex=True)
        spec = WorkerSpec(slot.name, self.store_path, slot.threads, slot.cuda_visible,
                          self.worker_env)
        process = self.context.Process(target=worker_main, args=(child_conn, spec),
                                       name=f"bench-worker-{slot.name}", daemon=True)
        # The worker is born with its GPU as the only visible one (it sets it again itself
        # before importing torch): nothing in it can initialise CUDA on another device.
        saved = os.environ.get("CUDA_VISIBLE_DEVICES")
        if slot.cuda_visible is not None:
            os.environ["CUDA_VISIBLE_DEVICES"] = slot.cuda_visible
        try:
            process.start()
        finally:
            if saved is None:
                os.environ.pop("CUDA_VISIBLE_DEVICES", None)
            else:
                os.environ["CUDA_VISIBLE_DEVICES"] = saved
        child_conn.close()
        self.workers[slot.name] = _Worker(slot, process, parent_conn)

    def dispatch(self) -> None:
        for worker in self.workers.values():
            if worker.pid is not None and worker.running is None:
                config = self.next_claimed()
                if config is None:
                    return
                worker.running, worker.started = config, time.perf_counter()
                worker.started_iso = _now_iso()
                worker.conn.send(("run", config.to_dict()))
                self.progress.busy(worker.slot, worker.pid, config)

    def next_claimed(self) -> RunConfig | None:
        """The next queued run this invocation may train (leased to it), or ``None``."""
        while self.queue:
            config = heapq.heappop(self.queue)[-1]
            outcome = self.store.claim(config.run_id, self.owner)
            if outcome == STORED:
                self.stored_elsewhere(config)
            elif outcome == HELD:
                if config.run_id not in self.announced:
                    self.announced.add(config.run_id)
                    self.progress.line(f"waiting: {describe(config)} is being trained by another "
                                       "invocation on this store")
                self.held.append(config)
            else:
                return config
        return None

    def stored_elsewhere(self, config: RunConfig) -> None:
        """Another invocation stored ``config`` meanwhile: count it stored, free its
        dependents."""
        self.summary.stored += 1
        self.progress.total -= 1
        self.progress.line(f"stored by another invocation: {describe(config)}")
        self.release_dependents(config.run_id)

    def renew(self) -> None:
        """Every ``HEARTBEAT_SECONDS``: renew this invocation's leases and look again at the
        runs another one holds (stored by now, or free to take over)."""
        if time.monotonic() - self.last_heartbeat < HEARTBEAT_SECONDS:
            return
        self.last_heartbeat = time.monotonic()
        self.store.heartbeat(self.owner)
        held, self.held = self.held, []
        for config in held:
            self.push(config)

    def poll(self, timeout: float) -> None:
        """Wait for a message or a dead worker, and handle what arrived."""
        by_conn = {w.conn: w for w in self.workers.values()}
        by_sentinel = {w.process.sentinel: w for w in self.workers.values()}
        for ready in wait([*by_conn, *by_sentinel], timeout=timeout):
            worker = by_conn.get(ready) or by_sentinel[ready]  # type: ignore[index]
            if self.workers.get(worker.slot.name) is not worker:
                continue  # already replaced in this round
            try:
                while worker.conn.poll():
                    self.handle(worker, worker.conn.recv())
            except (EOFError, OSError):
                pass
            if not worker.process.is_alive() or ready is worker.process.sentinel:
                worker.process.join(timeout=5)
                self.died(worker)

    def handle(self, worker: _Worker, message: tuple) -> None:
        kind = message[0]
        if kind == "ready":
            worker.pid = message[1]
            self.start_failures[worker.slot.name] = 0
        elif kind == "progress" and worker.running is not None:
            self.progress.step(worker.slot, worker.running, message[2], message[3])
        elif kind == "finished":
            _, run_id, status, error = message
            config = worker.running
            assert config is not None and config.run_id == run_id, (config, run_id)
            worker.running = None
            self.finish(worker.slot, config, status, error, time.perf_counter() - worker.started)

    def finish(self, slot: Slot, config: RunConfig, status: str, error: str | None,
               seconds: float) -> None:
        if status == DONE:
            self.summary.done += 1
        elif status == DIVERGED:
            self.summary.diverged += 1
        else:
            self.summary.failed += 1
        self.summary.trained.append(config.run_id)
        with _suppressed():  # a lease left behind only delays another invocation by its timeout
            self.store.release(config.run_id, self.owner)
        self.progress.finished(slot, config, status, error, seconds)
        self.release_dependents(config.run_id)

    def died(self, worker: _Worker) -> None:
        """A worker is gone: record its run as failed and replace it if there is work left."""
        del self.workers[worker.slot.name]
        code = worker.process.exitcode
        reason = _exit_reason(code)
        if worker.running is not None:
            config = worker.running
            record = failed_record(config, f"worker died while running ({reason})",
                                   started=worker.started_iso, in_worker=False)
            try:
                self.store.put(record)
            except BenchError as e:  # the store and its side file are gone: the suite goes on
                print(f"warning: {e}", file=sys.stderr, flush=True)
            self.finish(worker.slot, config, FAILED, record.error,
                        time.perf_counter() - worker.started)
        elif worker.pid is None:
            n = self.start_failures.get(worker.slot.name, 0) + 1
            self.start_failures[worker.slot.name] = n
            if n >= MAX_START_FAILURES:
                raise BenchError(f"the worker of slot {worker.slot.name} died {n} times before "
                                 f"it was ready ({reason}); see its error output above")
        if self.queue or self.waiting:
            self.spawn(worker.slot)

    def stop(self) -> None:
        """Normal end: ask each worker to stop, then make sure it has."""
        for worker in self.workers.values():
            try:
                worker.conn.send(("stop",))
            except OSError:
                pass
        for worker in self.workers.values():
            worker.process.join(timeout=10)
            if worker.process.is_alive():
                worker.process.terminate()
                worker.process.join(timeout=5)
        self.workers.clear()

    def terminate(self) -> None:
        """Stop now: running runs are discarded (a worker writes a result in one transaction)."""
        for worker in self.workers.values():
            if worker.process.is_alive():
                worker.process.terminate()
        for worker in self.workers.values():
            worker.process.join(timeout=10)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(timeout=5)
        self.workers.clear()


@contextlib.contextmanager
def _suppressed() -> Any:
    """A lease write that fails (a busy or gone store) is reported, never fatal."""
    try:
        yield
    except Exception as e:
        print(f"warning: lease: {e}", file=sys.stderr, flush=True)


def _now_iso() -> str:
    # bench.measure imports torch: not at import time, so that building the CLI stays quick.
    from bench.measure import now_iso

    return now_iso()


def _exit_reason(code: int | None) -> str:
    if code is None:
        return "exit status unknown"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = "; out of memory?" if name == "SIGKILL" else ""
        return f"killed by {name}{hint}"
    return f"exited with status {code}"


def sigterm_as_interrupt() -> Callable[[], None]:
    """Treat SIGTERM like Ctrl-C (the same clean stop); returns a function that undoes it."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    return lambda: signal.signal(signal.SIGTERM, previous)


# --- the ``suite`` subcommand -----------------------------------------------------------------


def add_arguments(parser: Any) -> None:
    """The arguments of ``python -m bench suite``."""
    from bench.arguments import seeds_type

    parser.add_argument("suite", help="a shipped suite's name (see `bench list`) or a .toml path")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--gpus", help="GPU indices, e.g. 0,1, or 'all': one worker per GPU")
    where.add_argument("--cpu-workers", type=int, metavar="N",
                       help="N CPU workers sharing the cores (default: 1 when --gpus is absent)")
    parser.add_argument("--store", help="results store (default: $BENCH_STORE or "
                                        "results/bench.sqlite)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the plan (runs per workload and method, estimated cost)")
    parser.add_argument("--seeds", type=seeds_type, metavar="0,1,2",
                        help="replace every group's seeds, e.g. 0,1,2 or 0-4")
    parser.add_argument("--jobs-per-gpu", type=int, default=1, metavar="N",
                        help="runs sharing one GPU (recorded in each run's options: its id)")
    parser.add_argument("--no-report", action="store_true", help="do not write the report")
    from bench.executors import add_arguments as executor_arguments

    executor_arguments(parser)  # --executor local|ray, --address


def run_cli(args: Any) -> int:
    """``python -m bench suite``: plan, check the slots, train, report.

    Exit codes: 0 all runs done (or diverged: a result), 1 some run failed, 130 interrupted.
    """
    from bench.executors import LOCAL
    from bench.store import default_location, open_store, safe_url
    from bench.suite import load_suite

    if (getattr(args, "executor", LOCAL) != LOCAL or getattr(args, "address", None)
            or getattr(args, "search_workers", 1) != 1):
        from bench.executors import run_cli as run_elsewhere  # Ray (or a mistake it explains)

        return run_elsewhere(args)
    if args.gpus is not None:  # a GPU that is not there: before anything runs
        slots = gpu_slots(args.gpus, args.jobs_per_gpu)
    else:
        slots = cpu_slots(args.cpu_workers if args.cpu_workers is not None else 1)
    device = slots[0].device
    store_path = args.store or default_location()  # a path or a database URL
    if args.dry_run:
        suite = load_suite(args.suite)
        plan = suite.plan(seeds=args.seeds, device=device, jobs_per_gpu=args.jobs_per_gpu)
        print(dry_run_text(suite.name, plan, store_path, slots))
        return 0
    workers = {"workers": len(slots)}
    if device == "cuda":
        workers["jobs_per_gpu"] = args.jobs_per_gpu
    scheduler = Scheduler(slots, None, str(store_path), worker_env=workers)
    # The workers start up (imports: seconds) while the suite is checked; they touch nothing
    # (not even the store) before their first run, and a mistake in the suite stops them.
    scheduler.start_workers()
    try:
        suite = load_suite(args.suite)  # malformed file, unknown names: before any run starts
        plan = suite.plan(seeds=args.seeds, device=device, jobs_per_gpu=args.jobs_per_gpu)
        print(f"suite {suite.name}: {suite.description}\nstore: {safe_url(store_path)}",
              flush=True)
        store = scheduler.store = open_store(store_path)
        store.check_writable()  # before any run trains: a result must have somewhere to go
    except BaseException:
        scheduler.terminate()
        raise
    restore = sigterm_as_interrupt()
    started = time.perf_counter()
    try:
        summary = scheduler.run(plan)
        print(summary_text(summary, time.perf_counter() - started), flush=True)
        reported = args.no_report or write_report(suite, plan, store)
    except KeyboardInterrupt:
        s = scheduler.summary
        print(f"interrupted: {s.finished} runs finished and stored, {s.interrupted} running "
              "discarded; run the same command again to resume", flush=True)
        return 130
    except BenchError as e:  # a worker that cannot start: nothing the next run would fix alone
        if isinstance(e, UserError):
            raise
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 1
    finally:
        restore()
        store.close()
    return 1 if summary.failed or not reported else 0


def summary_text(summary: Summary, seconds: float) -> str:
    lines = [f"finished in {seconds:.1f} s: {summary.done} done, {summary.diverged} diverged, "
             f"{summary.failed} failed, {summary.stored} already stored, "
             f"{len(summary.skipped)} skipped"]
    lines += [f"  skipped {why}" for why in summary.skipped]
    return "\n".join(lines)


def write_report(suite: Any, plan: list[RunConfig], store: Any) -> bool:
    """Write the suite's report (``bench.report.write_suite_report``); False if that failed.

    The runs are stored whatever happens here: a failing report is one line and exit code 1,
    and ``python -m bench report`` can write it again from the store.
    """
    try:
        from bench.report import write_suite_report

        path = write_suite_report(suite, store, plan=plan)
    except Exception as e:  # noqa: BLE001 - the report must not hide that the training is stored
        print(f"error: the report could not be written ({type(e).__name__}: {e}); the runs are "
              "stored: `python -m bench report` writes it from the store", file=sys.stderr,
              flush=True)
        return False
    print(f"report: {path}", flush=True)
    return True
