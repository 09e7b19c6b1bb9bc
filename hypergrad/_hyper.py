r"""The shared hypergradient mechanism: how a level learns from the next loss, and how levels stack.

Every optimizer in ``hypergrad`` is a :class:`Tower`: a ``torch.optim.Optimizer`` whose learned
hyperparameters may be trained by another ``Tower`` above it (``hyper``), itself trained by the
next one, and so on; the top level's hyperparameters are fixed.

How a hypergradient is computed (no second-order derivatives, no ``create_graph=True``):
level :math:`k` moves its parameters :math:`P_k` by :math:`\Delta_k(H_k)`, a function of its raw
hyperparameters :math:`H_k` (level 0's parameters are the model's weights; level :math:`k \ge 1`'s
are the raw hyperparameters :math:`H_{k-1}` of the level below). The next loss depends on
:math:`H_k` only through that last update, so its gradient is a vector-Jacobian product:

.. math::
    G_0 = \nabla_{W} L_{t+1}, \qquad
    G_{k+1} = \frac{\partial L_{t+1}}{\partial H_k}
            = \Bigl(\frac{\partial \Delta_k}{\partial H_k}\Bigr)^{\!\top} G_k .

Each level keeps, per tensor, what it needs to form :math:`\partial\Delta_k/\partial H_k` at
the next step (its optimizer state, plus a trace such as the last direction), and each optimizer
family writes the products with its Jacobian columns in closed form (its ``_vjp``). One
``step()`` then runs:

1. bottom-up: :math:`G_1, G_2, \dots` from the new weight gradients and the saved traces (zeros
   at the first step: nothing has been updated yet);
2. top-down: the top level updates :math:`H_{h-1}` with :math:`G_h`, the level below updates
   :math:`H_{h-2}` with the new values, ..., and level 0 updates the weights in place.

This is the order of the reference implementation (Chandra et al.'s ``gdtuo``), whose numbers it
reproduces: every level steps at every step, the first with zero hypergradients.

Raw values and their parametrisations follow the paper: :math:`\beta_1, \beta_2, \gamma` through
:math:`(\tanh x + 1)/2`, RMSProp's step size stored as its square root.

Schedulers and learned values (the decision). At level 0, where schedulers and users write,
``group["lr"]`` is *the schedule*: the tower never overwrites it, and the step size in use is

.. math::
    \alpha_{\text{used}} = s\,\alpha_{\text{learned}}, \qquad
    s = \texttt{group["lr"]} / \texttt{group["lr\_base"]}

with ``lr_base`` the group's ``lr`` when the tower was built (or loaded from a ``torch.optim``
state dict). So any scheduler acts on a tower exactly as on ``torch.optim``, as a factor on the
step size, and the level above goes on learning :math:`\alpha_{\text{learned}}` through it (its
hypergradient is :math:`s` times that of :math:`\alpha_{\text{used}}`): chainable ones
(StepLR, CosineAnnealingLR, LinearLR, ReduceLROnPlateau multiply ``group["lr"]``) and absolute
ones (LambdaLR, OneCycleLR, SequentialLR at its milestones, timm's and Hugging Face's schedules
write ``initial_lr * factor``) alike, with no guess at which kind wrote; a constant schedule (the
HF ``Trainer``'s default for ``optimizers=(tower, None)``) changes nothing. Without a scheduler
:math:`s = 1` and the numbers are the reference's. ``hyperparameters()`` reports the learned
values, ``step_sizes()`` the steps in use. A tower that does not learn its step size (height 0,
or ``learn=`` without ``lr``) uses ``group["lr"]`` as ``torch.optim`` does.

The other learned values (betas, momentum, gamma; and every value above level 0) live in
``param_groups`` as the values in use (floats on the CPU, 0-d tensors on an accelerator); a value
written there from outside (replaced, or filled in place) replaces the learned one at the next
``step()``; one overwritten before every step (OneCycleLR's ``cycle_momentum``) is warned about
once, since nothing of it is then learned. ``state_dict()`` saves the param groups as they are
(writes since the last step included) and ``load_state_dict()`` takes them up as given.
"""

from __future__ import annotations

import math
import operator
import warnings
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any, ClassVar

import torch
from torch import Tensor

from hypergrad._errors import HypergradError, UnsupportedError
from hypergrad._graph import UpperGraph, step_upper

SWITCHES = ("foreach", "fused", "capturable", "differentiable")
"""``torch.optim``'s implementation switches: accepted with torch's meaning where the tower can
honour it, never part of a spec."""

LR_PER = ("optimizer", "group", "tensor")
"""Where a learned step size lives: one for the optimizer, one per param group, one per tensor.
The default (``lr_per=None``) is one for the optimizer when every param group starts at the same
value, else one per group (per learned hyperparameter: each is shared while the groups agree)."""


# ---------------------------------------------------------------------------------------------
# Parametrisations: value = forward(raw)


@dataclass(frozen=True)
class Parametrisation:
    """How a learned hyperparameter is kept valid: ``value = f(raw)``.

    Attributes:
        name: a short label.
        forward: raw tensor -> (value, d value / d raw), elementwise.
        number: the same for one Python float (the CPU path).
        inverse: value -> raw (tensors).
    """

    name: str
    forward: Callable[[Tensor], tuple[Tensor, Tensor]]
    number: Callable[[float], tuple[float, float]]
    inverse: Callable[[Tensor], Tensor]


def _unit(x: Tensor) -> tuple[Tensor, Tensor]:
    t = x.tanh()
    return (t + 1.0) / 2.0, (1.0 - t * t) / 2.0  # gdtuo's clamp, and its autograd derivative


def _unit_number(x: float) -> tuple[float, float]:
    t = math.tanh(x)
    return (t + 1.0) / 2.0, (1.0 - t * t) / 2.0


def _unit_inverse(y: Tensor) -> Tensor:
    z = y * 2.0 - 1.0
    return ((1.0 + z) / (1.0 - z)).log() / 2.0  # gdtuo's unclamp, operation for operation


def _identity(x: Tensor) -> tuple[Tensor, Tensor]:
    return x.clone(), torch.ones_like(x)


def _identity_number(x: float) -> tuple[float, float]:
    return x, 1.0


def _square(x: Any) -> tuple[Any, Any]:
    return x * x, x * 2.0


IDENTITY = Parametrisation("identity", _identity, _identity_number, torch.clone)
SQUARE = Parametrisation("square", _square, _square, torch.sqrt)
"""The value is the square of the raw number (the paper's RMSProp step size)."""
UNIT = Parametrisation("unit", _unit, _unit_number, _unit_inverse)
"""The value is ``(tanh(raw) + 1) / 2``, always in (0, 1) (the paper's betas and gamma)."""


# ---------------------------------------------------------------------------------------------
# Small arithmetic shared by the kernels: hyperparameters are Python floats (fixed) or tensors
# (learned), and the float path must be torch.optim's operation for operation.


def axmy_(y: Tensor, x: Tensor, a: float | Tensor) -> Tensor:
    """``y -= a * x`` in place (torch's ``param.add_(d, alpha=-lr)`` for a number)."""
    if isinstance(a, Tensor):
        return y.addcmul_(x, a, value=-1)
    return y.add_(x, alpha=-a)


def fdiv(a: float | Tensor, b: float | Tensor) -> float | Tensor:
    """``a / b`` with IEEE semantics for Python numbers: inf or nan where ``b == 0``.

    On the CPU learned values are Python floats, on the GPU 0-d tensors. A hyperparameter pushed
    onto its boundary (a learned beta rounded to exactly 1) must give the same result on both: a
    non-finite update, which a training loop reports as divergence, not a ``ZeroDivisionError``.
    """
    if isinstance(a, Tensor) or isinstance(b, Tensor) or b != 0:
        return a / b
    if a == 0 or math.isnan(a):
        return math.nan
    return math.copysign(math.inf, a) * math.copysign(1.0, b)


_SMALL = 4096


def dot(a: Tensor, b: Tensor) -> Tensor:
    """The 0-d inner product of two same-shaped tensors.

    Small CUDA tensors (the levels above 0 hold a few numbers) are multiplied and summed rather
    than handed to cuBLAS: those levels are captured as a CUDA graph on a side stream
    (:mod:`hypergrad._graph`), and cuBLAS would keep a workspace of 32 MiB for that stream.
    """
    if a.is_cuda and a.numel() <= _SMALL:
        return torch.mul(a, b).sum()
    if a.dim() == 1:
        return torch.dot(a, b)
    if a.is_contiguous() and b.is_contiguous():
        return torch.dot(a.view(-1), b.view(-1))
    return (a * b).sum()


def dot_total(a: Tensor, b: Tensor) -> Tensor:
    """``dot``, passed when the caller adds up the contributions of all tensors (every tensor
    shares the learned value): a family may then return one total (from :class:`Flat`)."""
    return dot(a, b)


def flat(xs: list[Tensor]) -> Tensor:
    """The tensors as one 1-d tensor (a copy, unless there is only one)."""
    if len(xs) == 1:
        return xs[0].reshape(-1)
    return _flatten(xs)


def _cat_flat(xs: list[Tensor]) -> Tensor:
    return torch.cat([x.reshape(-1) for x in xs])


def shared_value(lrs: list[Any]) -> bool:
    """Whether every tensor uses the same value, a number or a 0-d tensor (not one learned per
    element): the flat path needs that."""
    first = lrs[0]
    if isinstance(first, Tensor) and first.dim() != 0:
        return False
    return all(x is first for x in lrs)


def same_step(states: list[dict[str, Any]]) -> bool:
    """Whether every tensor's step counter agrees (one bias correction serves them all)."""
    if len(states) == 1:  # (above level 0 the counter is a device tensor: never compare it)
        return True
    first = states[0]["step"]
    return all(st["step"] == first for st in states)


# torch's own flatten and unflatten (DDP's bucketing uses them): one cat, and the per-tensor views
# made in C++ rather than one Python call each, which is most of the cost for a model of many
# tensors.
_flatten = getattr(getattr(torch._C, "_nn", None), "flatten_dense_tensors", _cat_flat)
_unflatten = getattr(getattr(torch._C, "_nn", None), "unflatten_dense_tensors", None)


def unflatten(flat: Tensor, like: list[Tensor]) -> list[Tensor]:
    """Views of ``flat`` shaped as ``like`` (the inverse of :func:`flat`, without a copy)."""
    if _unflatten is not None:
        return list(_unflatten(flat, like))
    out, start = [], 0
    for t in like:
        out.append(flat[start:start + t.numel()].view_as(t))
        start += t.numel()
    return out


@dataclass
class FlatStore:
    """What a group's :class:`Flat` keeps across steps: per state key, the flat buffer and the
    views handed to the states; and 1-d views of the parameters with their sizes, to add a flat
    update through (cheaper than shaping views of each new update)."""

    buffers: dict[str, tuple[Tensor, list[Tensor]]] = field(default_factory=dict)
    pointers: list[int] = field(default_factory=list)
    uniform: bool = False  # one dtype and one device: the group can be flat
    param_views: list[Tensor] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)

    def fits(self, params: list[Tensor]) -> bool:
        """Whether ``params`` can be seen as one flat vector (checked again only when their
        storage changes: ``p.data`` replaced, ``model.half()``)."""
        pointers = [p.data_ptr() for p in params]
        if pointers != self.pointers:
            first = params[0]
            self.pointers = pointers
            self.uniform = all(p.dtype == first.dtype and p.device == first.device
                               for p in params)
            contiguous = all(p.is_contiguous() for p in params)
            # Views of the detached tensors: a view of a parameter made under no_grad and
            # written in place is refused by torch.compile (and by deepcopy's autograd).
            self.param_views = [p.detach().view(-1) for p in params] if contiguous else []
            self.sizes = [p.numel() for p in params]
        return self.uniform


class Flat:
    """One param group seen as flat vectors, for one step: the accelerator's path.

    On a GPU one kernel launch costs more than the arithmetic on a small tensor, and even a
    ``_foreach`` kernel allocates its outputs one tensor at a time. So the state a family keeps
    per tensor lives in one flat buffer per key, each tensor's entry a view of it (``state`` and
    ``state_dict()`` look as before), and the gradients are flattened once per step: each
    elementwise operation of an update or a hypergradient is then one kernel on one tensor.

    The buffers outlive the step (the tower keeps them per group, in a :class:`FlatStore`); a
    state whose tensors are no longer the views handed out (after ``load_state_dict``) is
    copied into new ones when first asked for.
    """

    def __init__(self, params: list[Tensor], grads: list[Tensor], states: list[dict[str, Any]],
                 store: FlatStore) -> None:
        self.params, self.grads, self.states = params, grads, states
        self._store = store
        self._buffers = store.buffers
        self._grad: Tensor | None = None

    @property
    def grad(self) -> Tensor:
        """The gradients as one vector (flattened at the first use in a step)."""
        if self._grad is None:
            self._grad = flat(self.grads)
        return self._grad

    def param(self) -> Tensor:
        """The parameters as one vector: a copy, to read (weight decay)."""
        return flat(self.params)

    def has(self, keys: Iterable[str]) -> bool:
        """Whether every tensor's state holds ``keys`` (not the first step)."""
        return all(all(map(operator.contains, self.states, repeat(key, len(self.states))))
                   for key in keys)

    def buf(self, key: str) -> Tensor:
        """State ``key`` of every tensor as one vector, written through to the states."""
        views = [st[key] for st in self.states]
        kept = self._buffers.get(key)
        if kept is not None and len(kept[1]) == len(views) and all(
                map(operator.is_, kept[1], views)):
            return kept[0]
        if len(views) == 1 and views[0].is_contiguous():
            vector = views[0].view(-1)
        else:
            vector = _flatten(views)  # a copy; the states then hold views of it
            views = unflatten(vector, views)
            for st, view in zip(self.states, views, strict=True):
                st[key] = view
        self._buffers[key] = (vector, views)
        return vector

    def state(self) -> dict[str, Any]:
        """One state dict for the whole group, for a family's per-tensor kernel to run once on
        flat vectors: each tensor-valued key as its flat buffer, and the shared step count."""
        first = self.states[0]
        out: dict[str, Any] = {key: self.buf(key) for key, value in first.items()
                               if isinstance(value, Tensor)}
        if "step" in first:
            out["step"] = first["step"]
        return out

    def finish(self, state: dict[str, Any], params: Tensor) -> None:
        """After a per-tensor kernel ran on :meth:`state` and a flat copy of the parameters
        (:meth:`param`): the step count back into every tensor's state, the new values into
        the parameters."""
        if "step" in state:
            for st in self.states:
                st["step"] = state["step"]
        if len(self.params) == 1:
            self.params[0].copy_(params.view_as(self.params[0]))
        elif self._store.param_views:
            torch._foreach_copy_(self._store.param_views,
                                 list(params.split_with_sizes(self._store.sizes)))
        else:
            torch._foreach_copy_(self.params, unflatten(params, self.params))

    def apply(self, kernel: Callable[..., None], **kwargs: Any) -> None:
        """Run a family's per-tensor ``kernel(p, g, state, **kwargs)`` once on the whole group:
        on a flat copy of the parameters, the flat gradient and :meth:`state`, then
        :meth:`finish`."""
        state, p = self.state(), self.param()
        kernel(p, self.grad, state, **kwargs)
        self.finish(state, p)

    def swap(self, a: str, b: str) -> None:
        """Exchange states ``a`` and ``b`` of every tensor (both made flat first)."""
        self.buf(a), self.buf(b)
        (va, views_a), (vb, views_b) = self._buffers[a], self._buffers[b]
        self._buffers[a], self._buffers[b] = (vb, views_b), (va, views_a)
        for st, x, y in zip(self.states, views_a, views_b, strict=True):
            st[a], st[b] = y, x

    def sub_(self, update: Tensor, scale: float | Tensor = 1.0) -> None:
        """``params -= scale * update``, in place, from one vector (a number ``scale`` folds
        into the same kernel)."""
        if isinstance(scale, Tensor):
            update, scale = update * scale, 1.0
        if len(self.params) == 1:
            self.params[0].add_(update.view_as(self.params[0]), alpha=-scale)
            return
        store = self._store  # its views are of these params: the tower checked them this step
        if store.param_views:  # one split of the update: its pieces are 1-d, as the views
            torch._foreach_add_(store.param_views, update.split_with_sizes(store.sizes),
                                alpha=-scale)
        else:
            torch._foreach_add_(self.params, unflatten(update, self.params), alpha=-scale)


def flat_ready(flat: Flat | None, lrs: list[Any], needs: Iterable[str]) -> bool:
    """Whether a family may update a group on the flat path: the tower offers it (an
    accelerator, every tensor with a gradient), one step size serves every tensor, and every
    tensor's state already holds ``needs`` (not the first step)."""
    return flat is not None and shared_value(lrs) and flat.has(needs)


def keep(state: dict[str, Any], key: str, value: Tensor) -> None:
    """Save a copy of ``value`` in ``state[key]``, into the buffer already there after the first
    step (what a hypergradient needs at the next step, when ``value`` may be gone)."""
    saved = state.get(key)
    if saved is None:
        state[key] = value.detach().clone()
    else:
        saved.copy_(value)


def bias_correction(beta: float | Tensor, t: int | Tensor) -> float | Tensor:
    r""":math:`1 - \beta^t`. A fixed ``beta`` with a step counter on the device (the levels above
    0 on the tensor path) takes :math:`-\mathrm{expm1}(t \ln\beta)`: in float32,
    ``1 - beta**t`` would lose the digits that rounding ``beta`` to float32 costs (0.999 is
    off by 1.3e-5 relative in ``1 - beta``)."""
    if isinstance(t, Tensor) and not isinstance(beta, Tensor):
        if beta == 0:
            return 1.0
        return torch.expm1(t * math.log(beta)).neg_()
    return 1 - beta**t


def as_dtype(x: float | Tensor, like: Tensor) -> float | Tensor:
    """A learned 0-d value in the dtype of the tensors it scales (the raw vector may be wider)."""
    return x.to(like.dtype) if isinstance(x, Tensor) and x.dtype != like.dtype else x


def dot_number(a: Tensor, b: Tensor) -> float:
    """The inner product as a Python float (the CPU path: reading it costs nothing there)."""
    return dot(a, b).item()


def times(a: Tensor, b: Tensor) -> Tensor:
    """The elementwise product: the "inner product" of a value learned per element."""
    return a * b


Inner = Callable[[Tensor, Tensor], Any]
"""``dot`` (a 0-d tensor), ``dot_number`` (a float, on the CPU) or ``times`` (elementwise, for a
value learned per element). The families combine what it returns with operators only."""


def as_number(value: Any, name: str, owner: str) -> float:
    """A hyperparameter given as an int/float (or a 0-d tensor), as a float; bools are refused."""
    if isinstance(value, Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise HypergradError(f"{owner}: {name} must be a number, but got {name}={value!r}")
    return float(value)


def check(ok: bool, owner: str, name: str, rule: str, value: Any) -> None:
    """Raise the standard error when ``ok`` is false: ``adam: lr must be > 0, but got lr=-1.0``."""
    if not ok:
        raise HypergradError(f"{owner}: {name} must be {rule}, but got {name}={value!r}")


def positive(value: float) -> bool:
    return math.isfinite(value) and value > 0.0


def non_negative(value: float) -> bool:
    return math.isfinite(value) and value >= 0.0


# ---------------------------------------------------------------------------------------------
# The base class


@dataclass(frozen=True)
class _Slot:
    """Where one learned hyperparameter lives in its level's raw vector: ``raw[start:stop]``."""

    name: str
    start: int
    stop: int
    per: str  # "optimizer" | "group" | "tensor"
    param: Parametrisation
    groups: tuple[int, ...] = ()
    """Not per tensor: the offset from ``start`` of each param group's value (all 0 for one
    value for the optimizer; a group added after construction gets its own)."""


class Tower(torch.optim.Optimizer):
    """A ``torch.optim.Optimizer`` whose learned hyperparameters another optimizer trains.

    Subclasses (one per optimizer family) give ``name``, ``learnable``, argument validation, the
    update of a param group (``_step_group``) and the Jacobian columns of that update with respect
    to the learned hyperparameters, applied to the new gradient (``_vjp``). Everything else is
    here: the raw hyperparameter vector, the stacking of levels, ``step()``, ``state_dict()``,
    ``hyperparameters()``.

    Constructed without ``params``, an optimizer is *unbound*: a description of a level, to be
    passed as ``hyper=`` (``hypergrad.SGD(lr=1e-5)``). Bound levels above level 0 are built from
    it and train the raw hyperparameters of the level below; only level 0's ``step()`` is called.

    Attributes:
        hyper: the bound optimizer one level up, or ``None`` at the top.
    """

    name: ClassVar[str] = ""
    learnable: ClassVar[dict[str, Parametrisation]] = {}
    """The hyperparameters this family can learn, in canonical order, with their parametrisation."""
    _ctor_aliases: ClassVar[tuple[str, ...]] = ()
    """Constructor arguments that are another name of one in the spec (RMSprop's ``gamma``)."""
    spec_aliases: ClassVar[dict[str, str]] = {}
    """Other names a spec accepts for an argument: ``{alias: name}`` (RMSprop's ``alpha``)."""
    cpu_floats: ClassVar[bool] = True
    """On the CPU, hand the kernels Python floats (faster); ``False`` takes the accelerator's
    tensor path everywhere (the tests use it to check that path on machines without one)."""
    cuda_graphs: ClassVar[bool] = True
    """On CUDA, replay the levels above 0 as one CUDA graph once they are warm
    (:mod:`hypergrad._graph`); ``False`` runs them eagerly, kernel by kernel."""

    # -- construction ------------------------------------------------------------------------

    def __init__(
        self,
        params: Iterable[Any] | None,
        defaults: dict[str, Any],
        *,
        learn: str | Iterable[str] | None = None,
        lr_per: str | None = None,
        hyper: Tower | str | None = None,
    ) -> None:
        self._level: int = self.__dict__.get("_level", 0)
        if isinstance(params, (int, float)) and not isinstance(params, bool):
            raise HypergradError(
                f"{self.name}: the first argument is params, but got the number {params!r}; "
                f"write lr={params!r} (unbound: {type(self).__name__}(lr={params!r}))"
            )
        if lr_per is not None and lr_per not in LR_PER:
            raise HypergradError(
                f"{self.name}: lr_per must be one of {', '.join(LR_PER)}, but got lr_per={lr_per!r}"
            )
        self._learn_arg = learn
        self._learn = self._resolve_learn(learn, defaults)
        self._lr_per = lr_per
        self._hyper_spec = _as_unbound(hyper)
        self._config = self._validated(dict(defaults), self._learned())
        self.hyper: Tower | None = None
        self._raw: Tensor | None = None
        self._flat_stores: dict[int, FlatStore] = {}
        self._flats: dict[int, Flat] = {}  # this step's, per group: gradients flattened once
        self._state_lists: dict[int, tuple[Any, list[Tensor], list[dict[str, Any]]]] = {}
        self._slots: dict[str, _Slot] = {}
        self._upper: UpperGraph | None = None  # level 0 on CUDA: the levels above, as a graph
        self._lr_scaled = False  # level 0 learns lr: group["lr"] is the schedule (see _scale_of)
        self._scales: list[Any] = []  # per group, the schedule's scale at the last update
        self._streaks: dict[tuple[int, str], tuple[int, int]] = {}  # outside writes, step after
        self._syncs = 0  # step
        self._warned_overwrite = False
        self._bound = params is not None
        if params is None:
            return
        self._constructing = True
        super().__init__(params, dict(self._config))
        self._constructing = False
        if self._hyper_spec is not None:
            self._attach_hyper()

    def _bind(self, params: list[Tensor], level: int) -> Tower:
        """A bound copy of this (unbound) level over ``params``, at tower level ``level``."""
        cls = type(self)
        obj = cls.__new__(cls)
        obj._level = level
        obj.__init__(params, **self._config, learn=self._learn_arg, lr_per=self._lr_per,
                     hyper=self._hyper_spec)
        return obj

    @classmethod
    def _default_learn(cls, config: dict[str, Any]) -> tuple[str, ...]:
        """What is learned when ``learn`` is not given (the paper's choice)."""
        return tuple(cls.learnable)

    @classmethod
    def _resolve_learn(cls, learn: Any, config: dict[str, Any]) -> tuple[str, ...]:
        if learn is None:
            return cls._default_learn(config)
        names = [learn] if isinstance(learn, str) else list(learn)
        valid = ", ".join(cls.learnable)
        for n in names:
            if n not in cls.learnable:
                raise HypergradError(
                    f"{cls.name}: cannot learn {n!r}; learnable hyperparameters: {valid}"
                )
        if not names:
            raise HypergradError(
                f"{cls.name}: learn is empty; name at least one of {valid} (learn=lr)"
            )
        return tuple(n for n in cls.learnable if n in names)

    def _validate(self, config: dict[str, Any], learned: frozenset[str]) -> dict[str, Any]:
        """Check the arguments and return them normalised (floats); subclasses extend."""
        raise NotImplementedError

    def _validated(self, config: dict[str, Any], learned: frozenset[str]) -> dict[str, Any]:
        """The family's arguments (:meth:`_validate`) and torch's switches, checked."""
        out = self._validate(config, learned)
        o = self.name
        if "maximize" in config:
            check(isinstance(config["maximize"], bool), o, "maximize", "true or false",
                  config["maximize"])
            out["maximize"] = config["maximize"]
        if "foreach" in config:
            foreach = config["foreach"]
            check(foreach is None or isinstance(foreach, bool), o, "foreach",
                  "None, True or False", foreach)
            out["foreach"] = foreach
        if "fused" in config:
            fused = config["fused"]
            if fused:
                raise UnsupportedError(
                    f"{o}: fused=True is not supported: hypergrad has no fused kernels; use "
                    "fused=None or False (on an accelerator each param group already steps as "
                    "one flat vector, a few kernels per step)")
            check(fused is None or fused is False, o, "fused", "None or False", fused)
            out["fused"] = fused
        for name, why in (("capturable", "the tower replays its levels above 0 as a CUDA graph "
                           "itself (Tower.cuda_graphs); capture level 0 with torch.compile"),
                          ("differentiable", "a tower computes its hypergradients in closed "
                           "form; what learns the hyperparameters is the level above (hyper=)")):
            if name in config:
                value = config[name]
                if value:
                    raise UnsupportedError(
                        f"{o}: {name}=True is not supported ({why}); use {name}=False")
                check(value is False, o, name, "False", value)
                out[name] = False
        return out

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """``torch.optim``'s, at every height: after construction, the new group's learned
        hyperparameters are its own (they start from its values, ``lr`` and the others missing
        from it taken from the constructor's, as in torch), and the level above learns them
        from a state of zeros beside the others' (its step count is the one it has).

        Raises:
            HypergradError: a level above learns one value per hyperparameter of the level
                below (``lr_per="tensor"`` above level 0), whose layout cannot grow.
        """
        grow = self._raw is not None and not getattr(self, "_constructing", False)
        if grow:
            for level in self.levels[1:]:
                if any(s.per == "tensor" for s in level._slots.values()):
                    raise HypergradError(
                        f"{self.name}: add_param_group after construction under a level that "
                        "learns one value per hyperparameter (lr_per='tensor' above level 0) "
                        "is not supported; pass every param group to the constructor, or use "
                        "lr_per='group' there")
            self._sync_external()  # writes since the last step, before the layout changes
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        given = {k: group[k] for k in self._config}
        group.update(self._validated(given, self._learned()))
        if grow:
            self._grow()

    def _grow(self) -> None:
        """The raw vector and the level above's state after ``add_param_group``: every slot
        gets the new group's own values at its end (its tensors', per tensor), the other
        values and their state in the level above where they were (remapped)."""
        raw = self._raw
        assert raw is not None and self.hyper is not None
        group = self.param_groups[-1]
        if self._lr_scaled:
            group["lr_base"] = as_number(group["lr"], "lr", self.name)
        index: list[int] = []  # new position -> old one (-1: the new group's)
        pieces: list[Tensor] = []
        slots: dict[str, _Slot] = {}
        start = 0
        for s in self._slot_list:
            old = list(range(s.start, s.stop))
            n_new = self._tensor_count(group) if s.per == "tensor" else 1
            value = as_number(group["lr"], "lr", self.name) if (
                s.name == "lr" and self._lr_scaled) else as_number(
                    self._get(group, s.name), s.name, self.name)
            fresh = s.param.inverse(torch.full((n_new,), value, dtype=raw.dtype,
                                               device=raw.device))
            pieces += [raw[s.start:s.stop], fresh]
            index += old + [-1] * n_new
            width = len(old) + n_new
            groups = () if s.per == "tensor" else (*s.groups, len(old))
            slots[s.name] = _Slot(s.name, start, start + width, s.per, s.param, groups)
            start += width
        self._tensor_offsets.append(self._tensor_offsets[-1]
                                    + self._tensor_count(self.param_groups[-2]))
        new_raw = torch.cat(pieces).detach()
        self._slots, self._slot_list = slots, list(slots.values())
        self._plan = self._parametrisation_plan(new_raw)
        self._scales.append(1.0)
        self._raw = new_raw
        self._values = None
        self.hyper._rebind(raw, new_raw, torch.tensor(index, device=raw.device))
        self._refresh()

    def _rebind(self, old: Tensor, new: Tensor, index: Tensor) -> None:
        """This level (above 0) now trains ``new`` instead of ``old``; ``index[j]`` is the
        element of ``old`` that element ``j`` of ``new`` was (-1: a new one): the state follows,
        zeros for the new elements."""
        group = self.param_groups[0]
        group["params"] = [new if p is old else p for p in group["params"]]
        state = self.state.pop(old, None)
        if state is not None:
            kept = index >= 0
            for key, value in list(state.items()):
                if isinstance(value, Tensor) and value.shape == old.shape:
                    moved = value.new_zeros(new.shape)
                    moved[kept] = value[index[kept]]
                    state[key] = moved
            self.state[new] = state
        self._flat_stores.clear()
        self._state_lists.clear()
        if self._upper is not None:
            self._upper.drop()

    def _learned(self) -> frozenset[str]:
        """What a level above learns (nothing at the top, whatever ``learn`` says)."""
        return frozenset(self._learn) if self._hyper_spec is not None else frozenset()

    # -- the learned hyperparameters ---------------------------------------------------------

    def _resolved_lr_per(self) -> str:
        """``lr_per`` as given, or by default ``"optimizer"`` while the param groups start at
        the same value of every learned hyperparameter, ``"group"`` when they do not."""
        if self._lr_per is not None:
            return self._lr_per
        for name in self._learn:
            if len({as_number(self._get(g, name), name, self.name)
                    for g in self.param_groups}) > 1:
                return "group"
        return "optimizer"

    def _scope(self, name: str, per: str) -> str:
        """Where learned ``name`` lives under ``lr_per=per``: ``lr`` where it says, the others
        per group unless it is ``"optimizer"``."""
        if name == "lr":
            return per
        return "optimizer" if per == "optimizer" else "group"

    def _tensor_count(self, group: dict[str, Any]) -> int:
        """Slots of a per-tensor step size in a group: its tensors at level 0, else the elements
        of the one raw vector it trains (each a hyperparameter of the level below)."""
        if self._level == 0:
            return len(group["params"])
        return group["params"][0].numel()

    def _get(self, group: dict[str, Any], name: str) -> Any:
        """The value of hyperparameter ``name`` as the group holds it (families may remap)."""
        return group[name]

    def _put(self, group: dict[str, Any], name: str, value: Any) -> None:
        group[name] = value

    def _hp_names(self) -> tuple[str, ...]:
        """The names the family's kernels read from ``hp`` (``_get`` maps them to the group)."""
        return tuple(self._config)

    def _attach_hyper(self) -> None:
        """Build the raw vector of the learned hyperparameters and bind the level above to it."""
        first = next(p for g in self.param_groups for p in g["params"])
        dtype = first.dtype.to_real()  # (a complex tensor steps as its real view)
        dtype = dtype if dtype in (torch.float32, torch.float64) else torch.float32
        offsets, start = [], 0
        for group in self.param_groups:
            offsets.append(start)
            start += self._tensor_count(group)
        self._tensor_offsets = offsets
        values: list[Tensor] = []
        start = 0
        lr_per = self._resolved_lr_per()
        for name in self._learn:
            given = [as_number(self._get(g, name), name, self.name) for g in self.param_groups]
            per = self._scope(name, lr_per)
            if per == "optimizer":
                if len(set(given)) > 1:
                    raise HypergradError(
                        f"{self.name}: {name} is learned once for the optimizer (lr_per="
                        f"'optimizer'), but the param groups start at different values {given}; "
                        "give them one value or use lr_per='group'"
                    )
                vals = given[:1]
            elif per == "group":
                vals = given
            else:
                vals = [v for g, v in zip(self.param_groups, given, strict=True)
                        for _ in range(self._tensor_count(g))]
            n = len(vals)
            groups = (() if per == "tensor" else (0,) * len(self.param_groups) if per ==
                      "optimizer" else tuple(range(n)))
            self._slots[name] = _Slot(name, start, start + n, per, self.learnable[name], groups)
            values.append(torch.tensor(vals, dtype=dtype, device=first.device))
            start += n
        raw = torch.cat([self._slots[n].param.inverse(v) for n, v in zip(self._learn, values,
                                                                          strict=True)])
        self._raw = raw
        self._slot_list = list(self._slots.values())
        self._names = frozenset(self._slots)
        self._elementwise = self._level > 0 and any(s.per == "tensor" for s in self._slot_list)
        self._plan = self._parametrisation_plan(raw)
        self._lr_scaled = self._level == 0 and "lr" in self._slots
        if self._lr_scaled:
            for group in self.param_groups:
                group["lr_base"] = as_number(group["lr"], "lr", self.name)
        self._scales = [1.0] * len(self.param_groups)
        assert self._hyper_spec is not None
        self.hyper = self._hyper_spec._bind([raw], self._level + 1)
        self._refresh()

    def _refresh(self) -> None:
        """Recompute the learned values from the raw vector and write them into param_groups.

        On the CPU the values are Python floats (in param_groups as ``torch.optim`` keeps its
        own; a handful of tensor operations per level would cost more than the arithmetic).
        On an accelerator they are tensors (0-d views), so that ``step()`` never waits for the
        device. A value per tensor is a 1-d tensor in param_groups either way.
        """
        raw = self._raw
        assert raw is not None
        slots = list(self._slots.values())
        cpu = not self._tensor_path
        if cpu:
            raws = raw.tolist()
            pairs = [s.param.number(x) for s in slots for x in raws[s.start:s.stop]]
            self._numbers: list[float] | None = [v for v, _ in pairs]
            if raw.dtype == torch.float32:  # the values a float32 tensor would hold
                self._numbers = array("f", self._numbers).tolist()
            self._dval: Any = [d for _, d in pairs]
            self._values: Tensor | None = None
        else:
            values, dval = self._forward(raw)
            kept = getattr(self, "_values", None)
            if self._level and kept is not None and kept.shape == values.shape:
                # Above level 0 the values keep their storage: a CUDA graph of these levels
                # reads them at the start of a step and writes them at its end.
                kept.copy_(values)
                if dval is not self._dval:
                    self._dval.copy_(dval)
            else:
                self._values, self._dval = values, dval
            self._numbers = None
        self._used: list[dict[str, Any]] = []
        self._written: list[dict[str, tuple[Any, int]]] = []
        shared: dict[tuple[str, int], Any] = {}
        for gi, group in enumerate(self.param_groups):
            used: dict[str, Any] = {}
            for s in slots:
                a, b = self._slot_range(s, gi, group)
                value = shared.get((s.name, a))
                if value is None:
                    if s.per != "tensor":
                        value = self._numbers[a] if cpu else self._values[a]  # type: ignore
                    elif cpu and self._level == 0:
                        value = torch.tensor(self._numbers[a:b], dtype=raw.dtype)  # type: ignore
                    elif cpu:
                        value = s.param.forward(raw[s.start:s.stop])[0]
                    else:
                        value = self._values[a:b]  # type: ignore[index]
                    shared[s.name, a] = value
                if not (self._lr_scaled and s.name == "lr"):  # level 0's lr: the schedule's
                    self._put(group, s.name, value)
                if cpu and s.per == "tensor" and self._level == 0:
                    used[s.name] = self._numbers[a:b]  # type: ignore[index]
                else:
                    used[s.name] = value
            self._used.append(used)
            self._written.append({n: (self._get(group, n), getattr(self._get(group, n),
                                                                   "_version", -1))
                                  for n in used if not (self._lr_scaled and n == "lr")})

    def _parametrisation_plan(self, raw: Tensor) -> tuple[Tensor, list[Any]]:
        """For :meth:`_forward`: the constant derivative of identity slots (ones), and each
        other parametrisation with the mask of its slots (``None``: it covers every slot)."""
        kinds = list(dict.fromkeys(s.param for s in self._slot_list if s.param is not IDENTITY))
        plan = []
        for param in kinds:
            mask = torch.zeros(raw.shape, dtype=torch.bool, device=raw.device)
            for s in self._slot_list:
                if s.param is param:
                    mask[s.start:s.stop] = True
            plan.append((param, None if bool(mask.all()) else mask))
        return torch.ones_like(raw), plan

    def _forward(self, raw: Tensor) -> tuple[Tensor, Tensor]:
        """Values and derivatives of the whole raw vector (the tensor path) in a few kernels:
        each parametrisation present is applied to all of it once and merged by its mask,
        rather than a kernel per slot and a concatenation."""
        ones, plan = self._plan
        if not plan:  # every slot is the identity
            return raw.clone(), ones
        values, dval = raw, ones
        for param, mask in plan:
            v, d = param.forward(raw)
            if mask is None:
                values, dval = v, d
            else:
                values, dval = torch.where(mask, v, values), torch.where(mask, d, dval)
        return values, dval

    def _slot_range(self, s: _Slot, gi: int, group: dict[str, Any]) -> tuple[int, int]:
        """The part of the raw vector that group ``gi`` reads for slot ``s``."""
        if s.per == "tensor" and self._level == 0:
            a = s.start + self._tensor_offsets[gi]
            return a, a + len(group["params"])
        if s.per == "tensor":
            return s.start, s.stop
        a = s.start + s.groups[gi]
        return a, a + 1

    def _sync_external(self) -> bool:
        """Take up learned values written into param_groups from outside since the last step;
        whether there were any."""
        raw = self._raw
        assert raw is not None
        written = False
        self._syncs += 1
        for gi, group in enumerate(self.param_groups):
            for name, (obj, version) in self._written[gi].items():
                current = self._get(group, name)
                if current is obj and getattr(current, "_version", -1) == version:
                    continue
                if (not isinstance(current, Tensor) and not isinstance(obj, Tensor)
                        and current == obj):
                    continue  # the same number again (a scheduler restating it, a copy)
                self._note_overwrite(gi, name)
                s = self._slots[name]
                a, b = self._slot_range(s, gi, group)
                value = torch.as_tensor(current, dtype=raw.dtype, device=raw.device).detach()
                raw[a:b] = s.param.inverse(value.reshape(-1) if value.dim() else value)
                self._written[gi][name] = (current, -2)  # re-read only if written again
                written = True
        return written

    _STREAK = 3
    """Steps in a row with an outside write to a learned value before the warning."""

    def _note_overwrite(self, gi: int, name: str) -> None:
        """Count outside writes to a learned value step after step; warn once per level when
        one is overwritten at every step (nothing it learns survives)."""
        key = (gi, name)
        last, n = self._streaks.get(key, (-1, 0))
        n = n + 1 if last == self._syncs - 1 else 1
        self._streaks[key] = (self._syncs, n)
        if n == self._STREAK and not self._warned_overwrite:
            self._warned_overwrite = True
            warnings.warn(
                f"hypergrad: {self.name} (level {self._level}): the learned {name} of param "
                f"group {gi} was overwritten from outside before each of the last {n} steps "
                "(a scheduler that sets it, such as OneCycleLR or CyclicLR with "
                "cycle_momentum=True?), so the level above learns nothing of it: stop the "
                f"writes (cycle_momentum=False) or leave {name} out of learn=",
                RuntimeWarning, stacklevel=4)

    def _scale_of(self, group: dict[str, Any]) -> Any:
        """The schedule's factor of a group's learned step size: ``group["lr"] /
        group["lr_base"]`` (1 until a scheduler or the user writes ``group["lr"]``)."""
        lr, base = group["lr"], group["lr_base"]
        if lr is base or (not isinstance(lr, Tensor) and lr == base):
            return 1.0
        return lr / base

    def _hparams(self, gi: int, group: dict[str, Any]) -> dict[str, Any]:
        """The hyperparameters of group ``gi`` for an update: learned values used at the last
        refresh, the others as the group holds them."""
        hp = {name: self._get(group, name) for name in self._hp_names()}
        if self._raw is not None:
            hp.update(self._used[gi])
        return hp

    def _lrs(self, hp: dict[str, Any], kept: list[int]) -> list[Any]:
        """The step size of each kept tensor of a group (one per tensor at level 0 when per
        tensor; a vector over the raw hyperparameters above level 0)."""
        lr = hp["lr"]
        if self._lr_per_tensor_at_0:
            return [lr[i] for i in kept]
        return [lr] * len(kept)

    @property
    def _lr_per_tensor_at_0(self) -> bool:
        s = self._slots.get("lr")
        return s is not None and s.per == "tensor" and self._level == 0

    # -- one step ----------------------------------------------------------------------------

    def _with_grads(self, group: dict[str, Any], valid_only: bool,
                    ) -> tuple[list[int], list[Tensor], list[Tensor], list[dict[str, Any]]]:
        """The tensors of a group that have a gradient (and, with ``valid_only``, whose trace
        is from the last step): their indices, the tensors, their gradients (negated with
        ``maximize``, as torch.optim does) and states."""
        kept, params, grads, states = self._with_grads_as_given(group, valid_only)
        if group.get("maximize"):
            grads = [torch.neg(g) for g in grads]
        if any(map(_unusual, grads)):
            params, grads = self._as_real_dense(params, grads, states)
        return kept, params, grads, states

    _sparse_ok: ClassVar[bool] = False
    """Whether ``torch.optim``'s class of this family takes sparse gradients (SGD, Adagrad)."""

    def _as_real_dense(self, params: list[Tensor], grads: list[Tensor],
                       states: list[dict[str, Any]]) -> tuple[list[Tensor], list[Tensor]]:
        """Complex tensors as torch.optim steps them, their real view (``view_as_real``: the
        state then holds real views too, a torch checkpoint's complex state included); sparse
        gradients dense, at height 0 of the families whose torch.optim class takes them (the
        same numbers as torch's sparse kernels, not their memory savings).

        Raises:
            HypergradError: a sparse gradient where that is not supported.
        """
        if any(g.is_sparse for g in grads):
            if not self._sparse_ok or self._raw is not None or self._level:
                why = ("above height 0 (a hypergradient needs the dense last update)"
                       if self._sparse_ok else f"(nor does torch.optim's {type(self).__name__})")
                raise HypergradError(
                    f"{self.name}: sparse gradients are not supported {why}; they are at height "
                    "0 by sgd and adagrad; use torch.optim.SparseAdam for sparse parameters, or "
                    "a dense layer (nn.Embedding(sparse=False))")
            grads = [g.to_dense() if g.is_sparse else g for g in grads]
        if any(p.is_complex() for p in params):
            for st in states:
                for key, value in list(st.items()):
                    if isinstance(value, Tensor) and value.is_complex():
                        st[key] = torch.view_as_real(value)
            params = [torch.view_as_real(p) if p.is_complex() else p for p in params]
            grads = [torch.view_as_real(g.resolve_conj()) if g.is_complex() else g
                     for g in grads]
        return params, grads

    def _with_grads_as_given(self, group: dict[str, Any], valid_only: bool,
                             ) -> tuple[list[int], list[Tensor], list[Tensor],
                                        list[dict[str, Any]]]:
        grads = [p.grad for p in group["params"]]
        if not any(g is None for g in grads):  # the usual case, without hashing every tensor
            states = self._states_of(group)
            if states is not None and (not valid_only or all(map(_is_valid, states))):
                return list(range(len(grads))), group["params"], grads, states
        kept, params, grads, states = [], [], [], []
        state = self.state
        for i, p in enumerate(group["params"]):
            g = p.grad
            if g is None:
                continue
            if valid_only:
                st = state.get(p)
                if st is None or not st.get("hg_valid"):
                    continue
            else:
                st = state[p]
            kept.append(i)
            params.append(p)
            grads.append(g)
            states.append(st)
        return kept, params, grads, states

    def _states_of(self, group: dict[str, Any]) -> list[dict[str, Any]] | None:
        """The state dicts of a group's tensors, once they all exist (kept from step to step:
        looking a tensor up hashes it in Python, which costs on a model of many tensors)."""
        params, state = group["params"], self.state
        if not params:
            return []
        kept = self._state_lists.get(id(group))
        if (kept is not None and kept[0] is state and kept[1] is params
                and kept[2][0] is state.get(params[0])):
            return kept[2]
        if not all(p in state for p in params):
            return None
        states = [state[p] for p in params]
        self._state_lists[id(group)] = (state, params, states)
        return states

    def _flat(self, gi: int, group: dict[str, Any], params: list[Tensor], grads: list[Tensor],
              states: list[dict[str, Any]]) -> Flat | None:
        """Group ``gi`` as flat vectors (:class:`Flat`) when the tensor path is on (an
        accelerator, or ``cpu_floats`` off) and every tensor of the group steps with one dtype;
        the same object for the hypergradient and the update of one step."""
        made = self._flats.get(gi)
        if made is not None and len(made.grads) == len(grads) and all(
                map(operator.is_, made.grads, grads)):
            return made
        if (not self._tensor_path or self._lr_per_tensor_at_0
                or len(params) != len(group["params"]) or group.get("foreach") is False):
            return None  # (foreach=False: tensor by tensor, as torch.optim's for-loop)
        store = self._flat_stores.setdefault(gi, FlatStore())
        if not store.fits(params):
            return None
        made = Flat(params, grads, states, store)
        self._flats[gi] = made
        return made

    def _update(self) -> None:
        """This level's update of its own parameters from their ``.grad``, recording the trace
        the next hypergradient needs when a level above learns from it."""
        learned = frozenset(self._learn) if self._raw is not None else frozenset()
        for gi, group in enumerate(self.param_groups):
            kept, params, grads, states = self._with_grads(group, False)
            if learned and len(kept) < len(group["params"]):
                for p in group["params"]:
                    if p.grad is None and p in self.state:
                        self.state[p]["hg_valid"] = False
            if self._lr_scaled:
                self._scales[gi] = self._scale_of(group)
            if not kept:
                continue
            hp = self._hparams(gi, group)
            if self._lr_scaled and not _is_one(self._scales[gi]):
                hp["lr"] = _scaled(hp["lr"], self._scales[gi])
            self._step_group(hp, params, grads, states, self._lrs(hp, kept), learned,
                             flat=self._flat(gi, group, params, grads, states))
            if learned:
                for st in states:
                    st["hg_valid"] = True
            if self._level and self._tensor_path:
                _steps_on_device(states, params)

    @property
    def _tensor_path(self) -> bool:
        """Whether this level computes with tensors (an accelerator, or ``cpu_floats`` off)."""
        first = next((p for g in self.param_groups for p in g["params"]), None)
        return first is not None and not (self.cpu_floats and first.device.type == "cpu")

    def _steps_as_saved_by_this_path(self) -> None:
        """After ``load_state_dict``, step counters as this level keeps them (the checkpoint may
        come from another device or path): Python ints, except above level 0 on the tensor
        path, where they are device tensors (:func:`_steps_on_device`)."""
        on_device = self._level > 0 and self._tensor_path
        for group in self.param_groups:
            params = [p for p in group["params"] if p in self.state]
            states = [self.state[p] for p in params]
            for st in states:
                if isinstance(st.get("step"), Tensor):
                    st["step"] = int(st["step"].item())
            if on_device:
                _steps_on_device(states, params)

    def _hypergradient(self) -> Tensor:
        """:math:`G_{k+1}`: the gradient of the loss whose gradients now sit in this level's
        ``.grad`` with respect to its raw hyperparameters, through its last update."""
        raw = self._raw
        assert raw is not None
        slots = self._slot_list
        elementwise = self._elementwise
        numbers = isinstance(self._dval, list) and not elementwise  # all in Python floats
        inner = (times if elementwise else dot_number if numbers
                 else dot if self._lr_per_tensor_at_0 else dot_total)
        found: dict[int, list[Any]] = {}  # raw index (or slot start) -> contributions
        scales: dict[str, float] = {}
        for gi, group in enumerate(self.param_groups):
            valid, params, grads, states = self._with_grads(group, True)
            if not valid:
                continue
            hp = self._hparams(gi, group)
            lr_scale = self._scales[gi] if self._lr_scaled else 1.0
            if not _is_one(lr_scale):  # the last update used lr_scale * the learned value
                hp["lr"] = _scaled(hp["lr"], lr_scale)
            contributions = self._vjp(hp, params, grads, states, self._lrs(hp, valid),
                                      self._names, inner,
                                      flat=self._flat(gi, group, params, grads, states))
            for name, (values, scale) in contributions.items():
                s = self._slots[name]
                if name == "lr" and not _is_one(lr_scale):
                    values = [v * lr_scale for v in values]
                scales[name] = scale
                if s.per == "tensor" and self._level == 0:
                    a = s.start + self._tensor_offsets[gi]
                    for i, v in zip(valid, values, strict=True):
                        found[a + i] = [v]
                else:
                    at = s.start + (s.groups[gi] if s.groups else 0)  # (above 0, per element)
                    found.setdefault(at, []).extend(values)
        if not found:
            return torch.zeros_like(raw)
        if numbers:
            dval = self._dval
            out_numbers = [0.0] * raw.numel()
            for s in slots:
                scale = scales.get(s.name, 1.0)
                for j in range(s.start, s.stop):
                    values = found.get(j)
                    if values is not None:
                        out_numbers[j] = math.fsum(values) * scale * dval[j]
            return torch.tensor(out_numbers, dtype=raw.dtype)
        cpu = isinstance(self._dval, list)
        pieces: list[Tensor] = []
        for s in slots:
            scale = scales.get(s.name, 1.0)
            if s.per == "tensor":  # one 1-d piece: per tensor (level 0) or per element
                if self._level > 0:
                    piece = found.get(s.start, [None])[0]
                else:
                    parts = [found.get(j, [None])[0] for j in range(s.start, s.stop)]
                    piece = None if all(x is None for x in parts) else torch.stack(
                        [raw.new_zeros(()) if x is None else x.to(raw.dtype) for x in parts])
                if piece is None:
                    pieces.append(raw.new_zeros(s.stop - s.start))
                    continue
                if cpu:
                    piece = piece * s.param.forward(raw[s.start:s.stop])[1]
                pieces.append(piece * scale if scale != 1.0 else piece)
                continue
            for j in range(s.start, s.stop):
                values = found.get(j)
                if values is None:
                    pieces.append(raw.new_zeros(()))
                    continue
                if elementwise:
                    values = [v.sum() for v in values]
                total = values[0] if len(values) == 1 else torch.stack(values).sum()
                factor = scale * self._dval[j] if cpu else scale
                pieces.append(total * factor if factor != 1.0 else total)
        if len(pieces) == 1:
            out = pieces[0].reshape(1) if pieces[0].ndim == 0 else pieces[0]
        elif all(p.ndim == 0 for p in pieces):
            out = torch.stack(pieces)
        else:
            out = torch.cat([p.reshape(-1) for p in pieces])
        if not cpu and self._plan[1]:  # d value / d raw, for every slot at once
            out = out * self._dval
        if out.dtype != raw.dtype or out.device != raw.device:
            out = out.to(raw.device, raw.dtype)
        return out

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One step of the whole tower.

        1. Bottom-up: each learning level's hypergradient, from the gradients of the level below
           and what it saved at the last step.
        2. Top-down: each level updates the raw hyperparameters below it with the hypergradient,
           the level below reads the new values; level 0 updates the weights in place.

        Args:
            closure: re-evaluates the model and returns the loss (``torch.optim``'s convention).
        """
        if self._level:
            raise RuntimeError(
                f"{self.name} is level {self._level} of a tower: call step() on level 0"
            )
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        levels = self.levels
        try:
            if len(levels) > 1:
                hypergradient = self._hypergradient()  # 1. bottom-up, from the weights
                self._step_upper(levels, hypergradient)
            self._update()  # 2. ends top-down: the weights, in place
        finally:
            for level in levels:  # nothing of this step's survives a failed one
                level._flats.clear()
        return loss

    @torch.compiler.disable
    def _step_upper(self, levels: list[Tower], hypergradient: Tensor) -> None:
        """The values written into param_groups since the last step taken up (level 0's
        hypergradient, computed before, reads none of them), then the levels above 0 for one
        step (``step_upper``), replayed as a CUDA graph where one is kept.

        Never traced by ``torch.compile``: Dynamo drops the values these levels hand down
        (``_refresh`` writes new tensors into the tower's attributes), so a compiled step would
        train with a frozen learned value, and it would fix as constants the identities and
        version counters the take-up compares. They are a few numbers per level."""
        written = False
        for level in levels[:-1]:
            written = level._sync_external() or written
        upper = self._upper_graph()
        if upper is not None:  # the same, replayed
            upper.step(levels, hypergradient, changed=written)
        else:
            step_upper(levels, hypergradient)

    def _upper_graph(self) -> UpperGraph | None:
        """What replays the levels above 0 on CUDA (``None``: they run eagerly here)."""
        raw = self._raw
        if (raw is None or raw.device.type != "cuda" or not self.cuda_graphs
                or torch.cuda.is_current_stream_capturing() or torch.compiler.is_compiling()):
            return None
        if self._upper is None:
            self._upper = UpperGraph()
        return self._upper

    # -- family interface --------------------------------------------------------------------

    def _step_group(self, hp: dict[str, Any], params: list[Tensor], grads: list[Tensor],
                    states: list[dict[str, Any]], lrs: list[Any], record: frozenset[str], *,
                    flat: Flat | None = None) -> None:
        """Update one group's tensors in place; when ``record`` names learned hyperparameters,
        also save in each state what ``_vjp`` will need. ``flat``: the group as flat vectors,
        when the tower offers that path (a family may ignore it)."""
        raise NotImplementedError

    def _vjp(self, hp: dict[str, Any], params: list[Tensor], grads: list[Tensor],
             states: list[dict[str, Any]], lrs: list[Any], names: frozenset[str],
             inner: Inner, *, flat: Flat | None = None) -> dict[str, tuple[list[Tensor], float]]:
        r"""The hypergradient contributions of one group: per learned value ``h`` in ``names``,
        per tensor, ``inner(g, J)`` with ``g`` the tensor's new gradient and
        :math:`J = \partial\Delta/\partial h` the Jacobian column of its last update (with
        respect to the value, not the raw number), returned as ``(values, scale)``: the
        contributions are ``scale * values[i]`` (``scale`` a Python number, applied once)."""
        raise NotImplementedError

    # -- reading, printing, saving -----------------------------------------------------------

    @property
    def levels(self) -> list[Tower]:
        """This level and the ones above it, bottom first."""
        out: list[Tower] = [self]
        while out[-1].hyper is not None:
            out.append(out[-1].hyper)  # type: ignore[arg-type]
        return out

    @property
    def height(self) -> int:
        """How many hyperoptimizers sit above this optimizer (0 for a plain optimizer)."""
        n, spec = 0, self._hyper_spec
        while spec is not None:
            n, spec = n + 1, spec._hyper_spec
        return n

    def _keys(self) -> Iterator[tuple[str, Tower, int]]:
        for k, level in enumerate(self.levels):
            if level._raw is None:
                break
            for s in level._slots.values():
                if s.per == "optimizer" and s.stop - s.start == 1:
                    yield f"{k}.{s.name}", level, s.start
                else:
                    for i in range(s.stop - s.start):
                        yield f"{k}.{s.name}[{i}]", level, s.start + i

    def hyperparameter_tensors(self) -> dict[str, Tensor]:
        """Every learned hyperparameter at every level as a 0-d tensor, without a device sync.

        Keys are ``"{level}.{name}"``, with ``"[i]"`` appended when the value is one per group or
        per tensor (``"0.lr[3]"``). New tensors, so that they can be kept and read later: on an
        accelerator, a copy of each level's values made at the call (one kernel per level; the
        values in use may be updated in place).
        """
        out = {}
        copies: dict[int, Tensor] = {}
        for key, level, j in self._keys():
            if level._values is not None:
                if id(level) not in copies:
                    copies[id(level)] = level._values.clone()
                out[key] = copies[id(level)][j]
            else:
                assert level._raw is not None and level._numbers is not None
                out[key] = torch.tensor(level._numbers[j], dtype=level._raw.dtype)
        return out

    def hyperparameters(self) -> dict[str, float]:
        """Every learned hyperparameter at every level, as floats (at most one device sync).

        Same keys as :meth:`hyperparameter_tensors`; empty for a plain optimizer.
        """
        keys = list(self._keys())
        if not keys:
            return {}
        if all(level._numbers is not None for _, level, _ in keys):
            return {key: level._numbers[j] for key, level, j in keys}  # type: ignore[index]
        vectors = [level._values.detach().to(torch.float64) for level in self.levels
                   if level._raw is not None]  # type: ignore[union-attr]
        numbers = torch.cat(vectors).tolist()  # the one sync
        offsets, n = {}, 0
        for level, vector in zip(self.levels, vectors, strict=False):
            offsets[id(level)] = n
            n += vector.numel()
        return {key: numbers[offsets[id(level)] + j] for key, level, j in keys}

    def step_sizes(self) -> list[Any]:
        """The step size each param group of this level uses at the next step, as floats (a list
        per group when one is learned per tensor): ``group["lr"]`` for a plain optimizer, the
        learned value times the schedule's scale ``group["lr"] / group["lr_base"]`` for a
        level whose step size is learned (at most one device sync)."""
        if not self._lr_scaled:
            return [_as_float(g["lr"]) for g in self.param_groups]
        out = []
        for gi, group in enumerate(self.param_groups):
            scale = _as_float(self._scale_of(group))
            lr = self._used[gi]["lr"]
            if isinstance(lr, Tensor) and lr.dim():
                lr = lr.tolist()
            out.append([_as_float(x) * scale for x in lr] if isinstance(lr, list)
                       else _as_float(lr) * scale)
        return out

    @classmethod
    def _spec_defaults(cls) -> dict[str, Any]:
        import inspect

        sig = inspect.signature(cls.__init__)
        config = {n: p.default for n, p in sig.parameters.items()
                  if n not in ("self", "params", "learn", "lr_per", "hyper", *SWITCHES,
                               *cls._ctor_aliases)}
        return cls._config_to_spec(config)

    @classmethod
    def _config_to_spec(cls, config: dict[str, Any]) -> dict[str, Any]:
        return dict(config)

    @classmethod
    def _spec_to_config(cls, args: dict[str, Any]) -> dict[str, Any]:
        return dict(args)

    def _spec_text(self, top: bool) -> str:
        from hypergrad.tower import format_value

        args = self._config_to_spec({k: v for k, v in self._config.items()
                                     if k not in SWITCHES})
        defaults = self._spec_defaults()
        parts = [format_value(args.pop("lr"))]
        for key, value in args.items():
            if value != defaults.get(key):
                parts.append(f"{key}={format_value(value)}")
        if not top:
            if set(self._learn) != set(self._default_learn(self._config)):
                names = self._learn
                parts.append("learn=" + (names[0] if len(names) == 1
                                         else "(" + ", ".join(names) + ")"))
            if self._lr_per not in (None, "optimizer"):
                parts.append(f"lr_per={self._lr_per}")
        return f"{self.name}({', '.join(parts)})"

    def __str__(self) -> str:
        """The canonical spec of the tower from this level up: ``adam(0.001)/sgd(1e-5)``."""
        chain: list[Tower] = [self]
        while chain[-1]._hyper_spec is not None:
            chain.append(chain[-1]._hyper_spec)  # type: ignore[arg-type]
        return "/".join(t._spec_text(top=i == len(chain) - 1) for i, t in enumerate(chain))

    def __getstate__(self) -> dict[str, Any]:
        # torch.optim keeps only defaults, state and param_groups: a tower is more than that
        state = self.__dict__.copy()
        state["_upper"] = None  # a CUDA graph is not copied: a copy captures its own
        # Views of the parameters and flat buffers made under no_grad are rebuilt by the copy
        # when first used (copying them would make views that autograd refuses to write).
        state["_flat_stores"], state["_flats"], state["_state_lists"] = {}, {}, {}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if not self.__dict__.get("_bound", state.get("_bound", True)):
            self.__dict__.update(state)  # an unbound level: no torch.optim machinery to restore
            return
        super().__setstate__(state)
        # A copy's tensors start at version 0: what was published is still what was published.
        for written, group in zip(self.__dict__.get("_written", ()), self.param_groups,
                                  strict=False):
            for name, (obj, _) in list(written.items()):
                if self._get(group, name) is obj:
                    written[name] = (obj, getattr(obj, "_version", -1))

    def __repr__(self) -> str:
        if not self._bound:
            return f"{type(self).__name__}(unbound: {self})"
        return super().__repr__()

    def state_dict(self) -> dict[str, Any]:
        """``torch.optim``'s state dict, plus, when a level above learns, ``"hypergrad"``: the raw
        hyperparameters of the last update, the schedule's scale of each group at that update
        and the state dict of the level above (recursively).

        The param groups are saved as they are now: a value a scheduler or the user wrote since
        the last step is in them (level 0's ``lr`` is the schedule's value, never overwritten by
        the tower), and :meth:`load_state_dict` takes it up at the next step as the
        uninterrupted run does.
        """
        out = super().state_dict()
        if self._raw is not None:
            assert self.hyper is not None
            out["hypergrad"] = {"raw": self._raw.detach().clone(),
                                "scales": [s.clone() if isinstance(s, Tensor) else s
                                           for s in self._scales],
                                "published": [{n: _copy_value(v) for n, (v, _) in w.items()}
                                              for w in self._written],
                                "hyper": self.hyper.state_dict()}
        return out

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state dict of this tower, of ``torch.optim``'s optimizer of the same family, or
        of a hypergrad optimizer of this family at height 0.

        The param groups are honoured as given: a hyperparameter edited in the state dict is
        the one in force after the load (a learned one is taken up at the next step, as a write
        into ``param_groups``). Without a ``"hypergrad"`` entry (a ``torch.optim`` state dict), a
        tower that learns starts its learned values from the saved param groups, and its levels
        above keep their state. Keys the saved groups lack (``torch.optim`` has no ``v0``) keep
        this optimizer's values.

        Raises:
            HypergradError: the state dict learns hyperparameters this optimizer does not learn
                (a taller tower's), or another number of them.
        """
        hyper = state_dict.get("hypergrad")
        if hyper is not None and self._raw is None:
            raise HypergradError(
                f"{self.name}: the state dict is from a tower of another height (this level "
                "learns nothing, the saved one learns); load it into a tower of the same spec"
            )
        if hyper is not None:
            assert self._raw is not None
            if hyper["raw"].shape != self._raw.shape:
                raise HypergradError(
                    f"{self.name}: the state dict learns {hyper['raw'].numel()} hyperparameters, "
                    f"this tower {self._raw.numel()}; load it into a tower of the same spec and "
                    "param groups"
                )
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError("loaded state dict has a different number of parameter groups")
        groups = []
        for mine, saved in zip(self.param_groups, saved_groups, strict=True):
            group = {k: v for k, v in mine.items() if k not in ("params", "lr_base")}
            group.update(self._from_torch_group(saved))
            if self._lr_scaled and "lr_base" not in group:
                group["lr_base"] = as_number(group["lr"], "lr", self.name)
            groups.append(group)
        plain = {k: v for k, v in state_dict.items() if k not in ("hypergrad", "param_groups")}
        super().load_state_dict({**plain, "param_groups": groups})
        self._flat_stores.clear()  # the states hold new tensors: made flat again when used
        self._state_lists.clear()
        if self._upper is not None:
            self._upper.drop()  # it reads the tensors the states held
        self._steps_as_saved_by_this_path()
        if self._raw is None:
            return
        assert self.hyper is not None
        given = [{n: self._get(g, n) for n in self._slots if not (self._lr_scaled and n == "lr")}
                 for g in self.param_groups]
        published = [{} for _ in self.param_groups]
        if hyper is not None:
            self._raw.copy_(hyper["raw"])
            scales = hyper.get("scales")
            self._scales = (list(scales) if scales is not None
                            and len(scales) == len(self.param_groups)
                            else [1.0] * len(self.param_groups))
            if len(hyper.get("published", ())) == len(self.param_groups):
                published = hyper["published"]
            self.hyper.load_state_dict(hyper["hyper"])
        else:  # torch.optim's state dict: the learned values start from its param groups
            self._raw.copy_(self._raw_from_groups())
            self._scales = [1.0] * len(self.param_groups)
        self._refresh()
        for group, values, before in zip(self.param_groups, given, published, strict=True):
            for name, value in values.items():
                if name in before and not _same_value(value, before[name]):
                    self._put(group, name, value)  # written after the save's last step: taken
                    # up at the next step, as the uninterrupted run does

    def _from_torch_group(self, saved: dict[str, Any]) -> dict[str, Any]:
        """A saved param group as this family keeps it (families map torch's names)."""
        return dict(saved)

    def _raw_from_groups(self) -> Tensor:
        """The raw vector of the learned values the param groups hold now (``_attach_hyper``'s
        layout)."""
        raw = self._raw
        assert raw is not None
        pieces = []
        for s in self._slot_list:
            if s.name == "lr" and self._lr_scaled:
                given = [as_number(g["lr"], "lr", self.name) for g in self.param_groups]
            else:
                given = [self._get(g, s.name) for g in self.param_groups]
            if s.per != "tensor":  # each value from the first group that reads it
                first = {j: gi for gi, j in reversed(list(enumerate(s.groups)))}
                vals: list[Any] = [given[first[j]] for j in range(s.stop - s.start)]
            elif self._level == 0 and not isinstance(given[0], (Tensor, list)):
                vals = [v for g, v in zip(self.param_groups, given, strict=True)
                        for _ in range(self._tensor_count(g))]
            else:
                vals = [given[0]]
            value = torch.cat([torch.as_tensor(v, dtype=raw.dtype, device=raw.device)
                               .detach().reshape(-1) for v in vals])
            pieces.append(s.param.inverse(value))
        return torch.cat(pieces)

    def memory_bytes(self) -> int:
        """Bytes of the tensors the tower holds (every level's state, traces and hyperparameters;
        not the model's parameters or gradients), each storage counted once."""
        seen: set[int] = set()
        for group in self.param_groups:
            for p in group["params"]:
                seen.add(p.untyped_storage().data_ptr())
                if p.grad is not None:
                    seen.add(p.grad.untyped_storage().data_ptr())
        total = 0

        def add(t: Any) -> None:
            nonlocal total
            if isinstance(t, Tensor):
                key = t.untyped_storage().data_ptr()
                if key not in seen:
                    seen.add(key)
                    total += t.untyped_storage().nbytes()
            elif isinstance(t, dict):
                for v in t.values():
                    add(v)
            elif isinstance(t, (list, tuple)):
                for v in t:
                    add(v)

        for level in self.levels:
            add(list(level.state.values()))
            if level._raw is not None:
                add([level._raw, level._raw.grad, level._values, level._dval])
                add([v for used in level._used for v in used.values()])
        return total


def unwrap(opt: Any) -> torch.optim.Optimizer:
    """The optimizer inside the wrappers frameworks put around it: Lightning's
    ``LightningOptimizer`` (``._optimizer``), accelerate's ``AcceleratedOptimizer`` and
    Hugging Face's wrappers (``.optimizer``), nested or not.

    Raises:
        HypergradError: ``opt`` is not an optimizer, nor wraps one.
    """
    for _ in range(8):  # (a wrapper may itself be a torch.optim.Optimizer: accelerate's)
        if isinstance(opt, Tower):
            return opt
        inner = getattr(opt, "_optimizer", None) or getattr(opt, "optimizer", None)
        if inner is None or inner is opt:
            break
        opt = inner
    if not isinstance(opt, torch.optim.Optimizer):
        raise HypergradError(
            f"hyperparameters: {type(opt).__name__} is not an optimizer, nor a wrapper of one "
            "(.optimizer, ._optimizer); pass the tower or the wrapper a framework gave you")
    return opt


def hyperparameters(opt: Any) -> dict[str, float]:
    """The learned hyperparameters of a tower (:meth:`Tower.hyperparameters`), through the
    wrappers of Lightning (``trainer.optimizers[0]``, ``self.optimizers()``), accelerate and
    Hugging Face (``trainer.optimizer``); ``{}`` for an optimizer that learns nothing (a
    ``torch.optim`` one included)."""
    inner = unwrap(opt)
    return inner.hyperparameters() if isinstance(inner, Tower) else {}


def _as_float(x: Any) -> float:
    return float(x.item()) if isinstance(x, Tensor) else float(x)


def _copy_value(value: Any) -> Any:
    return value.detach().clone() if isinstance(value, Tensor) else value


def _same_value(a: Any, b: Any) -> bool:
    """Whether two hyperparameter values (numbers or tensors) are equal (may sync: not for the
    step)."""
    if a is b:
        return True
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        a, b = torch.as_tensor(a), torch.as_tensor(b)
        return a.shape == b.shape and torch.equal(a.to(b.device, b.dtype), b)
    return a == b


def _is_one(scale: Any) -> bool:
    return not isinstance(scale, Tensor) and scale == 1.0


def _scaled(lr: Any, scale: Any) -> Any:
    """A learned step size (a number, a tensor, or per tensor a list of numbers) times the
    schedule's scale."""
    if isinstance(lr, list):
        return [x * scale for x in lr]
    return lr * scale


def _steps_on_device(states: list[dict[str, Any]], params: list[Tensor]) -> None:
    """Above level 0 on the tensor path a step counter is a 0-d tensor beside its parameter,
    counted up in place: a CUDA graph of the levels reads it at each replay, where a Python
    number would stay frozen at its value when captured."""
    for st, p in zip(states, params, strict=True):
        step = st.get("step")
        if step is not None and not isinstance(step, Tensor):
            st["step"] = torch.full((), float(step), dtype=p.dtype, device=p.device)


def _unusual(g: Tensor) -> bool:
    """A sparse or complex gradient (stepped through :meth:`Tower._as_real_dense`)."""
    return g.is_sparse or g.is_complex()


_is_valid = operator.methodcaller("get", "hg_valid")
"""Whether a tensor's state holds a trace of the last step (its hypergradient is defined)."""


def _as_unbound(hyper: Tower | str | None) -> Tower | None:
    if hyper is None:
        return None
    if isinstance(hyper, str):
        from hypergrad.tower import unbound

        return unbound(hyper)
    if not isinstance(hyper, Tower):
        raise HypergradError(
            f"hyper must be a hypergrad optimizer built without params (hypergrad.SGD(lr=1e-5)) "
            f"or a spec string ('sgd(1e-5)'), but got {type(hyper).__name__}"
        )
    if hyper._bound:
        raise HypergradError(
            "hyper must be built without params (hypergrad.SGD(lr=1e-5)): the tower binds it to "
            "the hyperparameters of the level below"
        )
    return hyper
