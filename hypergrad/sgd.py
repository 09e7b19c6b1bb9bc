r"""SGD with momentum, Nesterov momentum and weight decay, as a hyperoptimizable level.

Three layers, as in ``torch/optim/sgd.py``: :class:`SGD` checks arguments and owns the state,
:func:`sgd` updates a list of tensors, :func:`_sgd_tensor` one tensor; :func:`sgd_vjp` applies
the Jacobian of the last update to the new gradient, which is what the level above learns from.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from hypergrad._arguments import check, checked_number, positive
from hypergrad._arithmetic import Inner, as_dtype, axmy_, dot, dot_total, inner_all, keep
from hypergrad._base import Tower
from hypergrad._flat import Flat, flat_ready, numbers_ready
from hypergrad._parametrisations import IDENTITY


class SGD(Tower):
    r"""Stochastic gradient descent whose step size (and momentum) a hyperoptimizer can learn.

    The update is ``torch.optim.SGD``'s (with :math:`\lambda` the weight decay, :math:`\tau` the
    dampening):

    .. math::
        \begin{aligned}
        d_t &= g_t + \lambda\, p_{t-1} \\
        b_t &= d_t \ (t = 1), \qquad b_t = \mu\, b_{t-1} + (1 - \tau)\, d_t \ (t > 1) \\
        u_t &= d_t + \mu\, b_t \ \text{(Nesterov)}, \quad b_t \ \text{(momentum)}, \quad
               d_t \ (\mu = 0) \\
        p_t &= p_{t-1} - \alpha\, u_t
        \end{aligned}

    and the gradient of the next loss with respect to the values used (what the level above
    descends) is

    .. math::
        \frac{\partial L_{t+1}}{\partial \alpha} = -\langle g_{t+1}, u_t \rangle, \qquad
        \frac{\partial L_{t+1}}{\partial \mu} = -\alpha \langle g_{t+1}, b_{t-1} \rangle
        \ \bigl(\text{Nesterov: } -\alpha \langle g_{t+1}, b_t + \mu\, b_{t-1} \rangle\bigr).

    With ``lr=0.1`` and nothing above it, this is ``torch.optim.SGD`` to the last bit on the CPU.

    Args:
        params: the tensors (or param groups) to optimize; omit it to describe a hyperoptimizer
            level (``hyper=SGD(lr=1e-5)``).
        lr: the step size :math:`\alpha` (> 0).
        momentum: :math:`\mu` (>= 0); 0 turns momentum off.
        dampening: :math:`\tau`.
        weight_decay: :math:`\lambda` (>= 0), L2 added to the gradient (never written to
            ``p.grad``).
        nesterov: Nesterov momentum (needs ``momentum > 0`` and ``dampening == 0``).
        maximize: maximise the objective (the gradients negated, as in torch).
        foreach: ``None`` (the tower's choice: on an accelerator a group steps as one flat
            vector, on the CPU with one ``torch._foreach_*`` call per operation), ``True`` (the
            same), ``False`` (tensor by tensor, torch's for-loop; on the CPU the same numbers).
        differentiable, fused: accepted at torch's defaults (``False``, ``None``/``False``);
            ``True`` raises :class:`hypergrad.UnsupportedError`.
        learn: the hyperparameters the level above learns, among ``lr`` and ``momentum``.
            Default: ``lr``, and ``momentum`` when it is nonzero at construction (the paper's).
        lr_per: ``"optimizer"`` (one learned step size), ``"group"`` (one per param group, and
            so each other learned value) or ``"tensor"`` (one per parameter tensor; above level
            0, one per hyperparameter). Default (``None``): ``"optimizer"`` while the param
            groups start at the same values, ``"group"`` when they start at different values of
            a learned hyperparameter (a backbone and a head at two step sizes); the spec prints
            nothing for it. A group added later (``add_param_group``) always gets its own
            learned values, which the level above learns from a zero state.
        hyper: the optimizer that learns them (unbound, e.g. ``SGD(lr=1e-5)``) or its spec.

    Note:
        Departures from the paper and its code (``gdtuo``): the momentum :math:`\mu` is learned as
        is (``gdtuo`` does the same; the paper does not say), and Nesterov momentum, dampening and
        weight decay are ``torch.optim.SGD``'s, which ``gdtuo`` lacks.
    """

    name = "sgd"
    learnable = {"lr": IDENTITY, "momentum": IDENTITY}
    _sparse_ok = True

    def __init__(
        self,
        params: Iterable[Any] | None = None,
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        differentiable: bool = False,
        fused: bool | None = None,
        learn: str | Iterable[str] | None = None,
        lr_per: str | None = None,
        hyper: Tower | str | None = None,
    ) -> None:
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening,
                        weight_decay=weight_decay, nesterov=nesterov, maximize=maximize,
                        foreach=foreach, differentiable=differentiable, fused=fused)
        super().__init__(params, defaults, learn=learn, lr_per=lr_per, hyper=hyper)

    @classmethod
    def _default_learn(cls, config: dict[str, Any]) -> tuple[str, ...]:
        on = not isinstance(config["momentum"], bool) and config["momentum"] != 0
        return ("lr", "momentum") if on else ("lr",)

    def _validate(self, config: dict[str, Any], learned: frozenset[str]) -> dict[str, Any]:
        o = self.name
        lr = checked_number(config, "lr", o, positive, "> 0")
        momentum, dampening, weight_decay = (
            checked_number(config, name, o) for name in ("momentum", "dampening", "weight_decay"))
        nesterov = config["nesterov"]
        check(isinstance(nesterov, bool), o, "nesterov", "true or false", nesterov)
        if nesterov and (momentum <= 0 or dampening != 0):
            check(False, o, "nesterov", "false unless momentum > 0 and dampening == 0", nesterov)
        if "momentum" in learned and momentum == 0:
            check(False, o, "momentum", "> 0 to be learned (learn=lr, or give momentum=0.9)",
                  momentum)
        return dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                    nesterov=nesterov)

    def _step_group(self, hp: dict[str, Any], params: list[Tensor], grads: list[Tensor],
                    states: list[dict[str, Any]], lrs: list[Any], record: frozenset[str], *,
                    flat: Flat | None = None) -> None:
        sgd(params, grads, states, lrs=lrs, momentum=hp["momentum"], dampening=hp["dampening"],
            weight_decay=hp["weight_decay"], nesterov=hp["nesterov"],
            momentum_on=self._momentum_on(hp), record=record, flat=flat,
            fixed_buffers=self._level > 0, foreach=hp.get("foreach") is not False)

    def _vjp(self, hp: dict[str, Any], params: list[Tensor], grads: list[Tensor],
             states: list[dict[str, Any]], lrs: list[Any], names: frozenset[str],
             inner: Inner, *, flat: Flat | None = None) -> dict[str, tuple[list[Tensor], float]]:
        return sgd_vjp(grads, states, lrs=lrs, momentum=hp["momentum"], nesterov=hp["nesterov"],
                       momentum_on=self._momentum_on(hp), names=names, inner=inner, flat=flat)

    def _momentum_on(self, hp: dict[str, Any]) -> bool:
        # A learned momentum is on whatever value it reaches: it is only learned when nonzero
        # at construction.
        return "momentum" in self._slots or hp["momentum"] != 0


def sgd(params: list[Tensor], grads: list[Tensor], states: list[dict[str, Any]], *,
        lrs: list[float | Tensor], momentum: float | Tensor, dampening: float, weight_decay: float,
        nesterov: bool, momentum_on: bool | None = None, record: frozenset[str] = frozenset(),
        flat: Flat | None = None, fixed_buffers: bool = False, foreach: bool = False) -> None:
    """One SGD step on each tensor (see :class:`SGD` for the rule).

    Args:
        params, grads, states: the tensors, their gradients and their state dicts.
        lrs: the step size of each tensor (a number, or a tensor when learned).
        momentum, dampening, weight_decay, nesterov: as in :class:`SGD`.
        momentum_on: whether momentum is used (default: ``momentum != 0``).
        record: the learned hyperparameters whose hypergradients :func:`sgd_vjp` will need: the
            direction ``hg_dir`` is saved for ``lr`` (unless it is the momentum buffer), the
            previous buffer ``hg_buf_prev`` for ``momentum``.
        flat: the same tensors as flat vectors (the accelerator's path), used once the state
            holds what the step needs.
        fixed_buffers: keep each state tensor where it is, copying the old momentum buffer
            rather than swapping the two (the levels above 0: a CUDA graph replays them, and
            their buffers hold a few numbers).
        foreach: with one step size, a number, for every tensor, and the state made, one
            ``torch._foreach_*`` call per operation (:func:`_sgd_foreach`): the same kernels,
            without a Python call per tensor (on the CPU each costs more than a small tensor's
            arithmetic).
    """
    on = momentum != 0 if momentum_on is None else momentum_on
    save_dir = "lr" in record and (not on or nesterov)
    save_prev = "momentum" in record
    needs = (["momentum_buffer"] if on else []) + (["hg_dir"] if save_dir else []) + (
        ["hg_buf_prev"] if save_prev else [])
    if flat_ready(flat, lrs, needs):
        assert flat is not None
        _sgd_flat(flat, lr=lrs[0], momentum=momentum, on=on, dampening=dampening,
                  weight_decay=weight_decay, nesterov=nesterov, save_dir=save_dir,
                  save_prev=save_prev, fixed_buffers=fixed_buffers)
        return
    if foreach and not fixed_buffers and numbers_ready(states, lrs, needs, momentum):
        _sgd_foreach(params, grads, states, lr=lrs[0], momentum=momentum, on=on,
                     dampening=dampening, weight_decay=weight_decay, nesterov=nesterov,
                     save_dir=save_dir, save_prev=save_prev)
        return
    for p, g, state, lr in zip(params, grads, states, lrs, strict=True):
        _sgd_tensor(p, g, state, lr=lr, momentum=momentum, on=on, dampening=dampening,
                    weight_decay=weight_decay, nesterov=nesterov, save_dir=save_dir,
                    save_prev=save_prev, fixed_buffers=fixed_buffers)


def _sgd_tensor(p: Tensor, g: Tensor, state: dict[str, Any], *, lr: float | Tensor,
                momentum: float | Tensor, on: bool, dampening: float, weight_decay: float,
                nesterov: bool, save_dir: bool, save_prev: bool, fixed_buffers: bool) -> None:
    d = g if weight_decay == 0 else g.add(p, alpha=weight_decay)
    u = d
    if on:
        buf = state.get("momentum_buffer")
        if buf is not None and save_prev and "hg_buf_prev" not in state:
            state["hg_buf_prev"] = torch.zeros_like(buf)  # a torch.optim checkpoint's state
        if buf is None:
            buf = state["momentum_buffer"] = d.detach().clone()
            if save_prev:
                state["hg_buf_prev"] = torch.zeros_like(buf)
        elif save_prev and fixed_buffers:
            state["hg_buf_prev"].copy_(buf)
            buf.mul_(momentum).add_(d, alpha=1 - dampening)
        elif save_prev:  # the new buffer goes into the old previous one: no copy
            prev, new = buf, state["hg_buf_prev"]
            torch.mul(prev, momentum, out=new).add_(d, alpha=1 - dampening)
            state["momentum_buffer"], state["hg_buf_prev"] = new, prev
            buf = new
        else:
            buf.mul_(momentum).add_(d, alpha=1 - dampening)
        u = _direction(d, buf, momentum, nesterov)
    if save_dir:
        keep(state, "hg_dir", u)
    axmy_(p, u, lr)


def _sgd_foreach(params: list[Tensor], grads: list[Tensor], states: list[dict[str, Any]], *,
                 lr: float, momentum: float, on: bool, dampening: float, weight_decay: float,
                 nesterov: bool, save_dir: bool, save_prev: bool) -> None:
    """:func:`_sgd_tensor` on every tensor at once, one ``torch._foreach_*`` call per
    operation: on the CPU the for-loop's kernels tensor by tensor, so its numbers to the bit."""
    d = grads if weight_decay == 0 else torch._foreach_add(grads, params, alpha=weight_decay)
    u = d
    if on:
        bufs = [st["momentum_buffer"] for st in states]
        if save_prev:  # the new buffers are new tensors, the old ones the previous: no copy
            new = torch._foreach_mul(bufs, momentum)
            torch._foreach_add_(new, d, alpha=1 - dampening)
            for st, prev, buf in zip(states, bufs, new, strict=True):
                st["hg_buf_prev"], st["momentum_buffer"] = prev, buf
            bufs = new
        else:
            torch._foreach_mul_(bufs, momentum)
            torch._foreach_add_(bufs, d, alpha=1 - dampening)
        u = torch._foreach_add(d, bufs, alpha=momentum) if nesterov else bufs
    if save_dir:
        torch._foreach_copy_([st["hg_dir"] for st in states], u)
    torch._foreach_add_(params, u, alpha=-lr)


def _sgd_flat(fl: Flat, *, lr: float | Tensor, momentum: float | Tensor, on: bool,
              dampening: float, weight_decay: float, nesterov: bool, save_dir: bool,
              save_prev: bool, fixed_buffers: bool) -> None:
    """:func:`_sgd_tensor` on a whole group at once, on flat vectors, operation for operation."""
    lr, momentum = as_dtype(lr, fl.params[0]), as_dtype(momentum, fl.params[0])
    d = fl.grad if weight_decay == 0 else fl.grad.add(fl.param(), alpha=weight_decay)
    u = d
    if on:
        if save_prev and fixed_buffers:
            fl.buf("hg_buf_prev").copy_(fl.buf("momentum_buffer"))
            buf = fl.buf("momentum_buffer").mul_(momentum)
        elif save_prev:  # the new buffer goes into the old previous one: no copy
            torch.mul(fl.buf("momentum_buffer"), momentum, out=fl.buf("hg_buf_prev"))
            fl.swap("momentum_buffer", "hg_buf_prev")
            buf = fl.buf("momentum_buffer")
        else:
            buf = fl.buf("momentum_buffer").mul_(momentum)
        buf.add_(d, alpha=1 - dampening)
        u = _direction(d, buf, momentum, nesterov)
    if save_dir:
        fl.buf("hg_dir").copy_(u)
    fl.sub_(u, lr)


def _direction(d: Tensor, buf: Tensor, momentum: float | Tensor, nesterov: bool) -> Tensor:
    """The direction of a momentum step: the buffer, or Nesterov's ``d + momentum * buf``."""
    if not nesterov:
        return buf
    if isinstance(momentum, Tensor):
        return d.addcmul(buf, momentum)
    return d.add(buf, alpha=momentum)


def sgd_vjp(grads: list[Tensor], states: list[dict[str, Any]], *, lrs: list[float | Tensor],
            momentum: float | Tensor, nesterov: bool, momentum_on: bool, names: frozenset[str],
            inner: Inner = dot, flat: Flat | None = None) -> dict[str, tuple[list[Tensor], float]]:
    r"""Per tensor, the new gradient :math:`g` against the Jacobian columns of the last update,
    from what :func:`sgd` saved: :math:`\langle g, \partial\Delta/\partial\alpha\rangle =
    -\langle g, u_t\rangle` and :math:`\langle g, \partial\Delta/\partial\mu\rangle =
    -\alpha\langle g, b_{t-1}\rangle` (Nesterov: :math:`-\alpha(\langle g, b_t\rangle + \mu
    \langle g, b_{t-1}\rangle)`); ``(values, scale)`` as in ``Tower._vjp``."""
    out: dict[str, tuple[list[Tensor], float]] = {}
    key = "momentum_buffer" if momentum_on and not nesterov else "hg_dir"
    if inner is dot_total and flat_ready(flat, lrs, ()):  # one total for the group
        assert flat is not None
        if "lr" in names:
            out["lr"] = ([dot(flat.grad, flat.buf(key))], -1.0)
        if "momentum" in names:
            v = dot(flat.grad, flat.buf("hg_buf_prev"))
            if nesterov:
                v = dot(flat.grad, flat.buf("momentum_buffer")) + v * momentum
            out["momentum"] = ([v * lrs[0]], -1.0)
        return out
    if "lr" in names:
        out["lr"] = (inner_all(inner, grads, [st[key] for st in states]), -1.0)
    if "momentum" in names:
        values = inner_all(inner, grads, [st["hg_buf_prev"] for st in states])
        if nesterov:
            buffers = inner_all(inner, grads, [st["momentum_buffer"] for st in states])
            values = [b + v * momentum for b, v in zip(buffers, values, strict=True)]
        out["momentum"] = ([v * lr for v, lr in zip(values, lrs, strict=True)], -1.0)
    return out
