"""Checkpoints across the two libraries, for every family (table.FAMILIES), on both paths.

A ``torch.optim`` state dict loads into the hypergrad class of its family: at height 0 the run
goes on as torch.optim's would (bit for bit on the float path); at height 1 the tower starts its
learned values from the saved param groups and goes on learning. A height-0 hypergrad state
dict loads into ``torch.optim`` and goes on as the hypergrad run would.
"""

from __future__ import annotations

import pytest
import torch

import hypergrad
from tests.hypergrad import helpers
from tests.hypergrad.table import FAMILIES

STEPS = 8
IDS = [f[0] for f in FAMILIES]


def _continued(a, model_a, b, model_b, path):
    """Run both optimizers on the same batches: the same losses and weights."""
    batches = helpers.random_batches(4, seed=1, dtype=torch.float64)
    losses, _ = helpers.run_tower(a, model_a, batches, STEPS)
    ref_losses, _ = helpers.run_tower(b, model_b, batches, STEPS)
    if path:
        assert losses == ref_losses
    else:
        torch.testing.assert_close(torch.tensor(losses), torch.tensor(ref_losses), rtol=1e-12,
                                   atol=0)
    helpers.assert_same_weights(model_a, model_b, exact=path)


def _trained_torch(make_torch):
    model = helpers.mlp(dtype=torch.float64)
    ref = make_torch(model.parameters())
    helpers.run_tower(ref, model, helpers.random_batches(4, dtype=torch.float64), 3)
    return model, ref


@pytest.mark.parametrize(("spec", "kappa", "make_torch"), FAMILIES, ids=IDS)
def test_a_torch_state_dict_loads_and_continues_as_torch_at_height_0(spec, kappa, make_torch,
                                                                     path):
    model, ref = _trained_torch(make_torch)
    twin = helpers.clone_model(model)
    opt = hypergrad.tower(spec, twin.parameters())
    opt.load_state_dict(helpers.saved(ref.state_dict()))
    _continued(opt, twin, ref, model, path)


@pytest.mark.parametrize(("spec", "kappa", "make_torch"), FAMILIES, ids=IDS)
def test_a_torch_state_dict_starts_a_tower_at_height_1(spec, kappa, make_torch, path):
    """The learned values start from the saved groups (an edited lr included); with a level
    above that barely moves them the run is torch.optim's; with one that learns they move."""
    model, ref = _trained_torch(make_torch)
    saved = helpers.saved(ref.state_dict())
    saved["param_groups"][0]["lr"] /= 2
    ref.param_groups[0]["lr"] /= 2
    twin, third = helpers.clone_model(model), helpers.clone_model(model)
    still = hypergrad.tower(f"{spec}/sgd(1e-30)", twin.parameters())
    still.load_state_dict(saved)
    start = ref.param_groups[0]["lr"]
    assert still.hyperparameters()["0.lr"] == pytest.approx(start, rel=1e-12)
    assert still.step_sizes() == [pytest.approx(start, rel=1e-12)]
    batches = helpers.random_batches(4, seed=1, dtype=torch.float64)
    losses, _ = helpers.run_tower(still, twin, batches, STEPS)
    ref_losses, _ = helpers.run_tower(ref, model, batches, STEPS)
    torch.testing.assert_close(torch.tensor(losses), torch.tensor(ref_losses), rtol=1e-9, atol=0)

    learning = hypergrad.tower(f"{spec}/sgd({kappa!r})", third.parameters())
    learning.load_state_dict(saved)
    assert learning.hyperparameters()["0.lr"] == pytest.approx(start, rel=1e-12)
    _, hypers = helpers.run_tower(learning, third, batches, STEPS)
    assert hypers[-1]["0.lr"] != pytest.approx(start, rel=1e-9)


@pytest.mark.parametrize(("spec", "kappa", "make_torch"), FAMILIES, ids=IDS)
def test_a_height_0_state_dict_loads_into_torch_optim(spec, kappa, make_torch, path):
    model = helpers.mlp(dtype=torch.float64)
    opt = hypergrad.tower(spec, model.parameters())
    helpers.run_tower(opt, model, helpers.random_batches(4, dtype=torch.float64), 3)
    twin = helpers.clone_model(model)
    ref = make_torch(twin.parameters())
    ref.load_state_dict(helpers.saved(opt.state_dict()))
    for group in ref.param_groups:  # torch's own keys, with torch's values
        assert group["lr"] == opt.param_groups[0]["lr"]
    _continued(ref, twin, opt, model, path)
