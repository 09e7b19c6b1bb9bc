"""Complex parameters and sparse gradients as torch.optim handles them, on both paths.

Complex tensors step through their real view (``torch.view_as_real``), as torch.optim does: at
height 0 every family (table.FAMILIES) equals torch.optim on a complex model (bit for bit on the
float path but for SGD, which torch steps in complex arithmetic: to rounding); at height 1 a
tower over a complex parameter is, bit for bit, the tower over its real view. Sparse gradients
(``nn.Embedding(sparse=True)``) work at height 0 in SGD and Adagrad, the families whose
torch.optim class takes them, with torch's numbers; elsewhere the error says what is supported.
"""

from __future__ import annotations

import pytest
import torch

import hypergrad
from tests.hypergrad.table import FAMILIES

STEPS = 8
IDS = [f[0] for f in FAMILIES]


def _complex_data(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(8, 5, generator=g, dtype=torch.complex128),
             torch.randn(8, 3, generator=g, dtype=torch.complex128)) for _ in range(3)]


def _complex_run(opt, weight, data, steps, real_view=False):
    """Least squares ``|x W - y|^2`` on a complex ``W`` (or on its real view: the gradient then
    that of the complex ``W`` it views, seen as real)."""
    losses = []
    for s in range(steps):
        x, y = data[s % len(data)]
        opt.zero_grad()
        w = torch.view_as_complex(weight.detach()).requires_grad_() if real_view else weight
        loss = (x @ w - y).abs().pow(2).mean()
        loss.backward()
        if real_view:
            weight.grad = torch.view_as_real(w.grad)
        opt.step()
        losses.append(loss.item())
    return losses


def _weight(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(5, 3, generator=g, dtype=torch.complex128).requires_grad_()


@pytest.mark.parametrize(("spec", "kappa", "make_torch"), FAMILIES, ids=IDS)
def test_complex_parameters_at_height_0_equal_torch_optim(spec, kappa, make_torch, path):
    data = _complex_data()
    w, v = _weight(), _weight()
    opt, ref = hypergrad.tower(spec, [w]), make_torch([v])
    losses, ref_losses = _complex_run(opt, w, data, STEPS), _complex_run(ref, v, data, STEPS)
    assert not torch.equal(w, _weight())
    if path and not spec.startswith("sgd"):
        assert losses == ref_losses
        assert torch.equal(w, v)
    else:  # (torch.optim.SGD steps a complex tensor in complex arithmetic, not its real view)
        torch.testing.assert_close(w, v, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(("spec", "kappa", "make_torch"), FAMILIES, ids=IDS)
def test_complex_parameters_at_height_1_are_their_real_view(spec, kappa, make_torch, path):
    data = _complex_data()
    tall = f"{spec}/sgd({kappa!r})"
    w = _weight()
    real = torch.view_as_real(_weight().detach()).clone().requires_grad_()
    opt, ref = hypergrad.tower(tall, [w]), hypergrad.tower(tall, [real])
    losses = _complex_run(opt, w, data, STEPS)
    ref_losses = _complex_run(ref, real, data, STEPS, real_view=True)
    assert losses == ref_losses
    assert opt.hyperparameters() == ref.hyperparameters()
    assert opt.hyperparameters()["0.lr"] != hypergrad.tower(spec, [w]).param_groups[0]["lr"]
    assert torch.equal(torch.view_as_real(w.detach()), real.detach())


SPARSE = (
    ("sgd(0.1)", lambda p: torch.optim.SGD(p, lr=0.1)),
    ("sgd(0.1, momentum=0.9, nesterov=true)",
     lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True)),
    ("adagrad(0.1, lr_decay=0.01)", lambda p: torch.optim.Adagrad(p, lr=0.1, lr_decay=0.01)),
)


def _embedding_run(opt, emb, steps):
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        idx = torch.randint(0, 20, (12,), generator=g)  # repeated indices: duplicates coalesce
        opt.zero_grad()
        emb(idx).pow(2).sum().backward()
        opt.step()


def _embedding(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Embedding(20, 4, sparse=True).double()


@pytest.mark.parametrize(("spec", "make_torch"), SPARSE, ids=[s for s, _ in SPARSE])
def test_sparse_gradients_at_height_0_equal_torch_optim(spec, make_torch, path):
    emb, twin = _embedding(), _embedding()
    opt, ref = hypergrad.tower(spec, emb.parameters()), make_torch(twin.parameters())
    _embedding_run(opt, emb, STEPS)
    _embedding_run(ref, twin, STEPS)
    torch.testing.assert_close(emb.weight, twin.weight, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("spec", ["adam(0.01)", "adamw(0.01)", "rmsprop(0.01)",
                                  "sgd(0.1)/sgd(1e-3)", "adagrad(0.1)/sgd(1e-3)"])
def test_sparse_gradients_elsewhere_raise_naming_what_is_supported(spec, path):
    emb = _embedding()
    opt = hypergrad.tower(spec, emb.parameters())
    with pytest.raises(hypergrad.HypergradError,
                       match=r"sparse gradients are not supported .*at height 0 by sgd and "
                             r"adagrad"):
        _embedding_run(opt, emb, 1)
