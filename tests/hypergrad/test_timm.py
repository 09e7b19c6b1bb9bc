"""Towers under timm's schedulers, driven as timm's ``train.py`` drives them: ``step_update(
num_updates)`` after each optimizer step, ``step(epoch + 1)`` at the end of each epoch (a
scheduler acts on one of the two, by its ``t_in_epochs``).

timm's schedulers write absolute values into ``group["lr"]`` (from ``group["initial_lr"]``, the
group's ``lr`` when the scheduler was made, and their warm-up's ``warmup_lr_init``). Under the
project's rule (``hypergrad._takeup``'s docstring) that value is the schedule, a factor on the
learned step size: the tests show the steps in use are torch.optim's under the same scheduler
when nothing is learned, that the step size is learned under it with no overwrite warning, and
that a resume with timm's scheduler state continues bit for bit, on both paths.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch

import hypergrad
from tests.hypergrad import helpers

timm_scheduler = pytest.importorskip("timm.scheduler")

PER_EPOCH = 3  # optimizer steps per epoch
UPDATES = 15  # five epochs

SCHEDULERS: tuple[tuple[str, Callable[[Any], Any]], ...] = (
    ("CosineLRScheduler-per-update", lambda o: timm_scheduler.CosineLRScheduler(
        o, t_initial=UPDATES, lr_min=1e-4, warmup_t=4, warmup_lr_init=2e-4,
        t_in_epochs=False)),
    ("CosineLRScheduler-per-epoch", lambda o: timm_scheduler.CosineLRScheduler(
        o, t_initial=UPDATES // PER_EPOCH, lr_min=1e-4, warmup_t=1, warmup_lr_init=2e-4)),
    ("StepLRScheduler-per-epoch", lambda o: timm_scheduler.StepLRScheduler(
        o, decay_t=2, decay_rate=0.5, warmup_t=1, warmup_lr_init=2e-4)),
)
IDS = [n for n, _ in SCHEDULERS]
SPECS = (
    "sgd(0.05, momentum=0.9)",
    "adam(0.001)",
    "sgd(0.05, momentum=0.9)/sgd(0.001)",
    "adam(0.001)/sgd(1e-5)",
)


def _train(opt: Any, sched: Any, model: torch.nn.Module, batches: list, start: int,
           stop: int) -> tuple[list[float], list[Any]]:
    """Updates ``start`` to ``stop`` of timm's loop; losses, and after each update the learned
    values, the steps in use and ``group["lr"]`` (for torch.optim: ``group["lr"]`` only)."""
    losses, seen = [], []
    for u in range(start, stop):
        losses.append(helpers.train_step(opt, model, batches[u % len(batches)]))
        sched.step_update(num_updates=u + 1)
        if (u + 1) % PER_EPOCH == 0:
            sched.step((u + 1) // PER_EPOCH)
        lrs = [g["lr"] for g in opt.param_groups]
        if isinstance(opt, hypergrad.Tower):
            seen.append((opt.hyperparameters(), opt.step_sizes(), lrs))
        else:
            seen.append(lrs)
    return losses, seen


@pytest.mark.parametrize(("name", "make"), SCHEDULERS, ids=IDS)
def test_a_timm_schedule_scales_the_learned_step_size(name, make, path):
    """A level above that barely moves the step size (1e-30): the steps in use are
    torch.optim.SGD's under the same scheduler, and so are the weights. A level that learns:
    the learned value moves, the step in use is timm's factor times it, no warning."""
    batches = helpers.random_batches(4)
    model = helpers.mlp(dtype=torch.float32)
    twin = helpers.clone_model(model)
    fixed = hypergrad.tower("sgd(0.05)/sgd(1e-30)", model.parameters())
    plain = torch.optim.SGD(twin.parameters(), lr=0.05)
    _, got = _train(fixed, make(fixed), model, batches, 0, UPDATES)
    _, want = _train(plain, make(plain), twin, batches, 0, UPDATES)
    assert len({lr for lrs in want for lr in lrs}) > 3, "the schedule did not change the lr"
    for (_, in_use, lrs), torch_lrs in zip(got, want, strict=True):
        assert lrs == torch_lrs
        assert in_use == pytest.approx(torch_lrs, rel=1e-6)
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)

    model = helpers.mlp(dtype=torch.float32)
    learning = hypergrad.tower("sgd(0.05)/sgd(0.01)", model.parameters())
    sched = make(learning)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing learned is overwritten: no warning
        _, seen = _train(learning, sched, model, batches, 0, UPDATES)
    learned = [h["0.lr"] for h, _, _ in seen]
    assert abs(learned[-1] - 0.05) > 1e-6, "the step size was not learned under the schedule"
    for h, in_use, lrs in seen:
        factor = lrs[0] / learning.param_groups[0]["lr_base"]
        assert in_use == [pytest.approx(factor * h["0.lr"], rel=1e-6)]


RESUMES = (("mid-epoch", 5, False), ("epoch-end", 6, False), ("as-train.py", 6, True))


@pytest.mark.parametrize(("at", "as_timm"), [r[1:] for r in RESUMES], ids=[r[0] for r in RESUMES])
@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize(("name", "make"), SCHEDULERS, ids=IDS)
def test_resume_with_a_timm_scheduler_is_bit_identical(name, make, spec, at, as_timm, path):
    """Saved after update ``at`` (the scheduler's write not yet used by a step), resumed into
    fresh objects: the same losses, learned values, steps and weights as the uninterrupted run.
    The scheduler is made before the loads and takes its saved state; or (``as_timm``, at an
    epoch's end) as timm's train.py resumes: the optimizer loaded, then a new scheduler made
    and stepped to the epoch (timm's checkpoints hold no scheduler state)."""
    batches = helpers.random_batches(4)
    model = helpers.mlp(dtype=torch.float32)
    opt = hypergrad.tower(spec, model.parameters())
    sched = make(opt)
    _train(opt, sched, model, batches, 0, at)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(),
                "sched": sched.state_dict()}, buffer)
    straight = _train(opt, sched, model, batches, at, UPDATES)

    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    model2 = helpers.mlp(seed=1, dtype=torch.float32)
    opt2 = hypergrad.tower(spec, model2.parameters())
    model2.load_state_dict(saved["model"])
    if as_timm:
        opt2.load_state_dict(saved["opt"])
        sched2 = make(opt2)  # writes its warm-up value, then the epoch's:
        sched2.step(at // PER_EPOCH) if sched2.t_in_epochs else sched2.step_update(at)
    else:
        sched2 = make(opt2)  # writes its warm-up value: the loads below replace it
        opt2.load_state_dict(saved["opt"])
        sched2.load_state_dict(saved["sched"])
    resumed = _train(opt2, sched2, model2, batches, at, UPDATES)

    assert resumed == straight
    helpers.assert_same_weights(model, model2)
