"""Fixed schedules (``baselines.schedules``): the lr used at each step equals the closed form."""

from __future__ import annotations

import math
import re

import pytest
import torch

from baselines.schedules import (
    build_optimizer,
    build_scheduler,
    current_lrs,
    parse_schedule,
)

TOTAL, SPE = 100, 10  # 100 steps of 10 steps per epoch


def lrs_used(name: str, total: int = TOTAL, spe: int = SPE, groups: int = 1) -> list[list[float]]:
    """The lr of each group at each optimizer step, stepping the scheduler as the loop does."""
    spec = parse_schedule(name)
    params = [{"params": [torch.zeros(1, requires_grad=True)]} for _ in range(groups)]
    opt = build_optimizer(spec, params)
    sched = build_scheduler(spec, opt, total_steps=total, steps_per_epoch=spe)
    used = []
    for _ in range(total):
        used.append([g["lr"] for g in opt.param_groups])
        for g in opt.param_groups:
            g["params"][0].grad = torch.ones(1)
        opt.step()
        sched.step()
    return used


def cos_anneal(start: float, end: float, frac: float) -> float:
    return end + (start - end) / 2 * (1 + math.cos(math.pi * frac))


CLOSED_FORMS = {
    "sgd(lr=0.1)+constant": lambda k: 0.1,
    "sgd(lr=0.1)+step(at=[3, 7.5], gamma=0.1)": lambda k: 0.1 * 0.1 ** ((k >= 30) + (k >= 75)),
    "sgd(lr=0.1)+step(every=4, gamma=0.5)": lambda k: 0.1 * 0.5 ** (k // 40),
    "sgd(lr=0.1, momentum=0.9)+multistep": lambda k: 0.1 * 0.1 ** ((k >= 50) + (k >= 75)),
    "adam(lr=0.01)+exponential(gamma=0.5)": lambda k: 0.01 * 0.5 ** (k / SPE),
    "sgd(lr=0.1)+cosine": lambda k: cos_anneal(0.1, 0.0, k / (TOTAL - 1)),
    "sgd(lr=0.1)+cosine(warmup=0.1, min=0.1)": lambda k: (
        0.1 * (k + 1) / 10 if k < 10 else cos_anneal(0.1, 0.01, (k - 10) / (TOTAL - 11))
    ),
}


@pytest.mark.parametrize("name", list(CLOSED_FORMS))
def test_lr_at_every_step_is_the_closed_form(name):
    used = [row[0] for row in lrs_used(name)]
    expected = [CLOSED_FORMS[name](k) for k in range(TOTAL)]
    assert used == pytest.approx(expected, rel=1e-9, abs=1e-15)


def test_one_cycle_warms_up_to_lr_then_anneals():
    used = [row[0] for row in lrs_used("sgd(lr=0.1, momentum=0.9)+onecycle(pct=0.25)")]
    # torch's OneCycleLR over total + 1 points: peak at step pct * (total + 1) - 1.
    peak = 0.25 * (TOTAL + 1) - 1
    low, final = 0.1 / 25, 0.1 / 25 / 1e4
    expected = [
        cos_anneal(low, 0.1, k / peak) if k <= peak else cos_anneal(0.1, final, (k - peak) /
                                                                    (TOTAL - peak))
        for k in range(TOTAL)
    ]
    assert used == pytest.approx(expected, rel=1e-9)
    assert used[0] == pytest.approx(0.004) and max(used) == pytest.approx(0.1, rel=1e-3)


def test_one_cycle_cycles_momentum_only_when_there_is_momentum():
    for name, cycles in [("sgd(lr=0.1)+onecycle", False), ("sgd(lr=0.1, momentum=0.9)+onecycle",
                                                           True)]:
        spec = parse_schedule(name)
        opt = build_optimizer(spec, [torch.zeros(1, requires_grad=True)])
        sched = build_scheduler(spec, opt, total_steps=TOTAL, steps_per_epoch=SPE)
        momenta = set()
        for _ in range(TOTAL):
            opt.step()
            sched.step()
            momenta.add(round(opt.param_groups[0]["momentum"], 6))
        assert (len(momenta) > 1) is cycles


def test_every_group_follows_its_own_lr():
    spec = parse_schedule("sgd(lr=0.1)+cosine(warmup=0.1)")
    groups = [{"params": [torch.zeros(1, requires_grad=True)], "lr": lr} for lr in (0.1, 1.0)]
    opt = build_optimizer(spec, groups)
    sched = build_scheduler(spec, opt, total_steps=TOTAL, steps_per_epoch=SPE)
    for _ in range(37):
        opt.step()
        sched.step()
    lrs = current_lrs(opt)
    assert lrs.keys() == {"0.lr[0]", "0.lr[1]"}
    assert lrs["0.lr[1]"] == pytest.approx(10 * lrs["0.lr[0]"])


def test_the_optimizers_are_torch_optim_with_the_named_arguments():
    opt = build_optimizer(parse_schedule("sgd(lr=0.1, momentum=0.9, nesterov=true, "
                                         "weight_decay=5e-4)+constant"),
                          [torch.zeros(1, requires_grad=True)])
    assert isinstance(opt, torch.optim.SGD)
    g = opt.param_groups[0]
    assert (g["momentum"], g["nesterov"], g["weight_decay"]) == (0.9, True, 5e-4)
    adam = build_optimizer(parse_schedule("adamw(lr=0.001, beta2=0.99)+cosine"),
                           [torch.zeros(1, requires_grad=True)])
    assert isinstance(adam, torch.optim.AdamW) and adam.param_groups[0]["betas"] == (0.9, 0.99)
    assert current_lrs(adam) == {"0.lr": 0.001}


@pytest.mark.parametrize(
    "name, canonical",
    [
        ("sgd(0.1, 0.9)+cosine(0.05)", "sgd(lr=0.1, momentum=0.9)+cosine(warmup=0.05)"),
        ("sgd(lr=0.1, momentum=0.9) + cosine(warmup=0.05)",
         "sgd(lr=0.1, momentum=0.9)+cosine(warmup=0.05)"),
        ("adam(1e-3)+step(at=[30,60])", "adam(lr=0.001)+step(at=[30, 60], gamma=0.1)"),
        ("sgd(lr=1, momentum=0)+constant()", "sgd(lr=1)+constant"),
        ("adam(lr=0.001, beta1=0.9)+multistep(gamma=0.2)", "adam(lr=0.001)+multistep(gamma=0.2)"),
    ],
)
def test_names_are_canonical_and_round_trip(name, canonical):
    assert parse_schedule(name).name == canonical
    assert parse_schedule(canonical).name == canonical


@pytest.mark.parametrize(
    "name, message",
    [
        ("sgd(lr=0.1)", "a scheduled method is OPTIMIZER+SCHEDULE"),
        ("sgd+cosine", "sgd needs a step size: write sgd(lr=...)"),
        ("lamb(lr=1)+cosine", "unknown optimizer 'lamb'; valid optimizers: sgd(lr, momentum=0"),
        ("sgd(lr=0.1)+linear", "unknown schedule 'linear'; valid schedules: constant; step(at,"),
        ("sgd(lr=0.1)+cosine(warm=0.1)", "unknown parameter 'warm' for cosine; valid parameters: "
                                         "warmup, min"),
        ("sgd(lr=0.1)+step", "step needs exactly one of at=[epochs] or every=epochs"),
        ("sgd(lr=0.1, nesterov=true)+constant", "sgd(nesterov=true) needs momentum > 0"),
        ("sgd(lr=0.1)+cosine(warmup=1.5)", "cosine: warmup must be in [0, 1]"),
        ("sgd(lr=0.1, momentum=1)+constant", "sgd: momentum must be in [0, 1), but got "
                                             "momentum=1"),
        ("sgd(lr=0.1)+cosine(warmup=0.1", "unbalanced '('"),
    ],
)
def test_bad_names_say_what_is_valid(name, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_schedule(name)
