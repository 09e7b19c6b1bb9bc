"""The ``schedules`` family: ``torch.optim`` optimizers under fixed ``lr_scheduler`` schedules.

Names: ``OPTIMIZER+SCHEDULE``, e.g. ``sgd(lr=0.1, momentum=0.9)+cosine(warmup=0.05)``,
``adam(lr=0.001)+onecycle``, ``sgd(lr=0.1, momentum=0.9)+multistep(gamma=0.1)``. The scheduler
is stepped once per optimizer step; ``hyperparameters()`` reports the current lr as ``"0.lr"``.
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import Tensor

from baselines import schedules
from bench.errors import UserError
from bench.methods import Family, MethodMeta, OptimizerSetup, RunContext, SingleRunMethod, step_size
from hypergrad.grammar import split_top


class ScheduleMethod(SingleRunMethod):
    """A parsed ``OPTIMIZER+SCHEDULE`` name."""

    def __init__(self, name: str) -> None:
        try:
            self.spec = schedules.parse_schedule(name)
        except ValueError as e:
            raise UserError(str(e)) from None
        self.name = self.spec.name

    def meta(self) -> MethodMeta:
        return MethodMeta("schedule", self.spec.optimizer, lr0=step_size(self.spec.optimizer_args))

    def build(self, params: Iterable[Tensor], run: RunContext) -> OptimizerSetup:
        optimizer = schedules.build_optimizer(self.spec, params)
        scheduler = schedules.build_scheduler(self.spec, optimizer, total_steps=run.total_steps,
                                              steps_per_epoch=run.steps_per_epoch)
        return OptimizerSetup(optimizer, scheduler=scheduler,
                              hyperparameters=lambda: schedules.current_lrs(optimizer))


def _matches(name: str) -> bool:
    # A '+' outside parentheses joins an optimizer and a schedule; a malformed name with a '+' is
    # still ours, so that its error explains the OPTIMIZER+SCHEDULE form.
    try:
        return len(split_top(name, "+")) > 1
    except ValueError:
        return False


def _describe() -> str:
    opts = "; ".join(s.describe() for s in schedules.OPTIMIZERS)
    scheds = "; ".join(s.describe() for s in schedules.SCHEDULES)
    return f"fixed schedules, OPTIMIZER+SCHEDULE with optimizers {opts} and schedules {scheds}"


FAMILY = Family(
    name="schedules",
    description=_describe(),
    examples=("sgd(lr=0.1, momentum=0.9)+cosine(warmup=0.05)", "adam(lr=0.001)+onecycle",
              "sgd(lr=0.1, momentum=0.9)+multistep"),
    matches=_matches,
    parse=ScheduleMethod,
)
