r"""Values written into ``param_groups`` from outside: level 0's schedule, and the take-up of
writes to learned values.

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

import warnings
from typing import Any

import torch
from torch import Tensor


class TakeUp:
    """The part of :class:`hypergrad._base.Tower` that reads what was written from outside:
    the schedule's scale of level 0's step size and the learned values written since the last
    step."""

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


def is_one(scale: Any) -> bool:
    """Whether a schedule's scale is the number 1 (a tensor one is never compared: no sync)."""
    return not isinstance(scale, Tensor) and scale == 1.0


def scaled(lr: Any, scale: Any) -> Any:
    """A learned step size (a number, a tensor, or per tensor a list of numbers) times the
    schedule's scale."""
    if isinstance(lr, list):
        return [x * scale for x in lr]
    return lr * scale
