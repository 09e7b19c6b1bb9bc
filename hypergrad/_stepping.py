r"""The shared hypergradient mechanism: how a level learns from the next loss, and how levels stack.

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

:class:`LevelStep` is the part of :class:`hypergrad._base.Tower` that does a level's share
(``step()`` itself, in :mod:`hypergrad._base`, runs the levels in this order); the raw values
and their parametrisations are :mod:`hypergrad._learned`'s and :mod:`hypergrad._parametrisations`'.
"""

from __future__ import annotations

import math
import operator
from array import array
from typing import Any, ClassVar

import torch
from torch import Tensor

from hypergrad._arithmetic import dot, dot_number, dot_total, times
from hypergrad._errors import HypergradError
from hypergrad._flat import Flat, FlatStore
from hypergrad._takeup import is_one, scaled


class LevelStep:
    """One level's share of a step of a :class:`hypergrad._base.Tower`: its update from the
    gradients of its parameters (:meth:`_update`) and its hypergradient (:meth:`_hypergradient`),
    the tensors of a group gathered once for both."""

    def _with_grads(self, gi: int, group: dict[str, Any], valid_only: bool,
                    ) -> tuple[list[int], list[Tensor], list[Tensor], list[dict[str, Any]]]:
        """The tensors of group ``gi`` that have a gradient (and, with ``valid_only``, whose
        trace is from the last step): their indices, the tensors, their gradients (negated with
        ``maximize``, as torch.optim does) and states. Gathered once per step (``_gathered``,
        emptied when the step ends): a level's hypergradient and update read the same."""
        got = self._gathered.get((gi, valid_only))
        if got is not None:
            return got
        kept, params, grads, states = self._with_grads_as_given(group, valid_only)
        if group.get("maximize"):
            grads = [torch.neg(g) for g in grads]
        for g in grads:
            if g.is_sparse or g.is_complex():
                params, grads = self._as_real_dense(params, grads, states)
                break
        got = kept, params, grads, states
        memo = self._gathered
        memo[gi, valid_only] = got
        if len(kept) == len(group["params"]) and all(map(_is_valid, states)):
            memo[gi, not valid_only] = got  # every tensor: both answers are the same
        return got

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
        params = group["params"]
        grads = [p.grad for p in params]
        if _NO_GRAD not in map(type, grads):  # the usual case, without hashing every tensor
            states = self._states_of(group)
            if states is not None and (not valid_only or all(map(_is_valid, states))):
                return list(range(len(grads))), params, grads, states
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
        learned = self._names if self._raw is not None else frozenset()
        for gi, group in enumerate(self.param_groups):
            kept, params, grads, states = self._with_grads(gi, group, False)
            if learned and len(kept) < len(group["params"]):
                for p in group["params"]:
                    if p.grad is None and p in self.state:
                        self.state[p]["hg_valid"] = False
            if self._lr_scaled:
                self._scales[gi] = self._scale_of(group)
            if not kept:
                continue
            hp = self._hparams(gi, group)
            if self._lr_scaled and not is_one(self._scales[gi]):
                hp["lr"] = scaled(hp["lr"], self._scales[gi])
            self._step_group(hp, params, grads, states, self._lrs(hp, kept), learned,
                             flat=self._flat(gi, group, params, grads, states))
            if learned:
                for st in states:
                    st["hg_valid"] = True
            if self._level and self._tensor_path:
                steps_on_device(states, params)

    @property
    def _tensor_path(self) -> bool:
        """Whether this level computes with tensors (an accelerator, or ``cpu_floats`` off)."""
        for group in self.param_groups:
            if group["params"]:
                return not (self.cpu_floats and group["params"][0].is_cpu)
        return False

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
            valid, params, grads, states = self._with_grads(gi, group, True)
            if not valid:
                continue
            hp = self._hparams(gi, group)
            lr_scale = self._scales[gi] if self._lr_scaled else 1.0
            if not is_one(lr_scale):  # the last update used lr_scale * the learned value
                hp["lr"] = scaled(hp["lr"], lr_scale)
            contributions = self._vjp(hp, params, grads, states, self._lrs(hp, valid),
                                      self._names, inner,
                                      flat=self._flat(gi, group, params, grads, states))
            for name, (values, scale) in contributions.items():
                s = self._slots[name]
                if name == "lr" and not is_one(lr_scale):
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
                        out_numbers[j] = _total(values) * scale * dval[j]
            return self._numbers_as_grad(out_numbers)
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

    def _numbers_as_grad(self, numbers: list[float]) -> Tensor:
        """The hypergradient computed in Python floats as the raw vector's gradient: written
        into a tensor kept from step to step that shares its memory with a Python array, so
        no tensor is made per step (right after a backward pass a new one costs ~10 us). The
        levels above copy what they keep of a gradient, so its next values harm nothing."""
        raw = self._raw
        assert raw is not None
        kept = self._grad_numbers
        if kept is None or len(kept[0]) != len(numbers) or kept[1].dtype != raw.dtype:
            values = array("f" if raw.dtype == torch.float32 else "d", numbers)
            kept = self._grad_numbers = (values, torch.frombuffer(values, dtype=raw.dtype))
        else:
            kept[0][:] = array(kept[0].typecode, numbers)
        return kept[1]


def steps_on_device(states: list[dict[str, Any]], params: list[Tensor]) -> None:
    """Above level 0 on the tensor path a step counter is a 0-d tensor beside its parameter,
    counted up in place: a CUDA graph of the levels reads it at each replay, where a Python
    number would stay frozen at its value when captured."""
    for st, p in zip(states, params, strict=True):
        step = st.get("step")
        if step is not None and not isinstance(step, Tensor):
            st["step"] = torch.full((), float(step), dtype=p.dtype, device=p.device)


_NO_GRAD = type(None)
"""The type of a missing gradient (``p.grad is None``)."""

_is_valid = operator.methodcaller("get", "hg_valid")
"""Whether a tensor's state holds a trace of the last step (its hypergradient is defined)."""


def _total(values: list[float]) -> float:
    """The exact sum of Python floats, or, where one is infinite, what a tensor's sum gives:
    ``math.fsum`` raises on ``inf - inf`` and on an overflow midway, and a blown-up tower must go
    non-finite (a diverged run) rather than raise."""
    try:
        return math.fsum(values)
    except (ValueError, OverflowError):
        return sum(values)
