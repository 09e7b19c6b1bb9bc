"""Hand-derived hypergradient descent (``baselines.hd``) against three oracles, on real MNIST.

- the paper's formulas, written over one flat parameter vector (a reference twin);
- the paper's own package (``gdtuo``: ``SGD(optimizer=SGD(beta))`` is SGD-HD);
- hypergrad towers: ``sgd/sgd`` is SGD-HD, ``sgd(momentum=0.9, nesterov=true, learn=lr)/sgd``
  is SGDN-HD and ``adam(learn=lr)/sgd`` is Adam-HD.

All in float64 over 200 steps of the 784-128-10 MLP, to 1e-6 relative.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from baselines.hd import SGDHD, SGDNHD, AdamHD, build_hd, parse_hd, step_sizes
from bench.models import mlp

STEPS, BATCH, RTOL = 200, 64, 1e-6


@pytest.fixture(scope="module")
def batches(bench_data_dir) -> list[tuple[Tensor, Tensor]]:
    """200 fixed batches of real MNIST training images, in float64."""
    from bench import data

    images = data.load_mnist()
    x = ((images.x_train[: STEPS * BATCH].double() / 255) - data.MNIST_MEAN) / data.MNIST_STD
    y = images.y_train[: STEPS * BATCH]
    return list(zip(x.split(BATCH), y.split(BATCH), strict=True))


def model() -> nn.Module:
    torch.manual_seed(0)
    return mlp((784, 128, 10), nn.Tanh).double()


def train(net: nn.Module, opt: torch.optim.Optimizer, batches, steps: int = STEPS) -> list[float]:
    """Plain torch loop; returns the step size after each step."""
    lrs = []
    for x, y in batches[:steps]:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(net(x), y).backward()
        opt.step()
        lrs.append(opt.param_groups[0]["lr"])
    return lrs


def assert_close(a: nn.Module | list[Tensor], b: nn.Module | list[Tensor]) -> None:
    pa = list(a.parameters()) if isinstance(a, nn.Module) else a
    pb = list(b.parameters()) if isinstance(b, nn.Module) else b
    for x, y in zip(pa, pb, strict=True):
        torch.testing.assert_close(x, y, rtol=RTOL, atol=RTOL * y.abs().max().item())


# -- the reference twin: the paper's algorithms over one flat vector -----------------------------


def paper_hd(kind: str, net: nn.Module, batches, *, lr: float, beta: float, mult: bool = False,
             mu: float = 0.9, betas=(0.9, 0.999), eps: float = 1e-8, wd: float = 0.0,
             steps: int = STEPS) -> tuple[list[Tensor], list[float]]:
    """Baydin et al.'s Algorithms 1-3 line by line, on ``theta`` as one vector."""
    params = list(net.parameters())
    theta = nn.utils.parameters_to_vector(params).detach().clone()
    u_prev = torch.zeros_like(theta)
    v = torch.zeros_like(theta)
    m, s = torch.zeros_like(theta), torch.zeros_like(theta)
    alpha, lrs = lr, []
    for t, (x, y) in enumerate(batches[:steps], start=1):
        nn.utils.vector_to_parameters(theta, params)
        grads = torch.autograd.grad(F.cross_entropy(net(x), y), params)
        g = torch.cat([gr.reshape(-1) for gr in grads]) + wd * theta
        h = -(g @ u_prev).item()
        if mult:
            denom = (g.norm() * u_prev.norm()).item()
            alpha = alpha * (1 - beta * h / denom) if denom > 0 else alpha
        else:
            alpha = alpha - beta * h
        if kind == "sgd":
            u = g
        elif kind == "sgdn":
            v = mu * v + g
            u = g + mu * v
        else:
            m = betas[0] * m + (1 - betas[0]) * g
            s = betas[1] * s + (1 - betas[1]) * g * g
            u = (m / (1 - betas[0] ** t)) / ((s / (1 - betas[1] ** t)).sqrt() + eps)
        theta = theta - alpha * u
        u_prev = u
        lrs.append(alpha)
    nn.utils.vector_to_parameters(theta, params)
    return [p.detach() for p in params], lrs


CASES: list[tuple[str, Callable, dict, str]] = [
    ("sgd", lambda p: SGDHD(p, lr=0.01, hypergrad_lr=0.01), dict(lr=0.01, beta=0.01), "add"),
    ("sgd", lambda p: SGDHD(p, lr=0.01, hypergrad_lr=0.01, multiplicative=True),
     dict(lr=0.01, beta=0.01, mult=True), "mult"),
    ("sgdn", lambda p: SGDNHD(p, lr=0.01, hypergrad_lr=0.001), dict(lr=0.01, beta=0.001), "add"),
    ("sgdn", lambda p: SGDNHD(p, lr=0.01, hypergrad_lr=0.001, multiplicative=True),
     dict(lr=0.01, beta=0.001, mult=True), "mult"),
    ("adam", lambda p: AdamHD(p, lr=1e-3, hypergrad_lr=1e-5), dict(lr=1e-3, beta=1e-5), "add"),
    ("adam", lambda p: AdamHD(p, lr=1e-3, hypergrad_lr=1e-3, multiplicative=True),
     dict(lr=1e-3, beta=1e-3, mult=True), "mult"),
    ("sgd", lambda p: SGDHD(p, lr=0.01, hypergrad_lr=0.01, weight_decay=1e-3),
     dict(lr=0.01, beta=0.01, wd=1e-3), "wd"),
]


@pytest.mark.slow
@pytest.mark.parametrize("kind, make, args, form", CASES,
                         ids=[f"{c[0]}-{c[3]}" for c in CASES])
def test_equals_the_papers_algorithm(batches, kind, make, args, form):
    net = model()
    ours = copy.deepcopy(net)
    lrs = train(ours, make(ours.parameters()), batches)
    expected, expected_lrs = paper_hd(kind, net, batches, **args)
    assert_close(list(ours.parameters()), expected)
    assert lrs == pytest.approx(expected_lrs, rel=RTOL)
    # The step size really moved: a test of a constant step size would prove nothing.
    assert abs(lrs[-1] - args["lr"]) > 1e-3 * args["lr"]


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Using backward\\(\\) with create_graph=True")  # gdtuo's way
def test_sgd_hd_equals_the_papers_package(batches):
    from gradient_descent_the_ultimate_optimizer import gdtuo

    net = model()
    ours = copy.deepcopy(net)
    lrs = train(ours, SGDHD(ours.parameters(), lr=0.01, hypergrad_lr=0.01), batches)
    wrapper = gdtuo.ModuleWrapper(net, optimizer=gdtuo.SGD(0.01, optimizer=gdtuo.SGD(0.01)))
    wrapper.initialize()
    for x, y in batches:
        wrapper.begin()
        wrapper.zero_grad()
        F.cross_entropy(wrapper.forward(x), y).backward(create_graph=True)
        wrapper.step()
    assert_close(list(ours.parameters()), [p.detach() for p in wrapper.parameters.values()])
    assert lrs[-1] == pytest.approx(wrapper.optimizer.parameters["alpha"].item(), rel=RTOL)


@pytest.mark.slow
@pytest.mark.parametrize(
    "spec, make",
    [
        ("sgd(lr=0.01)/sgd(0.01)", lambda p: SGDHD(p, lr=0.01, hypergrad_lr=0.01)),
        (
            "sgd(0.01, momentum=0.9, nesterov=true, learn=lr)/sgd(0.001)",
            lambda p: SGDNHD(p, lr=0.01, hypergrad_lr=0.001, momentum=0.9),
        ),
        (
            "adam(lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8, learn=lr)/sgd(1e-5)",
            lambda p: AdamHD(p, lr=1e-3, hypergrad_lr=1e-5, betas=(0.9, 0.999), eps=1e-8),
        ),
    ],
    ids=["sgd-hd=sgd/sgd", "sgdn-hd=sgd(nesterov, learn=lr)/sgd", "adam-hd=adam(learn=lr)/sgd"],
)
def test_equals_the_hypergrad_tower(batches, spec, make):
    import hypergrad

    net = model()
    ours = copy.deepcopy(net)
    lrs = train(ours, make(ours.parameters()), batches)
    tower = hypergrad.tower(spec, net.parameters())
    train(net, tower, batches)
    assert_close(ours, net)
    assert lrs[-1] == pytest.approx(tower.hyperparameters()["0.lr"], rel=RTOL)


# -- the details the official code gets wrong ------------------------------------------------------


def two_group_problem() -> tuple[nn.Module, list[dict]]:
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    groups = [
        {"params": list(net[0].parameters()), "lr": 0.1},
        {"params": list(net[2].parameters()), "lr": 0.05, "hypergrad_lr": 0.5},
    ]
    return net, groups


def batch(seed: int) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(8, 5, generator=g, dtype=torch.float64)
    return x, torch.randint(0, 3, (8,), generator=g)


def step(net: nn.Module, opt: torch.optim.Optimizer, seed: int) -> None:
    x, y = batch(seed)
    opt.zero_grad()
    F.cross_entropy(net(x), y).backward()
    opt.step()


def test_each_group_adapts_its_own_step_size_once_from_all_its_tensors():
    net, groups = two_group_problem()
    opt = SGDHD(groups, hypergrad_lr=0.1)
    step(net, opt, 0)
    last = {p: opt.state[p]["last_dir"].clone() for g in opt.param_groups for p in g["params"]}
    before = [g["lr"] for g in opt.param_groups]
    x, y = batch(1)
    opt.zero_grad()
    F.cross_entropy(net(x), y).backward()
    # The hypergradient of a group sums over all its tensors (weights and bias together).
    expected = [
        lr - grp["hypergrad_lr"] * -sum((p.grad * last[p]).sum().item() for p in grp["params"])
        for lr, grp in zip(before, opt.param_groups, strict=True)
    ]
    opt.step()
    assert [g["lr"] for g in opt.param_groups] == pytest.approx(expected, rel=1e-12)
    assert opt.param_groups[0]["lr"] != opt.param_groups[1]["lr"]
    assert all(type(g["lr"]) is float for g in opt.param_groups)
    assert step_sizes(opt).keys() == {"0.lr[0]", "0.lr[1]"}


def test_weight_decay_never_touches_the_gradient():
    net, groups = two_group_problem()
    opt = AdamHD(groups, hypergrad_lr=1e-3, weight_decay=0.1)
    step(net, opt, 0)
    grads = [p.grad.clone() for p in net.parameters()]
    opt.step()
    for p, g in zip(net.parameters(), grads, strict=True):
        assert torch.equal(p.grad, g)


def test_step_size_is_a_plain_float_and_works_with_a_scheduler():
    net, groups = two_group_problem()
    opt = SGDNHD(groups, hypergrad_lr=0.0)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    step(net, opt, 0)
    sched.step()
    assert opt.param_groups[0]["lr"] == 0.05 and type(opt.param_groups[0]["lr"]) is float


def test_multiplicative_first_step_keeps_the_step_size():
    net, groups = two_group_problem()
    opt = SGDHD(groups, hypergrad_lr=0.1, multiplicative=True)
    step(net, opt, 0)  # no previous direction: the cosine is undefined, the step size stays
    assert opt.param_groups[0]["lr"] == 0.1
    step(net, opt, 1)
    ratio = opt.param_groups[0]["lr"] / 0.1 - 1  # = beta * cos(g_t, u_{t-1}), in [-beta, beta]
    assert 0 < abs(ratio) <= 0.1 + 1e-12


def test_a_state_dict_round_trip_continues_identically():
    net, groups = two_group_problem()
    opt = AdamHD(groups, hypergrad_lr=1e-3)
    step(net, opt, 0)
    clone_net = copy.deepcopy(net)
    clone = AdamHD([{"params": list(clone_net[0].parameters())},
                    {"params": list(clone_net[2].parameters())}], hypergrad_lr=1e-3)
    clone.load_state_dict(copy.deepcopy(opt.state_dict()))  # it holds references
    step(net, opt, 1)
    step(clone_net, clone, 1)
    assert_close(net, clone_net)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: SGDHD(p, lr=-1.0), "lr must be a number >= 0, but got lr=-1.0"),
        (lambda p: SGDHD(p, hypergrad_lr=-1.0), "hypergrad_lr must be >= 0"),
        (lambda p: SGDHD(p, momentum=1.0), r"momentum must be in \[0, 1\)"),
        (lambda p: SGDHD(p, nesterov=True), "nesterov=True needs momentum > 0"),
        (lambda p: AdamHD(p, betas=(0.9, 1.0)), r"betas\[1\] must be in \[0, 1\)"),
        (lambda p: AdamHD(p, weight_decay=-1), "weight_decay must be >= 0"),
    ],
)
def test_bad_arguments_say_the_rule(make, message):
    with pytest.raises(ValueError, match=message):
        make([torch.zeros(2, requires_grad=True)])


# -- names ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, canonical",
    [
        ("sgd-hd", "sgd-hd(lr=0.001, beta=0.001)"),
        ("sgdn-hd(1e-2, 1e-4)", "sgdn-hd(lr=0.01, beta=0.0001)"),
        ("adam-hd(beta=1e-7, mult=true)", "adam-hd(lr=0.001, beta=1e-7, mult=true)"),
        ("sgd-hd(lr=1e-05, momentum=0, weight_decay=1e-4)",
         "sgd-hd(lr=1e-5, beta=0.001, weight_decay=0.0001)"),
    ],
)
def test_names_are_canonical_and_round_trip(name, canonical):
    assert parse_hd(name)[0] == canonical
    assert parse_hd(canonical)[0] == canonical


def test_names_build_the_optimizer_they_say():
    p = [torch.zeros(2, requires_grad=True)]
    opt = build_hd("sgdn-hd(lr=0.01, beta=0.002, mult=true)", p)
    assert isinstance(opt, SGDNHD)
    group = opt.param_groups[0]
    assert (group["lr"], group["hypergrad_lr"], group["momentum"], group["multiplicative"]) == (
        0.01, 0.002, 0.9, True)
    assert math.isclose(build_hd("adam-hd", p).param_groups[0]["hypergrad_lr"], 1e-7)


@pytest.mark.parametrize(
    "name, message",
    [
        ("sgd-hd(alpha=1)", "unknown parameter 'alpha' for sgd-hd; valid parameters: lr, beta"),
        ("adam-hd(lr=0)", "adam-hd: lr must be > 0, but got lr=0"),
        ("sgdn-hd(momentum=0)", "sgdn-hd needs momentum > 0"),
        ("adagrad-hd", "valid hypergradient-descent methods: sgd-hd"),
        ("sgd-hd(mult=maybe)", "mult must be a bool"),
    ],
)
def test_bad_names_say_what_is_valid(name, message):
    with pytest.raises(ValueError, match=re_escape(message)):
        parse_hd(name)


def re_escape(text: str) -> str:
    import re

    return re.escape(text)
