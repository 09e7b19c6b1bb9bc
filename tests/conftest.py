"""Shared fixtures (each section owned by the part it serves; append, do not reorder)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# --- data (bench/data.py) ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def bench_data_dir() -> Path:
    """The real data folder (``$BENCH_DATA_DIR``; CI sets it); tests that need it skip without."""
    value = os.environ.get("BENCH_DATA_DIR")
    if not value:
        pytest.skip("BENCH_DATA_DIR is unset: point it at the shared data folder (CI sets it)")
    path = Path(value)
    if not path.is_dir():
        pytest.fail(f"BENCH_DATA_DIR={value} is not a directory")
    return path


# --- a small real results store (bench/report, bench/compare) ------------------------------------

# (workload, method, seeds) of the store: every section of a report has real data to show.
REPORT_RUNS = (
    # the paper-style table, trajectories and a diverged run, on the logistic regression
    ("mnist-logreg", "torch.sgd(lr=0.1)", (0, 1)),
    ("mnist-logreg", "sgd(lr=0.1)/sgd(0.001)", (0, 1)),
    ("mnist-logreg", "sgd-hd(lr=0.01, beta=0.001)", (0, 1)),
    ("mnist-logreg", "sgd(lr=0.1)+cosine", (0, 1)),
    ("mnist-logreg", "torch.sgd(lr=1e6)", (0,)),
    # equal budget: a search over two whole runs
    ("mnist-logreg", "tpe(base=sgd, budget=2)", (0,)),
    # sensitivity (three initial step sizes, heights 0 and 1) and overhead (plain, reference)
    *(("mnist-mlp", f"sgd(lr={lr})", (0,)) for lr in ("0.01", "0.1", "1")),
    *(("mnist-mlp", f"sgd(lr={lr})/sgd(0.001)", (0,)) for lr in ("0.01", "0.1", "1")),
    ("mnist-mlp", "torch.sgd(lr=0.1)", (0,)),
    ("mnist-mlp", "gdtuo:sgd(lr=0.1)/sgd(0.001)", (0,)),
)
REPORT_STEPS = 30


@pytest.fixture(scope="session")
def report_store(bench_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite store of short real runs (``REPORT_RUNS``, 30 steps each, CPU), plus the plain
    re-run of ``sgd(lr=0.1)/sgd(0.001)`` with its learned step size (seed 0), as a suite plans
    it. Built once per session (about half a minute here)."""
    from bench.config import Budget, RunConfig
    from bench.methods import parse_method
    from bench.store import Store
    from bench.suite import LEARNED_FROM, resolve_dependent
    from bench.train import train

    path = tmp_path_factory.mktemp("report") / "bench.sqlite"
    budget = Budget(steps=REPORT_STEPS)
    with Store(path) as store:
        for workload, method, seeds in REPORT_RUNS:
            for seed in seeds:
                config = RunConfig(workload, parse_method(method).name, seed, budget)
                result = train(config)
                store.put(result)
                if method == "sgd(lr=0.1)/sgd(0.001)" and seed == 0:
                    pending = config.with_options(**{LEARNED_FROM: config.run_id})
                    store.put(train(resolve_dependent(pending, result)))
    return path
