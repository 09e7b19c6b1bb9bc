"""Data-parallel: under ``DistributedDataParallel`` every rank learns the same hyperparameters,
equal to one process training on the combined batch. Two CPU processes, gloo, 50 steps.

Nothing in the tower talks to other ranks: DDP averages the weight gradients, and everything a
tower computes (its hypergradients included) follows from those and from what it saved, which
every rank has in common.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

import hypergrad

SPEC = "adam(1e-3, lr_per=tensor)/sgd(1e-4, momentum=0.9)/sgd(1e-7)"
STEPS, WORLD, PER_RANK = 50, 2, 16


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(20, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4))


def _batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1000 + step)
    return (torch.randn(WORLD * PER_RANK, 20, generator=g, dtype=torch.float64),
            torch.randint(0, 4, (WORLD * PER_RANK,), generator=g))


def _train(model: torch.nn.Module, rank: int | None) -> list[dict[str, float]]:
    opt = hypergrad.tower(SPEC, model.parameters())
    history = []
    for step in range(STEPS):
        x, y = _batch(step)
        if rank is not None:  # this rank's half of the combined batch
            mine = slice(rank * PER_RANK, (rank + 1) * PER_RANK)
            x, y = x[mine], y[mine]
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        history.append(opt.hyperparameters())
    return history


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=WORLD)
    try:
        model = torch.nn.parallel.DistributedDataParallel(_model().double())
        history = _train(model, rank)
        torch.save(history, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_ranks_agree_with_one_process():
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_worker, args=(str(Path(tmp) / "init"), tmp), nprocs=WORLD, join=True)
        ranks = [torch.load(Path(tmp) / f"rank{r}.pt") for r in range(WORLD)]
    single = _train(_model().double(), None)

    assert ranks[0] == ranks[1]  # identical, not just close
    assert len(single[-1]) == 4 + 2 + 2  # 4 step sizes and the betas; level 1: lr, momentum
    for key in single[-1]:
        got = torch.tensor([h[key] for h in ranks[0]], dtype=torch.float64)
        want = torch.tensor([h[key] for h in single], dtype=torch.float64)
        torch.testing.assert_close(got, want, rtol=1e-9, atol=0, msg=lambda m, k=key: f"{k}: {m}")
        assert want[-1] != want[0]  # it learned something
