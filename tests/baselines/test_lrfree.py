"""Learning-rate-free peers (``baselines.lrfree``): built from names, stepping, modes, step size."""

from __future__ import annotations

import re

import dadaptation
import prodigyopt
import pytest
import schedulefree
import torch
import torch.nn.functional as F

from baselines.lrfree import NAMES, build_lrfree, parse_lrfree

CLASSES = {
    "prodigy": prodigyopt.Prodigy,
    "dadapt-adam": dadaptation.DAdaptAdam,
    "dadapt-sgd": dadaptation.DAdaptSGD,
    "schedulefree-adamw": schedulefree.AdamWScheduleFree,
    "schedulefree-sgd": schedulefree.SGDScheduleFree,
}


def regression(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(256, 8, generator=g)
    y = x @ torch.randn(8, 1, generator=g)
    torch.manual_seed(seed)
    return torch.nn.Linear(8, 1), x, y


# Every method, with its default arguments but for Schedule-Free AdamW, whose default lr (0.0025,
# tuned for deep nets) is too small to fit this regression in 200 steps.
LEARNS = ["prodigy", "dadapt-adam", "dadapt-sgd", "schedulefree-adamw(lr=0.05)", "schedulefree-sgd"]


def test_the_table_covers_every_method():
    assert sorted(n.split("(")[0] for n in LEARNS) == sorted(NAMES)


@pytest.mark.parametrize("name", LEARNS)
def test_each_learns_a_regression_and_reports_its_step_size(name):
    model, x, y = regression()
    built = build_lrfree(name, model.parameters(), total_steps=200)
    assert type(built.optimizer) is CLASSES[name.split("(")[0]]
    first = F.mse_loss(model(x), y).item()
    for _ in range(200):
        built.optimizer.zero_grad()
        F.mse_loss(model(x), y).backward()
        built.optimizer.step()
    built.eval_mode()
    assert F.mse_loss(model(x), y).item() < 0.5 * first
    (key, lr), = built.effective_lr().items()
    assert key == "0.lr" and lr > 0
    group = built.optimizer.param_groups[0]
    if "d" in group:  # the step actually taken is d * lr, and d has grown from its tiny d0
        assert lr == pytest.approx(group["d"] * group["lr"]) and group["d"] > 1e-6


def test_schedulefree_modes_switch_between_its_two_points():
    model, x, y = regression()
    built = build_lrfree("schedulefree-sgd(lr=0.5)", model.parameters(), total_steps=50)
    for _ in range(50):
        built.optimizer.zero_grad()
        F.mse_loss(model(x), y).backward()
        built.optimizer.step()
    train_point = model.weight.detach().clone()
    built.eval_mode()
    eval_point = model.weight.detach().clone()
    assert not torch.equal(train_point, eval_point)
    built.train_mode()
    torch.testing.assert_close(model.weight.detach(), train_point)


def test_schedulefree_warmup_is_a_fraction_of_training():
    model, _, _ = regression()
    built = build_lrfree("schedulefree-adamw(lr=0.01, warmup=0.1)", model.parameters(),
                         total_steps=300)
    assert built.optimizer.param_groups[0]["warmup_steps"] == 30


@pytest.mark.parametrize(
    "name, canonical",
    [
        ("prodigy", "prodigy"),
        ("prodigy()", "prodigy"),
        ("prodigy(lr=1, d_coef=0.5)", "prodigy(d_coef=0.5)"),
        ("dadapt-sgd(momentum=0.9)", "dadapt-sgd(momentum=0.9)"),
        ("schedulefree-adamw(0.001, warmup=0.05)", "schedulefree-adamw(lr=0.001, warmup=0.05)"),
    ],
)
def test_names_are_canonical_and_round_trip(name, canonical):
    assert parse_lrfree(name)[0] == canonical
    assert parse_lrfree(canonical)[0] == canonical


@pytest.mark.parametrize(
    "name, message",
    [
        ("prodigy(d0=1)", "unknown parameter 'd0' for prodigy; valid parameters: lr, beta1"),
        ("dadapt-lion", "valid learning-rate-free methods: prodigy("),
        ("schedulefree-sgd(warmup=2)", "schedulefree-sgd: warmup must be in [0, 1]"),
        ("dadapt-adam(lr=0)", "dadapt-adam: lr must be > 0"),
    ],
)
def test_bad_names_say_what_is_valid(name, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_lrfree(name)
