"""Saving and restoring a tower: ``state_dict()`` / ``load_state_dict()`` (a ``torch.optim``
checkpoint of the same family included) and copies (``deepcopy``, ``pickle``).

What a checkpoint holds beyond ``torch.optim``'s: under ``"hypergrad"``, the raw hyperparameters
of the last update, the schedule's scale of each group at that update, the learned values as
published then, and the state dict of the level above, recursively.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from hypergrad._arguments import as_number
from hypergrad._errors import HypergradError
from hypergrad._stepping import steps_on_device


class Checkpoints:
    """The saving and loading of a :class:`hypergrad._base.Tower` (``torch.optim``'s methods,
    extended to every level)."""

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
            group.update(saved)
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

    def _steps_as_saved_by_this_path(self) -> None:
        """After ``load_state_dict``, step counters as this level keeps them (the checkpoint may
        come from another device or path): Python ints, except above level 0 on the tensor
        path, where they are device tensors (:func:`hypergrad._stepping.steps_on_device`)."""
        on_device = self._level > 0 and self._tensor_path
        for group in self.param_groups:
            params = [p for p in group["params"] if p in self.state]
            states = [self.state[p] for p in params]
            for st in states:
                if isinstance(st.get("step"), Tensor):
                    st["step"] = int(st["step"].item())
            if on_device:
                steps_on_device(states, params)

    def __getstate__(self) -> dict[str, Any]:
        # torch.optim keeps only defaults, state and param_groups: a tower is more than that
        state = self.__dict__.copy()
        state["_upper"] = None  # a CUDA graph is not copied: a copy captures its own
        # Views of the parameters and flat buffers made under no_grad are rebuilt by the copy
        # when first used (copying them would make views that autograd refuses to write).
        state["_flat_stores"], state["_flats"], state["_state_lists"] = {}, {}, {}
        state["_gathered"], state["_grad_numbers"] = {}, None  # (a copy shares no memory)
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
