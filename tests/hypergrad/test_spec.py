"""Spec strings: canonical forms that parse back to the same tower, and errors that say what is
wrong, the grammar and the valid names; the spelled-out classes build the same towers."""

from __future__ import annotations

import re

import pytest
import torch

import hypergrad
from tests.hypergrad import helpers
from tests.hypergrad.table import ERRORS, SPECS


def _identity(tower: hypergrad.Tower) -> list[tuple]:
    """What a tower is: per level its class, arguments, and (below the top) what it learns."""
    chain, out = [tower], []
    while chain[-1]._hyper_spec is not None:
        chain.append(chain[-1]._hyper_spec)
    for i, level in enumerate(chain):
        top = i == len(chain) - 1
        out.append((type(level), level._config, None if top else level._learn,
                    None if top else level._lr_per))
    return out


@pytest.mark.parametrize(("spec", "expected"), SPECS, ids=[s for s, _ in SPECS])
def test_canonical_round_trip(spec, expected):
    assert hypergrad.canonical(spec) == expected
    assert hypergrad.canonical(expected) == expected
    assert _identity(hypergrad.unbound(expected)) == _identity(hypergrad.unbound(spec))
    model = torch.nn.Linear(3, 2)
    opt = hypergrad.tower(spec, model.parameters())
    assert str(opt) == expected
    assert isinstance(opt, torch.optim.Optimizer) and isinstance(opt, hypergrad.Tower)
    assert opt.height == expected.count("/")


@pytest.mark.parametrize(("spec", "pattern"), ERRORS, ids=[s or "<empty>" for s, _ in ERRORS])
def test_errors(spec, pattern):
    with pytest.raises(ValueError, match=pattern) as info:
        hypergrad.canonical(spec)
    assert isinstance(info.value, hypergrad.SpecError)
    message = str(info.value)
    assert "grammar: " in message
    assert re.search(r"valid optimizers: |arguments of \w+: ", message), message
    assert "\n" not in message  # one line, for the CLI
    with pytest.raises(hypergrad.SpecError):  # the same from tower()
        hypergrad.tower(spec, torch.nn.Linear(2, 2).parameters())


@pytest.mark.parametrize(("spec", "pattern"), [
    ("sgd(0.1, weight_decay=1e999)", r"weight_decay must be a number, but got inf"),
    ("SGD(0.1, 0.2)", r"positional argument at position 9.*arguments of sgd"),
])
def test_errors_that_once_escaped_as_other_exceptions(spec, pattern):
    """An overflowing number and a capitalised name with a second positional argument: once an
    OverflowError and a KeyError from the reader, now spec errors like every other."""
    with pytest.raises(hypergrad.SpecError, match=pattern):
        hypergrad.canonical(spec)


PYTHON_ERRORS = (
    (lambda p: hypergrad.Adam(p, lr=-1.0), r"adam: lr must be > 0, but got lr=-1.0"),
    (lambda p: hypergrad.Adam(p, betas=(0.9, 1.0), hyper=hypergrad.SGD(lr=1e-5)),
     r"beta2 must be in \(0, 1\) to be learned"),
    (lambda p: hypergrad.Adam(p, betas=(0.9,)), r"betas must be a pair"),
    (lambda p: hypergrad.SGD(0.1), r"the first argument is params.*write lr=0.1"),
    (lambda p: hypergrad.SGD(p, lr="fast"), r"lr must be a number"),
    (lambda p: hypergrad.SGD(p, lr=0.1, learn="alpha"), r"cannot learn 'alpha'"),
    (lambda p: hypergrad.SGD(p, lr=0.1, learn=()), r"learn is empty"),
    (lambda p: hypergrad.SGD(p, lr_per="layer"), r"lr_per must be one of"),
    (lambda p: hypergrad.SGD(p, hyper=torch.optim.SGD), r"hyper must be a hypergrad optimizer"),
    (lambda p: hypergrad.SGD(p, hyper=hypergrad.SGD(torch.nn.Linear(1, 1).parameters())),
     r"hyper must be built without params"),
    (lambda p: hypergrad.SGD(p, hyper="sgd(-1)"), r"lr must be > 0"),
    (lambda p: hypergrad.RMSprop(p, gamma=1.5), r"gamma must be in \[0, 1\)"),
    (lambda p: hypergrad.RMSprop(p, gamma=0.0, hyper="sgd(1e-4)"),
     r"gamma must be in \(0, 1\) to be learned"),
    (lambda p: hypergrad.tower("sgd(0.1)", None), r"tower\(\) needs params"),
    (lambda p: hypergrad.tower(3, p), r"a spec is a string"),
    (lambda p: hypergrad.SGD([{"params": [p[0]], "lr": 0.1}, {"params": [p[1]], "lr": 0.2}],
                             lr_per="optimizer", hyper="sgd(1e-5)"),
     r"lr is learned once for the optimizer.*use lr_per='group'"),
    (lambda p: hypergrad.SGD([{"params": [p[0]], "lr": -0.1}]), r"lr must be > 0"),
)


@pytest.mark.parametrize(("make", "pattern"), PYTHON_ERRORS)
def test_python_api_errors(make, pattern):
    params = list(torch.nn.Linear(2, 2).parameters())
    with pytest.raises(hypergrad.HypergradError, match=pattern):
        make(params)


def test_spelled_out_equals_spec():
    """``hypergrad.Adam(params, lr=1e-3, hyper=hypergrad.SGD(lr=1e-5))`` is the tower of
    ``adam(1e-3)/sgd(1e-5)``: same canonical spec, same numbers."""
    batches = [(torch.randn(32, 784), torch.randint(0, 10, (32,))) for _ in range(3)]
    results = []
    for make in (
        lambda p: hypergrad.tower("adam(1e-3)/sgd(1e-5)/sgd(1e-7)", p),
        lambda p: hypergrad.Adam(p, lr=1e-3, hyper=hypergrad.SGD(lr=1e-5,
                                                                hyper=hypergrad.SGD(lr=1e-7))),
        lambda p: hypergrad.Adam(p, lr=1e-3, hyper="sgd(1e-5)/sgd(1e-7)"),
    ):
        model = helpers.mlp(dtype=torch.float32)
        opt = make(model.parameters())
        assert str(opt) == "adam(0.001)/sgd(1e-5)/sgd(1e-7)" and opt.height == 2
        results.append(helpers.run_tower(opt, model, batches, 6))
    assert results[0] == results[1] == results[2]


def test_unbound_level_describes_itself():
    level = hypergrad.SGD(lr=1e-5, momentum=0.9)
    assert str(level) == "sgd(1e-5, momentum=0.9)"
    assert "unbound" in repr(level)
    assert hypergrad.Adam(lr=1e-3, hyper=level).height == 1
