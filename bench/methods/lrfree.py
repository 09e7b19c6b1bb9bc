"""The ``lrfree`` family: learning-rate-free optimizers from their authors' packages.

Names: ``prodigy``, ``dadapt-adam``, ``dadapt-sgd``, ``schedulefree-adamw``, ``schedulefree-sgd``,
each with optional parameters (``prodigy(d_coef=0.5)``, ``schedulefree-adamw(warmup=0.05)``).
``hyperparameters()`` reports the effective step size (``d * lr``, or Schedule-Free's warmed-up
lr) as ``"0.lr"``; the loop switches Schedule-Free's train/eval modes through the setup's hooks.
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import Tensor

from baselines import lrfree
from bench.errors import UserError
from bench.methods import Family, MethodMeta, OptimizerSetup, RunContext, SingleRunMethod, named


class LRFreeMethod(SingleRunMethod):
    """A parsed learning-rate-free name."""

    def __init__(self, name: str) -> None:
        try:
            self.name, _ = lrfree.parse_lrfree(name)
        except ValueError as e:
            raise UserError(str(e)) from None

    def meta(self) -> MethodMeta:
        return MethodMeta("lrfree", self.name.split("(")[0])

    def build(self, params: Iterable[Tensor], run: RunContext) -> OptimizerSetup:
        built = lrfree.build_lrfree(self.name, params, total_steps=run.total_steps)
        return OptimizerSetup(built.optimizer, hyperparameters=built.effective_lr,
                              train_mode=built.train_mode, eval_mode=built.eval_mode)



FAMILY = Family(
    name="lrfree",
    description="learning-rate-free optimizers: "
    + "; ".join(s.describe() for s in lrfree.METHODS),
    examples=("prodigy", "dadapt-adam", "schedulefree-adamw(warmup=0.05)"),
    matches=named(lrfree.NAMES),
    parse=LRFreeMethod,
)
