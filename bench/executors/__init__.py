"""Where a suite's runs execute: ``--executor local|ray``.

- ``local`` (the default): ``bench.scheduler``, one spawned worker process per GPU or CPU slot
  of this machine.
- ``ray``: ``bench.executors.ray_executor``, each run a Ray task on a Ray cluster (one started
  for the suite, or ``--address`` of a running one), for more than one machine.

Both plan the same way (``bench.scheduler.Scheduler``'s planning: stored runs skipped, dependents
after their parents, longest first), call the same ``bench.train.train`` through
``bench.worker.run_one``, and write to the same kind of store (``bench.store.open_store``: a
SQLite file, or PostgreSQL when several machines write).
"""

from __future__ import annotations

from typing import Any

from bench.errors import UserError

LOCAL, RAY = "local", "ray"
EXECUTORS = (LOCAL, RAY)


def add_arguments(parser: Any) -> None:
    """``--executor``, ``--address`` and ``--search-workers`` of ``python -m bench suite``."""
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


def run_cli(args: Any) -> int:
    """``python -m bench suite`` with an executor other than ``local``."""
    if args.executor != RAY:
        raise UserError(f"--address and --search-workers need --executor ray, but got "
                        f"--executor {args.executor}")
    from bench.executors.ray_executor import run_cli as run_on_ray

    return run_on_ray(args)
