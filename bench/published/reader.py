"""Reading published-results TOML files into ``bench.published.records``: the shipped papers by
key, or any file; every key is checked, every error (a ``PublishedDataError``) names the file, the
entry and the key."""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any

from bench.errors import UserError
from bench.published.records import (
    KINDS,
    Claim,
    Figure,
    LoggedRun,
    Paper,
    Point,
    PublishedDataError,
    Rerun,
    Row,
    Runs,
    Series,
    Table,
    Value,
)

__all__ = ["DIR", "PAPERS", "load", "load_file", "papers"]

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

DIR = Path(__file__).parent
PAPERS = ("chandra2022", "baydin2018")


@functools.cache
def load(key: str) -> Paper:
    """The shipped paper ``key`` (``chandra2022``, ``baydin2018``)."""
    if key not in PAPERS:
        raise UserError(f"unknown published paper {key!r}; valid papers: {', '.join(PAPERS)}")
    return load_file(DIR / f"{key}.toml")


def papers() -> tuple[Paper, ...]:
    """Every shipped paper."""
    return tuple(load(k) for k in PAPERS)


def load_file(path: str | Path) -> Paper:
    """Load one published-results file (the shipped ones, or a test's)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise PublishedDataError(f"{path}: not valid TOML: {e}") from None
    return _Reader(path).paper(data)


class _Reader:
    """Reads one file's data; every error names the file, the entry and the key."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def error(self, where: str, message: str) -> PublishedDataError:
        return PublishedDataError(f"{self.path}: {where}: {message}")

    def table(self, data: Any, where: str, valid: tuple[str, ...],
              required: tuple[str, ...] = ()) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise self.error(where, f"must be a table, but got {data!r}")
        for key in data:
            if key not in valid:
                raise self.error(where, f"unknown key {key!r}; valid keys: {', '.join(valid)}")
        for key in required:
            if key not in data:
                raise self.error(where, f"missing key {key!r}")
        return data

    def entries(self, data: Any, where: str) -> list[Any]:
        if data is None:
            return []
        if not isinstance(data, list):
            raise self.error(where, f"must be an array of tables, but got {data!r}")
        return data

    def text(self, d: dict[str, Any], key: str, where: str, default: str = "") -> str:
        value = d.get(key, default)
        if not isinstance(value, str):
            raise self.error(where, f"key {key!r} must be a string, but got {value!r}")
        return value

    def number(self, d: dict[str, Any], key: str, where: str) -> float | None:
        value = d.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(
                value):
            raise self.error(where, f"key {key!r} must be a finite number, but got {value!r}")
        return float(value)

    def integer(self, d: dict[str, Any], key: str, where: str) -> int | None:
        value = d.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(where, f"key {key!r} must be an integer, but got {value!r}")
        return value

    def strings(self, d: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
        value = d.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(where, f"key {key!r} must be a list of strings, but got {value!r}")
        return tuple(value)

    def numbers(self, d: dict[str, Any], key: str, where: str) -> tuple[float, ...]:
        value = d.get(key, [])
        if not isinstance(value, list) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            raise self.error(where, f"key {key!r} must be a list of numbers, but got {value!r}")
        return tuple(float(v) for v in value)

    # the file ---------------------------------------------------------------------------

    def paper(self, data: dict[str, Any]) -> Paper:
        self.table(data, "the file", ("paper", "table1", "figure", "runs", "claim"), ("paper",))
        head = self.table(data["paper"], "[paper]",
                          ("key", "title", "authors", "venue", "arxiv"), ("key", "title"))
        key = self.text(head, "key", "[paper]")
        claims = tuple(self.claim(c, f"[[claim]] number {i + 1}", key)
                       for i, c in enumerate(self.entries(data.get("claim"), "[[claim]]")))
        keys = [c.key for c in claims]
        if len(set(keys)) != len(keys):
            raise self.error("[[claim]]", f"claim keys must be unique, but got {keys}")
        return Paper(
            key=key, title=self.text(head, "title", "[paper]"),
            authors=self.text(head, "authors", "[paper]"),
            venue=self.text(head, "venue", "[paper]"), arxiv=self.text(head, "arxiv", "[paper]"),
            path=self.path,
            table=self.table1(data["table1"]) if "table1" in data else None,
            figures=tuple(self.figure(f, f"[[figure]] number {i + 1}")
                          for i, f in enumerate(self.entries(data.get("figure"), "[[figure]]"))),
            runs=self.runs(data["runs"]) if "runs" in data else None,
            claims=claims,
        )

    def table1(self, data: Any) -> Table:
        where = "[table1]"
        t = self.table(data, where, ("where", "workload", "metric", "seeds", "precision",
                                     "italic_reruns", "unread_note", "row", "rerun"),
                       ("workload", "row"))
        unread = self.text(t, "unread_note", where, "not read")
        rows = []
        for i, r in enumerate(self.entries(t.get("row"), "[[table1.row]]")):
            w = f"[[table1.row]] number {i + 1}"
            self.table(r, w, ("label", "method", "mean", "sd", "seeds", "source", "note"),
                       ("label", "method"))
            rows.append(Row(self.text(r, "label", w), self.text(r, "method", w),
                            self.value(r, w, unread, self.integer(t, "seeds", where))))
        reruns = []
        for i, r in enumerate(self.entries(t.get("rerun"), "[[table1.rerun]]")):
            w = f"[[table1.rerun]] number {i + 1}"
            self.table(r, w, ("parent", "label", "learned", "mean", "sd", "seeds", "source",
                              "note"), ("parent",))
            learned = r.get("learned", {})
            if not isinstance(learned, dict) or not all(
                    isinstance(v, (int, float)) and not isinstance(v, bool)
                    for v in learned.values()):
                raise self.error(w, f"key 'learned' must be a table of numbers such as "
                                    f"{{ lr = 0.02 }}, but got {learned!r}")
            reruns.append(Rerun(self.text(r, "parent", w), self.text(r, "label", w),
                                tuple(sorted((k, float(v)) for k, v in learned.items())),
                                self.value(r, w, unread, self.integer(t, "seeds", where))))
        return Table(self.text(t, "where", where), self.text(t, "workload", where),
                     self.text(t, "metric", where, "error"), self.integer(t, "seeds", where) or 0,
                     self.text(t, "precision", where), self.integer(t, "italic_reruns", where) or 0,
                     tuple(rows), tuple(reruns))

    def value(self, r: dict[str, Any], where: str, unread: str, seeds: int | None) -> Value:
        mean, sd = self.number(r, "mean", where), self.number(r, "sd", where)
        if sd is not None and mean is None:
            raise self.error(where, "key 'sd' is given without 'mean'")
        if sd is not None and sd < 0:
            raise self.error(where, f"key 'sd' must be >= 0, but got {sd}")
        if mean is not None and not r.get("source"):
            raise self.error(where, "a published number needs its 'source'")
        note = self.text(r, "note", where) or ("" if mean is not None else unread)
        return Value(mean, sd, self.integer(r, "seeds", where) or seeds,
                     self.text(r, "source", where), note)

    def figure(self, f: Any, where: str) -> Figure:
        self.table(f, where, ("key", "title", "where", "workload", "metric", "x", "precision",
                              "note", "series", "grid", "points"), ("key", "series", "points"))
        series = []
        for i, s in enumerate(self.entries(f.get("series"), f"{where}: series")):
            w = f"{where}: series number {i + 1}"
            self.table(s, w, ("label", "method"), ("label", "method"))
            series.append(Series(self.text(s, "label", w), self.text(s, "method", w)))
        labels = {s.label for s in series}
        points = []
        for i, p in enumerate(self.entries(f.get("points"), f"{where}: points")):
            w = f"{where}: points number {i + 1}"
            self.table(p, w, ("series", "x", "y"), ("series", "x", "y"))
            if p["series"] not in labels:
                raise self.error(w, f"series {p['series']!r} is not one of the figure's series: "
                                    f"{', '.join(sorted(labels))}")
            x, y = self.number(p, "x", w), self.number(p, "y", w)
            assert x is not None and y is not None
            points.append(Point(p["series"], x, y))
        precision = self.number(f, "precision", where)
        if points and precision is None:
            raise self.error(where, "points read from a figure need its 'precision'")
        return Figure(self.text(f, "key", where), self.text(f, "title", where),
                      self.text(f, "where", where), self.text(f, "workload", where),
                      self.text(f, "metric", where, "error"), self.text(f, "x", where),
                      precision, self.text(f, "note", where), tuple(series),
                      self.numbers(f, "grid", where), tuple(points))

    def runs(self, data: Any) -> Runs:
        where = "[runs]"
        t = self.table(data, where, ("repository", "commit", "seed", "precision", "metric", "run"),
                       ("repository", "run"))
        runs = []
        for i, r in enumerate(self.entries(t.get("run"), "[[runs.run]]")):
            w = f"[[runs.run]] number {i + 1}"
            self.table(r, w, ("model", "method", "methods", "workload", "path", "epochs",
                              "iterations", "train_loss", "test_loss", "final_lr", "note"),
                       ("model", "method", "path"))
            test_loss = self.number(r, "test_loss", w)
            note = self.text(r, "note", w)
            if test_loss is None and not note:
                raise self.error(w, "a run without 'test_loss' needs a 'note' saying why")
            runs.append(LoggedRun(
                self.text(r, "model", w), self.text(r, "method", w), self.strings(r, "methods", w),
                self.text(r, "workload", w), self.text(r, "path", w), self.integer(r, "epochs", w),
                self.integer(r, "iterations", w), self.number(r, "train_loss", w), test_loss,
                self.number(r, "final_lr", w), note))
        return Runs(self.text(t, "repository", where), self.text(t, "commit", where),
                    self.integer(t, "seed", where) or 0, self.text(t, "precision", where),
                    self.text(t, "metric", where, "loss"), tuple(runs))

    def claim(self, c: Any, where: str, paper: str) -> Claim:
        valid = ("key", "experiment", "text", "kind", "workload", "source", "metric", "a", "b",
                 "pairs", "mean", "sd", "value", "tolerance", "sigmas", "parents", "heights",
                 "grid", "diverged_score", "max_ratio")
        self.table(c, where, valid, ("key", "experiment", "text", "kind", "workload", "source"))
        kind = self.text(c, "kind", where)
        if kind not in KINDS:
            raise self.error(where, f"unknown kind {kind!r}; valid kinds: {', '.join(KINDS)}")
        if not any(all(k in c for k in keys) for keys in KINDS[kind]):
            forms = " or ".join("+".join(keys) for keys in KINDS[kind])
            raise self.error(where, f"a {kind!r} claim needs the keys {forms}")
        pairs = c.get("pairs", [])
        if not isinstance(pairs, list) or not all(
                isinstance(p, list) and len(p) == 2 and all(isinstance(s, str) for s in p)
                for p in pairs):
            raise self.error(where, f"key 'pairs' must be a list of [a, b] spec pairs, but got "
                                    f"{pairs!r}")
        sigmas = self.number(c, "sigmas", where)
        if sigmas is not None and sigmas <= 0:
            raise self.error(where, f"key 'sigmas' must be > 0, but got {sigmas}")
        return Claim(
            paper=paper, key=self.text(c, "key", where),
            experiment=self.text(c, "experiment", where), text=self.text(c, "text", where),
            kind=kind, workload=self.text(c, "workload", where),
            source=self.text(c, "source", where), metric=self.text(c, "metric", where, "error"),
            a=self.text(c, "a", where), b=self.text(c, "b", where),
            pairs=tuple((p[0], p[1]) for p in pairs), mean=self.number(c, "mean", where),
            sd=self.number(c, "sd", where), value=self.number(c, "value", where),
            tolerance=self.number(c, "tolerance", where),
            sigmas=2.0 if sigmas is None else sigmas, parents=self.text(c, "parents", where),
            heights=self.strings(c, "heights", where), grid=self.numbers(c, "grid", where),
            diverged_score=self.number(c, "diverged_score", where),
            max_ratio=self.number(c, "max_ratio", where),
        )
