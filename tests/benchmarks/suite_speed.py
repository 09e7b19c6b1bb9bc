"""Wall time of a suite with 2 CPU workers against 1 worker (issue 5's target: at most 0.65x).

Each round runs the whole command, ``python -m bench suite SUITE --cpu-workers N --store FRESH
--no-report``, once per worker count, alternating, each into a fresh store (nothing is resumed);
the ratio is taken within a round, then the median over rounds::

    BENCH_DATA_DIR=../shared/data python tests/benchmarks/suite_speed.py [--suite S] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def wall_time(suite: str, workers: int, store: Path) -> float:
    """Seconds for the whole command (start-up and shut-down included), which must succeed."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "bench", "suite", suite, "--cpu-workers", str(workers),
         "--store", str(store), "--no-report"],
        cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"suite {suite} with {workers} worker(s) exited {done.returncode}:\n"
                         f"{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", default="smoke")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    ratios = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            one = wall_time(args.suite, 1, Path(tmp) / f"one-{r}.sqlite")
            two = wall_time(args.suite, 2, Path(tmp) / f"two-{r}.sqlite")
            ratios.append(two / one)
            print(f"round {r}: 1 worker {one:.1f} s, 2 workers {two:.1f} s, ratio {two / one:.3f}",
                  flush=True)
    print(f"median ratio (2 workers / 1 worker) over {args.rounds} rounds: "
          f"{statistics.median(ratios):.3f} (target <= 0.65)")


if __name__ == "__main__":
    main()
