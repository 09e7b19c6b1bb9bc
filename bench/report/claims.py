"""The Claims section of a report: the papers' claims, checked against stored results.

The claims are data (``[[claim]]`` in ``bench/published/*.toml``, plus one ``match`` claim per
Table 1 row with a published mean); ``bench.report.claim_rules`` holds the statistics and the
rule of each kind. A claim is checked on each setting (workload, and device where several) of its
``workload``; a claim's experiment (``table1``, ``sensitivity``, ``resnet``, ...) is shown when
the results hold a run of any of its claims, and its other claims are then ``not run``.

Also: for each plain re-run row, how many parents' seeds could not be re-run because a learned
value is invalid for a plain optimizer (a step size that ended <= 0): ``rerun_counts``; and the
section's tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from bench import published as pub
from bench.record import DONE
from bench.report.claim_rules import (
    NOT_REPRODUCED,
    NOT_RUN,
    REPRODUCED,
    ClaimRow,
    check_match,
    check_overhead,
    check_pairs,
    check_ratio,
    check_reruns,
    check_spread,
    select,
)
from bench.report.frame import done
from bench.report.tables import markdown

RULES = (
    "A side of a comparison is its finished runs: mean ± sample sd over seeds (n). The combined "
    "sd of two sides is √(sd_a² + sd_b²) (a published value's sd: its std, else the reading "
    "precision of its figure); the noise is k × that (k = 2 unless a claim says otherwise), or "
    "the claim's stated tolerance where that is larger. **match**: reproduced when |ours − "
    "published| ≤ noise. **better** (A below B): reproduced when B − A > noise. **same**: "
    "reproduced when |A − B| ≤ noise. **ratio**: reproduced when |A/B − value| ≤ max(k × sd of "
    "the ratio, tolerance). **spread** (taller towers less sensitive): reproduced when no height's "
    "spread over the grid of initial step sizes (max − min of the per-step-size means) exceeds "
    "the one below's by more than its noise, and the tallest's is below height 0's by more than "
    "that noise. **overhead**: reproduced when each level's median step time is at most the "
    "stated multiple of the level below's. **not run**: a side has no finished run here, or "
    "the published number it needs could not be read."
)


# ---------------------------------------------------------------- all claims of a result set


def table_claims(paper: pub.Paper) -> list[pub.Claim]:
    """One ``match`` claim per Table 1 row (and italic row) with a published mean."""
    table = paper.table
    if table is None:
        return []
    out = []
    for row in table.rows:
        if row.value.known:
            out.append(pub.Claim(
                paper=paper.key, key=f"table1:{row.label}", experiment="table1",
                text=f"Table 1, {row.label}: test error {row.value.text()} %", kind="match",
                workload=table.workload, source=row.value.source, metric=table.metric,
                a=row.method, mean=row.value.mean, sd=row.value.sd))
    for rerun in table.reruns:
        if rerun.value.known:
            out.append(pub.Claim(
                paper=paper.key, key=f"table1:rerun:{rerun.parent}", experiment="table1",
                text=f"Table 1, italic re-run of {rerun.parent}: {rerun.value.text()} %",
                kind="match", workload=table.workload, source=rerun.value.source,
                metric=table.metric, a=pub.RERUN + rerun.parent, mean=rerun.value.mean,
                sd=rerun.value.sd))
    return out


def all_claims(papers: tuple[pub.Paper, ...] | None = None) -> list[pub.Claim]:
    papers = pub.papers() if papers is None else papers
    return [c for p in papers for c in (*table_claims(p), *p.claims)]


def _parents(claim: pub.Claim, papers: tuple[pub.Paper, ...]) -> list[str]:
    if claim.parents == "table1":
        paper = next(p for p in papers if p.key == claim.paper)
        return [r.parent for r in paper.table.reruns] if paper.table else []
    return [p.strip() for p in claim.parents.split(";") if p.strip()]


def _present(claim: pub.Claim, papers: tuple[pub.Paper, ...], present: set[str]) -> bool:
    """Whether the results hold runs of the claim: any of its specs, or for a claim over a
    grid of step sizes, two points of one of its heights (one run of a grid spec is another
    experiment's: paper-mnist's ``sgd(0.01)`` is not a sensitivity study)."""
    if claim.heights and claim.grid:
        return any(sum(pub.canonical(pub.fill(h, lr)) in present for lr in claim.grid) >= 2
                   for h in claim.heights)
    specs = [s for pair in claim.comparisons() for s in pair if s] + list(claim.heights)
    specs += _parents(claim, papers) if claim.kind == "rerun_same" else []
    return any(pub.canonical(s.removeprefix(pub.RERUN)) in present for s in specs)


def evaluate(frame: pd.DataFrame, papers: tuple[pub.Paper, ...] | None = None) -> list[ClaimRow]:
    """Every applicable claim on every setting of ``frame``, in the data's order."""
    papers = pub.papers() if papers is None else papers
    claims = all_claims(papers)
    rows: list[ClaimRow] = []
    for setting, runs in frame.groupby("setting", sort=True):
        workload = str(runs["workload"].iloc[0])
        mine = [c for c in claims if c.workload == workload]
        present = {pub.canonical(m) for m in runs["method"]}
        applies = {c.experiment for c in mine if _present(c, papers, present)}
        for claim in mine:
            if claim.experiment not in applies:
                continue
            if claim.kind == "match":
                rows += check_match(setting, runs, claim)
            elif claim.kind in ("better", "same"):
                rows += check_pairs(setting, runs, claim)
            elif claim.kind == "ratio":
                rows += check_ratio(setting, runs, claim)
            elif claim.kind == "rerun_same":
                rows += check_reruns(setting, runs, claim, _parents(claim, papers))
            elif claim.kind == "spread":
                rows += check_spread(setting, runs, claim)
            elif claim.kind == "overhead":
                rows += check_overhead(setting, runs, claim)
    return rows


# ---------------------------------------------------------------- re-runs that cannot be made


@dataclass(frozen=True)
class RerunCount:
    """For one hyperoptimized row: its finished parent runs and what became of their re-runs."""

    setting: str
    parent: str
    parents_done: int
    reruns_stored: int
    impossible: int
    reasons: tuple[str, ...]


def rerun_counts(frame: pd.DataFrame, papers: tuple[pub.Paper, ...] | None = None
                 ) -> list[RerunCount]:
    """Per re-run row of each setting: for how many seeds the plain re-run could not be made.

    The rows are Table 1's italic rows (where its workload is present) and any other parent
    with re-runs stored. A parent's re-run cannot be made when its learned values give no valid
    plain optimizer (``bench.suite.resolve_dependent`` refuses it, as the scheduler does: a step
    size that ended <= 0).
    """
    from bench.config import RunConfig
    from bench.errors import UserError
    from bench.suite import LEARNED_FROM, resolve_dependent

    papers = pub.papers() if papers is None else papers
    out = []
    for setting, runs in frame.groupby("setting", sort=True):
        workload = str(runs["workload"].iloc[0])
        specs = [r.parent for p in papers if p.table and p.table.workload == workload
                 for r in p.table.reruns]
        with_reruns = runs[runs["run_id"].isin(set(runs["parent"].dropna()))]["method"]
        specs += [m for m in dict.fromkeys(with_reruns)
                  if pub.canonical(m) not in {pub.canonical(s) for s in specs}]
        for spec in specs:
            parents = done(select(runs, spec))
            if parents.empty:
                continue
            stored = runs[runs["parent"].isin(set(parents["run_id"]))]
            impossible, reasons = 0, []
            for parent in parents["result"]:
                if (stored["parent"] == parent.run_id).any():
                    continue
                config = RunConfig.from_dict(parent.config).with_options(
                    **{LEARNED_FROM: parent.run_id})
                try:
                    resolve_dependent(config, parent)
                except UserError as e:
                    impossible += 1
                    seed = parent.config.get("seed")
                    reasons.append(f"seed {seed}: {_first_clause(str(e))}")
            out.append(RerunCount(setting, pub.canonical(spec), len(parents),
                                  int((stored["status"] == DONE).sum()), impossible,
                                  tuple(reasons)))
    return out


def _first_clause(message: str) -> str:
    """``level 0 (sgd): lr must be > 0, but got lr=-0.002 in spec ...; arguments ...`` ->
    ``lr must be > 0, but got lr=-0.002``."""
    text = message.split(";")[0]
    text = text.split(" in spec ")[0]
    return text.split(": ", 1)[-1] if text.startswith("level ") else text


# ---------------------------------------------------------------- the section's tables


def _claim_numbers(rows: Sequence[ClaimRow]) -> dict[tuple[str, str], int]:
    """A number per claim (paper, key), in the order the rows first name it."""
    numbers: dict[tuple[str, str], int] = {}
    for row in rows:
        numbers.setdefault((row.claim.paper, row.claim.key), len(numbers) + 1)
    return numbers


def claims_table(rows: Sequence[ClaimRow]) -> str:
    """The checked claims: a row per claim and setting."""
    numbers = _claim_numbers(rows)
    table = []
    for r in rows:
        verdict = r.verdict if r.verdict != NOT_REPRODUCED else f"**{NOT_REPRODUCED}**"
        table.append([f"[{numbers[(r.claim.paper, r.claim.key)]}]", r.setting, r.text,
                      r.published, r.ours, "—" if r.sigmas is None else f"{r.sigmas:+.1f}",
                      verdict, r.why])
    return markdown(table, ["#", "workload", "claim", "published", "ours (mean ± sd, n)",
                            "Δ (combined sd)", "verdict", "why"])


def claims_sources(rows: Sequence[ClaimRow]) -> str:
    """Where each claim is from, numbered as in ``claims_table``."""
    numbers = _claim_numbers(rows)
    seen = {}
    for r in rows:
        seen.setdefault((r.claim.paper, r.claim.key), r.claim)
    return "\n".join(f"[{numbers[k]}] {c.paper}: {c.source}" for k, c in seen.items())


def claims_summary(rows: Sequence[ClaimRow]) -> str:
    """Counts by verdict, and in plain words each claim that did not hold here."""
    counts = {v: sum(r.verdict == v for r in rows) for v in (REPRODUCED, NOT_REPRODUCED, NOT_RUN)}
    text = ", ".join(f"{n} {verdict}" for verdict, n in counts.items())
    text = f"**{text}.**"
    failed = [r for r in rows if r.verdict == NOT_REPRODUCED]
    if failed:
        text += "\n\nWhere a published claim does not hold on these runs:\n\n" + "\n".join(
            f"- {r.setting}: *{r.text}* does not hold here: {r.why}." for r in failed)
    return text


def unread_published(rows: Sequence[ClaimRow]) -> str | None:
    """What the papers publish for the shown experiments that could not be read (so the
    report can say it was not compared)."""
    workloads = {r.claim.workload for r in rows}
    papers = {r.claim.paper for r in rows}
    experiments = {r.claim.experiment for r in rows}
    lines = []
    for paper in pub.papers():
        if paper.key not in papers:
            continue
        table = paper.table
        if table is not None and table.workload in workloads and "table1" in experiments:
            rows_unread = [r for r in table.rows if not r.value.known]
            reruns_unread = [r for r in table.reruns if not r.value.known]
            if rows_unread or reruns_unread:
                lines.append(
                    f"- {paper.cite}, {table.where.split(' (')[0]}: {len(rows_unread)} of "
                    f"{len(table.rows)} rows and {len(reruns_unread)} of the {len(table.reruns)} "
                    f"re-runs (the paper prints {table.italic_reruns} italic rows) have no "
                    f"number that could be read ({_reason(rows_unread or reruns_unread)}); "
                    "they are not compared.")
        for figure in paper.figures:
            if figure.key in experiments and figure.workload in workloads and not figure.points:
                lines.append(f"- {paper.cite}, {figure.title}: "
                             f"{figure.note.removeprefix('not read: ')}.")
    if not lines:
        return None
    return "Published numbers that could not be read (`bench/published/`):\n\n" + "\n".join(lines)


def _reason(items: Sequence[pub.Row | pub.Rerun]) -> str:
    return items[0].value.note.removeprefix("not read: ") if items else ""


def rerun_count_table(counts: Sequence[RerunCount]) -> str:
    """Per hyperoptimized row: finished parents, re-runs stored, re-runs that cannot be made."""
    rows = [[c.setting, c.parent, c.parents_done, c.reruns_stored, c.impossible,
             "; ".join(c.reasons) or "—"] for c in counts]
    return markdown(rows, ["workload", "hyperoptimized row", "finished seeds", "re-runs done",
                           "re-runs that cannot be made", "why"])
