"""A tower is a real ``torch.optim.Optimizer``: param groups, checkpoints that resume bit for bit,
``zero_grad``, tensors without gradient skipped, clipping, ``GradScaler``, schedulers, any
height; and its learned hyperparameters are observable."""

from __future__ import annotations

import io
import math

import pytest
import torch
import torch.nn.functional as F

import hypergrad
from tests.hypergrad import helpers
from tests.hypergrad.reference import ReferenceTower


def _batches(n: int = 4, seed: int = 0, dtype: torch.dtype = torch.float32):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(32, 784, generator=g, dtype=dtype), torch.randint(0, 10, (32,),
                                                                           generator=g))
            for _ in range(n)]


def _snapshot(model, opt):
    return [p.detach().clone() for p in model.parameters()], opt.hyperparameters()


# ---------------------------------------------------------------------------------------------
# checkpoints

RESUME_SPECS = (
    "sgd(0.1)",
    "sgd(0.05, momentum=0.9)/sgd(1e-3)",
    "adam(1e-3)/sgd(1e-5)/sgd(1e-8)",
    "adamw(1e-3, learn=lr)/adam(1e-4)",
    "sgd(0.05, momentum=0.9, nesterov=true, lr_per=tensor)/rmsprop(1e-4, lr_per=tensor)/sgd(1e-6)",
    "adagrad(0.01, lr_per=group)/adagrad(1e-3)",
    "rmsprop(1e-3, centered=true, momentum=0.5)/sgd(1e-5)/sgd(1e-9)",
)


@pytest.mark.parametrize("spec", RESUME_SPECS)
def test_resume_from_checkpoint_is_bit_identical(spec):
    batches = _batches(6)
    model = helpers.mlp(dtype=torch.float32)
    groups = lambda m: [{"params": m[0].parameters()}, {"params": m[2].parameters()}]  # noqa: E731
    opt = hypergrad.tower(spec, groups(model))
    helpers.run_tower(opt, model, batches[:3], 3)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buffer)
    straight = helpers.run_tower(opt, model, batches, 8)
    after = _snapshot(model, opt)

    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)
    model2 = helpers.mlp(seed=1, dtype=torch.float32)  # other weights, overwritten by the load
    opt2 = hypergrad.tower(spec, groups(model2))
    model2.load_state_dict(checkpoint["model"])
    opt2.load_state_dict(checkpoint["opt"])
    resumed = helpers.run_tower(opt2, model2, batches, 8)

    assert resumed == straight
    for p, q in zip(after[0], _snapshot(model2, opt2)[0], strict=True):
        assert torch.equal(p, q)
    assert opt2.hyperparameters() == after[1]
    assert str(opt2) == str(opt)


@pytest.mark.parametrize("spec", ["adam(1e-3)/sgd(1e-5)/sgd(1e-8)",
                                  "sgd(0.05, momentum=0.9, lr_per=tensor)/rmsprop(1e-4)"])
def test_deepcopy_and_pickle_make_independent_twins(spec):
    import copy
    import pickle

    model = helpers.mlp(dtype=torch.float32)
    opt = hypergrad.tower(spec, model.parameters())
    helpers.run_tower(opt, model, _batches(2), 2)
    copies = [copy.deepcopy((model, opt)), pickle.loads(pickle.dumps((model, opt)))]
    straight = helpers.run_tower(opt, model, _batches(3, seed=1), 3)
    for twin_model, twin_opt in copies:
        assert str(twin_opt) == str(opt)
        assert helpers.run_tower(twin_opt, twin_model, _batches(3, seed=1), 3) == straight


def test_load_state_dict_of_a_taller_tower_fails():
    """A tower's learned values cannot go into an optimizer that learns none (the other way,
    a height-0 state dict starts a tower's learned values: test_contract.py)."""
    model = torch.nn.Linear(3, 2)
    saved = hypergrad.tower("sgd(0.1)/sgd(1e-3)", model.parameters()).state_dict()
    with pytest.raises(hypergrad.HypergradError, match="another height"):
        hypergrad.tower("sgd(0.1)", model.parameters()).load_state_dict(saved)


# ---------------------------------------------------------------------------------------------
# the optimizer protocol


def test_zero_grad_and_closure():
    model = helpers.mlp(dtype=torch.float32)
    opt = hypergrad.tower("adam(1e-3)/sgd(1e-5)", model.parameters())
    x, y = _batches(1)[0]

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert torch.is_tensor(loss) and loss.ndim == 0
    opt.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_tensors_without_gradient_are_skipped():
    """An unused tensor is not moved, gets no state, and does not change the hypergradients: the
    tower over (used + unused) equals the tower over the used tensors alone."""
    torch.manual_seed(0)
    used = helpers.mlp(dtype=torch.float32)
    unused = torch.nn.Linear(5, 5)
    before = [p.detach().clone() for p in unused.parameters()]
    twin = helpers.clone_model(used)
    spec = "adam(1e-3)/sgd(1e-5)/sgd(1e-8)"
    opt = hypergrad.tower(spec, [*used.parameters(), *unused.parameters()])
    ref = hypergrad.tower(spec, twin.parameters())
    batches = _batches(5)
    assert helpers.run_tower(opt, used, batches, 5) == helpers.run_tower(ref, twin, batches, 5)
    for p, q in zip(before, unused.parameters(), strict=True):
        assert torch.equal(p, q)
    assert all(p not in opt.state for p in unused.parameters())


def test_tensor_with_intermittent_gradient_leaves_the_hypergradient():
    """A tensor skipped at the last step did not move: its old trace must not count."""
    torch.manual_seed(0)
    a, b = torch.nn.Parameter(torch.randn(4)), torch.nn.Parameter(torch.randn(4))
    opt = hypergrad.tower("sgd(0.1)/sgd(1e-3)", [a, b])
    previous = None
    for step in range(4):
        opt.zero_grad()
        loss = (a * a).sum() + ((b * b).sum() if step in (0, 2) else 0.0)
        loss.backward()
        lr = opt.hyperparameters()["0.lr"]
        opt.step()
        if step == 2:  # b moved at step 0, not at step 1: only a's last direction counts
            expected = lr + 1e-3 * torch.dot(a.grad, previous).item()
            assert math.isclose(opt.hyperparameters()["0.lr"], expected, rel_tol=1e-6)
        previous = a.grad.clone()


def test_gradient_clipping_before_step(mnist_batches):
    """Clipped gradients drive both the update and the hypergradients (autograd twin)."""
    torch.set_default_dtype(torch.float64)
    batches = mnist_batches(n_images=128, batch_size=32, dtype=torch.float64)
    spec = "sgd(0.1, momentum=0.9)/adam(1e-3)"
    model = helpers.mlp()
    twin = helpers.clone_model(model)
    opt = hypergrad.tower(spec, model.parameters())
    ref = ReferenceTower(spec, list(twin.parameters()), group_of=[0, 0, 0, 0])
    for s in range(12):
        x, y = batches[s % len(batches)]
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=0.5)
        opt.step()
        for p in twin.parameters():
            p.grad = None
        F.cross_entropy(twin(x), y).backward()
        torch.nn.utils.clip_grad_norm_(twin.parameters(), max_norm=0.5)
        ref.step()
    got, want = opt.hyperparameters(), ref.hyperparameters()
    for key in want:
        assert math.isclose(got[key], want[key], rel_tol=1e-9), key


def test_grad_scaler_unscales_and_skips_on_inf():
    """``scaler.step(opt)`` with an enabled CPU scaler: the same numbers as without it (the scale
    is a power of two), and a step with an inf gradient changes nothing."""
    batches = _batches(4)
    plain_model = helpers.mlp(dtype=torch.float32)
    model = helpers.clone_model(plain_model)
    spec = "adam(1e-3)/sgd(1e-5)"
    plain = hypergrad.tower(spec, plain_model.parameters())
    opt = hypergrad.tower(spec, model.parameters())
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    assert scaler.is_enabled()
    expected = helpers.run_tower(plain, plain_model, batches, 4)
    losses, hypers = [], []
    for x, y in batches:
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        losses.append(loss.item())
        hypers.append(opt.hyperparameters())
    assert (losses, hypers) == expected

    before = _snapshot(model, opt)
    opt.zero_grad()
    x, y = batches[0]
    scaler.scale(F.cross_entropy(model(x), y)).backward()
    next(model.parameters()).grad[0, 0] = float("inf")
    scale = scaler.get_scale()
    scaler.step(opt)  # skipped
    scaler.update()
    assert scaler.get_scale() < scale
    after = _snapshot(model, opt)
    assert after[1] == before[1]
    assert all(torch.equal(p, q) for p, q in zip(before[0], after[0], strict=True))


def test_bfloat16_autocast_with_scaler_runs():
    model = helpers.mlp(dtype=torch.float32)
    opt = hypergrad.tower("sgd(0.05, momentum=0.9)/sgd(1e-4)", model.parameters())
    scaler = torch.amp.GradScaler("cpu")
    for x, y in _batches(3):
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = F.cross_entropy(model(x), y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    assert all(math.isfinite(v) for v in opt.hyperparameters().values())


def test_scheduler_and_direct_writes_scale_the_learned_step_size():
    """``LRScheduler`` writes ``group["lr"]``, a user may assign it: at level 0 of a tower that is
    the schedule, which scales the learned step size; the learned value is kept (the first
    step's hypergradient is zero, so it stays exactly 0.1)."""
    model = torch.nn.Linear(4, 2)
    opt = hypergrad.tower("sgd(0.1)/sgd(1e-9)", model.parameters())
    torch.optim.lr_scheduler.LambdaLR(opt, lambda epoch: 0.5)  # sets lr = 0.1 * 0.5 at once
    assert opt.step_sizes() == [pytest.approx(0.05)]
    model(torch.randn(3, 4)).sum().backward()
    before = model.bias.detach().clone()
    opt.step()
    torch.testing.assert_close(model.bias.detach(), before - 0.05 * model.bias.grad)
    assert opt.hyperparameters()["0.lr"] == pytest.approx(0.1, rel=1e-7)
    opt.param_groups[0]["lr"] = 0.02
    assert opt.step_sizes() == [pytest.approx(0.2 * opt.hyperparameters()["0.lr"])]


def test_add_param_group():
    model = torch.nn.Linear(4, 2)
    plain = hypergrad.tower("sgd(0.1)", [model.weight])
    plain.add_param_group({"params": [model.bias], "lr": 0.01})
    assert plain.param_groups[1]["lr"] == 0.01
    learning = hypergrad.tower("sgd(0.1)/sgd(1e-3)", [model.weight])
    learning.add_param_group({"params": [model.bias]})  # its own learned step size
    assert learning.param_groups[1]["lr"] == 0.1
    assert sorted(learning.hyperparameters()) == ["0.lr[0]", "0.lr[1]"]


def test_only_level_0_steps():
    opt = hypergrad.tower("sgd(0.1)/sgd(1e-3)", torch.nn.Linear(2, 2).parameters())
    with pytest.raises(RuntimeError, match="call step\\(\\) on level 0"):
        opt.hyper.step()


# ---------------------------------------------------------------------------------------------
# observability


def test_hyperparameter_keys_and_values():
    model = helpers.mlp(dtype=torch.float32)
    groups = [{"params": model[0].parameters()}, {"params": model[2].parameters()}]
    opt = hypergrad.tower("adam(1e-3, lr_per=tensor)/sgd(1e-5, momentum=0.9, lr_per=group)"
                          "/sgd(1e-7)", groups)
    keys = sorted(opt.hyperparameters())
    assert keys == sorted([f"0.lr[{i}]" for i in range(4)] + ["0.beta1[0]", "0.beta1[1]",
                          "0.beta2[0]", "0.beta2[1]", "1.lr[0]", "1.momentum[0]"])
    helpers.run_tower(opt, model, _batches(2), 2)
    values, tensors = opt.hyperparameters(), opt.hyperparameter_tensors()
    assert values.keys() == tensors.keys()
    assert all(t.ndim == 0 for t in tensors.values())
    assert values == {k: t.item() for k, t in tensors.items()}
    # the values in use sit in param_groups (floats on the CPU, as torch.optim keeps them; 0-d
    # tensors on an accelerator), except level 0's lr: the schedule's value (a number), which
    # scales the learned step sizes (step_sizes(): per tensor, a list per group)
    assert opt.param_groups[1]["lr"] == 1e-3 and opt.param_groups[1]["lr_base"] == 1e-3
    assert opt.step_sizes()[1] == [values["0.lr[2]"], values["0.lr[3]"]]
    assert float(opt.param_groups[0]["betas"][1]) == values["0.beta2[0]"]
    assert float(opt.hyper.param_groups[0]["lr"]) == values["1.lr[0]"]


def test_plain_optimizer_has_no_hyperparameters():
    opt = hypergrad.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.1)
    assert opt.hyperparameters() == {} and opt.hyperparameter_tensors() == {}
    assert opt.param_groups[0]["lr"] == 0.1  # a plain float, as in torch.optim


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_hyperparameter_dtype_follows_the_model(dtype):
    model = torch.nn.Linear(4, 2).to(dtype)
    opt = hypergrad.tower("adam(1e-3)/sgd(1e-5)", model.parameters())
    model(torch.randn(3, 4, dtype=dtype)).sum().backward()
    opt.step()
    expected = torch.float32 if dtype == torch.bfloat16 else dtype
    assert all(t.dtype == expected for t in opt.hyperparameter_tensors().values())


def test_height_5(mnist_batches):
    spec = "sgd(0.01)/sgd(1e-3)/sgd(1e-5)/sgd(1e-8)/sgd(1e-12)/sgd(1e-16)"
    batches = mnist_batches(n_images=256, batch_size=64)
    model = helpers.mlp(dtype=torch.float32)
    opt = hypergrad.tower(spec, model.parameters())
    assert opt.height == 5 and len(opt.levels) == 6
    losses, hypers = helpers.run_tower(opt, model, batches, 40)
    assert sorted(hypers[-1]) == [f"{k}.lr" for k in range(5)]
    assert all(math.isfinite(v) for v in hypers[-1].values()) and losses[-1] < losses[0]
    assert all(hypers[-1][k] != hypers[0][k] for k in hypers[0])  # every level learned


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "eager"])
@pytest.mark.parametrize(
    "spec",
    # adam(1)/adam(100): contributions of +inf and -inf to one hypergradient (math.fsum raised)
    ["adam(1)/adam(10)", "adam(1)/adam(100)", "adam(0.1)/sgd(1e6)", "rmsprop(0.1)/sgd(1e8)",
     "adagrad(1)/sgd(1e8)"],
)
def test_a_blown_up_tower_goes_non_finite_instead_of_raising(spec, fused, monkeypatch):
    # A hyperoptimizer whose step is far too large drives a learned beta/gamma onto its boundary
    # (tanh rounds to exactly 1 or 0); bias corrections then divide by zero. On the GPU path that
    # is a tensor division (inf/nan); the CPU path keeps Python floats and must agree, so the
    # training loop sees a non-finite loss (a diverged run), never a ZeroDivisionError. (Not
    # adam(1)/adam(1): its beta2's first hypergradient is zero but for rounding, whose sign
    # decides whether it ever blows up.)
    monkeypatch.setattr(hypergrad.Tower, "fused_kernels", fused)
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 1)
    opt = hypergrad.tower(spec, model.parameters())
    x, y = torch.randn(64, 8), torch.randn(64, 1)
    for _ in range(50):
        opt.zero_grad()
        loss = F.mse_loss(model(x), y)
        loss.backward()
        opt.step()
    values = [*opt.hyperparameters().values(), loss.item()]
    assert not all(math.isfinite(v) for v in values), values
