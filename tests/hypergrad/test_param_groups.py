"""Param groups at every height: groups that start at different values, and groups added after
construction (layers unfrozen later), for every family (table.FAMILIES), on both paths.

The default (``lr_per`` not given) learns one value of each hyperparameter for the optimizer
while the groups agree, one per group when they start at different values of any learned one:
the same tower as ``lr_per="group"`` then. A group
added after some steps gets its own learned values: the run is, bit for bit, the one of a tower
built with ``lr_per="group"`` over every group whose new group had no gradient until then.
"""

from __future__ import annotations

import pytest
import torch

import hypergrad
from tests.hypergrad import helpers
from tests.hypergrad.table import FAMILIES

STEPS = 10
IDS = [f[0] for f in FAMILIES]


def _groups(model, lrs):
    return [{"params": list(model[0].parameters()), "lr": lrs[0]},
            {"params": list(model[2].parameters()), "lr": lrs[1]}]


def _run(opt, model, batches, steps, frozen_until=0):
    """Train; the second layer gets no gradient before step ``frozen_until``."""
    def freeze(s):
        if s < frozen_until:
            for p in model[2].parameters():
                p.grad = None

    return helpers.run_tower(opt, model, batches, steps, freeze)


def _lrs(spec):
    lr = hypergrad.tower(spec, [torch.zeros(1, requires_grad=True)]).param_groups[0]["lr"]
    return lr, lr * 3


@pytest.mark.parametrize("height", [1, 2])
@pytest.mark.parametrize(("spec", "kappa", "make_torch"), FAMILIES, ids=IDS)
def test_groups_at_different_step_sizes_learn_one_per_group_by_default(spec, kappa, make_torch,
                                                                       height, path):
    tall = spec + f"/sgd({kappa!r})" + "/sgd(1e-6)" * (height - 1)
    batches = helpers.random_batches(4)
    model = helpers.mlp(dtype=torch.float32)
    twin = helpers.clone_model(model)
    lrs = _lrs(spec)
    opt = hypergrad.tower(tall, _groups(model, lrs))
    ref = hypergrad.tower(helpers.with_args(tall, "lr_per=group"), _groups(twin, lrs))
    assert str(opt) == hypergrad.canonical(tall)  # the default prints nothing
    got, want = _run(opt, model, batches, STEPS), _run(ref, twin, batches, STEPS)
    assert got == want
    assert {k for k in got[1][-1] if k.startswith("0.lr")} == {"0.lr[0]", "0.lr[1]"}
    assert got[1][-1]["0.lr[0]"] != lrs[0] and got[1][-1]["0.lr[1]"] != lrs[1]
    assert opt.step_sizes() == [pytest.approx(got[1][-1]["0.lr[0]"], rel=1e-6),
                                pytest.approx(got[1][-1]["0.lr[1]"], rel=1e-6)]


def test_groups_that_agree_share_one_value_and_lr_per_optimizer_still_refuses_differences():
    model = helpers.mlp(dtype=torch.float32)
    opt = hypergrad.tower("adam(0.001)/sgd(1e-5)", _groups(model, (1e-3, 1e-3)))
    assert sorted(opt.hyperparameters()) == ["0.beta1", "0.beta2", "0.lr"]
    mixed = hypergrad.tower("adam(0.001)/sgd(1e-5)", _groups(model, (1e-3, 1e-2)))
    assert sorted(mixed.hyperparameters()) == ["0.beta1[0]", "0.beta1[1]", "0.beta2[0]",
                                               "0.beta2[1]", "0.lr[0]", "0.lr[1]"]
    with pytest.raises(hypergrad.HypergradError, match=r"lr is learned once for the optimizer"):
        hypergrad.tower("adam(0.001, lr_per=optimizer)/sgd(1e-5)", _groups(model, (1e-3, 1e-2)))


@pytest.mark.parametrize("height", [1, 2])
@pytest.mark.parametrize(("spec", "kappa", "make_torch"), FAMILIES, ids=IDS)
def test_add_param_group_after_some_steps_gets_its_own_learned_values(spec, kappa, make_torch,
                                                                      height, path):
    tall = spec + f"/adam({kappa!r})" + "/sgd(1e-6)" * (height - 1)  # (Adam: state to remap)
    batches = helpers.random_batches(4)
    model = helpers.mlp(dtype=torch.float32)
    twin = helpers.clone_model(model)
    lrs = _lrs(spec)
    opt = hypergrad.tower(tall, _groups(model, lrs)[:1])
    got = _run(opt, model, batches, 4, frozen_until=4)
    opt.add_param_group(_groups(model, lrs)[1])
    assert opt.param_groups[1]["lr"] == lrs[1]
    more = _run(opt, model, batches, STEPS)
    ref = hypergrad.tower(helpers.with_args(tall, "lr_per=group"), _groups(twin, lrs))
    want = _run(ref, twin, batches, 4 + STEPS, frozen_until=4)
    assert got[0] + more[0] == want[0]
    assert more[1] == want[1][4:]
    assert more[1][-1]["0.lr[1]"] != lrs[1]  # learned
    helpers.assert_same_weights(model, twin)


def test_add_param_group_at_height_0_is_torchs(path):
    batches = helpers.random_batches(4, dtype=torch.float64)
    model = helpers.mlp(dtype=torch.float64)
    twin = helpers.clone_model(model)
    opt = hypergrad.Adam(_groups(model, (1e-3, 1e-2))[:1], lr=1e-3)
    ref = torch.optim.Adam(_groups(twin, (1e-3, 1e-2))[:1], lr=1e-3)
    for o, m in ((opt, model), (ref, twin)):
        helpers.run_tower(o, m, batches, 3)
        o.add_param_group({"params": list(m[2].parameters()), "lr": 1e-2})
        helpers.run_tower(o, m, batches, 3)
    helpers.assert_same_weights(model, twin, exact=path)


def test_add_param_group_under_a_per_hyperparameter_level_is_refused():
    model = helpers.mlp(dtype=torch.float32)
    opt = hypergrad.tower("sgd(0.05)/sgd(1e-3, lr_per=tensor)/sgd(1e-6)",
                          _groups(model, (0.05, 0.05))[:1])
    with pytest.raises(hypergrad.HypergradError, match=r"lr_per='tensor' above level 0"):
        opt.add_param_group(_groups(model, (0.05, 0.05))[1])
