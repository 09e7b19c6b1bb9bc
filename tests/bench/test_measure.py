"""The one timer, memory measurements and provenance."""

from __future__ import annotations

import re
import time

import pytest
import torch

from bench import measure
from bench.measure import StepTimer, optimizer_bytes


def test_timer_leaves_warmup_out_of_the_statistics():
    timer = StepTimer("cpu", warmup_steps=2)
    for pause in (0.05, 0.05, 0.001, 0.002, 0.003, 0.004, 0.005):
        timer.start()
        time.sleep(pause)
        timer.stop()
    summary = timer.summary()
    assert summary["timed_steps"] == 5 and summary["warmup_steps"] == 2
    assert 0.003 <= summary["step_time_median"] < 0.02  # not pulled up by the slow warm-up
    assert summary["step_time_p10"] <= summary["step_time_median"] <= summary["step_time_p90"]
    assert summary["train_seconds"] < timer.total_seconds()  # the cost includes warm-up
    assert timer.total_seconds() >= 0.115
    assert timer.steps == 7


def test_timer_quantiles_interpolate_like_numpy():
    assert measure._quantile([1.0, 2.0, 3.0, 4.0, 5.0], 0.1) == pytest.approx(1.4)
    assert measure._quantile([4.0, 1.0, 3.0, 2.0], 0.9) == pytest.approx(3.7)
    assert measure._quantile([2.5], 0.9) == 2.5


def test_timer_short_runs_and_misuse():
    timer = StepTimer("cpu", warmup_steps=5)
    assert timer.summary() == {"timed_steps": 0, "warmup_steps": 0, "train_seconds": 0.0}
    timer.start()
    timer.stop()
    assert timer.summary()["timed_steps"] == 1  # shorter than the warm-up: every step counts
    with pytest.raises(RuntimeError, match="without a matching start"):
        timer.stop()
    with pytest.raises(ValueError, match="warmup_steps must be >= 0"):
        StepTimer("cpu", warmup_steps=-1)


def _stepped(optimizer_cls, **kw):
    model = torch.nn.Linear(100, 10)
    optimizer = optimizer_cls(model.parameters(), **kw)
    model(torch.randn(4, 100)).sum().backward()
    optimizer.step()
    return model, optimizer


def test_optimizer_bytes_counts_state_not_parameters():
    n = 100 * 10 + 10
    model, adam = _stepped(torch.optim.Adam, lr=1e-3)
    # exp_avg and exp_avg_sq per parameter, plus two 0-d float32 step counters
    assert optimizer_bytes(adam, model.parameters()) == 2 * 4 * n + 2 * 4
    assert optimizer_bytes(adam) == 2 * 4 * n + 2 * 4  # its own params are never counted
    _, sgd = _stepped(torch.optim.SGD, lr=0.1)
    assert optimizer_bytes(sgd) == 0
    _, momentum = _stepped(torch.optim.SGD, lr=0.1, momentum=0.9)
    assert optimizer_bytes(momentum) == 4 * n


def test_optimizer_bytes_follows_attributes_dedupes_and_sees_saved_tensors():
    class Holder:
        """A stand-in for a tower level: keeps tensors in attributes and a graph."""

    big = torch.zeros(1000)
    holder = Holder()
    holder.buffers = [big, big, big[:10]]  # one storage, three references
    holder.nested = Holder()
    holder.nested.cache = {"m": torch.zeros(250)}
    assert optimizer_bytes(holder) == 4 * 1000 + 4 * 250

    # A tensor with a graph keeps the tensors autograd saved for backward.
    weight = torch.ones(500, requires_grad=True)
    saved = torch.full((500,), 2.0)
    holder.last_update = (weight * saved).sum()  # mul saves both operands
    assert optimizer_bytes(holder, [weight]) == 4 * 1000 + 4 * 250 + 4 * 500 + 4


def test_optimizer_bytes_prefers_the_optimizer_own_account():
    class Tower:
        def memory_bytes(self) -> int:
            return 1234

    assert optimizer_bytes(Tower()) == 1234


def test_peak_rss_and_environment():
    assert measure.peak_rss_bytes() > 10 * 2**20  # torch alone is more than 10 MiB
    env = measure.environment("cpu", started="2024-01-01T00:00:00+00:00")
    assert env["torch"] == torch.__version__ and env["device"] == "cpu" and env["device_name"]
    assert env["commit"] == "unknown" or re.fullmatch(r"[0-9a-f]{40}", env["commit"])
    assert env["started"] == "2024-01-01T00:00:00+00:00" < env["ended"]
    assert {"host", "python", "cuda"} <= set(env)
    assert measure.reset_cuda_peak("cpu") == 0 and measure.cuda_peak_bytes("cpu") == 0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_timer_and_peak_memory():
    device = torch.device("cuda")
    baseline = measure.reset_cuda_peak(device)
    timer = StepTimer(device, warmup_steps=1)
    x = torch.randn(2048, 2048, device=device)
    for _ in range(4):
        timer.start()
        y = x @ x
        timer.stop()
    summary = timer.summary()  # resolves the events: one synchronize
    assert summary["timed_steps"] == 3 and summary["step_time_median"] > 0
    assert measure.cuda_peak_bytes(device) >= baseline + y.numel() * 4
    assert "cuda" in measure.environment(device)["device"]
