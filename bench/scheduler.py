"""The local executor: a plan of runs over slots (GPUs or CPU), one worker process per slot.

The runs come from a ``bench.run_queue.RunQueue``, as the Ray executor's do. Guarantees:
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
import multiprocessing as mp
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing import forkserver
from multiprocessing.connection import Connection, wait
from typing import Any

from bench.config import RunConfig
from bench.errors import BenchError, UserError
from bench.progress import Progress, Summary, describe
from bench.record import FAILED
from bench.run_queue import RunQueue
from bench.slots import Slot
from bench.store import HEARTBEAT_SECONDS, HELD, STORED
from bench.worker import WorkerSpec, failed_record, worker_modules
from bench.worker import main as worker_main

# A worker that dies this many times in a row before it is ready is broken, not unlucky.
MAX_START_FAILURES = 3


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
    """Runs a plan over slots, one worker process per slot (forked by a forkserver on a CPU
    slot, spawned on a GPU slot: ``_context``).

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
        self.workers: dict[str, _Worker] = {}
        self.start_failures: dict[str, int] = {}
        self.runs = RunQueue(self.progress)
        # Leases: who this invocation is in the store, and the runs another one holds.
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.held: list[RunConfig] = []
        self.announced: set[str] = set()
        self.last_heartbeat = time.monotonic()

    @property
    def summary(self) -> Summary:
        """What this run of the plan did so far (stored, trained, failed, skipped)."""
        return self.runs.summary

    def run(self, plan: list[RunConfig]) -> Summary:
        """Train every run of ``plan`` not already stored; returns what happened.

        Raises:
            KeyboardInterrupt: after stopping the workers (finished runs stay stored).
            BenchError: a worker could not even start (``MAX_START_FAILURES`` times in a row).
        """
        to_train = self.runs.prepare(plan, self.store)
        self.summary.workers = min(len(self.slots), to_train)
        self.progress.start(self.summary, to_train)
        try:
            if to_train == 0:
                self.terminate()  # workers started early have nothing to do
            for slot in self.slots[: max(0, to_train)]:
                if slot.name not in self.workers:
                    self.spawn(slot)
            while (self.runs.pending or self.held
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
        the caller still checks the suite. ``run`` starts any that are missing.

        CPU slots' workers are forked by the forkserver once it has imported that (forking
        earlier would wait for it): here the forkserver is only started, and ``run`` forks."""
        for slot in self.slots:
            context = _context(slot)
            if context.get_start_method() == "forkserver":
                forkserver.ensure_running()
            elif slot.name not in self.workers:
                self.spawn(slot)

    def spawn(self, slot: Slot) -> None:
        context = _context(slot)
        parent_conn, child_conn = context.Pipe(duplex=True)
        spec = WorkerSpec(slot.name, self.store_path, slot.threads, slot.cuda_visible,
                          self.worker_env, environ=tuple(os.environ.items()))
        process = context.Process(target=worker_main, args=(child_conn, spec),
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
        while (config := self.runs.pop()) is not None:
            outcome = self.store.claim(config.run_id, self.owner)
            if outcome == STORED:
                self.runs.stored_elsewhere(config)
            elif outcome == HELD:
                if config.run_id not in self.announced:
                    self.announced.add(config.run_id)
                    self.progress.line(f"waiting: {describe(config)} is being trained by another "
                                       "invocation on this store")
                self.held.append(config)
            else:
                return config
        return None

    def renew(self) -> None:
        """Every ``HEARTBEAT_SECONDS``: renew this invocation's leases and look again at the
        runs another one holds (stored by now, or free to take over)."""
        if time.monotonic() - self.last_heartbeat < HEARTBEAT_SECONDS:
            return
        self.last_heartbeat = time.monotonic()
        self.store.heartbeat(self.owner)
        held, self.held = self.held, []
        for config in held:
            self.runs.push(config)

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
        with _suppressed():  # a lease left behind only delays another invocation by its timeout
            self.store.release(config.run_id, self.owner)
        self.runs.finished(slot, config, status, error, seconds)

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
        if self.runs.pending:
            self.spawn(worker.slot)

    def stop(self) -> None:
        """Normal end: ask each worker to stop, then make sure it has."""
        for worker in self.workers.values():
            try:
                worker.conn.send(("stop",))
            except OSError:
                pass
        self._reap(lambda process: process.terminate())

    def terminate(self) -> None:
        """Stop now: running runs are discarded (a worker writes a result in one transaction)."""
        for worker in self.workers.values():
            if worker.process.is_alive():
                worker.process.terminate()
        self._reap(lambda process: process.kill())

    def _reap(self, force: Callable[[Any], None]) -> None:
        """Wait for every worker to exit (10 s each), ``force`` one that has not and wait 5 s
        more; then forget them all."""
        for worker in self.workers.values():
            worker.process.join(timeout=10)
            if worker.process.is_alive():
                force(worker.process)
                worker.process.join(timeout=5)
        self.workers.clear()


def _context(slot: Slot) -> Any:
    """How a slot's worker is started: a CPU worker forked by a forkserver that has imported
    what every worker imports (``bench.worker.worker_modules``, once for all workers and for
    every suite of this process); a GPU worker spawned, as a fresh interpreter that has never
    seen CUDA before it sets its own ``CUDA_VISIBLE_DEVICES``."""
    if slot.cuda_visible is not None or "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    context = mp.get_context("forkserver")
    # bench.worker first: it notes the environment before the other imports change it.
    context.set_forkserver_preload(["bench.worker", *worker_modules()])
    return context


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
