"""Shared fixtures (each section owned by the part it serves; append, do not reorder)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

# --- data (bench/data/) ---------------------------------------------------------------------------


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


# --- MNIST batches (hypergrad tests, benchmarks) -------------------------------------------------


def _read_idx(path: Path) -> Any:
    """An idx file (gzip) as a numpy array: magic number, one uint32 per dimension, uint8 data."""
    import gzip

    import numpy as np

    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


@pytest.fixture(scope="session")
def mnist_arrays(bench_data_dir: Path) -> tuple[Any, Any]:
    """The first 4,096 real MNIST training images (uint8, ``(n, 28, 28)``) and labels."""
    folder = bench_data_dir / "mnist"
    images = _read_idx(folder / "train-images-idx3-ubyte.gz")[:4096]
    labels = _read_idx(folder / "train-labels-idx1-ubyte.gz")[:4096]
    return images, labels


@pytest.fixture(scope="session")
def mnist_batches(mnist_arrays: tuple[Any, Any]) -> Callable[..., list[tuple[Any, Any]]]:
    """A factory of real MNIST batches: ``mnist_batches(n_images=512, batch_size=64,
    dtype=torch.float32, device="cpu")`` -> ``[(x, y), ...]``, ``x`` of shape ``(batch, 784)``
    normalised with the usual mean 0.1307 and std 0.3081, ``y`` int64 labels; the first
    ``n_images`` training images, in order."""
    import torch

    images, labels = mnist_arrays

    def make(n_images: int = 512, batch_size: int = 64, dtype: Any = torch.float32,
             device: Any = "cpu") -> list[tuple[Any, Any]]:
        if n_images > len(images):
            raise ValueError(f"mnist_batches holds {len(images)} images, asked for {n_images}")
        x = torch.from_numpy(images[:n_images].astype("float32") / 255.0)
        x = ((x - 0.1307) / 0.3081).reshape(n_images, 784).to(device, dtype)
        y = torch.from_numpy(labels[:n_images].astype("int64")).to(device)
        return [(x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, n_images, batch_size)]

    return make


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
