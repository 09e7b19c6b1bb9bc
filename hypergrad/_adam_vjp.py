r"""Adam's hypergradient: the Jacobian of its last update applied to the new gradient
(:func:`adam_vjp`), what the level above an :class:`hypergrad.Adam` learns from.

The Jacobian columns for the step size and the betas reduce to a few inner products of the new
gradient with the moments and the saved gradient (:func:`_inner_products`); the elementwise
work is done tensor by tensor, or on the CPU's float path with one ``torch._foreach_*`` call
per operation for every tensor of a group (:func:`_foreach_products`: the same kernels, tensor
by tensor in C++, without a Python call each).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from hypergrad._arithmetic import (
    Inner,
    bias_correction,
    dot,
    dot_number,
    dot_total,
    fdiv,
    inner_all,
)
from hypergrad._flat import Flat, flat_ready, numbers_ready, same_step
from hypergrad._fused import adam_products, fusable

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
             flat: Flat | None = None, amsgrad: bool = False, foreach: bool = False,
             fused: bool = False) -> dict[str, tuple[list[Tensor], float]]:
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
    (and ``inner`` :func:`dot_total`), one total for the group; with ``foreach`` on the float
    path, the elementwise work of every tensor at once (:func:`_foreach_products`), and with
    ``fused`` too, each tensor's in one pass (:mod:`hypergrad._fused`).
    """
    if inner is dot_total and flat_ready(flat, lrs, ()) and same_step(states):
        assert flat is not None  # the whole group at once: one total
        wants_p = decoupled and weight_decay != 0 and "lr" in names  # else p is not read
        params = [flat.param() if wants_p else None]  # type: ignore[list-item]
        grads, states, lrs, inner = [flat.grad], [flat.state()], lrs[:1], dot
    out: dict[str, tuple[list[Tensor], float]] = {n: ([], 1.0) for n in ("lr", "beta1", "beta2")
                                                   if n in names}
    together = (foreach and not amsgrad and inner is dot_number and same_step(states)
                and numbers_ready(states, lrs, (), beta1, beta2))
    if together:
        t = states[0]["step"]
        each = _foreach_products(grads, states, bc1=bias_correction(beta1, t),
                                 bc2=bias_correction(beta2, t), eps=eps, names=names,
                                 fused=fused)
    for i, (p, g_new, state, lr) in enumerate(zip(params, grads, states, lrs, strict=True)):
        t = state["step"]
        bc1 = bias_correction(beta1, t)
        bc2 = bias_correction(beta2, t)
        if together:
            x, y, wm = each[i]
        else:
            products = _amsgrad_products if amsgrad else _inner_products
            x, y, wm = products(g_new, state["exp_avg"], state["exp_avg_sq"], state, bc1=bc1,
                                bc2=bc2, eps=eps, names=names, inner=inner)
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


def _foreach_products(grads: list[Tensor], states: list[dict[str, Any]], *, bc1: float,
                      bc2: float, eps: float, names: frozenset[str], fused: bool = False,
                      ) -> list[tuple[dict[str, float], dict[str, float], float]]:
    """:func:`_inner_products` of every tensor of a group (one step counter, numbers), the
    inner products Python numbers: with ``fused``, each tensor's in one pass
    (:func:`hypergrad._fused.adam_products`) where the loop can read it, the others with one
    ``torch._foreach_*`` call per elementwise operation. (Not one function with
    :func:`_inner_products`: a foreach call on a list of one, the levels above 0, costs more
    than the plain operation; written as one, an Adam tower of height 3 stepped 4% slower.)"""
    c = math.sqrt(bc2)
    betas = "beta1" in names or "beta2" in names
    out: list[Any] = [None] * len(grads)
    rest = []
    for i, (g, st) in enumerate(zip(grads, states, strict=True)):
        saved = st["hg_grad"] if betas else g  # (not read when only lr is learned)
        if fused and fusable(g, st["exp_avg"], st["exp_avg_sq"], saved):
            sums = adam_products(g, st["exp_avg"], st["exp_avg_sq"], saved, c * eps)
            out[i] = _from_sums(*sums, c=c, bc1=bc1, bc2=bc2, names=names)
        else:
            rest.append(i)
    if rest:
        sums = _eager_sums([grads[i] for i in rest], [states[i] for i in rest], c=c, eps=eps,
                           names=names)
        for i, each in zip(rest, zip(*sums, strict=True), strict=True):
            out[i] = _from_sums(*each, c=c, bc1=bc1, bc2=bc2, names=names)
    return out


def _eager_sums(grads: list[Tensor], states: list[dict[str, Any]], *, c: float, eps: float,
                names: frozenset[str]) -> tuple[list[float], ...]:
    """The four sums of :func:`hypergrad._fused.adam_products` for every tensor, with one
    ``torch._foreach_*`` call per elementwise operation (zeros for those not needed)."""
    m, v = [st["exp_avg"] for st in states], [st["exp_avg_sq"] for st in states]
    s = torch._foreach_sqrt(v)  # s'
    denom = torch._foreach_add(s, c * eps)  # D'
    w = torch._foreach_div(grads, denom)  # w / c
    zeros = [0.0] * len(grads)
    wm, wg, qs, qgg = inner_all(dot_number, w, m), zeros, zeros, zeros
    if "beta1" in names or "beta2" in names:
        g = [st["hg_grad"] for st in states]
        wg = inner_all(dot_number, w, g)
    if "beta2" in names:
        torch._foreach_mul_(w, m)
        torch._foreach_div_(w, denom)  # q
        qs = inner_all(dot_number, w, s)
        torch._foreach_div_(w, torch._foreach_clamp_min(s, [torch.finfo(a.dtype).tiny
                                                             for a in s]))
        torch._foreach_mul_(w, g)
        qgg = inner_all(dot_number, w, g)
    return wm, wg, qs, qgg


def _from_sums(wm: float, wg: float, qs: float, qgg: float, *, c: float, bc1: float, bc2: float,
               names: frozenset[str]) -> tuple[dict[str, float], dict[str, float], float]:
    r"""``x``, ``y`` per learned beta and :math:`\langle w, m_t\rangle`, as
    :func:`_inner_products` returns them, from the four sums (taken with :math:`D'`)."""
    x, y = {}, {}
    wm = wm * c
    if "beta1" in names:
        x["beta1"], y["beta1"] = wm, wg * c
    if "beta2" in names:
        x["beta2"] = fdiv(qs * (bc2 * c), bc1)
        y["beta2"] = fdiv(qgg * (c * c * c), bc1)
    return x, y, wm


def _amsgrad_products(g_new: Tensor, m: Tensor, v: Tensor, state: dict[str, Any], *, bc1: Any,
                      bc2: Any, eps: float, names: frozenset[str], inner: Inner,
                      ) -> tuple[dict[str, Any], dict[str, Any], Any]:
    r""":func:`_inner_products` with AMSGrad: :math:`\hat v_t` is the running maximum over
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
    r""":math:`\langle g, J_\alpha\rangle` from :math:`\langle w, m_t\rangle` (AdamW: minus
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
