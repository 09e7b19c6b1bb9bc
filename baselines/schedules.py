"""Fixed learning-rate schedules over ``torch.optim`` optimizers, named like the CLI writes them.

A name is ``OPTIMIZER+SCHEDULE``, e.g. ``sgd(lr=0.1, momentum=0.9)+cosine(warmup=0.05)``:

- optimizers: ``sgd(lr, momentum, nesterov, weight_decay)``, ``adam(lr, beta1, beta2, eps,
  weight_decay)``, ``adamw(...)`` (the same, decoupled weight decay);
- schedules (all stepped once per optimizer step, built on ``torch.optim.lr_scheduler``):
  ``constant``; ``step(at=[30, 60], gamma=0.1)`` (x gamma at the given epochs) or
  ``step(every=30, gamma=0.1)``; ``multistep(gamma=0.1)`` (x gamma at 50% and 75% of training,
  He et al. 2016); ``exponential(gamma=0.95)`` (x gamma per epoch, spread over its steps);
  ``cosine(warmup=0, min=0)`` (optional linear warm-up over a fraction of training, then cosine
  to ``min`` x lr); ``onecycle(pct=0.3, div=25, final_div=1e4)`` (Smith's one-cycle, peak at the
  optimizer's lr; momentum / beta1 cycled when the optimizer has it).

Epoch-based parameters are converted with ``steps_per_epoch``; fractions of training with
``total_steps``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch.optim import lr_scheduler

from baselines.params import BETAS, WARMUP, WEIGHT_DECAY, momentum_param, positive_param
from baselines.spec import Param, Signature, format_call, fraction, parse
from hypergrad.grammar import split_top

_LR = positive_param("lr", None, shown=True, doc="step size")
_ADAM_PARAMS = (_LR, *BETAS, positive_param("eps", 1e-8), WEIGHT_DECAY)

OPTIMIZERS: tuple[Signature, ...] = (
    Signature("sgd", (
        _LR,
        momentum_param(0.0),
        Param("nesterov", kind="bool", default=False),
        WEIGHT_DECAY,
    ), "torch.optim.SGD"),
    Signature("adam", _ADAM_PARAMS, "torch.optim.Adam"),
    Signature("adamw", _ADAM_PARAMS, "torch.optim.AdamW (decoupled weight decay)"),
)

SCHEDULES: tuple[Signature, ...] = (
    Signature("constant", (), "a constant step size"),
    Signature("step", (
        Param("at", kind="list", default=None, doc="epochs at which to multiply by gamma"),
        positive_param("every", None, doc="epochs between drops"),
        positive_param("gamma", 0.1, shown=True),
    ), "x gamma at given epochs (at=[..]) or every few epochs (every=E)"),
    Signature("multistep", (
        positive_param("gamma", 0.1, shown=True),
    ), "x gamma at 50% and 75% of training (He et al.)"),
    Signature("exponential", (
        positive_param("gamma", 0.95, shown=True),
    ), "x gamma per epoch"),
    Signature("cosine", (
        WARMUP,
        Param("min", default=0.0, check=fraction, rule="in [0, 1] (a fraction of lr)"),
    ), "cosine decay, after an optional linear warm-up"),
    Signature("onecycle", (
        Param("pct", default=0.3, check=lambda x: 0 < x < 1, rule="in (0, 1)"),
        positive_param("div", 25.0),
        positive_param("final_div", 1e4),
    ), "one-cycle: warm up to lr, then anneal (Smith 2018)"),
)


@dataclass(frozen=True)
class ScheduleSpec:
    """A parsed ``OPTIMIZER+SCHEDULE`` name."""

    optimizer: str
    optimizer_args: dict[str, Any]
    schedule: str
    schedule_args: dict[str, Any]

    @property
    def name(self) -> str:
        opt = next(s for s in OPTIMIZERS if s.name == self.optimizer)
        sched = next(s for s in SCHEDULES if s.name == self.schedule)
        return f"{format_call(opt, self.optimizer_args)}+{format_call(sched, self.schedule_args)}"


def parse_schedule(name: str) -> ScheduleSpec:
    """Parse ``sgd(lr=0.1, momentum=0.9)+cosine(warmup=0.05)``; errors list the valid names."""
    parts = split_top(name, "+")
    if len(parts) != 2 or not all(parts):
        raise ValueError(
            f"a scheduled method is OPTIMIZER+SCHEDULE, but got {name!r}; "
            "e.g. sgd(lr=0.1, momentum=0.9)+cosine(warmup=0.05)"
        )
    opt, opt_args = parse(parts[0], OPTIMIZERS, "optimizer")
    sched, sched_args = parse(parts[1], SCHEDULES, "schedule")
    if opt_args["lr"] is None:
        raise ValueError(f"{opt.name} needs a step size: write {opt.name}(lr=...) in {name!r}")
    if opt.name == "sgd" and opt_args["nesterov"] and opt_args["momentum"] == 0:
        raise ValueError(f"sgd(nesterov=true) needs momentum > 0, but got {name!r}")
    if sched.name == "step" and (sched_args["at"] is None) == (sched_args["every"] is None):
        raise ValueError(
            f"step needs exactly one of at=[epochs] or every=epochs, but got {parts[1]!r}"
        )
    if sched.name == "cosine" and sched_args["warmup"] >= 1:
        raise ValueError(f"cosine warmup must be < 1 (a fraction of training), got {parts[1]!r}")
    return ScheduleSpec(opt.name, opt_args, sched.name, sched_args)


def build_optimizer(spec: ScheduleSpec, params: Iterable[Any]) -> torch.optim.Optimizer:
    """The ``torch.optim`` optimizer of a parsed name."""
    a = spec.optimizer_args
    if spec.optimizer == "sgd":
        return torch.optim.SGD(params, lr=a["lr"], momentum=a["momentum"],
                               nesterov=a["nesterov"], weight_decay=a["weight_decay"])
    cls = torch.optim.Adam if spec.optimizer == "adam" else torch.optim.AdamW
    return cls(params, lr=a["lr"], betas=(a["beta1"], a["beta2"]), eps=a["eps"],
               weight_decay=a["weight_decay"])


def build_scheduler(spec: ScheduleSpec, optimizer: torch.optim.Optimizer, *, total_steps: int,
                    steps_per_epoch: int) -> lr_scheduler.LRScheduler:
    """The scheduler, to be stepped once after every optimizer step.

    Args:
        spec: the parsed name.
        optimizer: built by ``build_optimizer``.
        total_steps: the number of optimizer steps of the run.
        steps_per_epoch: converts epoch-based parameters (``step``, ``exponential``) to steps.
    """
    if total_steps < 1 or steps_per_epoch < 1:
        raise ValueError(
            f"total_steps and steps_per_epoch must be >= 1, but got {total_steps=}, "
            f"{steps_per_epoch=}"
        )
    a, kind = spec.schedule_args, spec.schedule
    if kind == "constant":
        return lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
    if kind == "step":
        if a["every"] is not None:
            every = max(1, round(a["every"] * steps_per_epoch))
            return lr_scheduler.StepLR(optimizer, step_size=every, gamma=a["gamma"])
        milestones = sorted({max(1, round(e * steps_per_epoch)) for e in a["at"]})
        return lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=a["gamma"])
    if kind == "multistep":
        milestones = sorted({max(1, round(f * total_steps)) for f in (0.5, 0.75)})
        return lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=a["gamma"])
    if kind == "exponential":
        return lr_scheduler.ExponentialLR(optimizer, gamma=a["gamma"] ** (1.0 / steps_per_epoch))
    if kind == "cosine":
        return _warmup_cosine(optimizer, total_steps, a["warmup"], a["min"])
    return _one_cycle(optimizer, total_steps, a, spec.optimizer_args)


def _warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int, warmup: float,
                   min_factor: float) -> lr_scheduler.LRScheduler:
    """Linear warm-up over ``warmup`` of training (step k at (k+1)/W x lr), then a cosine from lr
    to ``min_factor`` x lr at the last step.

    One closed-form ``LambdaLR``: exact at every step and per group, where chaining LinearLR and
    CosineAnnealingLR in a SequentialLR is recursive and takes one eta_min for all groups.
    """
    warmup_steps = round(warmup * total_steps)
    cosine_steps = max(1, total_steps - warmup_steps - 1)

    def factor(k: int) -> float:
        if k < warmup_steps:
            return (k + 1) / warmup_steps
        t = min(k - warmup_steps, cosine_steps) / cosine_steps
        return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * t))

    return lr_scheduler.LambdaLR(optimizer, factor)


def _one_cycle(optimizer: torch.optim.Optimizer, total_steps: int, a: dict[str, Any],
               opt_args: dict[str, Any]) -> lr_scheduler.LRScheduler:
    # Cycling momentum on an SGD without momentum would switch momentum on: only when it has it.
    cycle = opt_args.get("momentum", 0.0) > 0 or "beta1" in opt_args
    peak = [g["lr"] for g in optimizer.param_groups]
    # torch's OneCycleLR takes total_steps + 1 schedule points; one step more than the run keeps
    # the last scheduler.step() (after the last optimizer step) inside its range.
    return lr_scheduler.OneCycleLR(optimizer, max_lr=peak, total_steps=total_steps + 1,
                                   pct_start=a["pct"], div_factor=a["div"],
                                   final_div_factor=a["final_div"], cycle_momentum=cycle)


def current_lrs(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """``{"0.lr": lr}`` (``"0.lr[i]"`` per group with several groups), as the towers report."""
    groups = optimizer.param_groups
    if len(groups) == 1:
        return {"0.lr": float(groups[0]["lr"])}
    return {f"0.lr[{i}]": float(g["lr"]) for i, g in enumerate(groups)}
