"""Height 0 is ``torch.optim``: the same weights after every step, in float64 and float32."""

from __future__ import annotations

import pytest
import torch

import hypergrad
from tests.hypergrad import helpers
from tests.hypergrad.table import TORCH_ROWS


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(("spec", "make_torch"), TORCH_ROWS, ids=[s for s, _ in TORCH_ROWS])
def test_height_0_equals_torch_optim(spec, make_torch, dtype, mnist_batches):
    batches = mnist_batches(n_images=256, batch_size=64, dtype=dtype)
    model = helpers.mlp(dtype=dtype)
    twin = helpers.clone_model(model)
    opt = hypergrad.tower(spec, model.parameters())
    ref = make_torch(twin.parameters())
    assert opt.height == 0 and opt.hyperparameters() == {}

    losses, _ = helpers.run_tower(opt, model, batches, 30)
    ref_losses, _ = helpers.run_tower(ref, twin, batches, 30)

    assert losses == ref_losses
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.equal(p, q)  # bit for bit: the same operations in the same order


def test_spelled_out_classes_equal_torch():
    """``hypergrad.SGD(params, ...)`` with torch's signature, and param groups with their own
    settings, as torch.optim."""
    model = helpers.mlp(dtype=torch.float32)
    twin = helpers.clone_model(model)
    groups = lambda m: [{"params": m[0].parameters(), "lr": 0.05},  # noqa: E731
                        {"params": m[2].parameters(), "weight_decay": 1e-2}]
    opt = hypergrad.SGD(groups(model), lr=0.1, momentum=0.9, nesterov=True)
    ref = torch.optim.SGD(groups(twin), lr=0.1, momentum=0.9, nesterov=True)
    x, y = torch.randn(16, 784), torch.randint(0, 10, (16,))
    helpers.run_tower(opt, model, [(x, y)], 5)
    helpers.run_tower(ref, twin, [(x, y)], 5)
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.equal(p, q)
