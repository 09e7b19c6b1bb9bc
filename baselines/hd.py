r"""Hypergradient descent, hand-derived (Baydin et al., ICLR 2018, arXiv 1703.04782).

Each optimizer moves its parameters along a direction :math:`u_t` with a step size :math:`\alpha`
that it adapts online from the hypergradient, the derivative of the current loss with respect to
the step size used at the previous step:

.. math::
    \begin{aligned}
    g_t &= \nabla f(\theta_{t-1}) \quad (+\ \lambda\,\theta_{t-1} \text{ with weight decay}) \\
    h_t &= -\, g_t \cdot u_{t-1} \qquad (u_0 = 0) \\
    \alpha_t &= \alpha_{t-1} - \beta\, h_t
        &&\text{additive form} \\
    \alpha_t &= \alpha_{t-1}\Bigl(1 - \beta\,
        \frac{h_t}{\lVert g_t\rVert\,\lVert u_{t-1}\rVert}\Bigr)
        &&\text{multiplicative form} \\
    \theta_t &= \theta_{t-1} - \alpha_t\, u_t
    \end{aligned}

with the direction :math:`u_t` of the underlying optimizer: :math:`g_t` for SGD-HD;
:math:`g_t + \mu v_t`, :math:`v_t = \mu v_{t-1} + g_t` for SGDN-HD (Nesterov); the bias-corrected
:math:`\hat m_t / (\sqrt{\hat v_t} + \epsilon)` for Adam-HD. The dot products and norms run over
every tensor of a param group: **each group has one** :math:`\alpha`, updated once per step after
all its tensors' contributions are summed, then used for all of them.

Notes where this code departs from the official implementation (not from the paper):
    - the official code updates the group's step size inside its per-tensor loop, so each tensor
      sees a step size adapted from a different partial hypergradient; here the hypergradient is
      summed over the group first, as the paper's formulas say;
    - weight decay (coupled L2, as in the paper's experiments) is added to a local copy of the
      gradient, never written into ``p.grad``;
    - ``param_groups[i]["lr"]`` is a plain Python float (one device sync per step, for all groups
      together), so schedulers, loggers and checkpoints see an ordinary number.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from baselines.spec import (
    Param,
    Signature,
    format_call,
    non_negative,
    parse,
    positive,
    unit_interval,
)


def hypergradient(grads: list[Tensor], last_dirs: list[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """The group's hypergradient ``h = -sum(g . u)`` and the norms ``|g|``, ``|u|`` (0-d tensors).

    Args:
        grads: the current gradients :math:`g_t` of the group's tensors (weight decay included).
        last_dirs: the directions :math:`u_{t-1}` applied at the previous step, same shapes.
    """
    dot = torch.stack([(g * u).sum() for g, u in zip(grads, last_dirs, strict=True)]).sum()
    g_sq = torch.stack([(g * g).sum() for g in grads]).sum()
    u_sq = torch.stack([(u * u).sum() for u in last_dirs]).sum()
    return -dot, g_sq.sqrt(), u_sq.sqrt()


def adapt_lr(lr: float, h: float, beta: float, *, multiplicative: bool, g_norm: float,
             u_norm: float) -> float:
    """One step-size update from the hypergradient ``h`` (additive or multiplicative form).

    In the multiplicative form a zero norm (the first step, or a zero gradient) leaves ``lr``
    unchanged: the cosine between ``g`` and ``u`` is undefined there.
    """
    if not multiplicative:
        return lr - beta * h
    denom = g_norm * u_norm
    if denom == 0.0 or not math.isfinite(denom):
        return lr
    return lr * (1.0 - beta * h / denom)


class _HypergradientOptimizer(Optimizer):
    """The shared step of every HD optimizer; subclasses give the direction ``u_t``.

    Per group, ``hypergrad_lr`` is :math:`\\beta` and ``lr`` is :math:`\\alpha`; per tensor the
    state holds ``last_dir`` (:math:`u_{t-1}`) and the subclass's moments.
    """

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any]) -> None:
        lr, beta = defaults["lr"], defaults["hypergrad_lr"]
        if not (isinstance(lr, (int, float)) and lr >= 0):
            raise ValueError(f"lr must be a number >= 0, but got lr={lr!r}")
        if not beta >= 0:
            raise ValueError(f"hypergrad_lr must be >= 0, but got hypergrad_lr={beta!r}")
        if not defaults.get("weight_decay", 0.0) >= 0:
            raise ValueError(
                f"weight_decay must be >= 0, but got weight_decay={defaults['weight_decay']!r}"
            )
        defaults["lr"] = float(lr)
        super().__init__(params, defaults)

    def _direction(self, p: Tensor, grad: Tensor, state: dict[str, Any],
                   group: dict[str, Any]) -> Tensor:
        """The new direction :math:`u_t` for one tensor (updating its moments in ``state``)."""
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:  # noqa: D401 - torch's signature
        """One step: adapt each group's step size from its hypergradient, then move."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        work = [self._group_grads(group) for group in self.param_groups]
        # 1. Hypergradients of every group, read back in one device sync.
        stats = []
        for params, grads in work:
            dirs = [self._last_dir(p) for p in params]
            if params:
                stats.append(torch.stack(hypergradient(grads, dirs)).double())
            else:
                stats.append(torch.zeros(3, dtype=torch.float64))
        numbers = torch.stack([s.cpu() for s in stats]).tolist() if stats else []
        # 2. One step-size update per group, then the parameters with the new step size.
        for group, (params, grads), (h, g_norm, u_norm) in zip(
            self.param_groups, work, numbers, strict=True
        ):
            if params:
                group["lr"] = adapt_lr(group["lr"], h, group["hypergrad_lr"],
                                       multiplicative=group["multiplicative"],
                                       g_norm=g_norm, u_norm=u_norm)
            for p, grad in zip(params, grads, strict=True):
                state = self.state[p]
                direction = self._direction(p, grad, state, group)
                p.add_(direction, alpha=-group["lr"])
                state["last_dir"] = direction
        return loss

    def _group_grads(self, group: dict[str, Any]) -> tuple[list[Tensor], list[Tensor]]:
        """The group's tensors that have a gradient, and their gradients with weight decay added
        to a copy (``p.grad`` itself is never changed)."""
        params, grads = [], []
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError("hypergradient descent does not support sparse gradients")
            grad = p.grad
            if group["weight_decay"] != 0:
                grad = grad.add(p, alpha=group["weight_decay"])
            params.append(p)
            grads.append(grad)
        return params, grads

    def _last_dir(self, p: Tensor) -> Tensor:
        state = self.state[p]
        if "last_dir" not in state:
            state["last_dir"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state["last_dir"]


class SGDHD(_HypergradientOptimizer):
    r"""SGD-HD: SGD whose step size follows its hypergradient (Baydin et al., Algorithm 1).

    Direction :math:`u_t = g_t`; with ``momentum`` :math:`\mu > 0` the heavy-ball direction
    :math:`u_t = v_t = \mu v_{t-1} + g_t`, and with ``nesterov=True`` the Nesterov direction
    :math:`u_t = g_t + \mu v_t` (SGDN-HD). The hypergradient always uses the direction actually
    applied at the previous step.

    Args:
        params: tensors or param groups.
        lr: the initial step size :math:`\alpha_0` (default 1e-3, as in the paper).
        hypergrad_lr: the hypergradient step size :math:`\beta` (default 1e-3, as in the paper).
        momentum: :math:`\mu` (default 0).
        nesterov: Nesterov momentum (needs ``momentum > 0``).
        weight_decay: coupled L2 coefficient :math:`\lambda`, added to the gradient.
        multiplicative: use the multiplicative (normalised) step-size update.
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, hypergrad_lr: float = 1e-3, *,
                 momentum: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0,
                 multiplicative: bool = False) -> None:
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), but got momentum={momentum!r}")
        if nesterov and momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0; set momentum (e.g. 0.9)")
        defaults = dict(lr=lr, hypergrad_lr=hypergrad_lr, momentum=momentum, nesterov=nesterov,
                        weight_decay=weight_decay, multiplicative=multiplicative)
        super().__init__(params, defaults)

    def _direction(self, p: Tensor, grad: Tensor, state: dict[str, Any],
                   group: dict[str, Any]) -> Tensor:
        mu = group["momentum"]
        if mu == 0:
            return grad.clone()
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        buf = state["momentum_buffer"]
        buf.mul_(mu).add_(grad)
        return grad.add(buf, alpha=mu) if group["nesterov"] else buf.clone()


class SGDNHD(SGDHD):
    r"""SGDN-HD: SGD with Nesterov momentum and a hypergradient step size (Baydin et al.).

    Direction :math:`u_t = g_t + \mu v_t` with :math:`v_t = \mu v_{t-1} + g_t` (PyTorch's
    Nesterov form, the paper's Algorithm 2). Defaults: ``lr`` 1e-3, ``hypergrad_lr`` 1e-3,
    ``momentum`` 0.9.
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, hypergrad_lr: float = 1e-3, *,
                 momentum: float = 0.9, weight_decay: float = 0.0,
                 multiplicative: bool = False) -> None:
        super().__init__(params, lr, hypergrad_lr, momentum=momentum, nesterov=True,
                         weight_decay=weight_decay, multiplicative=multiplicative)


class AdamHD(_HypergradientOptimizer):
    r"""Adam-HD: Adam whose step size follows its hypergradient (Baydin et al., Algorithm 3).

    Direction :math:`u_t = \hat m_t / (\sqrt{\hat v_t} + \epsilon)` with the bias-corrected
    moments :math:`\hat m_t = m_t / (1 - \beta_1^t)`, :math:`\hat v_t = v_t / (1 - \beta_2^t)`.

    Args:
        params: tensors or param groups.
        lr: the initial step size :math:`\alpha_0` (default 1e-3).
        hypergrad_lr: :math:`\beta` (default 1e-7, the paper's value for Adam-HD).
        betas: :math:`(\beta_1, \beta_2)` (default (0.9, 0.999)).
        eps: :math:`\epsilon` (default 1e-8), added to :math:`\sqrt{\hat v_t}`.
        weight_decay: coupled L2 coefficient, added to the gradient.
        multiplicative: use the multiplicative (normalised) step-size update.
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, hypergrad_lr: float = 1e-7, *,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, multiplicative: bool = False) -> None:
        for i, b in enumerate(betas):
            if not 0 <= b < 1:
                raise ValueError(f"betas[{i}] must be in [0, 1), but got betas={betas!r}")
        if not eps >= 0:
            raise ValueError(f"eps must be >= 0, but got eps={eps!r}")
        defaults = dict(lr=lr, hypergrad_lr=hypergrad_lr, betas=tuple(betas), eps=eps,
                        weight_decay=weight_decay, multiplicative=multiplicative)
        super().__init__(params, defaults)

    def _direction(self, p: Tensor, grad: Tensor, state: dict[str, Any],
                   group: dict[str, Any]) -> Tensor:
        beta1, beta2 = group["betas"]
        if "step" not in state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["step"] += 1
        t = state["step"]
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m.mul_(beta1).add_(grad, alpha=1 - beta1)
        v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        m_hat = m / (1 - beta1**t)
        v_hat = v / (1 - beta2**t)
        return m_hat / (v_hat.sqrt() + group["eps"])


def step_sizes(optimizer: Optimizer) -> dict[str, float]:
    """The current step sizes as ``hyperparameters()`` reports them: ``"0.lr"`` for one group,
    ``"0.lr[i]"`` per group when there are several."""
    groups = optimizer.param_groups
    if len(groups) == 1:
        return {"0.lr": float(groups[0]["lr"])}
    return {f"0.lr[{i}]": float(g["lr"]) for i, g in enumerate(groups)}


# Method names: sgd-hd(lr=0.001, beta=0.001), sgdn-hd(...), adam-hd(..., mult=true).
_COMMON = (
    Param("lr", default=1e-3, check=positive, rule="> 0", shown=True, doc="initial step size"),
)
_TAIL = (
    Param("weight_decay", default=0.0, check=non_negative, rule=">= 0", doc="coupled L2"),
    Param("mult", kind="bool", default=False, doc="multiplicative form"),
)


def _beta(default: float) -> Param:
    return Param("beta", default=default, check=non_negative, rule=">= 0", shown=True,
                 doc="hypergradient step size")


def _momentum(default: float) -> Param:
    return Param("momentum", default=default, check=unit_interval, rule="in [0, 1)")


SIGNATURES: tuple[Signature, ...] = (
    Signature("sgd-hd", (*_COMMON, _beta(1e-3), _momentum(0.0), *_TAIL), "SGD-HD"),
    Signature("sgdn-hd", (*_COMMON, _beta(1e-3), _momentum(0.9), *_TAIL),
              "SGD-HD with Nesterov momentum"),
    Signature("adam-hd", (*_COMMON, _beta(1e-7),
                          Param("beta1", default=0.9, check=unit_interval, rule="in [0, 1)"),
                          Param("beta2", default=0.999, check=unit_interval, rule="in [0, 1)"),
                          Param("eps", default=1e-8, check=positive, rule="> 0"), *_TAIL),
              "Adam-HD"),
)
NAMES = tuple(s.name for s in SIGNATURES)


def parse_hd(name: str) -> tuple[str, dict[str, Any]]:
    """Parse ``sgd-hd(lr=1e-3, beta=1e-3)`` etc.; returns ``(canonical name, arguments)``."""
    sig, args = parse(name, SIGNATURES, "hypergradient-descent method")
    if sig.name == "sgdn-hd" and args["momentum"] == 0:
        raise ValueError("sgdn-hd needs momentum > 0 (Nesterov); use sgd-hd for none")
    return format_call(sig, args), args


def build_hd(name: str, params: Iterable[Any]) -> _HypergradientOptimizer:
    """The optimizer named ``name`` (e.g. ``adam-hd(lr=1e-3, beta=1e-7, mult=true)``)."""
    canonical, a = parse_hd(name)
    kind = canonical.split("(")[0]
    common = dict(weight_decay=a["weight_decay"], multiplicative=a["mult"])
    if kind == "sgd-hd":
        return SGDHD(params, a["lr"], a["beta"], momentum=a["momentum"], **common)
    if kind == "sgdn-hd":
        return SGDNHD(params, a["lr"], a["beta"], momentum=a["momentum"], **common)
    return AdamHD(params, a["lr"], a["beta"], betas=(a["beta1"], a["beta2"]), eps=a["eps"],
                  **common)
