"""Numbers equal to the paper's implementation (``gdtuo``): losses and every learned
hyperparameter, for every optimizer kind as level 0 and as a hyperoptimizer, heights 1 to 4,
200 steps of an MLP on real MNIST, float64, to 1e-6 relative."""

from __future__ import annotations

import pytest
import torch

import hypergrad
from tests.hypergrad import helpers
from tests.hypergrad.table import KINDS, tower_of

STEPS = 200


@pytest.mark.parametrize("height", [1, 2, 3, 4])
@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.id)
def test_equals_gdtuo(kind, height, mnist_batches):
    torch.set_default_dtype(torch.float64)  # gdtuo builds its hyperparameters in the default
    batches = mnist_batches(n_images=512, batch_size=64, dtype=torch.float64)
    spec, levels = tower_of(kind, height)
    model = helpers.mlp()
    reference = helpers.gdtuo_tower(helpers.clone_model(model), levels)
    opt = hypergrad.tower(spec, model.parameters())
    assert opt.height == height

    losses, hypers = helpers.run_tower(opt, model, batches, STEPS)
    ref_losses, ref_hypers = helpers.run_gdtuo(reference, batches, STEPS)

    torch.testing.assert_close(torch.tensor(losses), torch.tensor(ref_losses), rtol=1e-6, atol=0)
    helpers.assert_trajectories_equal(hypers, ref_hypers)


@pytest.mark.parametrize("height", [1, 2])
def test_lr_per_tensor_equals_sgd_per_param(height, mnist_batches):
    """``sgd(lr_per=tensor)`` is gdtuo's ``SGDPerParam``: one step size per weight tensor."""
    from gradient_descent_the_ultimate_optimizer import gdtuo

    torch.set_default_dtype(torch.float64)
    batches = mnist_batches(n_images=512, batch_size=64, dtype=torch.float64)
    model = helpers.mlp()
    names = [name for name, _ in model.named_parameters()]
    above = ["sgd(1e-3)", "sgd(1e-5)"][:height]
    levels = [lambda o: gdtuo.SGDPerParam([(n, 0.01) for n in names], optimizer=o)]
    levels += [lambda o, k=k: gdtuo.SGD(k, optimizer=o) for k in (1e-3, 1e-5)[:height]]
    reference = helpers.gdtuo_tower(helpers.clone_model(model), levels)
    opt = hypergrad.tower("/".join(["sgd(0.01, lr_per=tensor)", *above]), model.parameters())

    losses, hypers = helpers.run_tower(opt, model, batches, STEPS)
    ref_losses, ref_hypers = helpers.run_gdtuo(reference, batches, STEPS)

    torch.testing.assert_close(torch.tensor(losses), torch.tensor(ref_losses), rtol=1e-6, atol=0)
    helpers.assert_trajectories_equal(hypers, ref_hypers)
