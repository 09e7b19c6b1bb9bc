"""Towers with stochastic weight averaging (``torch.optim.swa_utils``), in the loop of torch's
documentation: a CosineAnnealingLR until ``SWA_START``, then at each epoch's end
``swa_model.update_parameters(model)`` and ``SWALR.step()``.

SWALR anneals ``group["lr"]`` towards its absolute ``swa_lr``; under the project's rule
(``hypergrad._takeup``'s docstring) that value is the schedule, a factor on the learned step size.
The tests show the steps in use are torch.optim's under the same schedulers when nothing is
learned, the step size is learned under SWALR, ``AveragedModel`` averages the tower's weights,
and a resume (model, averaged model, tower, both schedulers) continues bit for bit, on both
paths.
"""

from __future__ import annotations

import io
import warnings
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch.optim.lr_scheduler import CosineAnnealingLR
from torch.optim.swa_utils import SWALR, AveragedModel

import hypergrad
from tests.hypergrad import helpers

PER_EPOCH = 3  # optimizer steps per epoch
EPOCHS = 6
SWA_START = 1  # SWA from the end of epoch 2 on (torch's `epoch > swa_start`)
SPECS = (
    "sgd(0.05, momentum=0.9)",
    "adam(0.001)",
    "sgd(0.05, momentum=0.9)/sgd(0.001)",
    "adam(0.001)/sgd(1e-5)",
)


class Run:
    """A model, its optimizer, both schedulers and the averaged model, as torch's SWA recipe
    makes them."""

    def __init__(self, opt: Any, model: torch.nn.Module) -> None:
        self.opt, self.model = opt, model
        self.swa_model = AveragedModel(model)
        self.sched = CosineAnnealingLR(opt, T_max=EPOCHS)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's note on a second scheduler's initial_lr
            self.swa_sched = SWALR(opt, swa_lr=0.2 * opt.param_groups[0]["lr"],
                                   anneal_epochs=2, anneal_strategy="cos")
        self.averaged: list[list[torch.Tensor]] = []  # the weights each average took in

    def train(self, batches: list, start: int, stop: int) -> tuple[list[float], list[Any]]:
        """Updates ``start`` to ``stop``; losses, and after each update the learned values,
        the steps in use (a tower's) and ``group["lr"]``."""
        losses, seen = [], []
        for u in range(start, stop):
            x, y = batches[u % len(batches)]
            self.opt.zero_grad()
            loss = F.cross_entropy(self.model(x), y)
            loss.backward()
            self.opt.step()
            if (u + 1) % PER_EPOCH == 0:
                self.end_epoch((u + 1) // PER_EPOCH - 1)
            losses.append(loss.item())
            lrs = [g["lr"] for g in self.opt.param_groups]
            if isinstance(self.opt, hypergrad.Tower):
                seen.append((self.opt.hyperparameters(), self.opt.step_sizes(), lrs))
            else:
                seen.append(lrs)
        return losses, seen

    def end_epoch(self, epoch: int) -> None:
        if epoch > SWA_START:
            self.swa_model.update_parameters(self.model)
            self.averaged.append([p.detach().clone() for p in self.model.parameters()])
            self.swa_sched.step()
        else:
            self.sched.step()

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "swa_model": self.swa_model.state_dict(),
                "opt": self.opt.state_dict(), "sched": self.sched.state_dict(),
                "swa_sched": self.swa_sched.state_dict()}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        self.model.load_state_dict(saved["model"])
        self.swa_model.load_state_dict(saved["swa_model"])
        self.opt.load_state_dict(saved["opt"])
        self.sched.load_state_dict(saved["sched"])
        self.swa_sched.load_state_dict(saved["swa_sched"])


def _averaged_weights(run: Run) -> list[torch.Tensor]:
    return [p.detach() for p in run.swa_model.module.parameters()]


def test_swalr_scales_the_learned_step_size_and_averaged_model_averages(path):
    """A level above that barely moves the step size (1e-30): the steps in use and the
    averaged weights are torch.optim.SGD's under the same schedulers. A level that learns: the
    learned value moves, the step in use is the schedule's factor times it, and the averaged
    model is the mean of the weights at each epoch's end after SWA_START."""
    batches = helpers.random_batches(4)
    model = helpers.mlp(dtype=torch.float32)
    twin = helpers.clone_model(model)
    fixed = Run(hypergrad.tower("sgd(0.05)/sgd(1e-30)", model.parameters()), model)
    plain = Run(torch.optim.SGD(twin.parameters(), lr=0.05), twin)
    _, got = fixed.train(batches, 0, PER_EPOCH * EPOCHS)
    _, want = plain.train(batches, 0, PER_EPOCH * EPOCHS)
    assert len({lr for lrs in want for lr in lrs}) > 3, "the schedules did not change the lr"
    for (_, in_use, lrs), torch_lrs in zip(got, want, strict=True):
        assert lrs == torch_lrs
        assert in_use == pytest.approx(torch_lrs, rel=1e-6)
    for p, q in zip(_averaged_weights(fixed), _averaged_weights(plain), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)

    model = helpers.mlp(dtype=torch.float32)
    learning = Run(hypergrad.tower("sgd(0.05)/sgd(0.01)", model.parameters()), model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing learned is overwritten: no warning
        _, seen = learning.train(batches, 0, PER_EPOCH * EPOCHS)
    assert abs(seen[-1][0]["0.lr"] - 0.05) > 1e-6, "the step size was not learned under SWALR"
    base = learning.opt.param_groups[0]["lr_base"]
    for h, in_use, lrs in seen:
        assert in_use == [pytest.approx(lrs[0] / base * h["0.lr"], rel=1e-6)]
    assert len(learning.averaged) == EPOCHS - SWA_START - 1
    assert int(learning.swa_model.n_averaged) == len(learning.averaged)
    for i, p in enumerate(_averaged_weights(learning)):
        mean = torch.stack([w[i] for w in learning.averaged]).mean(0)
        torch.testing.assert_close(p, mean)


@pytest.mark.parametrize("epoch", [3, 4], ids=["in-the-anneal", "after-it"])
@pytest.mark.parametrize("spec", SPECS)
def test_resume_with_swa_is_bit_identical(spec, epoch, path):
    """Saved at the end of an epoch after SWA started (the schedulers' writes not yet used by a
    step), resumed into fresh objects: the same losses, learned values, steps, weights and
    averaged weights as the uninterrupted run."""
    at = epoch * PER_EPOCH
    batches = helpers.random_batches(4)
    model = helpers.mlp(dtype=torch.float32)
    run = Run(hypergrad.tower(spec, model.parameters()), model)
    run.train(batches, 0, at)
    buffer = io.BytesIO()
    torch.save(run.state_dict(), buffer)
    straight = run.train(batches, at, PER_EPOCH * EPOCHS)

    buffer.seek(0)
    model2 = helpers.mlp(seed=1, dtype=torch.float32)
    run2 = Run(hypergrad.tower(spec, model2.parameters()), model2)
    run2.load_state_dict(torch.load(buffer, weights_only=True))
    resumed = run2.train(batches, at, PER_EPOCH * EPOCHS)

    assert resumed == straight
    helpers.assert_same_weights(model, model2)
    for p, q in zip(_averaged_weights(run), _averaged_weights(run2), strict=True):
        assert torch.equal(p, q)
