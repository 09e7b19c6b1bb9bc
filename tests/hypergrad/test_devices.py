"""The accelerator path: learned values kept as tensors (no device sync in ``step()``).

On a machine without a GPU the same path runs on the CPU (``Tower.cpu_floats = False``), against
the same references as the CPU path: gdtuo, the autograd twin, bit-identical resume. With CUDA
(tests marked ``gpu``), the same checks run on the GPU, plus: ``step()`` never synchronises.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F

import hypergrad
from tests.hypergrad import helpers
from tests.hypergrad.reference import ReferenceTower
from tests.hypergrad.table import KINDS, TORCH_ROWS, tower_of
from tests.hypergrad.test_reference_twin import TWIN_SPECS

DEVICES = [
    pytest.param("cpu", id="cpu-tensor-path"),
    pytest.param("cuda", id="cuda", marks=[
        pytest.mark.gpu,
        pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]),
]


@pytest.fixture(autouse=True)
def tensor_path() -> Iterator[None]:
    hypergrad.Tower.cpu_floats = False
    yield
    hypergrad.Tower.cpu_floats = True


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("height", [1, 3])
@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.id)
def test_equals_gdtuo(kind, height, device, mnist_batches):
    torch.set_default_dtype(torch.float64)
    batches = mnist_batches(n_images=512, batch_size=64, dtype=torch.float64, device=device)
    spec, levels = tower_of(kind, height)
    model = helpers.mlp(device=device)
    default_device = torch.get_default_device()
    torch.set_default_device(device)  # gdtuo makes its hyperparameters on the default device
    try:
        reference = helpers.gdtuo_tower(helpers.clone_model(model), levels)
    finally:
        torch.set_default_device(default_device)
    opt = hypergrad.tower(spec, model.parameters())
    steps = 200 if device == "cuda" else 100
    losses, hypers = helpers.run_tower(opt, model, batches, steps)
    ref_losses, ref_hypers = helpers.run_gdtuo(reference, batches, steps)
    torch.testing.assert_close(torch.tensor(losses), torch.tensor(ref_losses), rtol=1e-6, atol=0)
    helpers.assert_trajectories_equal(hypers, ref_hypers)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("spec", TWIN_SPECS)
def test_equals_autograd_twin(spec, device, mnist_batches):
    torch.set_default_dtype(torch.float64)
    batches = mnist_batches(n_images=256, batch_size=64, dtype=torch.float64, device=device)
    model = helpers.mlp(device=device)
    twin = helpers.clone_model(model)
    opt = hypergrad.tower(spec, [{"params": list(model[0].parameters())},
                                 {"params": list(model[2].parameters())}])
    params = list(twin.parameters())
    ref = ReferenceTower(spec, params, group_of=[0, 0, 1, 1])
    _, hypers = helpers.run_tower(opt, model, batches, 30)
    ref_hypers = []
    for s in range(30):
        x, y = batches[s % len(batches)]
        for p in params:
            p.grad = None
        F.cross_entropy(twin(x), y).backward()
        ref.step()
        ref_hypers.append(ref.hyperparameters())
    helpers.assert_trajectories_equal(hypers, ref_hypers, rtol=1e-8)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("spec", ["adam(1e-3)/sgd(1e-5)/sgd(1e-8)",
                                  "sgd(0.05, momentum=0.9, lr_per=tensor)/rmsprop(1e-4)",
                                  "rmsprop(1e-3, lr_per=group)/adam(1e-4, lr_per=tensor)"])
def test_resume_is_bit_identical(spec, device):
    import io

    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(32, 784, generator=g).to(device),
                torch.randint(0, 10, (32,), generator=g).to(device)) for _ in range(6)]
    groups = lambda m: [{"params": m[0].parameters()}, {"params": m[2].parameters()}]  # noqa
    model = helpers.mlp(dtype=torch.float32, device=device)
    opt = hypergrad.tower(spec, groups(model))
    helpers.run_tower(opt, model, batches, 3)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buffer)
    straight = helpers.run_tower(opt, model, batches, 6)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    model2 = helpers.mlp(seed=3, dtype=torch.float32, device=device)
    opt2 = hypergrad.tower(spec, groups(model2))
    model2.load_state_dict(saved["model"])
    opt2.load_state_dict(saved["opt"])
    assert helpers.run_tower(opt2, model2, batches, 6) == straight
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), model2.parameters(),
                                                 strict=True))


@pytest.mark.parametrize("device", DEVICES)
def test_param_groups_hold_tensors_and_schedulers_write_them(device):
    """Learned values other than level 0's step size are tensors in param_groups; level 0's
    ``lr`` is the schedule's number, which a scheduler scales the learned step size by."""
    model = torch.nn.Linear(4, 2).to(device)
    opt = hypergrad.tower("adam(0.1)/sgd(1e-9)", model.parameters())
    assert opt.param_groups[0]["lr"] == 0.1 and opt.param_groups[0]["lr_base"] == 0.1
    assert all(isinstance(b, torch.Tensor) for b in opt.param_groups[0]["betas"])
    torch.optim.lr_scheduler.LambdaLR(opt, lambda epoch: 0.5)  # the schedule: lr = 0.05
    before = model.weight.detach().clone()
    model(torch.randn(3, 4, device=device)).sum().backward()
    opt.step()
    assert opt.hyperparameters()["0.lr"] == pytest.approx(0.1, rel=1e-6)  # learned: kept
    # Adam's first step moves each weight by lr * sign(g): the value in use is 0.5 * 0.1
    torch.testing.assert_close((before - model.weight).abs(), torch.full_like(before, 0.05))
    opt.param_groups[0]["betas"][0].fill_(0.8)  # a learned value written in place
    opt.zero_grad()
    model(torch.randn(3, 4, device=device)).sum().backward()
    opt.step()
    assert opt.hyperparameters()["0.beta1"] == pytest.approx(0.8, rel=1e-5)
    values = opt.hyperparameters()
    tensors = opt.hyperparameter_tensors()
    assert values == {k: t.item() for k, t in tensors.items()}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("spec", ["sgd(0.1)/sgd(1e-3)", "adam(1e-3)/adam(1e-5)/sgd(1e-7)",
                                  "sgd(0.1, momentum=0.9, lr_per=tensor)/rmsprop(1e-4)/sgd(1e-6)",
                                  "adagrad(0.01)/adagrad(1e-3, lr_per=tensor)"])
def test_step_never_synchronises(spec):
    hypergrad.Tower.cpu_floats = True  # the default: on CUDA the tensor path anyway
    model = helpers.mlp(dtype=torch.float32, device="cuda")
    opt = hypergrad.tower(spec, model.parameters())
    x, y = torch.randn(32, 784, device="cuda"), torch.randint(0, 10, (32,), device="cuda")
    for _ in range(4):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        torch.cuda.set_sync_debug_mode("error")
        try:
            opt.step()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    assert all(v == v for v in opt.hyperparameters().values())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize(("spec", "make_torch"), TORCH_ROWS, ids=[s for s, _ in TORCH_ROWS])
def test_height_0_equals_torch_optim_on_cuda(spec, make_torch):
    """torch.optim runs its foreach kernels on CUDA: equal to float64 rounding."""
    model = helpers.mlp(device="cuda")
    twin = helpers.clone_model(model)
    opt = hypergrad.tower(spec, model.parameters())
    ref = make_torch(twin.parameters())
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(64, 784, generator=g, dtype=torch.float64).cuda(),
                torch.randint(0, 10, (64,), generator=g).cuda()) for _ in range(4)]
    helpers.run_tower(opt, model, batches, 20)
    helpers.run_tower(ref, twin, batches, 20)
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)


def _steps(opt, model, batches, frozen_at=()):
    """Train; at the steps in ``frozen_at`` the first layer's bias gets no gradient."""
    for s, (x, y) in enumerate(batches):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        if s in frozen_at:
            model[0].bias.grad = None
        opt.step()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("spec", ["adam(1e-3)/sgd(1e-5)", "sgd(0.05, momentum=0.9)/adam(1e-4)",
                                  "adamw(1e-3, weight_decay=0.1)/sgd(1e-5)/sgd(1e-8)",
                                  "rmsprop(1e-3, centered=true, momentum=0.5)/sgd(1e-6)",
                                  "rmsprop(1e-3, weight_decay=0.01)/adam(1e-4)",
                                  "adagrad(0.05, lr_decay=0.01)/sgd(1e-4)"])
def test_flat_state_follows_the_per_tensor_path(spec, device):
    """The tensor path keeps each state key of a group in one flat buffer (each tensor's entry a
    view of it) and falls back to per-tensor kernels on a step where a tensor has no gradient:
    its numbers are those of the CPU's float path throughout."""
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(32, 784, generator=g, dtype=torch.float64).to(device),
                torch.randint(0, 10, (32,), generator=g).to(device)) for _ in range(8)]
    model = helpers.mlp(device=device)
    twin = helpers.clone_model(model).cpu()
    opt = hypergrad.tower(spec, model.parameters())
    _steps(opt, model, batches, frozen_at=(4,))
    weight = opt.state[model[0].weight]
    views = [v for k, v in weight.items() if isinstance(v, torch.Tensor)]
    assert views and all(v._base is not None for v in views)  # views of the flat buffers
    hypergrad.Tower.cpu_floats = True
    ref = hypergrad.tower(spec, twin.parameters())
    _steps(ref, twin, [(x.cpu(), y.cpu()) for x, y in batches], frozen_at=(4,))
    mine, theirs = opt.hyperparameters(), ref.hyperparameters()
    assert mine.keys() == theirs.keys()
    assert mine["0.lr"] != hypergrad.tower(spec, twin.parameters()).hyperparameters()["0.lr"]
    for key, value in mine.items():
        assert value == pytest.approx(theirs[key], rel=1e-10), key
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(p.cpu(), q, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
def test_an_update_lands_in_replaced_parameter_storage(device):
    """The flat path adds updates through cached views of the parameters: replacing ``p.data``
    (as ``module.to`` does) must not leave them pointing at the old storage."""
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(32, 784, generator=g, dtype=torch.float64).to(device),
                torch.randint(0, 10, (32,), generator=g).to(device)) for _ in range(4)]
    model = helpers.mlp(device=device)
    twin = helpers.clone_model(model)
    opt = hypergrad.tower("sgd(0.1)/sgd(1e-3)", model.parameters())
    ref = hypergrad.tower("sgd(0.1)/sgd(1e-3)", twin.parameters())
    _steps(opt, model, batches[:2])
    _steps(ref, twin, batches[:2])
    for p in model.parameters():
        p.data = p.data.clone()
    _steps(opt, model, batches[2:])
    _steps(ref, twin, batches[2:])
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.equal(p, q)
