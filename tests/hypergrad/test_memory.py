"""Memory: learning a level-0 value costs about one tensor-sized buffer (plus the optimizer
state it learns through), higher levels hold scalars, nothing grows with the steps, and a tower
holds no reference cycles."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch
import torch.nn.functional as F

import hypergrad

# (height 0, height 1, tensor-sized buffers the learning adds)
EXTRA_BUFFERS = (
    ("sgd(0.1)", "sgd(0.1)/sgd(1e-3)", 1),  # the last direction
    ("sgd(0.1, momentum=0.9)", "sgd(0.1, momentum=0.9, learn=lr)/sgd(1e-3)", 0),  # the buffer
    ("sgd(0.1, momentum=0.9)", "sgd(0.1, momentum=0.9)/sgd(1e-3)", 1),  # + the previous buffer
    ("sgd(0.1, momentum=0.9, nesterov=true)",
     "sgd(0.1, momentum=0.9, nesterov=true)/sgd(1e-3)", 2),  # direction + previous buffer
    ("adam(1e-3)", "adam(1e-3, learn=lr)/sgd(1e-5)", 0),  # from the moments alone
    ("adam(1e-3)", "adam(1e-3)/sgd(1e-5)", 1),  # + the gradient, for the betas
    ("adamw(1e-3)", "adamw(1e-3)/sgd(1e-5)", 1),
    ("adagrad(0.01)", "adagrad(0.01)/sgd(1e-3)", 1),
    ("rmsprop(0.01)", "rmsprop(0.01)/sgd(1e-3)", 1),
    ("rmsprop(0.01, momentum=0.9)", "rmsprop(0.01, momentum=0.9, learn=lr)/sgd(1e-3)", 0),
)


def _train(opt, model, steps, seed=0):
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        opt.zero_grad()
        x = torch.randn(16, model.in_features, generator=g)
        F.mse_loss(model(x), torch.zeros(16, model.out_features)).backward()
        opt.step()


@pytest.mark.parametrize(("plain", "tower", "buffers"), EXTRA_BUFFERS,
                         ids=[t for _, t, _ in EXTRA_BUFFERS])
def test_learning_costs_one_buffer(plain, tower, buffers):
    sizes = []
    for spec in (plain, tower):
        torch.manual_seed(0)
        model = torch.nn.Linear(256, 128)
        opt = hypergrad.tower(spec, model.parameters())
        _train(opt, model, 3)
        sizes.append(opt.memory_bytes())
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    extra = sizes[1] - sizes[0]
    assert buffers * param_bytes <= extra <= buffers * param_bytes + 2048, (extra, param_bytes)


def test_higher_levels_hold_scalars():
    model = torch.nn.Linear(256, 128)
    sizes = []
    for spec in ("adam(1e-3)/sgd(1e-5)", "adam(1e-3)/adam(1e-5)/adam(1e-7)/sgd(1e-9)"):
        opt = hypergrad.tower(spec, model.parameters())
        _train(opt, model, 3)
        sizes.append(opt.memory_bytes())
    assert sizes[1] - sizes[0] < 4096


def _live_tensors() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, torch.Tensor))


@pytest.mark.slow
def test_memory_flat_over_10000_steps():
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 4)
    opt = hypergrad.tower("adam(1e-3)/sgd(1e-5, momentum=0.9)/adam(1e-7)/sgd(1e-9)",
                          model.parameters())
    _train(opt, model, 100)
    held, live = opt.memory_bytes(), _live_tensors()
    _train(opt, model, 9_900, seed=1)
    assert opt.memory_bytes() == held
    # No more tensors than before: the count is the whole process's, where tensors that other
    # tests of this worker left to the collector may be freed meanwhile (never a leak).
    assert _live_tensors() <= live


def test_no_reference_cycles():
    """Dropped towers are freed by reference counting alone (no cycle for the collector)."""
    gc.collect()
    gc.disable()
    try:
        model = torch.nn.Linear(8, 4)
        opt = hypergrad.tower("adam(1e-3)/sgd(1e-5)/rmsprop(1e-7)", model.parameters())
        _train(opt, model, 3)
        refs = [weakref.ref(level) for level in opt.levels]
        refs += [weakref.ref(t) for t in opt.hyperparameter_tensors().values()]
        refs += [weakref.ref(level._raw) for level in opt.levels[:-1]]
        del opt
        assert all(r() is None for r in refs)
    finally:
        gc.enable()
