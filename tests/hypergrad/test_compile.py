"""``torch.compile`` of ``opt.step()``, PyTorch's recipe (``@torch.compile(fullgraph=False) def
fn(): opt.step()``): the compiled step gives the eager step's numbers (to float32 rounding: the
compiled kernels may sum in another order), losses, weights and learned values, step after
step, for SGD and Adam towers of heights 0 to 2 on both paths. The levels above 0 and the
take-up of outside writes run eagerly inside the compiled step (graph breaks)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import hypergrad

pytestmark = pytest.mark.slow  # inductor compiles each tower's graphs (gcc on the CPU)

# The levels above learn fast enough that a learned step size frozen by the compiled step
# would be off by far more than the tolerance within a few steps (checked below). Adam above
# level 0 has eps=1e-3: with torch's 1e-8, a hypergradient near zero (beta1's first one) makes
# its step g / (|g| + eps) amplify rounding by orders of magnitude, in eager steps too.
TOWERS = {
    ("sgd", 0): "sgd(0.1, momentum=0.9)",
    ("sgd", 1): "sgd(0.1, momentum=0.9)/sgd(0.1)",
    ("sgd", 2): "sgd(0.1)/sgd(0.3)/sgd(0.1)",
    ("adam", 0): "adam(0.01)",
    ("adam", 1): "adam(0.01)/adam(0.001, eps=0.001)",
    ("adam", 2): "adam(0.01)/sgd(0.01)/sgd(0.01)",
}
STEPS = 4


def _run(spec: str, compiled: bool, schedule: Callable[[int], float] | None = None,
         ) -> tuple[list[torch.Tensor], list[dict[str, float]]]:
    """Losses and ``hyperparameters()`` per step, then the final weights, of a tiny MLP
    (``schedule``: a LambdaLR's factor, stepped after each step)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 6), nn.Tanh(), nn.Linear(6, 3))
    opt = hypergrad.tower(spec, model.parameters())
    sched = None if schedule is None else torch.optim.lr_scheduler.LambdaLR(opt, schedule)

    @torch.compile(fullgraph=False)  # torch's recipe
    def compiled_step() -> None:
        opt.step()

    step = compiled_step if compiled else opt.step
    g = torch.Generator().manual_seed(1)
    out, hypers = [], []
    for _ in range(STEPS):
        x, y = torch.randn(8, 12, generator=g), torch.randint(0, 3, (8,), generator=g)
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        step()
        if sched is not None:
            sched.step()
        out.append(loss.detach())
        hypers.append(opt.hyperparameters())
    out += [p.detach().clone() for p in model.parameters()]
    return out, hypers


def _vector(hypers: dict[str, float]) -> torch.Tensor:
    return torch.tensor(list(hypers.values()), dtype=torch.float32)


@pytest.mark.parametrize("height", [0, 1, 2])
@pytest.mark.parametrize("family", ["sgd", "adam"])
def test_compiled_step_gives_the_eager_numbers(family, height, path):
    _assert_compiled_as_eager(TOWERS[family, height], height)


def test_compiled_step_under_a_schedule_gives_the_eager_numbers(path):
    """A schedule's new ``group["lr"]`` at each step is a factor on the learned step size in
    the compiled step too (Dynamo recompiles for each new float; none is baked in)."""
    _assert_compiled_as_eager(TOWERS["sgd", 1], 1, schedule=lambda t: 1.0 - 0.2 * t)


def _assert_compiled_as_eager(spec: str, height: int, **kw: Any) -> None:
    torch._dynamo.reset()  # each tower compiles from scratch (no graph of another test reused)
    want, want_h = _run(spec, compiled=False, **kw)
    got, got_h = _run(spec, compiled=True, **kw)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b)
    assert got_h[0].keys() == want_h[0].keys()
    for h_got, h_want in zip(got_h, want_h, strict=True):  # float32 values: its tolerances
        torch.testing.assert_close(_vector(h_got), _vector(h_want))
    for k in range(height):  # a frozen learned step size would have failed the comparison
        first = want_h[0][f"{k}.lr"]
        moved = max(abs(h[f"{k}.lr"] - first) for h in want_h)
        assert moved > 5 * (1e-5 + 1.3e-6 * abs(first)), (k, want_h)
