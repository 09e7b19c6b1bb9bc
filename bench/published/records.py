"""The published results of a paper as frozen dataclasses: its table, figures, logged runs and
claims (what ``bench.published.reader`` builds from a TOML file, what the report reads)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.errors import UserError

__all__ = [
    "KINDS", "RERUN", "Claim", "Figure", "LoggedRun", "Paper", "Point", "PublishedDataError",
    "Rerun", "Row", "Runs", "Series", "Table", "Value",
]

# Claim kinds and the keys each needs (one of the tuples in a list: either form will do).
KINDS: dict[str, list[tuple[str, ...]]] = {
    "match": [("a", "mean")],
    "better": [("a", "b"), ("pairs",)],
    "same": [("a", "b"), ("pairs",)],
    "ratio": [("a", "b", "value")],
    "rerun_same": [("parents",)],
    "spread": [("heights", "grid")],
    "overhead": [("heights", "max_ratio")],
}
RERUN = "rerun:"  # a claim's spec prefix: the plain re-run of the spec after it


class PublishedDataError(UserError):
    """A published-results file is malformed; the message names the file, entry and key."""


@dataclass(frozen=True)
class Value:
    """A published number: ``mean`` (``None`` when it could not be read), ``sd``, seeds ``n``."""

    mean: float | None = None
    sd: float | None = None
    n: int | None = None
    source: str = ""
    note: str = ""

    @property
    def known(self) -> bool:
        return self.mean is not None

    def text(self, digits: int = 2) -> str:
        """``8.99 ± 0.05``, ``8.99``, or ``not read``."""
        if self.mean is None:
            return "not read"
        if self.sd is None:
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.sd:.{digits}f}"


@dataclass(frozen=True)
class Row:
    """A row of a published table: the paper's label, the harness's spec, the number."""

    label: str
    method: str
    value: Value


@dataclass(frozen=True)
class Rerun:
    """An italic row: the plain optimizer re-run with ``parent``'s learned values."""

    parent: str
    label: str
    learned: tuple[tuple[str, float], ...]
    value: Value


@dataclass(frozen=True)
class Table:
    """Chandra et al.'s Table 1."""

    where: str
    workload: str
    metric: str
    seeds: int
    precision: str
    italic_reruns: int
    rows: tuple[Row, ...]
    reruns: tuple[Rerun, ...]


@dataclass(frozen=True)
class Series:
    """One series of a figure: its legend label and the spec that runs it."""

    label: str
    method: str  # a spec, ``{lr}`` standing for the grid's value where the figure has a grid


@dataclass(frozen=True)
class Point:
    """One point read from a figure: its series' label, then x and y in the figure's units."""

    series: str
    x: float
    y: float


@dataclass(frozen=True)
class Figure:
    """The points read from one figure, and how precisely (``precision``, in y's units)."""

    key: str
    title: str
    where: str
    workload: str
    metric: str
    x: str
    precision: float | None
    note: str
    series: tuple[Series, ...]
    grid: tuple[float, ...]
    points: tuple[Point, ...]


@dataclass(frozen=True)
class LoggedRun:
    """The last row of one CSV of Baydin et al.'s repository (``None``: not read)."""

    model: str
    method: str
    methods: tuple[str, ...]
    workload: str
    path: str
    epochs: int | None
    iterations: int | None
    train_loss: float | None
    test_loss: float | None
    final_lr: float | None
    note: str


@dataclass(frozen=True)
class Runs:
    repository: str
    commit: str
    seed: int
    precision: str
    metric: str
    runs: tuple[LoggedRun, ...]


@dataclass(frozen=True)
class Claim:
    """One claim of a paper, as ``bench.report.claims`` checks it (see its docstring).

    ``a``/``b``/``pairs`` are method specs (``rerun:SPEC``: the plain re-run of SPEC);
    ``heights`` are specs by tower height, with ``{lr}`` filled from ``grid``.
    """

    paper: str
    key: str
    experiment: str
    text: str
    kind: str
    workload: str
    source: str
    metric: str = "error"
    a: str = ""
    b: str = ""
    pairs: tuple[tuple[str, str], ...] = ()
    mean: float | None = None
    sd: float | None = None
    value: float | None = None
    tolerance: float | None = None
    sigmas: float = 2.0
    parents: str = ""
    heights: tuple[str, ...] = ()
    grid: tuple[float, ...] = ()
    diverged_score: float | None = None
    max_ratio: float | None = None

    def comparisons(self) -> tuple[tuple[str, str], ...]:
        """The (a, b) pairs a ``better`` or ``same`` claim compares."""
        return self.pairs or ((self.a, self.b),)


@dataclass(frozen=True)
class Paper:
    """Everything published of one paper that the harness uses."""

    key: str
    title: str
    authors: str
    venue: str
    arxiv: str
    path: Path
    table: Table | None
    figures: tuple[Figure, ...]
    runs: Runs | None
    claims: tuple[Claim, ...]

    def figure(self, key: str) -> Figure | None:
        return next((f for f in self.figures if f.key == key), None)

    @property
    def cite(self) -> str:
        return f"{self.authors.split(',')[0].split()[-1]} et al., {self.venue}"
