r"""AdaGrad as a hyperoptimizable level (its step size learned).

Three layers, as in ``torch/optim/adagrad.py``: :class:`Adagrad` checks arguments and owns the
state, :func:`adagrad` updates a list of tensors, :func:`_adagrad_tensor` one tensor;
:func:`adagrad_vjp` applies the Jacobian of the last update to the new gradient.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from hypergrad._arguments import check, checked_number, positive
from hypergrad._arithmetic import Inner, axmy_, dot, dot_total
from hypergrad._base import Tower
from hypergrad._flat import Flat, flat_ready, same_step
from hypergrad._parametrisations import IDENTITY


class Adagrad(Tower):
    r"""AdaGrad whose step size a hyperoptimizer can learn.

    The update is ``torch.optim.Adagrad``'s (:math:`\lambda` the weight decay, :math:`\eta` the
    step-size decay):

    .. math::
        \begin{aligned}
        g_t &\leftarrow g_t + \lambda\, p_{t-1}, \qquad G_t = G_{t-1} + g_t^2 \\
        u_t &= g_t / (\sqrt{G_t} + \epsilon), \qquad
        p_t = p_{t-1} - \frac{\alpha}{1 + (t - 1)\,\eta}\, u_t
        \end{aligned}

    with :math:`G_0` = ``initial_accumulator_value``; the level above descends
    :math:`\partial L_{t+1}/\partial\alpha = -\langle g_{t+1}, u_t\rangle / (1 + (t-1)\eta)`, for
    which the direction :math:`u_t` is kept (one tensor-sized buffer).

    Args:
        params: the tensors (or param groups); omit it to describe a hyperoptimizer level.
        lr: :math:`\alpha` (> 0).
        lr_decay: :math:`\eta` (>= 0).
        weight_decay: :math:`\lambda` (>= 0).
        initial_accumulator_value: :math:`G_0` (>= 0).
        eps: :math:`\epsilon` (>= 0).
        foreach, maximize, differentiable, fused: torch's (see :class:`hypergrad.SGD`).
        eps_inside: put :math:`\epsilon` inside the square root, :math:`\sqrt{G_t + \epsilon}`.
        learn: ``lr`` (the only learnable one, the paper's choice).
        lr_per: ``"optimizer"``, ``"group"`` or ``"tensor"``; by default one per group when
            the param groups start at different values, else one (see :class:`hypergrad.SGD`).
        hyper: the optimizer that learns it, unbound, or its spec.

    Note:
        The paper's code (``gdtuo``) starts the sum at 0.1 and puts :math:`\epsilon = 10^{-10}`
        inside the square root: ``initial_accumulator_value=0.1, eps_inside=True`` reproduce it.
        The defaults are ``torch.optim.Adagrad``'s.
    """

    name = "adagrad"
    learnable = {"lr": IDENTITY}
    _sparse_ok = True

    def __init__(
        self,
        params: Iterable[Any] | None = None,
        lr: float = 1e-2,
        lr_decay: float = 0.0,
        weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.0,
        eps: float = 1e-10,
        foreach: bool | None = None,
        *,
        maximize: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        eps_inside: bool = False,
        learn: str | Iterable[str] | None = None,
        lr_per: str | None = None,
        hyper: Tower | str | None = None,
    ) -> None:
        defaults = dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                        initial_accumulator_value=initial_accumulator_value, eps=eps,
                        eps_inside=eps_inside, foreach=foreach, maximize=maximize,
                        differentiable=differentiable, fused=fused)
        super().__init__(params, defaults, learn=learn, lr_per=lr_per, hyper=hyper)

    def _validate(self, config: dict[str, Any], learned: frozenset[str]) -> dict[str, Any]:
        o = self.name
        out: dict[str, Any] = {}
        out["lr"] = checked_number(config, "lr", o, positive, "> 0")
        for name in ("lr_decay", "weight_decay", "initial_accumulator_value", "eps"):
            out[name] = checked_number(config, name, o)
        eps_inside = out["eps_inside"] = config["eps_inside"]
        check(isinstance(eps_inside, bool), o, "eps_inside", "true or false", eps_inside)
        return out

    def _step_group(self, hp: dict[str, Any], params: list[Tensor], grads: list[Tensor],
                    states: list[dict[str, Any]], lrs: list[Any], record: frozenset[str], *,
                    flat: Flat | None = None) -> None:
        adagrad(params, grads, states, lrs=lrs, lr_decay=hp["lr_decay"],
                weight_decay=hp["weight_decay"],
                initial_accumulator_value=hp["initial_accumulator_value"], eps=hp["eps"],
                eps_inside=hp["eps_inside"], record=record, flat=flat)

    def _vjp(self, hp: dict[str, Any], params: list[Tensor], grads: list[Tensor],
             states: list[dict[str, Any]], lrs: list[Any], names: frozenset[str],
             inner: Inner, *, flat: Flat | None = None) -> dict[str, tuple[list[Tensor], float]]:
        if inner is dot_total and flat_ready(flat, lrs, ()) and same_step(states):
            assert flat is not None  # the whole group at once: one total
            return adagrad_vjp([flat.grad], [flat.state()], lr_decay=hp["lr_decay"],
                               names=names, inner=dot)
        return adagrad_vjp(grads, states, lr_decay=hp["lr_decay"], names=names, inner=inner)


def adagrad(params: list[Tensor], grads: list[Tensor], states: list[dict[str, Any]], *,
            lrs: list[float | Tensor], lr_decay: float, weight_decay: float,
            initial_accumulator_value: float, eps: float, eps_inside: bool,
            record: frozenset[str] = frozenset(), flat: Flat | None = None) -> None:
    """One AdaGrad step on each tensor (see :class:`Adagrad`); with ``lr`` in ``record`` the
    direction is saved as ``hg_dir``. ``flat``: the same tensors as flat vectors (the
    accelerator's path): from the second step on, the per-tensor kernel runs once on them."""
    save_dir = "lr" in record
    needs = ("step", "sum", "hg_dir") if save_dir else ("step", "sum")
    if flat_ready(flat, lrs, needs) and same_step(states):
        assert flat is not None
        flat.apply(_adagrad_tensor, lr=lrs[0], lr_decay=lr_decay, weight_decay=weight_decay,
                   initial=initial_accumulator_value, eps=eps, eps_inside=eps_inside,
                   save_dir=save_dir)
        return
    for p, g, state, lr in zip(params, grads, states, lrs, strict=True):
        _adagrad_tensor(p, g, state, lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                        initial=initial_accumulator_value, eps=eps, eps_inside=eps_inside,
                        save_dir=save_dir)


def _adagrad_tensor(p: Tensor, g: Tensor, state: dict[str, Any], *, lr: float | Tensor,
                    lr_decay: float, weight_decay: float, initial: float, eps: float,
                    eps_inside: bool, save_dir: bool) -> None:
    if "step" not in state:
        state["step"] = 0
        state["sum"] = torch.full_like(p, initial, memory_format=torch.preserve_format)
    state["step"] += 1
    t = state["step"]
    if weight_decay != 0:
        g = g.add(p, alpha=weight_decay)
    clr = lr if lr_decay == 0 else lr / (1 + (t - 1) * lr_decay)
    total = state["sum"]
    total.addcmul_(g, g, value=1)
    std = total.add(eps).sqrt_() if eps_inside else total.sqrt().add_(eps)
    if not save_dir and not isinstance(clr, Tensor):
        p.addcdiv_(g, std, value=-clr)
        return
    u = g / std
    if save_dir:
        saved = state.get("hg_dir")
        if saved is None:
            state["hg_dir"] = u
        else:
            saved.copy_(u)
    axmy_(p, u, clr)


def adagrad_vjp(grads: list[Tensor], states: list[dict[str, Any]], *, lr_decay: float,
                names: frozenset[str], inner: Inner = dot) -> dict[str, tuple[list[Tensor], float]]:
    r"""Per tensor, :math:`\langle g, \partial\Delta/\partial\alpha\rangle = -\langle g,
    u_t\rangle / (1 + (t-1)\eta)` for the new gradient :math:`g`; ``(values, scale)`` as in
    ``Tower._vjp``."""
    if "lr" not in names:
        return {}
    values = [inner(g, st["hg_dir"]) for g, st in zip(grads, states, strict=True)]
    if lr_decay != 0:
        values = [v / (1 + (st["step"] - 1) * lr_decay) for v, st in zip(values, states,
                                                                             strict=True)]
    return {"lr": (values, -1.0)}
