"""The method registry: every way of training a model, named by a string.

Names are identities: ``parse_method(s).name`` is the canonical string, printed back exactly as
parsed; it is the label on a plot, the key in the store and what the CLI accepts.

Two kinds of method:
    - ``SingleRunMethod.setup(params, ...)`` builds an ``OptimizerSetup`` for one model (a
      family writes ``build(params, run)``, ``run`` the ``RunContext``);
    - ``SearchMethod.search(config, ...)`` runs many single runs inside one budget.

Each family of methods lives in a module of this package (``towers``, ``hd``, ``schedules``,
``lrfree``, ``search``) and exposes ``FAMILY``; ``FAMILY_MODULES`` is the dispatch order.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bench.errors import UserError

if TYPE_CHECKING:
    import torch
    from torch import Tensor

    from bench.config import RunConfig
    from bench.record import RunResult

# Dispatch order: the first family whose ``matches`` accepts a name parses it.
FAMILY_MODULES = ("search", "hd", "lrfree", "schedules", "towers")


@dataclass
class OptimizerSetup:
    """What a single-run method gives the training loop for one model.

    The loop calls ``step(compute_loss)`` once per optimizer step, ``hyperparameters()`` when it
    samples trajectories, and ``train_mode()`` / ``eval_mode()`` around evaluations (the harness
    switches modes, never the user: schedule-free optimizers need it).
    """

    optimizer: torch.optim.Optimizer
    scheduler: Any | None = None  # a torch.optim.lr_scheduler.LRScheduler stepped once per step
    hyperparameters: Callable[[], dict[str, float]] = field(default=lambda: {})
    train_mode: Callable[[], None] = field(default=lambda: None)
    eval_mode: Callable[[], None] = field(default=lambda: None)

    def step(self, compute_loss: Callable[[], Tensor]) -> Tensor:
        """One optimizer step: zero the grads, compute the loss, backpropagate, update."""
        self.optimizer.zero_grad(set_to_none=True)
        loss = compute_loss()
        loss.backward()
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        return loss


@dataclass(frozen=True)
class MethodMeta:
    """What a method says about itself: how reports group, order and label its runs.

    Attributes:
        family: ``tower`` (hypergrad, height 0 included), ``torch`` (plain torch.optim),
            ``gdtuo`` (the paper's reference), ``hd``, ``schedule``, ``lrfree`` or ``search``.
        base: the level-0 optimizer (``sgd``, ``adam``), or the method's own name for families
            without one (``prodigy``, ``tpe``).
        height: hyperoptimizers above level 0 (towers, gdtuo; 0 for plain torch), else ``None``.
        lr0: the initial level-0 step size, else ``None``.
        budget: a search's budget in single runs, else ``None``.
        sampler: a search's sampler (``tpe``), else ``None``.
    """

    family: str
    base: str
    height: int | None = None
    lr0: float | None = None
    budget: float | None = None
    sampler: str | None = None

    @classmethod
    def of_tower(cls, family: str, levels: list[tuple[type, dict[str, Any]]]) -> MethodMeta:
        """A tower's (or its reference twin's) meta from ``hypergrad.parse``'s levels."""
        return cls(family, levels[0][0].__name__.lower(), height=len(levels) - 1,
                   lr0=step_size(levels[0][1]))


def step_size(arguments: dict[str, Any]) -> float | None:
    """The ``lr`` of an optimizer's arguments as a number, or ``None`` (unset or not a number)."""
    lr = arguments.get("lr")
    return float(lr) if isinstance(lr, (int, float)) and not isinstance(lr, bool) else None


class Method(ABC):
    """A named way of training a model. ``name`` is canonical and round-trips through parse."""

    name: str
    kind: str  # "single" or "search"

    def __str__(self) -> str:
        return self.name

    @abstractmethod
    def meta(self) -> MethodMeta:
        """What this method is (family, base optimizer, height, ...), read from its parse."""


@dataclass(frozen=True)
class RunContext:
    """What a single run's optimizer may need besides its parameters.

    Attributes:
        total_steps: the run's optimizer steps (a schedule's length).
        steps_per_epoch: steps in one pass over the training split (epoch-based schedules).
        model: the model, for methods that must wrap it (the reference ``gdtuo`` tower).
    """

    total_steps: int
    steps_per_epoch: int
    model: torch.nn.Module | None = None


class SingleRunMethod(Method):
    kind = "single"

    def setup(
        self,
        params: Iterable[Tensor],
        *,
        total_steps: int,
        steps_per_epoch: int,
        model: torch.nn.Module | None = None,
    ) -> OptimizerSetup:
        """Build the optimizer (and schedule) for ``params``.

        ``model`` is given for methods that must wrap it (the reference ``gdtuo`` tower).
        """
        return self.build(params, RunContext(total_steps, steps_per_epoch, model))

    @abstractmethod
    def build(self, params: Iterable[Tensor], run: RunContext) -> OptimizerSetup:
        """The family's part of ``setup``: its optimizer for ``params`` in the run ``run``."""


class SearchMethod(Method):
    kind = "search"
    sampler: str
    args: dict[str, Any]

    def meta(self) -> MethodMeta:
        return MethodMeta("search", self.sampler, budget=float(self.args["budget"]),
                          sampler=self.sampler)

    @abstractmethod
    def search(
        self,
        config: RunConfig,
        *,
        train: Callable[[RunConfig], RunResult],
        storage: str | None = None,
        store: str | None = None,
    ) -> RunResult:
        """Run trials through ``train`` within ``config``'s budget and return one record.

        ``storage`` is where the study is kept; without one it follows the results ``store``.

        The record's ``cost`` sums every trial (pruned trials' partial steps included), its
        metrics are the trial selected on validation, and ``curves["best_so_far"]`` holds
        best-so-far validation and test numbers against cumulative cost.
        """


@dataclass(frozen=True)
class Family:
    """A family of methods: how to recognise, parse and describe its names."""

    name: str
    description: str
    examples: tuple[str, ...]
    matches: Callable[[str], bool]
    parse: Callable[[str], Method]


def named(heads: Iterable[str]) -> Callable[[str], bool]:
    """A family's ``matches`` for names that start with one of ``heads`` (``prodigy``,
    ``sgd-hd(...)``): a malformed argument list is still the family's, to explain."""
    known = frozenset(heads)
    return lambda name: name.split("(")[0].strip() in known


def families() -> list[Family]:
    return [importlib.import_module(f"bench.methods.{m}").FAMILY for m in FAMILY_MODULES]


def parse_method(name: str) -> Method:
    """Parse a method name; a name no family accepts lists the families and examples."""
    text = name.strip()
    for family in families():
        if family.matches(text):
            return family.parse(text)
    raise UserError(f"unknown method {name!r}; valid methods:\n{describe_methods()}")


def describe_methods() -> str:
    """One line per family: its name, what it is, and example names."""
    return "\n".join(
        f"  {f.name}: {f.description} (e.g. {', '.join(f.examples)})" for f in families()
    )
