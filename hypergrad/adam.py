r"""Adam and AdamW as hyperoptimizable levels (the paper's Adam, and Adam^alpha with learn=lr).

Three layers, as in ``torch/optim/adam.py``: :class:`Adam` / :class:`AdamW` check arguments and own
the state, :func:`adam` updates a list of tensors, :func:`_adam_tensor` one tensor;
:func:`hypergrad._adam_vjp.adam_vjp` applies the Jacobian of the last update to the new
gradient.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from hypergrad._adam_vjp import adam_vjp
from hypergrad._arguments import as_number, check, checked_number, positive
from hypergrad._arithmetic import Inner, as_dtype, bias_correction, fdiv, keep
from hypergrad._base import Tower
from hypergrad._flat import Flat, flat_ready, numbers_ready, same_step
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
             amsgrad=hp["amsgrad"], record=record, flat=flat,
             foreach=hp.get("foreach") is not False)

    def _vjp(self, hp: dict[str, Any], params: list[Tensor], grads: list[Tensor],
             states: list[dict[str, Any]], lrs: list[Any], names: frozenset[str],
             inner: Inner, *, flat: Flat | None = None) -> dict[str, tuple[list[Tensor], float]]:
        return adam_vjp(params, grads, states, lrs=lrs, beta1=hp["beta1"], beta2=hp["beta2"],
                        eps=hp["eps"], weight_decay=hp["weight_decay"],
                        decoupled=self._decoupled_in(hp), amsgrad=hp["amsgrad"], names=names,
                        inner=inner, flat=flat, foreach=hp.get("foreach") is not False,
                        fused=self.fused_kernels)


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
         record: frozenset[str] = frozenset(), flat: Flat | None = None,
         foreach: bool = False) -> None:
    """One Adam (or AdamW, ``decoupled``) step on each tensor (see :class:`Adam`); ``amsgrad``
    divides by the running maximum of the second moment, ``max_exp_avg_sq``, as torch.

    ``record``: when a beta is learned, the gradient actually used (``hg_grad``) is saved; the
    step size needs nothing beyond the moments, which stay in the state. ``flat``: the same
    tensors as flat vectors (the accelerator's path), used from the second step on; else with
    ``foreach``, one ``torch._foreach_*`` call per operation on numbers (:func:`_adam_foreach`).
    """
    save_grad = "beta1" in record or "beta2" in record
    needs = ("step", "hg_grad") if save_grad else ("step",)
    if flat_ready(flat, lrs, needs) and same_step(states):
        assert flat is not None
        _adam_flat(flat, lr=lrs[0], beta1=beta1, beta2=beta2, eps=eps,
                   weight_decay=weight_decay, decoupled=decoupled, save_grad=save_grad,
                   amsgrad=amsgrad)
        return
    if (foreach and numbers_ready(states, lrs, needs + (("max_exp_avg_sq",) if amsgrad else ()),
                                  beta1, beta2) and same_step(states)):
        _adam_foreach(params, grads, states, lr=lrs[0], beta1=beta1, beta2=beta2, eps=eps,
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


def _adam_foreach(params: list[Tensor], grads: list[Tensor], states: list[dict[str, Any]], *,
                  lr: float, beta1: float, beta2: float, eps: float, weight_decay: float,
                  decoupled: bool, save_grad: bool, amsgrad: bool) -> None:
    """:func:`_adam_tensor` on every tensor at once, one ``torch._foreach_*`` call per
    operation: on the CPU the for-loop's kernels tensor by tensor, so its numbers to the bit."""
    for st in states:
        st["step"] += 1
    t = states[0]["step"]
    m, v = [st["exp_avg"] for st in states], [st["exp_avg_sq"] for st in states]
    if weight_decay != 0:
        if decoupled:
            torch._foreach_mul_(params, 1 - lr * weight_decay)
        else:
            grads = torch._foreach_add(grads, params, alpha=weight_decay)
    if save_grad:
        torch._foreach_copy_([st["hg_grad"] for st in states], grads)
    torch._foreach_lerp_(m, grads, 1 - beta1)
    torch._foreach_mul_(v, beta2)
    torch._foreach_addcmul_(v, grads, grads, value=1 - beta2)
    if amsgrad:
        v = [st["max_exp_avg_sq"] for st in states]
        torch._foreach_maximum_(v, [st["exp_avg_sq"] for st in states])
    denom = torch._foreach_sqrt(v)
    torch._foreach_div_(denom, bias_correction(beta2, t) ** 0.5)
    torch._foreach_add_(denom, eps)
    torch._foreach_addcdiv_(params, m, denom, value=-fdiv(lr, bias_correction(beta1, t)))


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
