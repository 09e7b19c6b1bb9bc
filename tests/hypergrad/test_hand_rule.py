"""``sgd/sgd`` is the hand-derived rule of the paper (section 2):
alpha_t = alpha_{t-1} + kappa * g_t . g_{t-1},  w_t = w_{t-1} - alpha_t * g_t."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import hypergrad
from tests.hypergrad import helpers


@pytest.mark.parametrize("kappa", [1e-3, 1e-2])
def test_sgd_sgd_is_the_hand_rule(kappa, mnist_batches):
    torch.set_default_dtype(torch.float64)
    batches = mnist_batches(n_images=512, batch_size=64, dtype=torch.float64)
    model = helpers.mlp()
    by_hand = helpers.clone_model(model)
    opt = hypergrad.tower(f"sgd(0.01)/sgd({kappa})", model.parameters())

    alpha, previous = 0.01, None
    for step in range(100):
        x, y = batches[step % len(batches)]
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()

        grads = torch.autograd.grad(F.cross_entropy(by_hand(x), y), list(by_hand.parameters()))
        if previous is not None:
            alpha = alpha + kappa * sum(torch.dot(g.flatten(), h.flatten())
                                        for g, h in zip(grads, previous, strict=True)).item()
        with torch.no_grad():
            for p, g in zip(by_hand.parameters(), grads, strict=True):
                p.sub_(alpha * g)
        previous = grads

        assert opt.hyperparameters()["0.lr"] == pytest.approx(alpha, rel=1e-12)
    for p, q in zip(model.parameters(), by_hand.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-15)
    assert alpha != pytest.approx(0.01, rel=1e-2)  # it learned something
