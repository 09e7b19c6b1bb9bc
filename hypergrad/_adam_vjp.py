r"""Adam's hypergradient: the Jacobian of its last update applied to the new gradient
(:func:`adam_vjp`), what the level above an :class:`hypergrad.Adam` learns from.

The update's Jacobian columns for the step size and the betas reduce to a few inner products of
the new gradient with the moments and the saved gradient; the elementwise work is done once per
tensor, or with one ``torch._foreach_*`` call per operation for all of them (the CPU's float
path: the same kernels, tensor by tensor, so the same numbers).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from hypergrad._arithmetic import Inner, bias_correction, dot, dot_number, dot_total, fdiv
from hypergrad._flat import Flat, flat_ready, numbers_ready, same_step

_CONSTANTS: dict[tuple[Any, ...], Tensor] = {}


def _constant(values: tuple[float, ...], like: Tensor) -> Tensor:
    """A small constant vector on ``like``'s device, made once (a host-to-device copy per step
    would cost more than the arithmetic it saves)."""
    key = (values, like.dtype, like.device)
    out = _CONSTANTS.get(key)
    if out is None:
        out = _CONSTANTS[key] = torch.tensor(values, dtype=like.dtype, device=like.device)
    return out


def adam_vjp(
    params: list[Tensor],
    grads: list[Tensor],
    states: list[dict[str, Any]],
    *,
    lrs: list[float | Tensor],
    beta1: float | Tensor,
    beta2: float | Tensor,
    eps: float,
    weight_decay: float,
    decoupled: bool,
    names: frozenset[str],
    inner: Inner = dot,
    flat: Flat | None = None,
    amsgrad: bool = False,
) -> dict[str, tuple[list[Tensor], float]]:
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
            + c_2 \langle z, v_t\rangle\Bigr), \ z = \frac{w\, m_t}{D \sqrt{\hat v_t}}.

    AdamW adds :math:`-\lambda\langle g, p_{t-1}\rangle` to the first, :math:`p_{t-1} = (p_t +
    \alpha u_t)/(1 - \alpha\lambda)`. ``(values, scale)`` as in ``Tower._vjp``; with ``flat``
    (and ``inner`` :func:`dot_total`), one total for the group.
    """
    if inner is dot_total and flat_ready(flat, lrs, ()) and same_step(states):
        assert flat is not None  # the whole group at once: one total
        wants_p = decoupled and weight_decay != 0 and "lr" in names  # else p is not read
        params = [flat.param() if wants_p else None]  # type: ignore[list-item]
        grads, states, lrs, inner = [flat.grad], [flat.state()], lrs[:1], dot
    wants = (names, decoupled and weight_decay != 0 and "lr" in names, amsgrad)
    if inner is dot_number and numbers_ready(states, lrs, (), beta1, beta2) and same_step(states):
        products = _products_foreach(params, grads, states, beta1, beta2, eps, *wants)
    else:
        products = [_products(p, g, st, beta1, beta2, eps, *wants, inner=inner)
                    for p, g, st in zip(params, grads, states, strict=True)]
    out: dict[str, tuple[list[Tensor], float]] = {n: ([], 1.0) for n in ("lr", "beta1", "beta2")
                                                   if n in names}
    for pr, lr in zip(products, lrs, strict=True):
        t, bc1, bc2, wm = pr["t"], pr["bc1"], pr["bc2"], pr["wm"]
        if "lr" in names:
            value = fdiv(wm, -bc1)
            if "gp" in pr:
                previous = (pr["gp"] + wm * fdiv(lr, bc1)) / (1 - lr * weight_decay)
                value = value - previous * weight_decay
            out["lr"][0].append(value)
        # per beta: <g, J> = k lr ((x - y) / (beta bc) + x t beta^(t-1) / bc^2), with k = -1 and
        # x, y = <w, m>, <w, g_t> for beta1; k = 1/2 and x, y = <z, v>, <z g_t, g_t> / bc1 for
        # beta2 (the 1 / (1 - beta1^t) of z taken out of the elementwise work)
        x, y = {}, {}
        if "beta1" in names:
            x["beta1"], y["beta1"] = wm, pr["wg"]
        if "beta2" in names:
            x["beta2"], y["beta2"] = fdiv(pr["zv"], bc1), fdiv(pr["zgg"], bc1)
        for name, value in _beta_values(x, y, t=t, lr=lr, beta1=beta1, beta2=beta2,
                                        bc1=bc1, bc2=bc2).items():
            out[name][0].append(value)
    return out


def _products(p: Tensor | None, g_new: Tensor, state: dict[str, Any], beta1: Any, beta2: Any,
              eps: float, names: frozenset[str], wants_p: bool, amsgrad: bool, *,
              inner: Inner) -> dict[str, Any]:
    """One tensor's inner products for :func:`adam_vjp` (``wm`` = <w, m>, ``wg`` = <w, g_t>,
    ``zv`` = <z, v>, ``zgg`` = <z g_t, g_t>, ``gp`` = <g, p>), its step and bias corrections."""
    t = state["step"]
    m, v = state["exp_avg"], state["exp_avg_sq"]
    out: dict[str, Any] = {"t": t, "bc1": bias_correction(beta1, t),
                           "bc2": bias_correction(beta2, t)}
    s = (state["max_exp_avg_sq"] if amsgrad else v).sqrt().div_(out["bc2"]**0.5)  # sqrt(v_hat)
    denom = s + eps
    w = g_new / denom
    out["wm"] = inner(w, m)
    if wants_p:
        out["gp"] = inner(g_new, p)
    if "beta1" in names:
        out["wg"] = inner(w, state["hg_grad"])
    if "beta2" in names:
        g = state["hg_grad"]
        # one division by D sqrt(v_hat), kept off 0 (where v_hat is 0, so is every term)
        z = w.mul_(m).div_(s.mul_(denom).clamp_min_(torch.finfo(s.dtype).tiny))
        out["zv"] = inner(z, v)
        out["zgg"] = inner(z.mul_(g), g)
    return out


def _products_foreach(params: list[Tensor], grads: list[Tensor], states: list[dict[str, Any]],
                      beta1: float, beta2: float, eps: float, names: frozenset[str],
                      wants_p: bool, amsgrad: bool) -> list[dict[str, Any]]:
    """:func:`_products` of every tensor, one ``_foreach`` call per elementwise operation (its
    kernels tensor by tensor, as :func:`_adam_foreach`), the inner products as Python numbers."""
    t = states[0]["step"]
    bc1, bc2 = bias_correction(beta1, t), bias_correction(beta2, t)
    m, v = [st["exp_avg"] for st in states], [st["exp_avg_sq"] for st in states]
    s = torch._foreach_sqrt([st["max_exp_avg_sq"] for st in states] if amsgrad else v)
    torch._foreach_div_(s, bc2**0.5)
    denom = torch._foreach_add(s, eps)
    w = torch._foreach_div(grads, denom)
    out: list[dict[str, Any]] = [{"t": t, "bc1": bc1, "bc2": bc2} for _ in states]
    _put_dots(out, "wm", w, m)
    if wants_p:
        _put_dots(out, "gp", grads, params)
    if "beta1" in names or "beta2" in names:
        g = [st["hg_grad"] for st in states]
    if "beta1" in names:
        _put_dots(out, "wg", w, g)
    if "beta2" in names:
        torch._foreach_mul_(w, m)
        torch._foreach_mul_(s, denom)
        torch._foreach_clamp_min_(s, [torch.finfo(x.dtype).tiny for x in s])
        torch._foreach_div_(w, s)
        _put_dots(out, "zv", w, v)
        torch._foreach_mul_(w, g)
        _put_dots(out, "zgg", w, g)
    return out


def _put_dots(out: list[dict[str, Any]], key: str, xs: list[Tensor], ys: list[Tensor]) -> None:
    for entry, x, y in zip(out, xs, ys, strict=True):
        entry[key] = dot_number(x, y)


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
