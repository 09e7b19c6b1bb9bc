"""torch.optim's contract around a tower: schedulers, checkpoints that mean what they say.

The semantics under test (``hypergrad._takeup``'s docstring): at level 0 of a tower whose step size
is learned, ``group["lr"]`` is the schedule's value, which the tower never overwrites; the step in
use is ``group["lr"] / group["lr_base"]`` times the learned value. So every torch scheduler,
chainable or absolute, acts as it does on ``torch.optim`` (a factor on the step size) and the
level above goes on learning. Tables: the schedulers, the specs (heights 0 and 1), both paths.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch.optim import lr_scheduler as S

import hypergrad
from tests.hypergrad import helpers

STEPS = 12

SCHEDULERS: tuple[tuple[str, Callable[[Any], Any]], ...] = (
    # chainable: each write multiplies the current group["lr"]
    ("StepLR", lambda o: S.StepLR(o, step_size=3, gamma=0.5)),
    ("CosineAnnealingLR", lambda o: S.CosineAnnealingLR(o, T_max=STEPS)),
    ("LinearLR", lambda o: S.LinearLR(o, start_factor=0.25, total_iters=4)),
    ("ReduceLROnPlateau", lambda o: S.ReduceLROnPlateau(o, factor=0.5, patience=0)),
    # absolute: each write is initial_lr * factor(t)
    ("LambdaLR-constant", lambda o: S.LambdaLR(o, lambda t: 1.0)),  # the HF Trainer's "constant"
    ("LambdaLR-linear", lambda o: S.LambdaLR(o, lambda t: max(0.0, 1 - t / (STEPS + 2)))),
    ("OneCycleLR", lambda o: S.OneCycleLR(o, max_lr=[g["lr"] for g in o.param_groups],
                                          total_steps=STEPS + 1, cycle_momentum=False)),
    ("SequentialLR", lambda o: S.SequentialLR(o, [S.LinearLR(o, 0.1, total_iters=3),
                                                  S.StepLR(o, 2, 0.5)], milestones=[3])),
)
SPECS = (
    "sgd(0.05, momentum=0.9)",
    "adam(0.001)",
    "sgd(0.05, momentum=0.9)/sgd(0.001)",
    "adam(0.001)/sgd(1e-5)",
    "rmsprop(0.001, learn=lr, lr_per=group)/sgd(1e-4)",
)


def _batches(n: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(16, 784, generator=g), torch.randint(0, 10, (16,), generator=g))
            for _ in range(n)]


def _groups(model: torch.nn.Module) -> list[dict[str, Any]]:
    return [{"params": model[0].parameters()}, {"params": model[2].parameters()}]


def _train(opt: Any, sched: Any, model: torch.nn.Module, batches: list, start: int,
           stop: int) -> tuple[list[float], list[dict[str, float]]]:
    """The ordinary loop with a scheduler stepped after each optimizer step."""
    losses, hypers = [], []
    for s in range(start, stop):
        losses.append(helpers.train_step(opt, model, batches[s % len(batches)]))
        if isinstance(sched, S.ReduceLROnPlateau):
            sched.step(float(s % 3))  # a plateau every third step
        else:
            sched.step()
        hypers.append({**opt.hyperparameters(), "in use": opt.step_sizes()})
    return losses, hypers


def _saved(obj: Any) -> Any:
    """Through torch.save and torch.load, as a checkpoint is (a state dict in memory shares the
    optimizer's state tensors)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def _quiet() -> Any:
    ctx = warnings.catch_warnings()
    ctx.__enter__()
    warnings.simplefilter("ignore")  # torch's "lr_scheduler.step() before optimizer.step()"
    return ctx


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize(("name", "make"), SCHEDULERS, ids=[n for n, _ in SCHEDULERS])
def test_resume_with_a_scheduler_is_bit_identical(spec, name, make, path):
    """Saved after the scheduler wrote (the write not yet used by a step), resumed into fresh
    objects: the same losses, weights and learned values as the uninterrupted run."""
    batches = _batches(4)
    model = helpers.mlp(dtype=torch.float32)
    opt = hypergrad.tower(spec, _groups(model))
    sched = make(opt)
    _train(opt, sched, model, batches, 0, 5)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(),
                "sched": sched.state_dict()}, buffer)
    straight = _train(opt, sched, model, batches, 5, STEPS)

    buffer.seek(0)
    saved = torch.load(buffer, weights_only=False)
    model2 = helpers.mlp(seed=1, dtype=torch.float32)
    opt2 = hypergrad.tower(spec, _groups(model2))
    ctx = _quiet()
    sched2 = make(opt2)
    ctx.__exit__(None, None, None)
    model2.load_state_dict(saved["model"])
    opt2.load_state_dict(saved["opt"])
    sched2.load_state_dict(saved["sched"])
    resumed = _train(opt2, sched2, model2, batches, 5, STEPS)

    assert resumed == straight
    for p, q in zip(model.parameters(), model2.parameters(), strict=True):
        assert torch.equal(p, q)


@pytest.mark.parametrize(("name", "make"), SCHEDULERS, ids=[n for n, _ in SCHEDULERS])
def test_a_schedule_scales_the_learned_step_size(name, make, path):
    """Under every scheduler the step in use is the schedule's factor times the learned value:
    with a level above that barely moves it (1e-30), the steps are torch.optim's under the same
    scheduler; with one that learns, the learned value moves while the factor is the same."""
    batches = _batches(4)
    model = helpers.mlp(dtype=torch.float32)
    twin = helpers.clone_model(model)
    fixed = hypergrad.tower("sgd(0.05)/sgd(1e-30)", _groups(model))
    plain = torch.optim.SGD(_groups(twin), lr=0.05)
    a, b = make(fixed), make(plain)
    _train(fixed, a, model, batches, 0, STEPS)
    for s in range(STEPS):
        x, y = batches[s % len(batches)]
        plain.zero_grad()
        F.cross_entropy(twin(x), y).backward()
        plain.step()
        b.step(float(s % 3)) if isinstance(b, S.ReduceLROnPlateau) else b.step()
    assert fixed.step_sizes() == pytest.approx([g["lr"] for g in plain.param_groups], rel=1e-6)
    assert [g["lr"] for g in fixed.param_groups] == [g["lr"] for g in plain.param_groups]
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)

    model = helpers.mlp(dtype=torch.float32)
    learning = hypergrad.tower("sgd(0.05)/sgd(0.01)", model.parameters())
    sched = make(learning)
    _train(learning, sched, model, batches, 0, STEPS)
    learned = learning.hyperparameters()["0.lr"]
    assert abs(learned - 0.05) > 1e-6, "the step size was not learned under the schedule"
    factor = learning.param_groups[0]["lr"] / learning.param_groups[0]["lr_base"]
    assert learning.step_sizes() == [pytest.approx(factor * learned, rel=1e-6)]


@pytest.mark.parametrize("spec", ["sgd(0.05, momentum=0.9)/sgd(0.001)", "adam(0.001)/sgd(1e-5)",
                                  "adagrad(0.01, lr_per=tensor)/adam(1e-4)"])
def test_a_constant_schedule_changes_nothing(spec, path):
    """A LambdaLR of factor 1 (what Hugging Face's Trainer installs for "constant") rewrites
    ``group["lr"]`` at every step: the tower learns exactly as without it."""
    batches = _batches(4)
    model = helpers.mlp(dtype=torch.float32)
    twin = helpers.clone_model(model)
    opt, ref = hypergrad.tower(spec, model.parameters()), hypergrad.tower(spec, twin.parameters())
    sched = S.LambdaLR(opt, lambda t: 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and no warning: nothing learned is overwritten
        got = _train(opt, sched, model, batches, 0, 8)
    want = helpers.run_tower(ref, twin, batches, 8)
    assert got[0] == want[0]
    assert [{k: v for k, v in h.items() if k != "in use"} for h in got[1]] == want[1]
    key = sorted(want[1][0])[0]  # 0.lr, or 0.lr[0]
    assert want[1][-1][key] != want[1][0][key]


def test_state_dict_saves_the_values_written_since_the_last_step(path):
    """What a scheduler or the user wrote into param_groups after the last step is in the state
    dict, and a load takes it up at the next step, as the uninterrupted run does."""
    spec = "adam(0.001)/sgd(1e-5)"
    batches = _batches(4)
    model = helpers.mlp(dtype=torch.float32)
    opt = hypergrad.tower(spec, model.parameters())
    helpers.run_tower(opt, model, batches, 3)
    opt.param_groups[0]["lr"] = 0.0005
    betas = opt.param_groups[0]["betas"]
    opt.param_groups[0]["betas"] = (0.8, betas[1])  # a learned value replaced
    saved = _saved(opt.state_dict())
    assert saved["param_groups"][0]["lr"] == 0.0005
    assert float(saved["param_groups"][0]["betas"][0]) == 0.8
    model2 = helpers.clone_model(model)
    opt2 = hypergrad.tower(spec, model2.parameters())
    opt2.load_state_dict(saved)
    assert helpers.run_tower(opt2, model2, batches, 3) == helpers.run_tower(opt, model,
                                                                              batches, 3)
    assert opt2.hyperparameters()["0.beta1"] == pytest.approx(0.8, abs=1e-3)


@pytest.mark.parametrize("height", [0, 1])
def test_load_state_dict_honours_the_param_groups_it_is_given(height, path):
    spec = "adam(0.001)" + "/sgd(1e-5)" * height
    batches = _batches(4)
    model = helpers.mlp(dtype=torch.float32)
    opt = hypergrad.tower(spec, model.parameters())
    helpers.run_tower(opt, model, batches, 3)
    saved = _saved(opt.state_dict())
    before = opt.step_sizes()[0]
    saved["param_groups"][0]["lr"] = saved["param_groups"][0]["lr"] / 2
    saved["param_groups"][0]["betas"] = (0.7, 0.99)
    opt.load_state_dict(saved)
    assert opt.step_sizes()[0] == pytest.approx(before / 2, rel=1e-6)
    helpers.run_tower(opt, model, batches, 1)
    if height:
        assert opt.hyperparameters()["0.beta1"] == pytest.approx(0.7, abs=1e-4)
        assert opt.hyperparameters()["0.beta2"] == pytest.approx(0.99, abs=1e-4)
    else:
        assert float(opt.param_groups[0]["betas"][0]) == 0.7


def test_an_overwrite_at_every_step_warns_once(path):
    """OneCycleLR's cycle_momentum sets Adam's beta1 at every step: a learned beta1 then learns
    nothing, which the tower says once; the step size it schedules is only a factor."""
    model = helpers.mlp(dtype=torch.float32)
    opt = hypergrad.tower("adam(0.001)/sgd(1e-5)", model.parameters())
    sched = S.OneCycleLR(opt, max_lr=0.001, total_steps=20)
    with pytest.warns(RuntimeWarning, match="beta1 of param group 0 was overwritten") as seen:
        _train(opt, sched, model, _batches(4), 0, 10)
    assert sum("overwritten" in str(w.message) for w in seen) == 1
    assert opt.hyperparameters()["0.lr"] != pytest.approx(0.001, rel=1e-9)  # still learned
