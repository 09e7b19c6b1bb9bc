"""The declared search spaces: per optimizer, then per schedule, as ``Dim`` ranges and grids.

A search base is an optimizer (``sgd``, ``adam``) or an optimizer with a schedule
(``sgd+cosine``): the schedule's parameters add to the optimizer's.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["OPTIMIZER_SPACES", "SCHEDULE_SPACES", "Dim", "SearchSpace", "bases"]


@dataclass(frozen=True)
class Dim:
    """One searched hyperparameter: a float in ``[low, high]`` (log-uniform when ``log``).

    ``grid`` holds its values for the grid search; ``digits`` the significant digits a sampled
    value keeps (readable, reproducible trial names).
    """

    name: str
    low: float
    high: float
    log: bool = False
    grid: tuple[float, ...] = ()
    digits: int = 4

    def round(self, value: float) -> float:
        rounded = float(f"{value:.{self.digits}g}")
        return min(self.high, max(self.low, rounded))


# The declared spaces: per optimizer, then per schedule (their parameters add to the optimizer's).
OPTIMIZER_SPACES: dict[str, tuple[Dim, ...]] = {
    "sgd": (
        Dim("lr", 1e-4, 1.0, log=True, grid=(1e-3, 1e-2, 1e-1, 1.0)),
        Dim("momentum", 0.0, 0.99, grid=(0.0, 0.9)),
    ),
    "adam": (
        Dim("lr", 1e-5, 1e-1, log=True, grid=(1e-4, 1e-3, 1e-2, 1e-1)),
        Dim("beta1", 0.5, 0.99, grid=(0.9,)),
        Dim("beta2", 0.9, 0.9999, grid=(0.99, 0.999)),
    ),
}
SCHEDULE_SPACES: dict[str, tuple[Dim, ...]] = {
    "constant": (),
    "cosine": (Dim("warmup", 0.0, 0.2, grid=(0.0, 0.05)),),
    "multistep": (Dim("gamma", 0.01, 0.5, log=True, grid=(0.1,)),),
    "exponential": (Dim("gamma", 0.5, 1.0, grid=(0.9,)),),
    "onecycle": (Dim("pct", 0.1, 0.5, grid=(0.3,)),),
}


@dataclass(frozen=True)
class SearchSpace:
    """The space of a base: ``sgd``, ``adam``, or ``OPTIMIZER+SCHEDULE`` (``sgd+cosine``)."""

    base: str
    optimizer: str
    schedule: str | None
    dims: tuple[Dim, ...]

    @classmethod
    def of(cls, base: str) -> SearchSpace:
        optimizer, _, schedule = base.partition("+")
        if optimizer not in OPTIMIZER_SPACES:
            raise ValueError(f"unknown search base {base!r}; valid bases: {', '.join(bases())}")
        if schedule and schedule not in SCHEDULE_SPACES:
            raise ValueError(f"unknown search base {base!r}; valid bases: {', '.join(bases())}")
        dims = OPTIMIZER_SPACES[optimizer] + (SCHEDULE_SPACES[schedule] if schedule else ())
        return cls(base, optimizer, schedule or None, dims)

    def grid(self) -> list[dict[str, float]]:
        """Every grid point, in a fixed order (the grid search shuffles it with its seed)."""
        points: list[dict[str, float]] = [{}]
        for d in self.dims:
            points = [p | {d.name: v} for p in points for v in d.grid]
        return points

    def describe(self) -> str:
        parts = [
            f"{d.name} in [{d.low:g}, {d.high:g}]{' log' if d.log else ''}" for d in self.dims
        ]
        return f"{self.base}: " + ", ".join(parts)


def bases() -> list[str]:
    """Every valid base: the optimizers, alone or with a schedule."""
    names = list(OPTIMIZER_SPACES)
    names += [f"{o}+{s}" for o in OPTIMIZER_SPACES for s in SCHEDULE_SPACES if s != "constant"]
    return names
