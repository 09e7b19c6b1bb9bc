r"""RMSProp as a hyperoptimizable level (its step size and smoothing constant learned).

Three layers, as in ``torch/optim/rmsprop.py``: :class:`RMSprop` checks arguments and owns the
state, :func:`rmsprop` updates a list of tensors, :func:`_rmsprop_tensor` one tensor;
:func:`rmsprop_vjp` applies the Jacobian of the last update to the new gradient.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from hypergrad._arguments import as_number, check, checked_number, positive
from hypergrad._arithmetic import Inner, axmy_, dot, dot_total, fdiv
from hypergrad._base import Tower
from hypergrad._errors import HypergradError
from hypergrad._flat import Flat, flat_ready, same_step
from hypergrad._parametrisations import SQUARE, UNIT


class RMSprop(Tower):
    r"""RMSProp whose step size :math:`\alpha` and smoothing :math:`\gamma` a hyperoptimizer can
    learn.

    The update is ``torch.optim.RMSprop``'s, whose smoothing constant ``alpha`` is the paper's
    :math:`\gamma` (``alpha`` here too, as in torch; ``gamma`` in a spec, in ``learn=`` and in
    ``hyperparameters()``, the paper's name, so that it is never read as the step size):

    .. math::
        \begin{aligned}
        g_t &\leftarrow g_t + \lambda\, p_{t-1}, \qquad
        s_t = \gamma\, s_{t-1} + (1 - \gamma)\, g_t^2 \\
        w_t &= s_t \ \ \bigl(\text{centered: } s_t - a_t^2,\ a_t = \gamma a_{t-1}
               + (1-\gamma) g_t\bigr), \qquad q_t = g_t / (\sqrt{w_t} + \epsilon) \\
        p_t &= p_{t-1} - \alpha\, q_t \ \ \bigl(\text{momentum: } b_t = \mu b_{t-1} + q_t,\
               p_t = p_{t-1} - \alpha\, b_t\bigr)
        \end{aligned}

    The level above descends :math:`\partial L_{t+1}/\partial\alpha = -\langle g_{t+1}, q_t\rangle`
    (:math:`b_t` with momentum) and :math:`\partial L_{t+1}/\partial\gamma = -\alpha\langle
    g_{t+1}, \partial q_t/\partial\gamma\rangle`, with :math:`\partial q_t / \partial\gamma =
    -\frac{q_t}{\sqrt{w_t}+\epsilon}\frac{\partial w_t/\partial\gamma}{2\sqrt{w_t}}` and
    :math:`\partial s_t/\partial\gamma = s_{t-1} - g_t^2 = (s_t - g_t^2)/\gamma`. As in the paper,
    :math:`\alpha` is learned through its square root and :math:`\gamma` through
    :math:`(\tanh x + 1)/2`. The direction :math:`q_t` is kept (one tensor-sized buffer), from which
    :math:`g_t` is recovered.

    Args:
        params: the tensors (or param groups); omit it to describe a hyperoptimizer level.
        lr: :math:`\alpha` (> 0).
        alpha: :math:`\gamma` in [0, 1) (in (0, 1) when learned), torch's smoothing constant;
            ``gamma=`` is the same argument under the paper's name.
        eps: :math:`\epsilon` (>= 0).
        weight_decay: :math:`\lambda` (>= 0).
        momentum: :math:`\mu` (>= 0, not learned).
        centered: normalise by the centred second moment.
        capturable, foreach, maximize, differentiable: torch's (see :class:`hypergrad.SGD`).
        eps_inside: put :math:`\epsilon` inside the square root, :math:`\sqrt{w_t + \epsilon}`.
        learn: among ``lr`` and ``gamma`` (default both; ``learn=lr`` is the paper's
            RMSProp^alpha).
        lr_per: ``"optimizer"``, ``"group"`` or ``"tensor"``; by default one per group when
            the param groups start at different values, else one (see :class:`hypergrad.SGD`).
        hyper: the optimizer that learns them, unbound, or its spec.

    Note:
        The paper's code (``gdtuo``) puts :math:`\epsilon` inside the square root:
        ``eps_inside=True`` reproduces it. The defaults are ``torch.optim.RMSprop``'s.
    """

    name = "rmsprop"
    learnable = {"lr": SQUARE, "gamma": UNIT}
    _ctor_aliases = ("gamma",)
    spec_aliases = {"alpha": "gamma"}

    def __init__(
        self,
        params: Iterable[Any] | None = None,
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
        capturable: bool = False,
        foreach: bool | None = None,
        maximize: bool = False,
        differentiable: bool = False,
        *,
        gamma: float | None = None,
        eps_inside: bool = False,
        learn: str | Iterable[str] | None = None,
        lr_per: str | None = None,
        hyper: Tower | str | None = None,
    ) -> None:
        if gamma is not None:
            if alpha != 0.99 and alpha != gamma:
                raise HypergradError(
                    f"rmsprop: alpha and gamma name the same smoothing constant, but got "
                    f"alpha={alpha!r} and gamma={gamma!r}: give one")
            alpha = gamma
        defaults = dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                        momentum=momentum, centered=centered, eps_inside=eps_inside,
                        capturable=capturable, foreach=foreach, maximize=maximize,
                        differentiable=differentiable)
        super().__init__(params, defaults, learn=learn, lr_per=lr_per, hyper=hyper)

    def _get(self, group: dict[str, Any], name: str) -> Any:
        return group["alpha" if name == "gamma" else name]

    def _put(self, group: dict[str, Any], name: str, value: Any) -> None:
        group["alpha" if name == "gamma" else name] = value

    def _hp_names(self) -> tuple[str, ...]:
        return ("lr", "gamma", "eps", "weight_decay", "momentum", "centered", "eps_inside")

    @classmethod
    def _config_to_spec(cls, config: dict[str, Any]) -> dict[str, Any]:
        return {("gamma" if k == "alpha" else k): v for k, v in config.items()}

    @classmethod
    def _spec_to_config(cls, args: dict[str, Any]) -> dict[str, Any]:
        return {("alpha" if k == "gamma" else k): v for k, v in args.items()}

    def _validate(self, config: dict[str, Any], learned: frozenset[str]) -> dict[str, Any]:
        o = self.name
        out: dict[str, Any] = {}
        out["lr"] = checked_number(config, "lr", o, positive, "> 0")
        gamma = out["alpha"] = as_number(config["alpha"], "gamma", o)
        if "gamma" in learned:
            check(0.0 < gamma < 1.0, o, "gamma", "in (0, 1) to be learned", gamma)
        else:
            check(0.0 <= gamma < 1.0, o, "gamma", "in [0, 1)", gamma)
        for name in ("eps", "weight_decay", "momentum"):
            out[name] = checked_number(config, name, o)
        for name in ("centered", "eps_inside"):
            value = out[name] = config[name]
            check(isinstance(value, bool), o, name, "true or false", value)
        return out

    def _step_group(self, hp: dict[str, Any], params: list[Tensor], grads: list[Tensor],
                    states: list[dict[str, Any]], lrs: list[Any], record: frozenset[str], *,
                    flat: Flat | None = None) -> None:
        rmsprop(params, grads, states, lrs=lrs, gamma=hp["gamma"], eps=hp["eps"],
                weight_decay=hp["weight_decay"], momentum=hp["momentum"],
                centered=hp["centered"], eps_inside=hp["eps_inside"], record=record, flat=flat)

    def _vjp(self, hp: dict[str, Any], params: list[Tensor], grads: list[Tensor],
             states: list[dict[str, Any]], lrs: list[Any], names: frozenset[str],
             inner: Inner, *, flat: Flat | None = None) -> dict[str, tuple[list[Tensor], float]]:
        if inner is dot_total and flat_ready(flat, lrs, ()):
            assert flat is not None  # the whole group at once: one total
            grads, states, lrs, inner = [flat.grad], [flat.state()], lrs[:1], dot
        return rmsprop_vjp(grads, states, lrs=lrs, gamma=hp["gamma"], eps=hp["eps"],
                           momentum=hp["momentum"], centered=hp["centered"],
                           eps_inside=hp["eps_inside"], names=names, inner=inner)


def rmsprop(params: list[Tensor], grads: list[Tensor], states: list[dict[str, Any]], *,
            lrs: list[float | Tensor], gamma: float | Tensor, eps: float, weight_decay: float,
            momentum: float, centered: bool, eps_inside: bool,
            record: frozenset[str] = frozenset(), flat: Flat | None = None) -> None:
    """One RMSProp step on each tensor (see :class:`RMSprop`); the normalised gradient ``hg_dir``
    is saved when ``record`` needs it (``gamma``, or ``lr`` without momentum). ``flat``: the
    same tensors as flat vectors (the accelerator's path): from the second step on, the
    per-tensor kernel runs once on them."""
    save_dir = "gamma" in record or ("lr" in record and momentum == 0)
    needs = ["step", "square_avg"] + (["momentum_buffer"] if momentum > 0 else []) + (
        ["grad_avg"] if centered else []) + (["hg_dir"] if save_dir else [])
    if flat_ready(flat, lrs, needs) and same_step(states):
        assert flat is not None
        flat.apply(_rmsprop_tensor, lr=lrs[0], gamma=gamma, eps=eps, weight_decay=weight_decay,
                   momentum=momentum, centered=centered, eps_inside=eps_inside,
                   save_dir=save_dir)
        return
    for p, g, state, lr in zip(params, grads, states, lrs, strict=True):
        _rmsprop_tensor(p, g, state, lr=lr, gamma=gamma, eps=eps, weight_decay=weight_decay,
                        momentum=momentum, centered=centered, eps_inside=eps_inside,
                        save_dir=save_dir)


def _rmsprop_tensor(p: Tensor, g: Tensor, state: dict[str, Any], *, lr: float | Tensor,
                    gamma: float | Tensor, eps: float, weight_decay: float, momentum: float,
                    centered: bool, eps_inside: bool, save_dir: bool) -> None:
    if "step" not in state:
        state["step"] = 0
        state["square_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        if momentum > 0:
            state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        if centered:
            state["grad_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
    state["step"] += 1
    if weight_decay != 0:
        g = g.add(p, alpha=weight_decay)
    square_avg = state["square_avg"]
    if isinstance(gamma, Tensor):
        square_avg.mul_(gamma).addcmul_(g, g * (1 - gamma))
    else:
        square_avg.mul_(gamma).addcmul_(g, g, value=1 - gamma)
    if centered:
        grad_avg = state["grad_avg"]
        grad_avg.lerp_(g, (1 - gamma).to(g.dtype) if isinstance(gamma, Tensor) else 1 - gamma)
        w = square_avg.addcmul(grad_avg, grad_avg, value=-1)
        avg = w.add_(eps).sqrt_() if eps_inside else w.sqrt_().add_(eps)
    else:
        avg = square_avg.add(eps).sqrt_() if eps_inside else square_avg.sqrt().add_(eps)
    q = None
    if save_dir:
        q = g / avg
        saved = state.get("hg_dir")
        if saved is None:
            state["hg_dir"] = q
        else:
            saved.copy_(q)
    if momentum > 0:
        buf = state["momentum_buffer"]
        if q is not None:
            buf.mul_(momentum).add_(q)
        else:
            buf.mul_(momentum).addcdiv_(g, avg)
        axmy_(p, buf, lr)
    elif q is None and not isinstance(lr, Tensor):
        p.addcdiv_(g, avg, value=-lr)
    else:
        axmy_(p, q if q is not None else g / avg, lr)


def rmsprop_vjp(grads: list[Tensor], states: list[dict[str, Any]], *, lrs: list[float | Tensor],
                gamma: float | Tensor, eps: float, momentum: float, centered: bool,
                eps_inside: bool, names: frozenset[str],
                inner: Inner = dot) -> dict[str, tuple[list[Tensor], float]]:
    r"""Per tensor, the new gradient :math:`g` against the Jacobian columns of the last update
    (see :class:`RMSprop`), with :math:`g_t = q_t(\sqrt{w_t} + \epsilon)` recovered from the
    saved direction: :math:`\langle g, J_\alpha\rangle = -\langle g, q_t\rangle` (momentum:
    :math:`b_t`) and, with :math:`z = g\, q_t / (2 (\sqrt{w_t}+\epsilon)\sqrt{w_t})`,

    .. math::
        \langle g, J_\gamma\rangle = \frac{\alpha}{\gamma}\bigl(\langle z, s_t\rangle
        - \langle z g_t, g_t\rangle - 2\langle z a_t, a_t - g_t\rangle\bigr)

    (the last term only when centred). ``(values, scale)`` as in ``Tower._vjp``."""
    out: dict[str, tuple[list[Tensor], float]] = {}
    if "lr" in names:
        key = "momentum_buffer" if momentum > 0 else "hg_dir"
        out["lr"] = ([inner(g, st[key]) for g, st in zip(grads, states, strict=True)], -1.0)
    if "gamma" in names:
        values = []
        for g_new, state, lr in zip(grads, states, lrs, strict=True):
            s, q = state["square_avg"], state["hg_dir"]
            w = s.addcmul(state["grad_avg"], state["grad_avg"], value=-1) if centered else s
            root = w.sqrt()
            avg = w.add(eps).sqrt_() if eps_inside else root + eps
            g = q * avg
            half = avg * 2 if eps_inside else root.clamp_min_(torch.finfo(root.dtype).tiny) * 2
            z = (g_new * q).div_(avg).div_(half)
            value = inner(z, s) - inner(z * g, g)
            if centered:
                a = state["grad_avg"]
                value = value - inner(z * a, a - g) * 2
            values.append(value * fdiv(lr, gamma))
        out["gamma"] = (values, 1.0)
    return out
