"""One param group seen as flat vectors, for one step: the accelerator's path (:class:`Flat`).

On a GPU one kernel launch costs more than the arithmetic on a small tensor, so a family may
update a whole group at once on flat vectors, each elementwise operation one kernel, when
:func:`flat_ready` says it may: one step size for every tensor, and the state already made.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

import torch
from torch import Tensor


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


def numbers_ready(states: list[dict[str, Any]], lrs: list[Any], needs: Iterable[str],
                  *values: Any) -> bool:
    """Whether a family may step a list of tensors with ``torch._foreach_*`` calls on numbers
    (the CPU's float path): more than one tensor, one step size for all, it and ``values``
    Python numbers, and every state already holding ``needs`` (not the first step)."""
    return (len(states) > 1 and not isinstance(lrs[0], Tensor) and shared_value(lrs)
            and not any(isinstance(v, Tensor) for v in values)
            and all(key in st for key in needs for st in states))


def flat_ready(flat: Flat | None, lrs: list[Any], needs: Iterable[str]) -> bool:
    """Whether a family may update a group on the flat path: the tower offers it (an
    accelerator, every tensor with a gradient), one step size serves every tensor, and every
    tensor's state already holds ``needs`` (not the first step)."""
    return flat is not None and shared_value(lrs) and flat.has(needs)
