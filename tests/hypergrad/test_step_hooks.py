"""``step()`` and ``zero_grad()`` around the tower's work, as ``torch.optim`` runs it: step
hooks (the optimizer's and torch's global ones), the profiler's ``Optimizer.step#...`` range,
grad mode, and the schedulers' check that ``optimizer.step()`` ran. Without hooks or a
profiler, a tower skips torch's wrapper (``Tower.step``); these tests hold it to the same
behaviour either way."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch.optim.optimizer import (
    register_optimizer_step_post_hook,
    register_optimizer_step_pre_hook,
)

import hypergrad

SPECS = ("sgd(0.05)", "sgd(0.05)/sgd(0.001)", "adam(0.01)/adam(1e-4)")


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))


def _train(opt: Any, model: torch.nn.Module, steps: int = 4) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x, y = torch.randn(8, 6, generator=g), torch.randint(0, 3, (8,), generator=g)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return [p.detach().clone() for p in model.parameters()]


def _plain_run(spec: str) -> list[torch.Tensor]:
    model = _model()
    return _train(hypergrad.tower(spec, model.parameters()), model)


@pytest.mark.parametrize("spec", SPECS)
def test_the_optimizers_hooks_run_around_each_step_and_change_no_number(spec):
    model = _model()
    opt = hypergrad.tower(spec, model.parameters())
    calls: list[tuple[str, Any, int]] = []
    opt.register_step_pre_hook(lambda o, args, kwargs: calls.append(("pre", o, len(args))))
    opt.register_step_post_hook(lambda o, args, kwargs: calls.append(("post", o, len(args))))
    after = _train(opt, model)
    # torch's wrapper hands the hooks (optimizer, args with the optimizer first, kwargs)
    assert calls == [("pre", opt, 1), ("post", opt, 1)] * 4
    for a, b in zip(after, _plain_run(spec), strict=True):
        assert torch.equal(a, b)


def test_a_pre_hook_may_replace_the_arguments_of_step():
    model = _model()
    opt = hypergrad.tower("sgd(0.05)/sgd(0.001)", model.parameters())
    x, y = torch.randn(8, 6), torch.randint(0, 3, (8,))

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        return loss

    opt.register_step_pre_hook(lambda o, args, kwargs: ((o,), {"closure": closure}))
    loss = opt.step()  # no closure given: the hook's is used, and its loss returned
    assert isinstance(loss, torch.Tensor) and loss.requires_grad


def test_torchs_global_step_hooks_see_a_tower():
    model = _model()
    opt = hypergrad.tower("adam(0.01)/sgd(1e-4)", model.parameters())
    seen: list[str] = []

    def hook(name):
        return lambda o, a, k: seen.append(name) if o is opt else None

    handles = [register_optimizer_step_pre_hook(hook("pre")),
               register_optimizer_step_post_hook(hook("post"))]
    try:
        after = _train(opt, model, steps=2)
    finally:
        for h in handles:
            h.remove()
    assert seen == ["pre", "post"] * 2
    for a, b in zip(after, _train(hypergrad.tower("adam(0.01)/sgd(1e-4)",
                                                  (m := _model()).parameters()), m, steps=2),
                    strict=True):
        assert torch.equal(a, b)


def test_the_profiler_sees_the_optimizers_step():
    model = _model()
    opt = hypergrad.tower("sgd(0.05)/sgd(0.001)", model.parameters())
    _train(opt, model, steps=1)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        _train(opt, model, steps=2)
    names = [e.name for e in prof.events()]
    assert names.count("Optimizer.step#SGD.step") == 2
    assert names.count("Optimizer.zero_grad#SGD.zero_grad") == 2


@pytest.mark.parametrize("set_to_none", [True, False])
def test_zero_grad_as_torch_optim(set_to_none):
    model = _model()
    opt = hypergrad.tower("sgd(0.05)/sgd(0.001)", model.parameters())
    _train(opt, model, steps=1)
    grads = [p.grad for p in model.parameters()]
    opt.zero_grad(set_to_none=set_to_none)
    for p, g in zip(model.parameters(), grads, strict=True):
        if set_to_none:
            assert p.grad is None
        else:  # zeroed in place, as torch does
            assert p.grad is g and not g.any()


@pytest.mark.parametrize("outer", [True, False])
def test_step_runs_without_grad_and_restores_the_callers_grad_mode(outer):
    model = _model()
    opt = hypergrad.tower("sgd(0.05)/sgd(0.001)", model.parameters())
    inside: list[bool] = []
    original = opt._update

    def update() -> None:
        inside.append(torch.is_grad_enabled())
        original()

    opt._update = update  # type: ignore[method-assign]
    with torch.set_grad_enabled(outer):
        _train(opt, model, steps=1) if outer else None
        if not outer:
            with torch.enable_grad():
                F.cross_entropy(model(torch.randn(4, 6)), torch.tensor([0, 1, 2, 0])).backward()
            opt.step()
        assert torch.is_grad_enabled() is outer
    assert inside == [False]


def test_grad_mode_comes_back_when_a_step_fails():
    model = _model()
    opt = hypergrad.tower("sgd(0.05)/sgd(0.001)", model.parameters())
    _train(opt, model, steps=1)

    def fail() -> None:
        raise ValueError("boom")

    opt._update = fail  # type: ignore[method-assign]
    with pytest.raises(ValueError, match="boom"):
        opt.step()
    assert torch.is_grad_enabled()


@pytest.mark.parametrize("spec", SPECS)
def test_a_scheduler_knows_the_optimizer_stepped(spec):
    model = _model()
    opt = hypergrad.tower(spec, model.parameters())
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "lr_scheduler.step() before optimizer.step()" would raise
        for _ in range(3):
            _train(opt, model, steps=1)
            sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(
        {"s": 0.05, "a": 0.01}[spec[0]] * 0.5)
