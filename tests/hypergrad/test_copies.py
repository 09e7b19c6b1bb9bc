"""Copies of a whole optimizer after some steps (``copy.deepcopy``, ``pickle``) go on exactly as
the original, for every family (table.FAMILIES) at heights 0 to 2, on both paths; and
``hypergrad.hyperparameters`` reaches a tower through the wrappers frameworks put around it."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch

import hypergrad
from tests.hypergrad import helpers
from tests.hypergrad.table import FAMILIES

IDS = [f[0] for f in FAMILIES]
COPIES = {"deepcopy": copy.deepcopy, "pickle": lambda x: pickle.loads(pickle.dumps(x))}


@pytest.mark.parametrize("how", list(COPIES))
@pytest.mark.parametrize("height", [0, 1, 2])
@pytest.mark.parametrize(("spec", "kappa", "make_torch"), FAMILIES, ids=IDS)
def test_a_copy_after_some_steps_goes_on_exactly(spec, kappa, make_torch, height, how, path):
    tall = spec + f"/sgd({kappa!r})" * min(height, 1) + "/sgd(1e-6)" * max(height - 1, 0)
    batches = helpers.random_batches(4)
    model = helpers.mlp(dtype=torch.float32)
    opt = hypergrad.tower(tall, model.parameters())
    helpers.run_tower(opt, model, batches, 3)
    model2, opt2 = COPIES[how]((model, opt))
    assert opt2.state_dict().keys() == opt.state_dict().keys()
    got = helpers.run_tower(opt2, model2, batches, 5)
    want = helpers.run_tower(opt, model, batches, 5)
    assert got == want
    helpers.assert_same_weights(model, model2)


class _Wrapper:
    """An optimizer wrapper as frameworks make them (``.optimizer`` or ``._optimizer``)."""

    def __init__(self, inner, attribute):
        setattr(self, attribute, inner)


def test_hyperparameters_unwraps_framework_wrappers():
    model = helpers.mlp(dtype=torch.float32)
    opt = hypergrad.tower("adam(0.001)/sgd(1e-5)", model.parameters())
    want = opt.hyperparameters()
    assert hypergrad.hyperparameters(opt) == want
    for attribute in ("optimizer", "_optimizer"):
        assert hypergrad.hyperparameters(_Wrapper(opt, attribute)) == want
    assert hypergrad.hyperparameters(_Wrapper(_Wrapper(opt, "_optimizer"), "optimizer")) == want
    assert hypergrad.hyperparameters(torch.optim.SGD(model.parameters(), lr=0.1)) == {}
    with pytest.raises(hypergrad.HypergradError, match="not an optimizer"):
        hypergrad.hyperparameters(object())
