"""The closed-form hypergradients against the simple autograd twin (``reference.py``), for the
options the paper's code lacks: torch's defaults (Adam's v0 = 0, eps outside the square roots),
weight decay, dampening, Nesterov, AdamW, AdaGrad's lr_decay, RMSProp's momentum and centring,
a step size per param group and per tensor, hyperoptimizers of every kind."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import hypergrad
from tests.hypergrad import helpers
from tests.hypergrad.reference import ReferenceTower

TWIN_SPECS = (
    "sgd(0.05)/sgd(1e-3)",
    "sgd(0.05, weight_decay=1e-2)/sgd(1e-3)/sgd(1e-5)",
    "sgd(0.05, momentum=0.9, dampening=0.1)/sgd(1e-3)",
    "sgd(0.05, momentum=0.9, nesterov=true)/sgd(1e-3)/sgd(1e-6)",
    "sgd(0.05, momentum=0.9, nesterov=true, weight_decay=1e-2, learn=momentum)/sgd(1e-3)",
    "sgd(0.05, momentum=0.5)/adam(1e-3)/sgd(1e-4)",
    "adam(0.001)/sgd(1e-5)/sgd(1e-9)",
    "adam(0.001, beta1=0.8, beta2=0.99, weight_decay=1e-2)/sgd(1e-5)",
    "adamw(0.001, weight_decay=0.1)/sgd(1e-5)",
    "adamw(0.001, weight_decay=0.1, learn=(lr, beta2))/adamw(1e-3)/sgd(1e-6)",
    "adagrad(0.05, lr_decay=0.01, weight_decay=1e-2)/sgd(1e-3)",
    "sgd(0.05)/adagrad(0.01)/rmsprop(1e-4)",
    "rmsprop(0.001)/sgd(1e-4)",
    "rmsprop(0.001, momentum=0.9)/sgd(1e-5)",
    "rmsprop(0.001, centered=true, weight_decay=1e-2)/sgd(1e-4)",
    "rmsprop(0.001, centered=true, eps_inside=true, momentum=0.5, gamma=0.9)/sgd(1e-5)",
    "sgd(0.05)/rmsprop(1e-3, momentum=0.5)/sgd(1e-4)",
    "sgd(0.05, lr_per=group)/sgd(1e-3)",
    "adam(0.001, lr_per=group)/sgd(1e-5)",
    "sgd(0.05, momentum=0.9, lr_per=tensor)/sgd(1e-3, lr_per=tensor)/sgd(1e-6)",
    "rmsprop(0.001, lr_per=tensor)/adam(1e-3, lr_per=tensor)/sgd(1e-6)",
    "adagrad(0.01, lr_per=group)/adagrad(1e-4, lr_per=tensor)",
)

STEPS = 40


@pytest.mark.parametrize("spec", TWIN_SPECS)
def test_equals_autograd_twin(spec, mnist_batches):
    torch.set_default_dtype(torch.float64)
    batches = mnist_batches(n_images=256, batch_size=64, dtype=torch.float64)
    model = helpers.mlp()
    twin = helpers.clone_model(model)
    groups = [{"params": list(model[0].parameters())}, {"params": list(model[2].parameters())}]
    opt = hypergrad.tower(spec, groups)
    params = list(twin.parameters())
    ref = ReferenceTower(spec, params, group_of=[0, 0, 1, 1])

    losses, hypers = helpers.run_tower(opt, model, batches, STEPS)
    ref_losses, ref_hypers = [], []
    for s in range(STEPS):
        x, y = batches[s % len(batches)]
        for p in params:
            p.grad = None
        loss = F.cross_entropy(twin(x), y)
        loss.backward()
        ref.step()
        ref_losses.append(loss.item())
        ref_hypers.append(ref.hyperparameters())

    torch.testing.assert_close(torch.tensor(losses), torch.tensor(ref_losses), rtol=1e-9, atol=0)
    helpers.assert_trajectories_equal(hypers, ref_hypers, rtol=1e-8)
