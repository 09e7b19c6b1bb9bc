r"""Adam and AdamW as hyperoptimizable levels (the paper's Adam, and Adam^alpha with learn=lr).

Three layers, as in ``torch/optim/adam.py``: :class:`Adam` / :class:`AdamW` check arguments and own
the state, :func:`adam` updates a list of tensors, :func:`_adam_tensor` one tensor;
:func:`adam_vjp` applies the Jacobian of the last update to the new gradient.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from hypergrad._arguments import as_number, check, checked_number, positive
from hypergrad._arithmetic import Inner, as_dtype, bias_correction, dot, dot_total, fdiv, keep
from hypergrad._base import Tower
from hypergrad._flat import Flat, flat_ready, same_step
from hypergrad._parametrisations import IDENTITY, UNIT


class Adam(Tower):
    r"""Adam whose step size and betas a hyperoptimizer can learn.

    The update is ``torch.optim.Adam``'s (:math:`\lambda` the L2 weight decay):

    .. math::
        \begin{aligned}
        g_t &\leftarrow g_t + \lambda\, p_{t-1} \\
        m_t &= \beta_1 m_{t-1} + (1 - \beta_1)\, g_t, \qquad
        v_t = \beta_2 v_{t-1} + (1 - \beta_2)\, g_t^2 \\
        \hat m_t &= m_t / (1 - \beta_1^t), \qquad \hat v_t = v_t / (1 - \beta_2^t) \\
        u_t &= \hat m_t / (\sqrt{\hat v_t} + \epsilon), \qquad p_t = p_{t-1} - \alpha\, u_t
        \end{aligned}

    with :math:`m_0 = 0, v_0 = v0` (0 as in torch). The level above descends

    .. math::
        \frac{\partial L_{t+1}}{\partial \alpha} = -\langle g_{t+1}, u_t \rangle, \quad
        \frac{\partial L_{t+1}}{\partial \beta_1} = -\alpha \Bigl\langle g_{t+1},
            \frac{\partial \hat m_t / \partial \beta_1}{\sqrt{\hat v_t} + \epsilon} \Bigr\rangle,
        \quad
        \frac{\partial L_{t+1}}{\partial \beta_2} = \alpha \Bigl\langle g_{t+1},
            \frac{\hat m_t}{(\sqrt{\hat v_t} + \epsilon)^2}
            \frac{\partial \hat v_t / \partial \beta_2}{2 \sqrt{\hat v_t}} \Bigr\rangle

    where :math:`\partial \hat m_t/\partial\beta_1 = (m_{t-1} - g_t)/(1-\beta_1^t)
    + t \beta_1^{t-1} m_t / (1-\beta_1^t)^2` (likewise for :math:`\hat v_t`): only the last step's
    dependence, as in the paper, whose reference code detaches the moments of earlier steps.
    The betas are learned through :math:`\beta = (\tanh x + 1)/2`, which keeps them in (0, 1).

    Args:
        params: the tensors (or param groups); omit it to describe a hyperoptimizer level.
        lr: :math:`\alpha` (> 0).
        betas: :math:`(\beta_1, \beta_2)`, each in [0, 1) (in (0, 1) when learned).
        eps: :math:`\epsilon` (>= 0), added outside the square root.
        weight_decay: :math:`\lambda` (>= 0); L2, added to a copy of the gradient.
        v0: the initial second moment :math:`v_0` (>= 0). 0 is ``torch.optim.Adam``; the paper's
            code (``gdtuo``) starts at :math:`\epsilon` (``v0=1e-8``), so that the square root is
            differentiable at the first step.
        learn: among ``lr``, ``beta1``, ``beta2`` (default: all three; ``learn=lr`` is the paper's
            Adam^alpha).
        lr_per: ``"optimizer"``, ``"group"`` or ``"tensor"``; by default one per group when
            the param groups start at different values, else one (see :class:`hypergrad.SGD`).
        hyper: the optimizer that learns them, unbound (``SGD(lr=1e-5)``), or its spec.

    Note:
        torch's switches: ``maximize`` and ``amsgrad`` (with ``beta2`` not learned) are honoured,
        ``decoupled_weight_decay=True`` is :class:`AdamW`, ``foreach`` as in
        :class:`hypergrad.SGD`; ``fused``, ``capturable`` and ``differentiable`` are accepted at
        their defaults (``True`` raises :class:`hypergrad.UnsupportedError`). The per-tensor step
        counter :math:`t` is the global step when every tensor
        gets a gradient at every step, as in the paper.
    """

    name = "adam"
    learnable = {"lr": IDENTITY, "beta1": UNIT, "beta2": UNIT}
    _decoupled = False

    def __init__(
        self,
        params: Iterable[Any] | None = None,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        decoupled_weight_decay: bool = False,
        v0: float = 0.0,
        learn: str | Iterable[str] | None = None,
        lr_per: str | None = None,
        hyper: Tower | str | None = None,
    ) -> None:
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, v0=v0,
                        amsgrad=amsgrad, maximize=maximize, foreach=foreach,
                        capturable=capturable, differentiable=differentiable, fused=fused)
        if not self._decoupled:  # AdamW is Adam with decoupled_weight_decay=True, as in torch
            defaults["decoupled_weight_decay"] = decoupled_weight_decay
        super().__init__(params, defaults, learn=learn, lr_per=lr_per, hyper=hyper)

    def _decoupled_in(self, hp: dict[str, Any]) -> bool:
        return self._decoupled or bool(hp.get("decoupled_weight_decay"))

    def _validate(self, config: dict[str, Any], learned: frozenset[str]) -> dict[str, Any]:
        o = self.name
        lr = checked_number(config, "lr", o, positive, "> 0")
        betas = config["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            check(False, o, "betas", "a pair (beta1, beta2)", betas)
        clean = []
        for i, value in enumerate(betas):
            name = f"beta{i + 1}"
            b = as_number(value, name, o)
            if name in learned:
                check(0.0 < b < 1.0, o, name, "in (0, 1) to be learned", b)
            else:
                check(0.0 <= b < 1.0, o, name, "in [0, 1)", b)
            clean.append(b)
        eps, weight_decay, v0 = (
            checked_number(config, name, o) for name in ("eps", "weight_decay", "v0"))
        out = dict(lr=lr, betas=(clean[0], clean[1]), eps=eps, weight_decay=weight_decay, v0=v0)
        for name in ("amsgrad", "decoupled_weight_decay"):
            if name in config:
                check(isinstance(config[name], bool), o, name, "true or false", config[name])
                out[name] = config[name]
        if out.get("amsgrad") and "beta2" in learned:
            check(False, o, "amsgrad", "false when beta2 is learned (the running maximum has "
                  "no derivative in beta2 where it holds an older value): learn=(lr, beta1) "
                  "with amsgrad", True)
        return out

    @classmethod
    def _config_to_spec(cls, config: dict[str, Any]) -> dict[str, Any]:
        out = dict(config)
        out["beta1"], out["beta2"] = out.pop("betas")
        return {k: out[k] for k in ("lr", "beta1", "beta2", "eps", "weight_decay", "v0",
                                    "amsgrad", "maximize", "decoupled_weight_decay")
                if k in out}

    @classmethod
    def _spec_to_config(cls, args: dict[str, Any]) -> dict[str, Any]:
        out = dict(args)
        defaults = cls._spec_defaults()
        out["betas"] = (out.pop("beta1", defaults["beta1"]), out.pop("beta2", defaults["beta2"]))
        return out

    def _get(self, group: dict[str, Any], name: str) -> Any:
        if name in ("beta1", "beta2"):
            return group["betas"][int(name[-1]) - 1]
        return group[name]

    def _put(self, group: dict[str, Any], name: str, value: Any) -> None:
        if name in ("beta1", "beta2"):
            betas = list(group["betas"])
            betas[int(name[-1]) - 1] = value
            group["betas"] = tuple(betas)
        else:
            group[name] = value

    def _hp_names(self) -> tuple[str, ...]:
        return ("lr", "beta1", "beta2", "eps", "weight_decay", "v0", "amsgrad",
                *(() if self._decoupled else ("decoupled_weight_decay",)))

    def _step_group(self, hp: dict[str, Any], params: list[Tensor], grads: list[Tensor],
                    states: list[dict[str, Any]], lrs: list[Any], record: frozenset[str], *,
                    flat: Flat | None = None) -> None:
        adam(params, grads, states, lrs=lrs, beta1=hp["beta1"], beta2=hp["beta2"], eps=hp["eps"],
             weight_decay=hp["weight_decay"], decoupled=self._decoupled_in(hp), v0=hp["v0"],
             amsgrad=hp["amsgrad"], record=record, flat=flat)

    def _vjp(self, hp: dict[str, Any], params: list[Tensor], grads: list[Tensor],
             states: list[dict[str, Any]], lrs: list[Any], names: frozenset[str],
             inner: Inner, *, flat: Flat | None = None) -> dict[str, tuple[list[Tensor], float]]:
        return adam_vjp(params, grads, states, lrs=lrs, beta1=hp["beta1"], beta2=hp["beta2"],
                        eps=hp["eps"], weight_decay=hp["weight_decay"],
                        decoupled=self._decoupled_in(hp), amsgrad=hp["amsgrad"], names=names,
                        inner=inner, flat=flat)


class AdamW(Adam):
    r"""AdamW (decoupled weight decay, ``torch.optim.AdamW``'s rule) as a hyperoptimizable level.

    As :class:`Adam`, except that the weight decay multiplies the weights instead of entering the
    gradient: :math:`p_t = p_{t-1}(1 - \alpha\lambda) - \alpha\, u_t`. The step-size tangent is
    then :math:`-(u_t + \lambda\, p_{t-1})`, with :math:`p_{t-1}` recovered from :math:`p_t` (no
    copy of the weights is kept). Default ``weight_decay=1e-2`` as in torch.

    Note:
        Not in the paper, nor in its reference code: its numbers are checked against an autograd
        reference twin in the tests.
    """

    name = "adamw"
    _decoupled = True

    def __init__(
        self,
        params: Iterable[Any] | None = None,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        v0: float = 0.0,
        learn: str | Iterable[str] | None = None,
        lr_per: str | None = None,
        hyper: Tower | str | None = None,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, foreach=foreach,
                         maximize=maximize, capturable=capturable, differentiable=differentiable,
                         fused=fused, v0=v0, learn=learn, lr_per=lr_per, hyper=hyper)


def adam(params: list[Tensor], grads: list[Tensor], states: list[dict[str, Any]], *,
         lrs: list[float | Tensor], beta1: float | Tensor, beta2: float | Tensor, eps: float,
         weight_decay: float, decoupled: bool, v0: float, amsgrad: bool = False,
         record: frozenset[str] = frozenset(), flat: Flat | None = None) -> None:
    """One Adam (or AdamW, ``decoupled``) step on each tensor (see :class:`Adam`); ``amsgrad``
    divides by the running maximum of the second moment, ``max_exp_avg_sq``, as torch.

    ``record``: when a beta is learned, the gradient actually used (``hg_grad``) is saved; the
    step size needs nothing beyond the moments, which stay in the state. ``flat``: the same
    tensors as flat vectors (the accelerator's path), used from the second step on.
    """
    save_grad = "beta1" in record or "beta2" in record
    needs = ("step", "hg_grad") if save_grad else ("step",)
    if flat_ready(flat, lrs, needs) and same_step(states):
        assert flat is not None
        _adam_flat(flat, lr=lrs[0], beta1=beta1, beta2=beta2, eps=eps,
                   weight_decay=weight_decay, decoupled=decoupled, save_grad=save_grad,
                   amsgrad=amsgrad)
        return
    for p, g, state, lr in zip(params, grads, states, lrs, strict=True):
        _adam_tensor(p, g, state, lr=lr, beta1=beta1, beta2=beta2, eps=eps,
                     weight_decay=weight_decay, decoupled=decoupled, v0=v0, save_grad=save_grad,
                     amsgrad=amsgrad)


def _adam_tensor(p: Tensor, g: Tensor, state: dict[str, Any], *, lr: float | Tensor,
                 beta1: float | Tensor, beta2: float | Tensor, eps: float, weight_decay: float,
                 decoupled: bool, v0: float, save_grad: bool, amsgrad: bool = False) -> None:
    if "step" not in state:
        state["step"] = 0
        state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = (torch.zeros_like(p, memory_format=torch.preserve_format) if v0 == 0
                               else torch.full_like(p, v0, memory_format=torch.preserve_format))
        if amsgrad:
            state["max_exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
    state["step"] += 1
    t = state["step"]
    m, v = state["exp_avg"], state["exp_avg_sq"]
    if weight_decay != 0:
        if decoupled:
            p.mul_(1 - lr * weight_decay)
        else:
            g = g.add(p, alpha=weight_decay)
    if save_grad:
        keep(state, "hg_grad", g)
    if isinstance(beta1, Tensor):
        m.lerp_(g, (1 - beta1).to(m.dtype))
    else:
        m.lerp_(g, 1 - beta1)
    if isinstance(beta2, Tensor):
        v.mul_(beta2).addcmul_(g, g * (1 - beta2))
    else:
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
    bias_correction1 = bias_correction(beta1, t)
    bias_correction2 = bias_correction(beta2, t)
    step_size = fdiv(lr, bias_correction1)
    if amsgrad:
        v = torch.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
    denom = (v.sqrt() / bias_correction2**0.5).add_(eps)
    if isinstance(step_size, Tensor):
        p.addcmul_(m / denom, step_size, value=-1)
    else:
        p.addcdiv_(m, denom, value=-step_size)


def _adam_flat(fl: Flat, *, lr: float | Tensor, beta1: float | Tensor, beta2: float | Tensor,
               eps: float, weight_decay: float, decoupled: bool, save_grad: bool,
               amsgrad: bool = False) -> None:
    """:func:`_adam_tensor` on a whole group at once, on flat vectors: one kernel per operation,
    and the scalar arithmetic (bias corrections, step size) done once, not once per tensor."""
    like = fl.params[0]
    lr, beta1, beta2 = as_dtype(lr, like), as_dtype(beta1, like), as_dtype(beta2, like)
    for st in fl.states:
        st["step"] += 1
    t = fl.states[0]["step"]
    m, v = fl.buf("exp_avg"), fl.buf("exp_avg_sq")
    g = fl.grad
    if weight_decay != 0:
        if decoupled:
            torch._foreach_mul_(fl.params, 1 - lr * weight_decay)
        else:
            g = g.add(fl.param(), alpha=weight_decay)
    if save_grad:
        fl.buf("hg_grad").copy_(g)
    m.lerp_(g, 1 - beta1)
    if isinstance(beta2, Tensor):  # (the number's form is torch.optim's, to its rounding)
        v.lerp_(g * g, 1 - beta2)
    else:
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
    step_size = fdiv(lr, bias_correction(beta1, t))
    if amsgrad:
        v = torch.maximum(fl.buf("max_exp_avg_sq"), v, out=fl.buf("max_exp_avg_sq"))
    denom = v.sqrt().div_(bias_correction(beta2, t) ** 0.5).add_(eps)
    fl.sub_(m.div(denom), step_size)


_CONSTANTS: dict[tuple[Any, ...], Tensor] = {}


def _constant(values: tuple[float, ...], like: Tensor) -> Tensor:
    """A small constant vector on ``like``'s device, made once (a host-to-device copy per step
    would cost more than the arithmetic it saves)."""
    key = (values, like.dtype, like.device)
    out = _CONSTANTS.get(key)
    if out is None:
        out = _CONSTANTS[key] = torch.tensor(values, dtype=like.dtype, device=like.device)
    return out


def adam_vjp(params: list[Tensor], grads: list[Tensor], states: list[dict[str, Any]], *,
             lrs: list[float | Tensor], beta1: float | Tensor, beta2: float | Tensor, eps: float,
             weight_decay: float, decoupled: bool, names: frozenset[str], inner: Inner = dot,
             flat: Flat | None = None,
             amsgrad: bool = False) -> dict[str, tuple[list[Tensor], float]]:
    r"""Per tensor, the new gradient :math:`g` against the Jacobian columns of the last update
    for :math:`\alpha, \beta_1, \beta_2`, from the moments :math:`m_t, v_t` in the state and
    the saved gradient :math:`g_t`, reduced to a few inner products. With
    :math:`D = \sqrt{\hat v_t} + \epsilon`, :math:`w = g / D`, :math:`c_i = t\beta_i^{t-1}/
    (1-\beta_i^t)^2`, :math:`m_{t-1} - g_t = (m_t - g_t)/\beta_1` (likewise for :math:`v`):

    .. math::
        \langle g, J_\alpha\rangle = -\frac{\langle w, m_t\rangle}{1-\beta_1^t}, \quad
        \langle g, J_{\beta_1}\rangle = -\alpha\Bigl(\frac{\langle w, m_t\rangle
            - \langle w, g_t\rangle}{\beta_1 (1-\beta_1^t)} + c_1 \langle w, m_t\rangle\Bigr),
        \quad
        \langle g, J_{\beta_2}\rangle = \frac{\alpha}{2(1-\beta_1^t)}\Bigl(
            \frac{\langle z, v_t\rangle - \langle z g_t, g_t\rangle}{\beta_2(1-\beta_2^t)}
            + c_2 \langle z, v_t\rangle\Bigr), \ z = \frac{w\, m_t}{D \sqrt{\hat v_t}}
            \ (\text{computed with the } 1/(1-\beta_1^t) \text{ folded in}).

    AdamW adds :math:`-\lambda\langle g, p_{t-1}\rangle` to the first, :math:`p_{t-1} = (p_t +
    \alpha u_t)/(1 - \alpha\lambda)`. ``(values, scale)`` as in ``Tower._vjp``; with ``flat``
    (and ``inner`` :func:`dot_total`), one total for the group.
    """
    if inner is dot_total and flat_ready(flat, lrs, ()) and same_step(states):
        assert flat is not None  # the whole group at once: one total
        wants_p = decoupled and weight_decay != 0 and "lr" in names  # else p is not read
        params = [flat.param() if wants_p else None]  # type: ignore[list-item]
        grads, states, lrs, inner = [flat.grad], [flat.state()], lrs[:1], dot
    out: dict[str, tuple[list[Tensor], float]] = {n: ([], 1.0) for n in ("lr", "beta1", "beta2")
                                                   if n in names}
    for p, g_new, state, lr in zip(params, grads, states, lrs, strict=True):
        t = state["step"]
        m, v = state["exp_avg"], state["exp_avg_sq"]
        bc1 = bias_correction(beta1, t)
        bc2 = bias_correction(beta2, t)
        products = _amsgrad_products if amsgrad else _inner_products
        x, y, wm = products(g_new, m, v, state, bc1=bc1, bc2=bc2, eps=eps, names=names,
                            inner=inner)
        if "lr" in names:
            out["lr"][0].append(_lr_value(wm, inner, g_new, p, lr=lr, bc1=bc1,
                                          weight_decay=weight_decay, decoupled=decoupled))
        for name, value in _beta_values(x, y, t=t, lr=lr, beta1=beta1, beta2=beta2,
                                        bc1=bc1, bc2=bc2).items():
            out[name][0].append(value)
    return out


def _inner_products(g_new: Tensor, m: Tensor, v: Tensor, state: dict[str, Any], *, bc1: Any,
                    bc2: Any, eps: float, names: frozenset[str], inner: Inner,
                    ) -> tuple[dict[str, Any], dict[str, Any], Any]:
    r"""The inner products of :func:`adam_vjp`: ``x``, ``y`` per learned beta, and
    :math:`\langle w, m_t\rangle`.

    Eight elementwise passes rather than ten: with :math:`c = \sqrt{1-\beta_2^t}`, the square
    root :math:`s' = \sqrt{v_t} = c\sqrt{\hat v_t}` and :math:`D' = s' + c\epsilon = cD`, the
    bias corrections are numbers applied to the reduced values, not passes over the tensors, and
    :math:`\langle z, v_t\rangle` reads :math:`v_t = s'^2`:
    :math:`\langle z, v_t\rangle = c(1-\beta_2^t)/(1-\beta_1^t)\,\langle q, s'\rangle` and
    :math:`\langle z g_t, g_t\rangle = c^3/(1-\beta_1^t)\,\langle q g_t / s', g_t\rangle`,
    with :math:`q = g\,m_t / D'^2`."""
    c = bc2**0.5 if isinstance(bc2, Tensor) else math.sqrt(bc2)
    s = v.sqrt()  # s'
    denom = s + c * eps  # D'
    w = g_new / denom  # w / c
    wm = inner(w, m) * c
    x, y = {}, {}
    if "beta1" in names:
        x["beta1"], y["beta1"] = wm, inner(w, state["hg_grad"]) * c
    if "beta2" in names:
        g = state["hg_grad"]
        q = w.mul_(m).div_(denom)
        x["beta2"] = fdiv(inner(q, s) * (bc2 * c), bc1)
        q.div_(s.clamp_min(torch.finfo(s.dtype).tiny))
        y["beta2"] = fdiv(inner(q.mul_(g), g) * (c * c * c), bc1)
    return x, y, wm


def _amsgrad_products(g_new: Tensor, m: Tensor, v: Tensor, state: dict[str, Any], *, bc1: Any,
                      bc2: Any, eps: float, names: frozenset[str], inner: Inner,
                      ) -> tuple[dict[str, Any], dict[str, Any], Any]:
    """:func:`_inner_products` with AMSGrad: :math:`\hat v_t` is the running maximum over
    :math:`1-\beta_2^t`, no longer :math:`v_t`'s own, so each product is formed as written
    (``z`` with the bias correction folded in)."""
    s = state["max_exp_avg_sq"].sqrt().div_(bc2**0.5)  # sqrt(v_hat)
    denom = s + eps
    w = g_new / denom
    wm = inner(w, m)
    # per beta: <g, J> = k lr ((x - y) / (beta bc) + x t beta^(t-1) / bc^2), with k = -1 and
    # x, y = <w, m>, <w, g_t> for beta1; k = 1/2 and x, y = <z, v>, <z g_t, g_t> for beta2,
    # z = w m / (D sqrt(v_hat) (1 - beta1^t))
    x, y = {}, {}
    if "beta1" in names:
        x["beta1"], y["beta1"] = wm, inner(w, state["hg_grad"])
    if "beta2" in names:
        g = state["hg_grad"]
        z = w.mul_(m).div_(denom).div_(s.clamp_min_(torch.finfo(s.dtype).tiny)).div_(bc1)
        x["beta2"] = inner(z, v)
        y["beta2"] = inner(z.mul_(g), g)
    return x, y, wm


def _lr_value(wm: Any, inner: Inner, g_new: Tensor, p: Tensor | None, *, lr: Any, bc1: Any,
              weight_decay: float, decoupled: bool) -> Any:
    """:math:`\langle g, J_\alpha\rangle` from :math:`\langle w, m_t\rangle` (AdamW: minus
    :math:`\lambda\langle g, p_{t-1}\rangle`)."""
    value = fdiv(wm, -bc1)
    if decoupled and weight_decay != 0:
        previous = (inner(g_new, p) + wm * fdiv(lr, bc1)) / (1 - lr * weight_decay)
        value = value - previous * weight_decay
    return value


def _beta_values(x: dict[str, Any], y: dict[str, Any], *, t: int, lr: Any, beta1: Any,
                 beta2: Any, bc1: Any, bc2: Any) -> dict[str, Any]:
    """The betas' hypergradients from their inner products (see :func:`adam_vjp`). Two learned
    betas as 0-d tensors (the GPU's case) share their scalar arithmetic: on a GPU each scalar
    operation is a kernel launch."""
    if (len(x) == 2 and isinstance(beta1, Tensor) and isinstance(beta2, Tensor)
            and isinstance(x["beta1"], Tensor) and x["beta1"].dim() == 0):
        xs, ys = torch.stack([x["beta1"], x["beta2"]]), torch.stack([y["beta1"], y["beta2"]])
        b, bc = torch.stack([beta1, beta2]), torch.stack([bc1, bc2])
        both = ((xs - ys) / (b * bc) + xs * (b ** (t - 1) * t / bc**2)) * (
            _constant((-1.0, 0.5), b) * lr)
        return {"beta1": both[0], "beta2": both[1]}
    out = {}
    for name, beta, bc, k in (("beta1", beta1, bc1, -1.0), ("beta2", beta2, bc2, 0.5)):
        if name in x:
            c = fdiv(t * beta ** (t - 1), bc**2)
            value = fdiv(x[name] - y[name], beta * bc) + x[name] * c
            out[name] = value * (lr * k)
    return out
