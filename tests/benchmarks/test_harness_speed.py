"""The harness's own overhead: ``bench.train`` against a minimal hand-written loop (issue 3).

One epoch of ``mnist-mlp`` with plain SGD (lr 0.1), in the same process, over the same on-device
tensors, the two alternated ``REPEATS`` times; each side's best time is kept (the least disturbed
by other processes on the machine). ``train`` is timed whole (parse, model, optimizer, the loop
with its timer, divergence checks, hyperparameter samples, memory and provenance) minus its
evaluation, which it reports (``timing.eval_seconds``) and which the hand loop does not do.
Target: at most 1.10x.

Run as a script for the figure::

    BENCH_DATA_DIR=../shared/data python tests/benchmarks/test_harness_speed.py [--epochs N]
"""

from __future__ import annotations

import argparse
import time

import pytest
import torch
import torch.nn.functional as F

from bench.config import Budget, RunConfig
from bench.train import load_data, seed_everything, train
from bench.workloads import get_workload

TARGET = 1.10
REPEATS = 5
WORKLOAD, LR = "mnist-mlp", 0.1


def hand_loop_seconds(epochs: int = 1) -> float:
    """The minimal loop: build, then step through the epoch's batches; nothing else."""
    workload = get_workload(WORKLOAD)
    device = torch.device("cpu")
    data = load_data(workload, device, 0)  # the cache train() uses too: same tensors
    start = time.perf_counter()
    seed_everything(0)
    generator = torch.Generator(device=device).manual_seed(0)
    model = workload.build_model().to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    for _ in range(epochs):
        for x, y in workload.train_batches(data.train, workload.batch_size, generator):
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
    return time.perf_counter() - start


def harness_seconds(epochs: int = 1) -> float:
    """``train`` for the same epochs, wall time minus its (untimed) evaluations."""
    config = RunConfig(WORKLOAD, f"torch.sgd(lr={LR})", 0, Budget(epochs=epochs), "cpu")
    start = time.perf_counter()
    result = train(config)
    wall = time.perf_counter() - start
    assert result.status == "done", result.error
    return wall - result.timing["eval_seconds"]


def measure_overhead(epochs: int = 1, repeats: int = REPEATS) -> dict[str, float]:
    """Best-of-``repeats`` seconds per epoch of each loop, and their ratio."""
    harness_seconds(1)  # warm: data cache, imports, the method registry, git commit
    hand_loop_seconds(1)
    hand, harness = [], []
    for _ in range(repeats):
        hand.append(hand_loop_seconds(epochs))
        harness.append(harness_seconds(epochs))
    return {
        "hand_s_per_epoch": min(hand) / epochs,
        "harness_s_per_epoch": min(harness) / epochs,
        "ratio": min(harness) / min(hand),
    }


@pytest.mark.slow
@pytest.mark.benchmark_gate
def test_harness_overhead_is_at_most_ten_percent(bench_data_dir):
    figures = measure_overhead(repeats=3)
    if figures["ratio"] > TARGET:
        # Measured once more before failing: a slower harness reproduces, a burst of load from a
        # neighbour on a shared CI machine does not (seen once: 1.113, then 1.02-1.06).
        print(f"\nratio {figures['ratio']:.3f} over {TARGET}: measuring again")
        figures = min(figures, measure_overhead(repeats=3), key=lambda f: f["ratio"])
    print(
        f"\nmnist-mlp, torch.sgd(lr={LR}), 1 epoch: hand {figures['hand_s_per_epoch']:.3f} s, "
        f"train {figures['harness_s_per_epoch']:.3f} s, ratio {figures['ratio']:.3f}"
    )
    assert figures["ratio"] <= TARGET, figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=REPEATS)
    args = parser.parse_args()
    figures = measure_overhead(args.epochs, args.repeats)
    print(
        f"mnist-mlp torch.sgd(lr={LR}), {args.epochs} epoch(s), best of {args.repeats}, "
        f"{torch.get_num_threads()} threads: hand loop {figures['hand_s_per_epoch']:.3f} s/epoch, "
        f"bench.train {figures['harness_s_per_epoch']:.3f} s/epoch, "
        f"ratio {figures['ratio']:.3f} (target <= {TARGET})"
    )


if __name__ == "__main__":
    main()
