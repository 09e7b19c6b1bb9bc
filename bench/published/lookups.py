"""Looking up what the papers published for a run: the report's "published" column."""

from __future__ import annotations

import functools

from bench.published.reader import papers
from bench.published.records import Paper, Value

__all__ = ["canonical", "fill", "published_cells"]


@functools.lru_cache(maxsize=4096)
def canonical(spec: str) -> str:
    """A spec as the method registry prints it (the name stored results carry), or as given."""
    try:
        from bench.methods import parse_method

        return parse_method(spec).name
    except Exception:  # an unknown or old spelling matches only itself
        return spec


def fill(spec: str, lr: float) -> str:
    """A grid spec with ``{lr}`` replaced, formatted as suites write values (``1e-08``)."""
    return spec.replace("{lr}", format(lr, "g"))


def published_cells(workload: str, method: str, *, parent: str | None = None,
                    shipped: tuple[Paper, ...] | None = None) -> list[str]:
    """What the papers published for ``method`` on ``workload``: one text per source.

    Args:
        workload: the harness's workload name.
        method: the run's method (any spelling the registry accepts).
        parent: for a plain re-run, its parent's method: the italic rows are keyed by it.
        shipped: the papers to look in (default: every shipped paper).
    """
    out = []
    target = canonical(parent if parent is not None else method)
    for paper in shipped if shipped is not None else papers():
        table = paper.table
        if table is not None and table.workload == workload:
            cite = table.where.split(" (")[0]
            if parent is None:
                for row in table.rows:
                    if canonical(row.method) == target:
                        out.append(_cell(row.value, f"{cite}, {row.label}"))
            else:
                for rerun in table.reruns:
                    if canonical(rerun.parent) == target:
                        learned = ", ".join(f"{k}={v:.3g}" for k, v in rerun.learned)
                        out.append(_cell(rerun.value, f"{cite}, italic row"
                                         + (f"; learned {learned}" if learned else "")))
        if paper.runs is not None and parent is None:
            for run in paper.runs.runs:
                if run.workload == workload and target in {canonical(m) for m in run.methods}:
                    out.append("not read" if run.test_loss is None else
                               f"test loss {run.test_loss:.4g} ({paper.cite}: their run, "
                               f"seed {paper.runs.seed})")
    return out


def _cell(value: Value, where: str) -> str:
    if not value.known:
        return "not read"
    seeds = f", {value.n} seeds" if value.n else ""
    return f"{value.text()} ({where}{seeds})"
