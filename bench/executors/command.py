"""``python -m bench suite``: plan a suite, train it on the executor asked for, write its report.

The command picks the executor (``--executor local``, the default: ``bench.scheduler``, worker
processes on this machine; ``ray``: ``bench.executors.ray_executor``, Ray tasks on a cluster),
prepares it (slots or cluster, the store), and ends alike whichever trained: the closing summary
line, the report, and the exit code: 0 every run done (or diverged: a result), 1 some run
failed or the report could not be written, 130 interrupted (finished runs stay stored).
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from bench.arguments import seeds_type
from bench.config import RunConfig
from bench.errors import BenchError, UserError
from bench.progress import Summary

LOCAL, RAY = "local", "ray"
EXECUTORS = (LOCAL, RAY)
EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 130


class Executor(Protocol):
    """What the command needs of an executor: train a plan, and say what it did so far."""

    @property
    def summary(self) -> Summary: ...

    def run(self, plan: list[RunConfig]) -> Summary: ...


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``python -m bench suite``."""
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
    parser.add_argument("--executor", choices=EXECUTORS, default=LOCAL,
                        help="local: worker processes on this machine (default); ray: each run "
                             "a Ray task on a cluster (pip install -e '.[cluster]')")
    parser.add_argument("--address", metavar="ADDR",
                        help="with --executor ray: the cluster, 'auto' (started by `ray start` "
                             "on this machine), HOST:6379, or ray://HOST:10001 (Ray Client); "
                             "default: a local Ray instance for this suite")
    parser.add_argument("--search-workers", type=int, default=1, metavar="K",
                        help="with --executor ray: Ray tasks sharing each search's Optuna study "
                             "and budget (default 1)")


def run_cli(args: argparse.Namespace) -> int:
    """``python -m bench suite``: plan, check, train, report; returns the exit code."""
    if args.executor == RAY:
        return _on_ray(args)
    if args.address or args.search_workers != 1:
        raise UserError(f"--address and --search-workers need --executor ray, but got "
                        f"--executor {args.executor}")
    return _on_this_machine(args)


# --- preparing each executor ------------------------------------------------------------------


def _on_this_machine(args: argparse.Namespace) -> int:
    """``--executor local``: one worker process per GPU or CPU slot of this machine."""
    from bench.estimates import dry_run_text
    from bench.scheduler import Scheduler
    from bench.slots import cpu_slots, gpu_slots
    from bench.store import default_location, open_store
    from bench.suite import load_suite

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
        return EXIT_OK
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
        _print_header(suite, store_path)
        store = scheduler.store = open_store(store_path)
        store.check_writable()  # before any run trains: a result must have somewhere to go
    except BaseException:
        scheduler.terminate()
        raise
    try:
        return _train_and_report(scheduler, suite, plan, store, report=not args.no_report,
                                 stopped="discarded")
    finally:
        store.close()


def _on_ray(args: argparse.Namespace) -> int:
    """``--executor ray``: every run a Ray task, on a local Ray instance or ``--address``."""
    from bench.estimates import dry_run_text
    from bench.executors import ray_executor
    from bench.slots import Slot
    from bench.store import default_location, is_database_url, open_store
    from bench.suite import load_suite

    suite = load_suite(args.suite)  # malformed file, unknown names: before anything runs
    if args.cpu_workers is not None:
        raise UserError("--cpu-workers is for --executor local; with --executor ray every run "
                        "asks for one CPU and the cluster runs as many as it has CPUs")
    if args.gpus is not None and args.gpus.strip() != "all":
        raise UserError(f"with --executor ray, --gpus takes 'all' (Ray places each run on a GPU "
                        f"of the cluster), but got --gpus {args.gpus}")
    if args.jobs_per_gpu < 1:
        raise UserError(f"--jobs-per-gpu must be >= 1, but got {args.jobs_per_gpu}")
    device = "cuda" if args.gpus is not None else "cpu"
    plan = suite.plan(seeds=args.seeds, device=device, jobs_per_gpu=args.jobs_per_gpu)
    location = args.store or default_location()
    if not is_database_url(location) and "://" not in location:
        location = str(Path(location).resolve())  # Ray workers do not run in our folder
    if args.dry_run:
        print(dry_run_text(suite.name, plan, location, [Slot("ray", device, 1)]))
        return EXIT_OK
    with ray_executor.connected(args.address):
        ray_executor.check_cluster(device, location, args.address)
        _print_header(suite, location)
        with open_store(location) as store:
            env: dict[str, Any] = {"executor": "ray"}
            if device == "cuda":
                env["jobs_per_gpu"] = args.jobs_per_gpu
            if args.search_workers > 1:
                env["search_workers"] = args.search_workers
                ray_executor.create_optuna_tables(location)
            executor = ray_executor.RayScheduler(
                store, location, device=device, jobs_per_gpu=args.jobs_per_gpu,
                search_workers=args.search_workers, worker_env=env)
            return _train_and_report(executor, suite, plan, store, report=not args.no_report,
                                     stopped="cancelled")


def _print_header(suite: Any, location: str) -> None:
    from bench.store import safe_url

    print(f"suite {suite.name}: {suite.description}\nstore: {safe_url(location)}", flush=True)


# --- how every suite ends ---------------------------------------------------------------------


def _train_and_report(executor: Executor, suite: Any, plan: list[RunConfig], store: Any, *,
                      report: bool, stopped: str) -> int:
    """Train ``plan`` on ``executor``, print the summary, write the report; the exit code.

    Args:
        report: write the suite's report at the end (``--no-report``: not).
        stopped: what became of the runs still running at Ctrl-C (``discarded``, ``cancelled``).
    """
    restore = sigterm_as_interrupt()
    started = time.perf_counter()
    try:
        summary = executor.run(plan)
        print(summary_text(summary, time.perf_counter() - started), flush=True)
        reported = not report or write_report(suite, plan, store)
    except KeyboardInterrupt:
        s = executor.summary
        print(f"interrupted: {s.finished} runs finished and stored, {s.interrupted} running "
              f"{stopped}; run the same command again to resume", flush=True)
        return EXIT_INTERRUPTED
    except BenchError as e:  # a worker that cannot start: nothing the next run would fix alone
        if isinstance(e, UserError):
            raise
        print(f"error: {e}", file=sys.stderr, flush=True)
        return EXIT_FAILED
    finally:
        restore()
    return EXIT_FAILED if summary.failed or not reported else EXIT_OK


def sigterm_as_interrupt() -> Callable[[], None]:
    """Treat SIGTERM like Ctrl-C (the same clean stop); returns a function that undoes it."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    return lambda: signal.signal(signal.SIGTERM, previous)


def summary_text(summary: Summary, seconds: float) -> str:
    line = (f"finished in {seconds:.1f} s: {summary.done} done, {summary.diverged} diverged, "
            f"{summary.failed} failed, {summary.stored} already stored, "
            f"{len(summary.skipped)} skipped")
    efficiency = summary.efficiency(seconds)
    if efficiency is not None:
        line += (f"; scheduler efficiency {efficiency:.2f} (the runs' {summary.run_seconds:.1f} s"
                 f" over {summary.workers} worker{'s' * (summary.workers > 1)} × "
                 f"{seconds:.1f} s)")
    lines = [line]
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
