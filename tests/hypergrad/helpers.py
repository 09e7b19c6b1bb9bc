"""Shared pieces of the hypergrad tests: the small MLP, and loops that run a tower or its
``gdtuo`` reference over real MNIST batches, recording losses and learned hyperparameters."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from gradient_descent_the_ultimate_optimizer import gdtuo
from torch import Tensor, nn

import hypergrad

Batches = Sequence[tuple[Tensor, Tensor]]


def mlp(hidden: int = 32, seed: int = 0, dtype: torch.dtype = torch.float64,
        device: str | torch.device = "cpu") -> nn.Module:
    """A 784-hidden-10 tanh MLP (the paper's model, narrower), seeded."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(784, hidden), nn.Tanh(), nn.Linear(hidden, 10))
    return model.to(device, dtype)


def train_step(opt: torch.optim.Optimizer, model: nn.Module, batch: tuple[Tensor, Tensor]) -> float:
    """One step of the ordinary loop (zero_grad, cross-entropy, backward, step); the loss."""
    x, y = batch
    opt.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    return loss.item()


def run_tower(opt: torch.optim.Optimizer, model: nn.Module, batches: Batches, steps: int,
              after_backward: Callable[[int], None] | None = None,
              ) -> tuple[list[float], list[dict[str, float]]]:
    """Train with the ordinary loop; losses and ``opt.hyperparameters()`` after each step.
    ``after_backward(step)`` runs between ``backward()`` and ``step()`` (to drop gradients)."""
    losses, hypers = [], []
    for s in range(steps):
        x, y = batches[s % len(batches)]
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        if after_backward is not None:
            after_backward(s)
        opt.step()
        losses.append(loss.item())
        hypers.append(opt.hyperparameters() if hasattr(opt, "hyperparameters") else {})
    return losses, hypers


def gdtuo_tower(model: nn.Module, levels: Sequence[Callable[[Any], Any]]) -> Any:
    """``ModuleWrapper(model, optimizer=levels[0](levels[1](...)))``, initialised."""
    top: Any = gdtuo.NoOpOptimizer()
    for make in reversed(levels):
        top = make(top)
    wrapper = gdtuo.ModuleWrapper(model, optimizer=top)
    wrapper.initialize()
    return wrapper


def gdtuo_levels(wrapper: Any) -> list[Any]:
    levels, top = [], wrapper.optimizer
    while not isinstance(top, gdtuo.NoOpOptimizer):
        levels.append(top)
        top = top.optimizer
    return levels


def gdtuo_hyperparameters(wrapper: Any) -> dict[str, float]:
    """The learned hyperparameters of a gdtuo tower under hypergrad's keys, as values."""
    out: dict[str, Tensor] = {}
    clamp = gdtuo.Adam.clamp
    for k, level in enumerate(gdtuo_levels(wrapper)[:-1]):  # the top level learns nothing
        p = level.parameters
        if isinstance(level, gdtuo.SGD):
            out[f"{k}.lr"] = p["alpha"]
            if level.mu != 0.0:
                out[f"{k}.momentum"] = p["mu"]
        elif isinstance(level, gdtuo.SGDPerParam):
            for i, value in enumerate(p.values()):
                out[f"{k}.lr[{i}]"] = value
        elif isinstance(level, gdtuo.AdamBaydin):
            out[f"{k}.lr"] = p["alpha"]
        elif isinstance(level, gdtuo.Adam):
            out.update({f"{k}.lr": p["alpha"], f"{k}.beta1": clamp(p["beta1"]),
                        f"{k}.beta2": clamp(p["beta2"])})
        elif isinstance(level, (gdtuo.AdaGrad,)):
            out[f"{k}.lr"] = p["alpha"]
        elif isinstance(level, gdtuo.RMSPropAlpha):
            out[f"{k}.lr"] = p["alpha"].square()
        elif isinstance(level, gdtuo.RMSProp):
            out.update({f"{k}.lr": p["alpha"].square(), f"{k}.gamma": clamp(p["gamma"])})
        else:
            raise TypeError(type(level))
    return {k: float(v.detach()) for k, v in out.items()}


def run_gdtuo(wrapper: Any, batches: Batches, steps: int,
              ) -> tuple[list[float], list[dict[str, float]]]:
    """The paper's loop: ``begin; zero_grad; backward(create_graph=True); step``."""
    losses, hypers = [], []
    for s in range(steps):
        x, y = batches[s % len(batches)]
        wrapper.begin()
        wrapper.zero_grad()
        loss = F.cross_entropy(wrapper.forward(x), y)
        loss.backward(create_graph=True)
        wrapper.step()
        losses.append(loss.item())
        hypers.append(gdtuo_hyperparameters(wrapper))
    return losses, hypers


def assert_trajectories_equal(ours: list[dict[str, float]], theirs: list[dict[str, float]],
                              rtol: float = 1e-6) -> None:
    """Every hyperparameter equal at every step to ``rtol``, and so is its change since the
    first step (the stricter check when a value moves little)."""
    assert len(ours) == len(theirs)
    assert ours[0].keys() == theirs[0].keys(), (sorted(ours[0]), sorted(theirs[0]))
    for key in theirs[0]:
        a = torch.tensor([h[key] for h in ours], dtype=torch.float64)
        b = torch.tensor([h[key] for h in theirs], dtype=torch.float64)
        assert torch.isfinite(b).all(), f"{key}: the reference diverged"
        torch.testing.assert_close(a, b, rtol=rtol, atol=0.0, msg=lambda m, k=key: f"{k}: {m}")
        moved_a, moved_b = a - b[0], b - b[0]
        scale = moved_b.abs().max().item()
        assert scale > 0.0, f"{key} never moved: the test would not see a wrong hypergradient"
        error = (moved_a - moved_b).abs().max().item()
        assert error <= rtol * scale, f"{key}: change differs by {error:.3g} (scale {scale:.3g})"


def tower_and_model(spec: str, **kw: Any) -> tuple[hypergrad.Tower, nn.Module]:
    model = mlp(**kw)
    return hypergrad.tower(spec, model.parameters()), model


def clone_model(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model)


def random_batches(n: int, seed: int = 0, dtype: torch.dtype = torch.float32,
                   ) -> list[tuple[Tensor, Tensor]]:
    """``n`` batches of 16 random MNIST-shaped images and labels (no data needed)."""
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(16, 784, generator=g, dtype=dtype),
             torch.randint(0, 10, (16,), generator=g)) for _ in range(n)]


def with_args(spec: str, args: str) -> str:
    """``spec`` with ``args`` added to its level 0: ``with_args("adam(0.001)/sgd(1e-5)",
    "maximize=true")`` is ``"adam(0.001, maximize=true)/sgd(1e-5)"``."""
    head, slash, rest = spec.partition("/")
    return f"{head[:-1]}, {args}){slash}{rest}"


def assert_same_weights(a: nn.Module, b: nn.Module, exact: bool = True) -> None:
    """The two models' parameters bit for bit (``exact``), else to float64 rounding."""
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        if exact:
            assert torch.equal(p, q)
        else:
            torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)


def saved(obj: Any) -> Any:
    """``obj`` through ``torch.save`` and ``torch.load``, as a checkpoint is (a state dict in
    memory shares the optimizer's state tensors)."""
    import io

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)
