"""Wall time of a suite with 2 CPU workers against 1 worker, and the scheduler's efficiency.

Each round runs the whole command, ``python -m bench suite SUITE --cpu-workers N --store FRESH
--no-report``, once per worker count, alternating, each into a fresh store in a folder of its own
(nothing is resumed: not even a search's Optuna study, kept beside the store);
the ratio is taken within a round, then the median over rounds::

    BENCH_DATA_DIR=../shared/data python tests/benchmarks/suite_speed.py [--suite S] [--rounds 3]

One worker alone gets every core as intra-op threads (the fair share). ``--one-thread`` also
times it capped at one thread (``OMP_NUM_THREADS=1``, as each of two workers runs): the ratio
of 2 workers to that one is the scheduler's own parallel efficiency, and the ratio of the two
single-worker times is what intra-op threads give one worker.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def wall_time(suite: str, workers: int, store: Path, seeds: str | None = None,
              threads: int | None = None) -> float:
    """Seconds for the whole command (start-up and shut-down included), which must succeed;
    the scheduler's efficiency its closing line printed is kept in ``EFFICIENCY``."""
    command = [sys.executable, "-m", "bench", "suite", suite, "--cpu-workers", str(workers),
               "--store", str(store), "--no-report"]
    env = dict(os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {}))
    start = time.perf_counter()
    done = subprocess.run(command + (["--seeds", seeds] if seeds else []),
                          cwd=ROOT, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"suite {suite} with {workers} worker(s) exited {done.returncode}:\n"
                         f"{done.stdout[-2000:]}{done.stderr[-2000:]}")
    closing = [line for line in done.stdout.splitlines() if "scheduler efficiency" in line]
    if closing:
        EFFICIENCY[workers] = float(closing[-1].split("scheduler efficiency ")[1].split()[0])
    return seconds


EFFICIENCY: dict[int, float] = {}


def fresh_store(folder: Path) -> Path:
    """A store path in a new folder: Optuna's storage (``optuna.sqlite``) goes beside it."""
    folder.mkdir()
    return folder / "bench.sqlite"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", default="smoke")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seeds", help="replace the suite's seeds (e.g. 0,1,2: a bigger plan, "
                                        "where the workers' start-up weighs less)")
    parser.add_argument("--one-thread", action="store_true",
                        help="also time 1 worker capped at one intra-op thread")
    args = parser.parse_args()
    ratios, efficiency, scheduler = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            one = wall_time(args.suite, 1, fresh_store(Path(tmp) / f"one-{r}"), args.seeds)
            two = wall_time(args.suite, 2, fresh_store(Path(tmp) / f"two-{r}"), args.seeds)
            ratios.append(two / one)
            scheduler.append(EFFICIENCY.get(2, float("nan")))
            line = (f"round {r}: 1 worker {one:.1f} s, 2 workers {two:.1f} s (scheduler "
                    f"efficiency {scheduler[-1]:.2f}), ratio {two / one:.3f}")
            if args.one_thread:
                single = wall_time(args.suite, 1, fresh_store(Path(tmp) / f"single-{r}"),
                                   args.seeds, threads=1)
                efficiency.append(two / single)
                line += (f"; 1 worker at 1 thread {single:.1f} s (2 workers / it "
                         f"{two / single:.3f}, threads gave 1 worker {single / one:.3f}x)")
            print(line, flush=True)
    print(f"median ratio (2 workers / 1 worker) over {args.rounds} rounds: "
          f"{statistics.median(ratios):.3f}; scheduler efficiency with 2 workers "
          f"{statistics.median(scheduler):.2f} (target >= 0.9)")
    if efficiency:
        print(f"median ratio (2 workers / 1 worker at 1 thread): "
              f"{statistics.median(efficiency):.3f} (target <= 0.62)")


if __name__ == "__main__":
    main()
