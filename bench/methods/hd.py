"""The ``hd`` family: hand-derived hypergradient descent (Baydin et al., ICLR 2018).

Names: ``sgd-hd(lr=0.001, beta=0.001)``, ``sgdn-hd(lr=0.001, beta=0.001)`` (Nesterov, momentum
0.9), ``adam-hd(lr=0.001, beta=1e-7)``; ``mult=true`` selects the multiplicative form,
``weight_decay``, ``momentum``, ``beta1``, ``beta2``, ``eps`` as in ``baselines.hd``.
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import Tensor

from baselines import hd
from bench.errors import UserError
from bench.methods import Family, MethodMeta, OptimizerSetup, RunContext, SingleRunMethod, named


class HDMethod(SingleRunMethod):
    """A parsed HD name; ``setup`` builds the optimizer, whose step size is ``"0.lr"``."""

    def __init__(self, name: str) -> None:
        try:
            self.name, self.args = hd.parse_hd(name)
        except ValueError as e:
            raise UserError(str(e)) from None

    def meta(self) -> MethodMeta:
        return MethodMeta("hd", self.name.split("(")[0].removesuffix("-hd"),
                          lr0=float(self.args["lr"]))

    def build(self, params: Iterable[Tensor], run: RunContext) -> OptimizerSetup:
        optimizer = hd.build_hd(self.name, params)
        return OptimizerSetup(optimizer, hyperparameters=lambda: hd.step_sizes(optimizer))



FAMILY = Family(
    name="hd",
    description="hypergradient descent by hand (Baydin et al.): "
    + "; ".join(s.describe() for s in hd.SIGNATURES),
    examples=("sgd-hd(lr=0.001, beta=0.001)", "sgdn-hd(lr=0.001, beta=0.001)",
              "adam-hd(lr=0.001, beta=1e-7, mult=true)"),
    matches=named(hd.NAMES),
    parse=HDMethod,
)
