"""The one table of every registered method family: each row parses to its canonical name, round
trips, and trains a few steps of ``mnist-mlp`` through the real loop; bad names say what is valid.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import pytest

from baselines import hd, lrfree, schedules
from baselines import search as search_lib
from bench.config import Budget, RunConfig
from bench.errors import UserError
from bench.methods import FAMILY_MODULES, describe_methods, families, parse_method
from bench.record import DONE
from bench.train import train

STEPS = 5


@dataclass(frozen=True)
class Row:
    """A method name, its canonical form, and the family that must parse it."""

    family: str
    name: str
    canonical: str
    learns_lr: bool = False  # the reported "0.lr" must move during the run
    reports_lr: bool = True  # "0.lr" is reported (a height-0 tower learns, so reports, nothing)


METHODS: tuple[Row, ...] = (
    # towers: hypergrad towers, plain torch.optim, the paper's reference implementation
    Row("towers", "sgd(0.1)", "sgd(0.1)", reports_lr=False),
    Row("towers", "sgd(lr=0.01)/sgd(0.01)", "sgd(0.01)/sgd(0.01)", learns_lr=True),
    Row("towers", "adam(1e-3, learn=lr)/sgd(1e-5)", "adam(0.001, learn=lr)/sgd(1e-5)",
        learns_lr=True),
    Row("towers", "torch.sgd(lr=0.1, momentum=0.9)", "torch.sgd(lr=0.1, momentum=0.9)"),
    Row("towers", "torch.adam(1e-3)", "torch.adam(lr=0.001)"),
    Row("towers", "gdtuo:sgd(0.01)/sgd(0.01)", "gdtuo:sgd(0.01)/sgd(0.01)", learns_lr=True),
    # hd: Baydin et al.
    Row("hd", "sgd-hd(lr=0.01, beta=0.01)", "sgd-hd(lr=0.01, beta=0.01)", learns_lr=True),
    Row("hd", "sgdn-hd(lr=1e-2, beta=1e-3)", "sgdn-hd(lr=0.01, beta=0.001)", learns_lr=True),
    Row("hd", "adam-hd", "adam-hd(lr=0.001, beta=1e-7)"),
    Row("hd", "adam-hd(beta=1e-3, mult=true)", "adam-hd(lr=0.001, beta=0.001, mult=true)",
        learns_lr=True),
    # schedules: every optimizer and every schedule at least once
    Row("schedules", "sgd(0.1)+constant", "sgd(lr=0.1)+constant"),
    Row("schedules", "sgd(lr=0.1, momentum=0.9)+cosine(warmup=0.4)",
        "sgd(lr=0.1, momentum=0.9)+cosine(warmup=0.4)", learns_lr=True),
    Row("schedules", "sgd(lr=0.1, momentum=0.9, nesterov=true)+multistep",
        "sgd(lr=0.1, momentum=0.9, nesterov=true)+multistep(gamma=0.1)", learns_lr=True),
    Row("schedules", "adam(1e-3)+step(every=0.005)", "adam(lr=0.001)+step(every=0.005, gamma=0.1)",
        learns_lr=True),
    Row("schedules", "adam(1e-3)+exponential(0.5)", "adam(lr=0.001)+exponential(gamma=0.5)",
        learns_lr=True),
    Row("schedules", "adamw(lr=1e-3, weight_decay=0.01)+onecycle",
        "adamw(lr=0.001, weight_decay=0.01)+onecycle", learns_lr=True),
    # lrfree: every one
    Row("lrfree", "prodigy", "prodigy", learns_lr=True),
    Row("lrfree", "dadapt-adam()", "dadapt-adam", learns_lr=True),
    Row("lrfree", "dadapt-sgd(momentum=0.9)", "dadapt-sgd(momentum=0.9)", learns_lr=True),
    Row("lrfree", "schedulefree-adamw(warmup=1)", "schedulefree-adamw(warmup=1)",
        learns_lr=True),
    Row("lrfree", "schedulefree-sgd(lr=0.5)", "schedulefree-sgd(lr=0.5)"),
    # search: every sampler and pruner (two trials each: the model-based ones stay in startup)
    Row("search", "grid(base=sgd, budget=2)", "grid(base=sgd, budget=2)"),
    Row("search", "random(budget=2, pruner=median)", "random(base=sgd, budget=2, pruner=median)"),
    Row("search", "tpe(base=adam, budget=2, pruner=hyperband)",
        "tpe(base=adam, budget=2, pruner=hyperband)"),
    Row("search", "gp(base=sgd+cosine, budget=2)", "gp(base=sgd+cosine, budget=2)"),
    Row("search", "cmaes(base=adam+onecycle, budget=2, unit=seconds)",
        "cmaes(base=adam+onecycle, budget=2, unit=seconds)"),
)


def test_the_table_covers_every_family_and_every_name():
    assert {row.family for row in METHODS} == set(FAMILY_MODULES)
    heads = {row.name.split("(")[0] for row in METHODS}
    assert set(hd.NAMES) | set(lrfree.NAMES) | set(search_lib.SAMPLERS) <= heads
    canon = " ".join(row.canonical for row in METHODS)
    for sig in (*schedules.OPTIMIZERS, *schedules.SCHEDULES):
        assert re.search(rf"(^|[ +]){re.escape(sig.name)}\b", canon), sig.name


@pytest.mark.parametrize("row", METHODS, ids=[row.name for row in METHODS])
def test_names_are_canonical_and_round_trip(row):
    method = parse_method(row.name)
    assert method.name == row.canonical
    assert parse_method(method.name).name == row.canonical
    family = next(f for f in families() if f.matches(row.name))
    assert family.name == row.family


@pytest.mark.slow
@pytest.mark.parametrize("row", METHODS, ids=[row.name for row in METHODS])
def test_every_method_trains_a_few_steps_of_mnist_mlp(row, bench_data_dir, tmp_path):
    config = RunConfig("mnist-mlp", parse_method(row.name).name, seed=0,
                       budget=Budget(steps=STEPS)).with_options(
        storage=str(tmp_path / "optuna.sqlite"))
    result = train(config)
    assert result.status == DONE, result.error
    assert 0.0 <= result.metrics["test_error"] < 0.9
    assert math.isfinite(result.metrics["test_loss"])
    assert result.cost["steps"] >= STEPS
    if parse_method(row.name).kind == "search":
        # its trials chose on validation held out of the training split
        assert math.isfinite(result.metrics["val_loss"])
        assert result.cost["steps"] == sum(t["cost_steps"] for t in result.curves["trials"])
        assert len(result.curves["best_so_far"]) == len(result.curves["trials"]) >= 1
        return
    if not row.reports_lr:
        assert "0.lr" not in result.curves["hyper"]
        return
    lr = result.curves["hyper"]["0.lr"]
    assert len(lr) >= 2 and all(math.isfinite(v) and v >= 0 for _, v in lr)
    if row.learns_lr:
        assert lr[-1][1] != lr[0][1], "the step size should move during the run"


BAD: tuple[tuple[str, str], ...] = (
    # no family claims it: every family is listed with its parameters
    ("12", "unknown method '12'; valid methods:\n  search: "),
    # a known family, a wrong parameter: its valid parameters
    ("sgd-hd(alpha=0.1)", "unknown parameter 'alpha' for sgd-hd; valid parameters: lr, beta"),
    ("prodigy(d0=1e-6)", "unknown parameter 'd0' for prodigy; valid parameters: lr, beta1"),
    ("sgd(lr=0.1)+cosine(T=3)", "unknown parameter 'T' for cosine; valid parameters: warmup, min"),
    ("tpe(trials=8)", "unknown parameter 'trials' for tpe; valid parameters: base, budget"),
    # a wrong value: the rule and the value
    ("tpe(base=lamb)", "tpe: base must be one of sgd, adam, sgd+cosine"),
    ("random(budget=0)", "random: budget must be > 0 (a multiple of one run), but got budget=0"),
    ("grid(pruner=asha)", "grid: pruner must be one of none, median, hyperband"),
    ("adam-hd(lr=-1)", "adam-hd: lr must be > 0, but got lr=-1"),
    ("sgd(lr=0.1)+onecyle", "unknown schedule 'onecyle'; valid schedules: constant; step("),
    ("sgd(0.1)+", "a scheduled method is OPTIMIZER+SCHEDULE, but got 'sgd(0.1)+'"),
    ("nosuch(1)", "unknown method 'nosuch(1)'; valid methods:\n  search: "),
    # the towers family: hypergrad's arguments and grammar
    ("adam/sgd(x=1)", "unknown argument 'x' for sgd in spec 'adam/sgd(x=1)'; arguments of sgd: lr"),
)


@pytest.mark.parametrize("name, message", BAD, ids=[b[0] for b in BAD])
def test_bad_names_say_what_is_valid(name, message):
    with pytest.raises(UserError, match=re.escape(message)):
        parse_method(name)


def test_the_method_listing_names_every_family_with_its_parameters():
    text = describe_methods()
    for family in FAMILY_MODULES:
        assert f"  {family}: " in text
    for fragment in ("sgd-hd(lr=0.001, beta=0.001", "prodigy(lr=1", "cosine(warmup=0, min=0)",
                     "tpe|gp|cmaes(base={sgd|adam", "pruner={none|median|hyperband}"):
        assert fragment in text


# --- what a parsed method says about itself (reports group and label runs by it) -----------

@pytest.mark.parametrize("name, family, base, height, lr0, budget, sampler", [
    ("adam(1e-3)/sgd(1e-5)", "tower", "adam", 1, 1e-3, None, None),
    ("sgd(0.01, momentum=0.9)/sgd(1e-4)/sgd(1e-5)", "tower", "sgd", 2, 0.01, None, None),
    ("sgd(0.1)", "tower", "sgd", 0, 0.1, None, None),
    ("torch.sgd(lr=0.1, momentum=0.9)", "torch", "sgd", 0, 0.1, None, None),
    ("gdtuo:adam(0.001)/sgd(1e-5)", "gdtuo", "adam", 1, 1e-3, None, None),
    ("adam-hd(lr=0.001, beta=1e-7, mult=true)", "hd", "adam", None, 1e-3, None, None),
    ("sgd(lr=0.1, momentum=0.9)+cosine", "schedule", "sgd", None, 0.1, None, None),
    ("prodigy", "lrfree", "prodigy", None, None, None, None),
    ("tpe(base=sgd, budget=8)", "search", "tpe", None, None, 8.0, "tpe"),
])
def test_meta_comes_from_the_parse(name, family, base, height, lr0, budget, sampler):
    meta = parse_method(name).meta()
    assert (meta.family, meta.base, meta.height, meta.budget, meta.sampler) == (
        family, base, height, budget, sampler)
    assert meta.lr0 == (None if lr0 is None else pytest.approx(lr0))


def test_every_family_example_has_meta():
    from bench.methods import MethodMeta, families

    for family in families():
        for example in family.examples:
            assert isinstance(parse_method(example).meta(), MethodMeta), example
