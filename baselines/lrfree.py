"""Learning-rate-free peers: Prodigy, D-Adaptation (Adam, SGD), Schedule-Free (AdamW, SGD).

Each is the authors' package (``prodigyopt``, ``dadaptation``, ``schedulefree``), built from a
name such as ``prodigy``, ``dadapt-adam(lr=1)`` or ``schedulefree-adamw(lr=0.0025, warmup=0.05)``.
Their defaults are the packages' own. ``effective_lr`` reads the step size they actually use:
``d * lr`` for Prodigy and D-Adaptation (``d`` is their running estimate of the distance to the
solution), the warmed-up lr of the next step for Schedule-Free.

Schedule-Free optimizers keep two points and must be switched to the averaged one before an
evaluation (``optimizer.eval()``) and back before training (``optimizer.train()``);
``LRFreeOptimizer.train_mode`` / ``eval_mode`` do it, and the training loop calls them, never the
user. With BatchNorm their authors also recompute the running statistics at the averaged point;
this module does not (none of the MNIST workloads has BatchNorm).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import dadaptation
import prodigyopt
import schedulefree
import torch

from baselines.params import BETAS, WARMUP, WEIGHT_DECAY, momentum_param, positive_param
from baselines.spec import Param, Signature, format_call, parse


def _lr(default: float) -> Param:
    return positive_param("lr", default, doc="multiplier of d")


METHODS: tuple[Signature, ...] = (
    Signature("prodigy", (_lr(1.0), *BETAS, WEIGHT_DECAY, positive_param("d_coef", 1.0)),
              "Prodigy (Mishchenko & Defazio 2023)"),
    Signature("dadapt-adam", (_lr(1.0), *BETAS, WEIGHT_DECAY),
              "D-Adaptation Adam (Defazio & Mishchenko)"),
    Signature("dadapt-sgd", (_lr(1.0), momentum_param(0.0), WEIGHT_DECAY), "D-Adaptation SGD"),
    Signature("schedulefree-adamw", (_lr(0.0025), *BETAS, WEIGHT_DECAY, WARMUP),
              "Schedule-Free AdamW (Defazio et al. 2024)"),
    Signature("schedulefree-sgd", (_lr(1.0), momentum_param(0.9), WEIGHT_DECAY, WARMUP),
              "Schedule-Free SGD"),
)
NAMES = tuple(s.name for s in METHODS)


@dataclass
class LRFreeOptimizer:
    """A built learning-rate-free optimizer and the hooks the training loop needs."""

    optimizer: torch.optim.Optimizer
    train_mode: Callable[[], None] = field(default=lambda: None)
    eval_mode: Callable[[], None] = field(default=lambda: None)

    def effective_lr(self) -> dict[str, float]:
        """The step size in use, per group: ``{"0.lr": ...}`` (``"0.lr[i]"`` with several)."""
        values = [_effective(g) for g in self.optimizer.param_groups]
        if len(values) == 1:
            return {"0.lr": values[0]}
        return {f"0.lr[{i}]": v for i, v in enumerate(values)}


def _effective(group: dict[str, Any]) -> float:
    if "d" in group:  # Prodigy, D-Adaptation: the step is d * lr
        return float(group["d"]) * float(group["lr"])
    if "warmup_steps" in group and "k" in group:
        # Schedule-Free: the lr of the next step, its linear warm-up applied as its step() does.
        k, warmup = group["k"], group["warmup_steps"]
        return float(group["lr"]) * ((k + 1) / warmup if k < warmup else 1.0)
    return float(group["lr"])


def parse_lrfree(name: str) -> tuple[str, dict[str, Any]]:
    """Parse a name; returns ``(canonical name, arguments)``. Unknown names list the valid ones."""
    sig, args = parse(name, METHODS, "learning-rate-free method")
    return format_call(sig, args), args


def build_lrfree(name: str, params: Iterable[Any], *, total_steps: int) -> LRFreeOptimizer:
    """Build the optimizer named ``name`` for ``params``.

    Args:
        name: e.g. ``prodigy``, ``dadapt-sgd(momentum=0.9)``, ``schedulefree-adamw(warmup=0.05)``.
        params: tensors or param groups.
        total_steps: the run's number of steps (turns ``warmup`` fractions into steps).
    """
    sig, a = parse(name, METHODS, "learning-rate-free method")
    kind = sig.name
    if kind == "prodigy":
        opt = prodigyopt.Prodigy(params, lr=a["lr"], betas=(a["beta1"], a["beta2"]),
                                 weight_decay=a["weight_decay"], d_coef=a["d_coef"])
        return LRFreeOptimizer(opt)
    if kind == "dadapt-adam":
        opt = dadaptation.DAdaptAdam(params, lr=a["lr"], betas=(a["beta1"], a["beta2"]),
                                     weight_decay=a["weight_decay"])
        return LRFreeOptimizer(opt)
    if kind == "dadapt-sgd":
        opt = dadaptation.DAdaptSGD(params, lr=a["lr"], momentum=a["momentum"],
                                    weight_decay=a["weight_decay"])
        return LRFreeOptimizer(opt)
    warmup_steps = round(a["warmup"] * total_steps)
    if kind == "schedulefree-adamw":
        opt = schedulefree.AdamWScheduleFree(params, lr=a["lr"], betas=(a["beta1"], a["beta2"]),
                                             weight_decay=a["weight_decay"],
                                             warmup_steps=warmup_steps)
    else:
        opt = schedulefree.SGDScheduleFree(params, lr=a["lr"], momentum=a["momentum"],
                                           weight_decay=a["weight_decay"],
                                           warmup_steps=warmup_steps)
    # Schedule-Free refuses to step outside train mode: start there.
    opt.train()
    return LRFreeOptimizer(opt, train_mode=opt.train, eval_mode=opt.eval)
