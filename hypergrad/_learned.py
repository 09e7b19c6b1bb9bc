"""Where a level's learned hyperparameters live: the raw vector, its slots, the values in use.

A level that a level above learns from keeps its learned hyperparameters as one raw tensor
(``_raw``, what the level above trains); each hyperparameter is a slot of it (:class:`Slot`):
one value for the optimizer, one per param group or one per tensor (``lr_per``), kept valid by
its parametrisation. After each update of the raw vector, :meth:`LearnedValues._refresh` writes
the values into ``param_groups`` and keeps the values and derivatives the next update and
hypergradient read (``_used``, ``_dval``). :class:`LearnedValues` is a part of
:class:`hypergrad._base.Tower`, which owns the attributes it reads.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from hypergrad._arguments import as_number
from hypergrad._errors import HypergradError
from hypergrad._parametrisations import IDENTITY, Parametrisation


@dataclass(frozen=True)
class Slot:
    """Where one learned hyperparameter lives in its level's raw vector: ``raw[start:stop]``."""

    name: str
    start: int
    stop: int
    per: str  # "optimizer" | "group" | "tensor"
    param: Parametrisation
    groups: tuple[int, ...] = ()
    """Not per tensor: the offset from ``start`` of each param group's value (all 0 for one
    value for the optimizer; a group added after construction gets its own)."""


class LearnedValues:
    """The learned hyperparameters of a level of a :class:`hypergrad._base.Tower`: their layout
    in the raw vector (built by :meth:`_attach_hyper`, grown by ``add_param_group``) and the
    values each param group uses."""

    def _learned(self) -> frozenset[str]:
        """What a level above learns (nothing at the top, whatever ``learn`` says)."""
        return frozenset(self._learn) if self._hyper_spec is not None else frozenset()

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
            self._slots[name] = Slot(name, start, start + n, per, self.learnable[name], groups)
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

    def _slot_range(self, s: Slot, gi: int, group: dict[str, Any]) -> tuple[int, int]:
        """The part of the raw vector that group ``gi`` reads for slot ``s``."""
        if s.per == "tensor" and self._level == 0:
            a = s.start + self._tensor_offsets[gi]
            return a, a + len(group["params"])
        if s.per == "tensor":
            return s.start, s.stop
        a = s.start + s.groups[gi]
        return a, a + 1

    def _hparams(self, gi: int, group: dict[str, Any]) -> dict[str, Any]:
        """The hyperparameters of group ``gi`` for an update: learned values used at the last
        refresh, the others as the group holds them."""
        fixed = self._gathered.get((gi, "hp"))  # read once per step: nothing in it is learned
        if fixed is None:
            fixed = self._gathered[gi, "hp"] = {
                name: self._get(group, name) for name in self._hp_names()}
        hp = dict(fixed)
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
        slots: dict[str, Slot] = {}
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
            slots[s.name] = Slot(s.name, start, start + width, s.per, s.param, groups)
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
