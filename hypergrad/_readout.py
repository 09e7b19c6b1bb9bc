"""What a tower has learned, read out: ``hyperparameters()``, ``hyperparameter_tensors()``,
``step_sizes()``, and ``memory_bytes()`` (what the tower holds).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor


class Readout:
    """The reading methods of a :class:`hypergrad._base.Tower`, over all its levels."""

    def _keys(self) -> Iterator[tuple[str, Any, int]]:
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


def _as_float(x: Any) -> float:
    return float(x.item()) if isinstance(x, Tensor) else float(x)
