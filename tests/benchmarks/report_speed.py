"""Wall time of ``python -m bench report`` on a store of 1,000 runs (issue 16: under 10 s).

The store is built for the benchmark: the ``budget-cpu`` suite's plan with as many seeds as make
1,000 runs, each record shaped as the training loop writes it (an evaluation per epoch with its
cost, a learned-value curve, a training-loss curve; searches with their trials and best-so-far
points), with numbers drawn from a seeded generator. Each round times the whole command (start-up,
loading, the equal-cost analysis with its bootstrap intervals, every figure); the figure is the
median over rounds, and the ratio is against the 10 s target::

    python tests/benchmarks/report_speed.py [--runs 1000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.config import RunConfig  # noqa: E402
from bench.record import DONE, RunResult  # noqa: E402
from bench.store import open_store  # noqa: E402
from bench.suite import load_suite  # noqa: E402

TARGET_SECONDS = 10.0
EPOCHS, STEPS_PER_EPOCH, STEP_SECONDS = 10, 235, 0.0025


def _curve(rng: np.random.Generator, final: float, epochs: int, offset: float = 0.0) -> list[dict]:
    errors = final + 0.3 * np.exp(-np.arange(1, epochs + 1) / 2.0) + rng.normal(0, 0.002, epochs)
    return [{"epoch": float(e + 1), "step": (e + 1) * STEPS_PER_EPOCH,
             "cost_steps": offset + (e + 1) * STEPS_PER_EPOCH,
             "cost_seconds": (offset + (e + 1) * STEPS_PER_EPOCH) * STEP_SECONDS,
             "test_error": float(max(errors[e], 0.001)), "test_loss": float(errors[e] * 3),
             "train_loss": float(errors[e] * 3)} for e in range(epochs)]


def _single(config: RunConfig, rng: np.random.Generator) -> RunResult:
    final = float(rng.uniform(0.02, 0.12))
    steps = EPOCHS * STEPS_PER_EPOCH
    lr = [[s, float(0.01 * (1 + s / steps))] for s in range(0, steps, 25)]
    return RunResult(
        config.run_id, config.to_dict(), DONE,
        metrics={"test_error": final, "test_loss": final * 3, "hyper/0.lr": lr[-1][1]},
        curves={"eval": _curve(rng, final, EPOCHS), "hyper": {"0.lr": lr},
                "train_loss": [[s, 1.0 / (1 + s)] for s in range(0, steps, 25)]},
        timing={"step_time_median": STEP_SECONDS, "train_seconds": steps * STEP_SECONDS},
        cost={"steps": steps, "device_seconds": steps * STEP_SECONDS},
        env={"device_name": "cpu", "torch": "2.14.1"})


def _search(config: RunConfig, rng: np.random.Generator) -> RunResult:
    budget = float(config.method.split("budget=")[1].rstrip(")"))
    trials, best, points, trial_list = int(budget), math.inf, [], []
    run_steps = EPOCHS * STEPS_PER_EPOCH
    for t in range(trials):
        error = float(rng.uniform(0.02, 0.2))
        best = min(best, error)
        cost = (t + 1) * run_steps * 0.9
        points.append({"cost_steps": cost, "cost_seconds": cost * STEP_SECONDS,
                       "test_error": best, "val_error": best, "trials": t + 1})
        trial_list.append({"number": t, "status": "done", "test_error": error,
                           "val_error": error, "cost_steps": run_steps * 0.9,
                           "params": {"lr": 0.01, "momentum": 0.9}})
    return RunResult(
        config.run_id, config.to_dict(), DONE, metrics={"test_error": best, "val_error": best},
        curves={"best_so_far": points, "trials": trial_list,
                "eval": _curve(rng, best, EPOCHS)},
        cost={"steps": points[-1]["cost_steps"], "device_seconds": points[-1]["cost_seconds"]},
        env={"device_name": "cpu", "torch": "2.14.1"})


def build_store(path: Path, runs: int) -> int:
    suite = load_suite("budget-cpu")
    per_seed = len(suite.plan(seeds=[0]))
    plan = suite.plan(seeds=list(range(math.ceil(runs / per_seed))))[:runs]
    rng = np.random.default_rng(0)
    with open_store(path) as store:
        for config in plan:
            search = "budget=" in config.method
            store.put(_search(config, rng) if search else _single(config, rng))
    return len(plan)


def report_seconds(store: Path, out: Path) -> float:
    command = [sys.executable, "-m", "bench", "report", "budget-cpu", "--store", str(store),
               "--out", str(out)]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"report failed:\n{done.stdout}\n{done.stderr}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "runs.sqlite"
        n = build_store(store, args.runs)
        times = [report_seconds(store, Path(tmp) / f"report-{i}") for i in range(args.rounds)]
    median = statistics.median(times)
    print(f"bench report on {n} runs: median {median:.2f} s over {args.rounds} rounds "
          f"({', '.join(f'{t:.2f}' for t in times)}); target {TARGET_SECONDS:g} s: "
          f"ratio {median / TARGET_SECONDS:.2f}")


if __name__ == "__main__":
    main()
