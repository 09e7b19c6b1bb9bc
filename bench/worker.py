"""The worker process: one per scheduler slot, it trains runs and stores their results.

A worker inherits no CUDA state and no locks. A GPU worker is started by ``multiprocessing``'s
*spawn* context; a CPU worker is forked by a *forkserver* that has imported what every worker
imports (``worker_modules``: torch, Dynamo, the training loop, every method family: about 3 s)
once, so workers are ready in milliseconds instead of each importing on the same cores. The
forkserver does nothing but import (no thread, no tensor op, no CUDA), and a forked worker takes
the scheduler's environment of the moment it was started (``WorkerSpec.environ``), not the
forkserver's. It talks to the scheduler over one duplex pipe:

    scheduler -> worker: ``("run", config_dict)`` or ``("stop",)``
    worker -> scheduler: ``("ready", pid)``, ``("started", run_id)``,
                         ``("progress", run_id, step, total_steps)`` (at most once a second),
                         ``("finished", run_id, status, error)``

The worker writes each result to the store itself, in one transaction, before it reports
``finished``. Why the worker and not the scheduler: a result is durable the moment its run ends,
whatever happens to the scheduler afterwards (a SIGKILL between the two would otherwise lose a
finished run); records with full curves never travel through a pipe; and the store is safe for
several processes (SQLite, WAL). The scheduler writes only what a worker cannot: the ``failed``
record of a run whose worker died.

A worker ignores SIGINT (Ctrl-C reaches the whole process group; the scheduler decides what stops
and terminates its workers) and dies with the scheduler (``PR_SET_PDEATHSIG`` on Linux, and a
watchdog thread elsewhere), so a killed suite leaves no orphan still training.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from bench.config import RunConfig
from bench.errors import BenchError
from bench.record import FAILED, RunResult


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker needs to know about its slot.

    Attributes:
        slot: the slot's name (``cpu0``, ``gpu1``, ``gpu1.2``), recorded in each result's env.
        store_path: the results store the worker writes to.
        threads: ``torch.set_num_threads`` for this worker (CPU slots share the cores).
        cuda_visible: the physical GPU for ``CUDA_VISIBLE_DEVICES`` (``None`` on a CPU slot);
            the worker then sees it as ``cuda:0``.
        env: recorded in each result's ``env`` (e.g. ``workers``), never in the run id.
        environ: the scheduler's ``os.environ`` when it started the worker, which the worker
            takes as its own (a forkserver's children would otherwise have the forkserver's).
    """

    slot: str
    store_path: str
    threads: int
    cuda_visible: str | None = None
    env: tuple[tuple[str, Any], ...] = ()
    environ: tuple[tuple[str, str], ...] | None = None


def main(conn: Connection, spec: WorkerSpec) -> None:
    """The worker's entry point (the target of the spawned or forked process)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    if spec.environ is not None:
        _take_environment(dict(spec.environ))
    if spec.cuda_visible is not None:
        # Before anything initialises CUDA: the worker must see only its own GPU, as cuda:0.
        os.environ["CUDA_VISIBLE_DEVICES"] = spec.cuda_visible
    import torch

    torch.set_num_threads(spec.threads)
    _warm_up()
    conn.send(("ready", os.getpid()))
    store = None
    try:
        while True:
            message = conn.recv()
            if message[0] == "stop":
                break
            if store is None:  # opened at the first run: a worker that never runs writes nothing
                from bench.store import open_store

                store = open_store(spec.store_path)  # a SQLite path or a database URL
            config = RunConfig.from_dict(message[1])
            conn.send(("started", config.run_id))
            result = run_one(config, spec, _progress_sender(conn, config.run_id))
            try:
                store.put(result)  # retried, then kept in the store's side file
            except BenchError as e:  # not even the side file: say so, and take the next run
                conn.send(("finished", result.run_id, FAILED, f"result not stored: {e}"))
                continue
            conn.send(("finished", result.run_id, result.status, result.error))
    except (EOFError, BrokenPipeError):
        pass  # the scheduler is gone: nothing to report to
    finally:
        if store is not None:
            store.close()
    # Everything is stored and closed: skip the interpreter's teardown (seconds with torch
    # loaded), which the scheduler would otherwise wait for at the end of every suite.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


# The environment this module was imported with: in a forkserver, before it imported torch.
_IMPORTED_WITH = dict(os.environ)


def _take_environment(environ: dict[str, str]) -> None:
    """Make ``environ`` (the scheduler's) this process's environment, keeping what importing
    ``worker_modules`` set that it does not (Dynamo sets Inductor's cache folder)."""
    set_by_imports = {k: v for k, v in os.environ.items() if _IMPORTED_WITH.get(k) != v}
    os.environ.clear()
    os.environ.update(set_by_imports | environ)


def worker_modules() -> list[str]:
    """What every worker imports before its first run: torch's Dynamo (any torch.optim optimizer
    imports it when it is built), the training loop and every method family."""
    from bench.methods import FAMILY_MODULES

    return ["torch", "torch._dynamo", "bench.train",
            *(f"bench.methods.{m}" for m in FAMILY_MODULES)]


def _warm_up() -> None:
    """Import ``worker_modules`` before reporting ready (seconds, which the scheduler overlaps
    with its own start; nothing under a forkserver, which imported them), so the first run does
    not pay for them."""
    import importlib

    for module in worker_modules():
        importlib.import_module(module)


def run_one(config: RunConfig, spec: WorkerSpec,
            progress: Callable[[int, int, dict[str, Any]], None] | None = None, *,
            storage: str | None = None) -> RunResult:
    """Train one run as a worker does (``train_or_fail``), its ``env`` stamped with the slot's.

    Args:
        storage: the Optuna storage of a search whose run names none (the Ray executor's
            driver resolves it); default: the store's (``bench.methods.search.storage_url``).
    """
    # A search's study follows the store (``storage_url``): beside a SQLite one, in the database
    # of a PostgreSQL one, where every worker on every machine shares it.
    result = train_or_fail(config, progress=progress, store=spec.store_path, storage=storage)
    result.env = dict(result.env) | {"slot": spec.slot} | dict(spec.env)
    return result


def train_or_fail(config: RunConfig, *,
                  progress: Callable[[int, int, dict[str, Any]], None] | None = None,
                  store: str | None = None, storage: str | None = None) -> RunResult:
    """``bench.train.train`` (its ``store`` and ``storage`` passed on), where anything it raises
    becomes a ``failed`` record, never a dead worker; ``KeyboardInterrupt`` goes through."""
    from bench.measure import now_iso
    from bench.train import train

    started = now_iso()
    try:
        return train(config, progress=progress, store=store, storage=storage)
    except Exception as e:  # noqa: BLE001 - a failing run is recorded, the worker goes on
        return failed_record(config, f"{type(e).__name__}: {e}", started=started)


def _progress_sender(conn: Connection, run_id: str,
                     every: float = 1.0) -> Callable[[int, int, dict[str, Any]], None]:
    """``train``'s progress callback: the step count to the scheduler, at most once a second."""
    last = [0.0]

    def send(step: int, total: int, info: dict[str, Any]) -> None:
        now = time.monotonic()
        if now - last[0] >= every:
            last[0] = now
            conn.send(("progress", run_id, step, total))

    return send


def failed_record(config: RunConfig, reason: str, *, started: str | None = None,
                  in_worker: bool = True) -> RunResult:
    """The record of a run that failed: its config, the reason (one line) and the environment.

    Args:
        config: the run.
        reason: why it failed; whitespace is collapsed and it is cut to 500 characters.
        started: when the run started (ISO 8601), if known.
        in_worker: False when the scheduler writes it (its worker died): the scheduler never
            touches CUDA, so the device's name is left unknown rather than initialising it.
    """
    from bench.measure import environment

    if in_worker:
        env = environment(config.device, started)
    else:
        env = environment("cpu", started) | {"device": config.device}
        if config.device != "cpu":
            env["device_name"] = "unknown (recorded by the scheduler)"
    return RunResult(
        run_id=config.run_id,
        config=config.to_dict(),
        status=FAILED,
        error=" ".join(reason.split())[:500],
        env=env,
    )


def _die_with_parent() -> None:
    """Make this process die when the scheduler dies, even by SIGKILL."""
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
        except OSError:
            pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()
