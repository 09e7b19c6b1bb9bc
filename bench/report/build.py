"""Assembling a report: which sections the data supports, their text, their figures.

A section appears when the results hold what it needs, decided from the methods and workloads
present, not from a suite's name: any store gives a sensible report. Every report starts with
the same header: how to reproduce it, the run counts by status, the environments, the runs that
failed or diverged (listed, never dropped) and the suite's configuration.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from bench.record import RunResult
from bench.report import (
    budget,
    claims,
    equal_cost,
    method_table,
    overhead,
    scoring,
    sensitivity,
    style,
    tables,
    trajectories,
)
from bench.report import structure as st
from bench.report.frame import done, runs_frame
from bench.report.profiles import profile_figure


@dataclass(frozen=True)
class SuiteInfo:
    """What a report says about the suite it covers.

    Attributes:
        name: the suite's name.
        text: the suite file's text (shown in the report), or a description.
        planned: the number of runs its plan holds.
        pending: how many of them are not in the store yet (and can still be trained).
        ref: how the user named it (a shipped suite's name or a file path), for commands.
        impossible: planned re-runs that cannot be made, each with why (its parent learned a
            value no plain optimizer accepts, such as a step size of 0).
    """

    name: str
    text: str
    planned: int = 0
    pending: int = 0
    ref: str = ""
    impossible: list[str] = field(default_factory=list)


@dataclass
class Report:
    """A report under construction: markdown parts and the figures written so far."""

    out: Path
    parts: list[str] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)

    def add(self, *texts: str) -> None:
        self.parts.extend(texts)

    def figure(self, path: Path, alt: str) -> None:
        self.figures.append(path)
        self.parts.append(f"![{alt}]({path.relative_to(self.out).as_posix()})")


SEARCH_ERROR_NOTE = (
    "A search's test error is its chosen trial's: each trial trains on the training split less "
    "a held-out validation part (`Workload.search_holdout`: 10% of the images, 5% of the text), "
    "the search chooses on that part, and the chosen trial's model is tested as it was trained, "
    "not re-trained on the whole split (which would cost one more run). Single runs (towers, "
    "schedules, hypergradient descent) train on the whole split, as both papers did; a search's "
    "cost counts every trial it trained, pruned ones included."
)


def write_report(
    results: Iterable[RunResult],
    out: str | Path,
    *,
    title: str,
    source: str,
    command: str,
    suite: SuiteInfo | None = None,
) -> Path:
    """Write ``out/README.md`` and its PNG figures; return the markdown file.

    Args:
        results: the runs to report (every status).
        out: the report's folder (created; an earlier report's figures there are replaced, other
            files are left alone).
        title: the report's title.
        source: where the results came from (a store path, an export file).
        command: the command line that reproduces the report.
        suite: the suite the results belong to, if any.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _remove_old_figures(out)
    frame = runs_frame(results)
    report = Report(out)
    analysis = equal_cost.analyse(frame, _run_units(frame)) if not frame.empty else None
    _header(report, frame, title, source, command, suite, analysis)
    if not frame.empty:
        with style.drawing_in_background():  # figures drawn while the next sections are built
            _methods_section(report, frame)
            _claims_section(report, frame)
            _equal_cost_section(report, frame, analysis)
            _sensitivity_section(report, frame)
            _overhead_section(report, frame)
            _budget_section(report, frame)
            _trajectory_section(report, frame)
    path = out / "README.md"
    path.write_text("\n\n".join(report.parts).rstrip() + "\n")
    return path


def _remove_old_figures(out: Path) -> None:
    """Delete the figures an earlier report in ``out`` linked: one the new data no longer
    supports must not linger. Other files in the folder are left alone."""
    readme = out / "README.md"
    if readme.is_file():
        for name in re.findall(r"!\[[^\]]*\]\(([^)/]+\.png)\)", readme.read_text()):
            (out / name).unlink(missing_ok=True)


def _header(report: Report, frame: pd.DataFrame, title: str, source: str, command: str,
            suite: SuiteInfo | None, analysis: equal_cost.Analysis | None) -> None:
    now = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    report.add(f"# {title}")
    summary = (equal_cost.summary(frame, analysis.verdicts, analysis.scores.iloc[:, 0],
                                  analysis.targets) if analysis else None)
    if summary:
        report.add("## Summary", summary,
                   "(Generated from the numbers below: section *Can towers replace tuning?*.)")
    report.add(
        f"Results from `{source}`: {len(frame)} runs over {frame['setting'].nunique()} "
        f"workload(s) and {frame['method'].nunique()} method(s). Generated {now}.",
        "Reproduce:\n\n```sh\n" + command + "\n```",
        "## Runs\n\n" + tables.status_counts(frame),
    )
    if suite is not None and suite.planned:
        report.add(f"Planned by suite `{suite.name}`: {suite.planned} runs; "
                   f"{suite.pending} not in the store yet"
                   + (f"; {len(suite.impossible)} re-runs that cannot be made." if suite.impossible
                      else "."))
        if suite.impossible:
            report.add("Planned re-runs that cannot be made (the suite skips them, and says "
                       "why):\n\n" + "\n".join(f"- {line}" for line in suite.impossible))
    problems = tables.problem_runs(frame)
    if problems:
        report.add("Runs that are not results (failed, diverged, interrupted):\n\n" + problems)
    if not frame.empty:
        report.add("## Environment\n\n" + tables.environment_table(frame))
        if frame["shared_gpu"].any():
            report.add("† Timings marked † were taken while several runs shared one GPU.")
    if suite is not None:
        report.add(f"## Suite `{suite.name}`\n\n```toml\n{suite.text.rstrip()}\n```")


def _methods_section(report: Report, frame: pd.DataFrame) -> None:
    report.add(
        "## Test error by method",
        "Grouped by base optimizer as in Table 1 of Chandra et al. (2022); mean ± sd over seeds "
        "(`runs`: results, then runs that are not). Learned values are the final level-0 "
        "hyperparameters (mean over seeds); *italic* rows re-run the plain optimizer with the "
        "row's learned values. The `published` column holds what the papers published for the "
        "row (`bench/published/*.toml`, with where each number is from); `not read`: the paper "
        "has the row, but its number could not be read from any source reachable when the data "
        "was written (it is absent from the data, never guessed).",
    )
    if (frame["family"] == st.SEARCH).any():
        report.add(SEARCH_ERROR_NOTE)
    for setting, runs in frame.groupby("setting", sort=True):
        report.add(f"### {setting}\n\n" + method_table.method_table(runs))


def _claims_section(report: Report, frame: pd.DataFrame) -> None:
    rows = claims.evaluate(frame)
    counts = claims.rerun_counts(frame)
    if not rows and not any(c.impossible or c.reruns_stored for c in counts):
        return
    report.add("## Claims of the papers")
    if rows:
        report.add(
            "Each claim the papers make about these experiments, checked on the runs above "
            "(`bench/report/claims.py`; the claims are data in `bench/published/*.toml`). "
            "Δ is the difference in units of the combined standard deviation. Rules: "
            + claims.RULES,
            claims.claims_table(rows),
        )
        report.add(claims.claims_summary(rows))
        sources = claims.claims_sources(rows)
        if sources:
            report.add("Sources of the claims:\n\n" + sources)
    unread = claims.unread_published(rows)
    if unread:
        report.add(unread)
    if any(c.impossible or c.reruns_stored for c in counts):
        report.add("Plain re-runs with the learned values, per hyperoptimized row: a re-run "
                   "cannot be made where a learned value is invalid for the plain optimizer (a "
                   "step size that ended ≤ 0); that is a finding of its own.",
                   claims.rerun_count_table(counts))


def _sensitivity_section(report: Report, frame: pd.DataFrame) -> None:
    lines = sensitivity.sensitivity_lines(frame)
    if lines.empty:
        return
    report.add(
        "## Sensitivity to the initial step size",
        "Final test error over a log grid of initial step sizes α₀, one line per tower. The "
        "spread is taken over the per-α₀ means across seeds; diverged runs have no final error "
        "and are counted in `runs` (and drawn as × in the figure).",
    )
    points = sensitivity.published_points(lines)
    unread = [f for f in _shown_figures(lines) if not f.points]
    if len(points):
        report.add(f"Hollow diamonds: {len(points)} points read from the papers' figures, with "
                   "the precision of that reading as error bars (`bench/published/`).")
    for figure in unread:
        report.add(f"The paper's figure ({figure.title}) could not be read: {figure.note}; "
                   "none of its points are drawn.")
    report.figure(sensitivity.sensitivity_figure(lines, report.out / "sensitivity.png", points),
                  "final test error against initial step size")
    report.add(sensitivity.spread_table(lines))
    costs = equal_cost.grid_costs(lines)
    if costs:
        report.add(
            "The same spread as cost (" + _GRID_COST_NOTE + "):",
            equal_cost.grid_cost_table(costs),
            "\n".join(f"- {equal_cost.grid_cost_sentence(g)}" for g in costs))


_GRID_COST_NOTE = (
    "what \"towers remove the need to tune\" is worth: a tower's worst error over the grid, "
    "and how many runs a grid search of the height-0 optimizer over the same grid needs to reach "
    "it, visiting the grid in random order: (n + 1) / (m + 1) runs on average when m of its n "
    "points are at or below that error; the grid search is credited with knowing each point's "
    "test error, so a real one can only need more"
)


def _shown_figures(lines: pd.DataFrame) -> list:
    """The papers' sensitivity-like figures (a grid of initial step sizes) for these lines'
    workloads."""
    from bench import published as pub

    workloads = set(lines["workload"])
    return [f for p in pub.papers() for f in p.figures if f.grid and f.workload in workloads]


def _overhead_section(report: Report, frame: pd.DataFrame) -> None:
    rows = overhead.overhead_rows(frame)
    rows = overhead.overhead_groups(rows) if not rows.empty else rows
    if rows.empty:
        return
    report.add(
        "## Overhead per tower level",
        "Median step time and memory (mean over runs; runs differing only in the initial step "
        "size share a row), against plain `torch.optim` (else the height-0 tower), the reference "
        "`gdtuo` tower of the same shape, and the same tower without its top level. Runs are "
        "separate processes, so ratios carry the machine's noise between them.",
    )
    for setting, group in rows.groupby("setting", sort=True):
        kinds = done(frame[frame["setting"] == setting])["memory_kind"]
        memory_kind = " / ".join(sorted(set(kinds) - {""})) or "not measured"
        report.add(f"### {setting}", overhead.overhead_table(group, memory_kind))
        path = report.out / f"overhead-{_slug(setting)}.png"
        report.figure(overhead.overhead_figure(group, path, memory_kind),
                      f"step time and memory per tower height, {setting}")


def _run_units(frame: pd.DataFrame) -> dict[str, float]:
    """One single run's cost in steps per setting (the unit of every budget)."""
    top = frame[frame["parent"].isna()]
    return {str(s): budget.budget_levels(runs)[0] for s, runs in top.groupby("setting")}


def _equal_cost_section(report: Report, frame: pd.DataFrame,
                        a: equal_cost.Analysis | None) -> None:
    if a is None:
        return
    report.add(
        "## Can towers replace tuning?",
        "Scored as MLCommons AlgoPerf scores training algorithms (Dahl et al. 2023, section 4): "
        "each method's **time to target** is the device-seconds of training (steps in the "
        "tables too) until its test error first reaches the workload's target, the median over "
        "seeds; a search's time counts every trial it trained. **Performance profiles** ρ(τ) "
        "give the fraction of workloads on which a method is within τ of the fastest; the "
        f"**score** integrates ρ from 1 to r_max = {scoring.R_MAX:g} (1: fastest everywhere, "
        "0: never within 4×); the **speed-up** is the geometric mean over workloads of the "
        "target-setting search's time over the method's. Intervals are 95% percentile "
        "bootstrap intervals over seeds (few seeds make them narrower than nominal).",
        "Targets: the median final test error of the best search at the largest budget (the "
        "best-tuned baseline, as AlgoPerf's targets come from tuned baselines), and relaxed "
        f"by ×{', ×'.join(f'{r:g}' for r in scoring.RELAXATIONS[1:])} (relative, so workloads "
        "whose errors differ tenfold are relaxed alike). Test error, because single runs train "
        "on the whole training split and so have no validation split. " + SEARCH_ERROR_NOTE,
        equal_cost.targets_table(a),
        "### Scores across workloads",
        equal_cost.scores_table(a),
    )
    profiles = {relax: scoring.profile(r, _TAUS) for relax, r in a.ratios.items()}
    report.figure(profile_figure(profiles, report.out / "profiles.png", scoring.R_MAX),
                  "performance profiles at the strict and relaxed targets")
    report.add("### Verdicts", "\n".join(f"- **{v.setting}**: {v.text}" for v in a.verdicts)
               or "No hyperoptimized towers ran on these workloads.")
    for setting in a.targets:
        report.add(f"### {setting}: time to target", equal_cost.time_table(a, frame, setting))
        table = equal_cost.matches_table(a, setting)
        if table:
            report.add("Each tower against each sampler (its largest budget; its best-so-far "
                       "curve also holds what smaller budgets would have found):", table)


_TAUS = [float(t) for t in np.geomspace(1.0, 10.0, 121)]


def _budget_section(report: Report, frame: pd.DataFrame) -> None:
    searches = frame[(frame["family"] == st.SEARCH) & (frame["status"] == "done")]
    curves = [bool(budget.best_so_far(r)) for r in searches["result"]]
    settings = sorted(set(searches.loc[curves, "setting"])) if curves else []
    if not settings:
        return
    report.add(
        "## Equal budget",
        "Best-so-far test accuracy of each search (trial chosen on validation) against the "
        "cumulative cost of everything it trained, beside single runs at their own cost. "
        "Budget levels are multiples of one single run's cost (median over single runs). "
        + SEARCH_ERROR_NOTE,
    )
    for setting in settings:
        runs = frame[(frame["setting"] == setting) & frame["parent"].isna()]
        unit, levels = budget.budget_levels(runs)
        path = report.out / f"budget-{_slug(setting)}.png"
        report.add(f"### {setting}")
        report.figure(budget.budget_figure(runs, path), f"best-so-far accuracy, {setting}")
        report.add(budget.budget_table(runs, unit, levels))
        matches = budget.match_table(runs, unit)
        if matches:
            report.add("Cost at which each search first matches each tower:\n\n" + matches)


def _trajectory_section(report: Report, frame: pd.DataFrame) -> None:
    traj = trajectories.trajectory_frame(frame)
    if traj.empty:
        return
    if not trajectories.any_varies(traj):
        return
    report.add(
        "## Hyperparameter trajectories",
        "Level-0 hyperparameters over training (mean ± sd over seeds): learned or adapted "
        "(solid: towers, hypergradient descent, learning-rate-free), or set by a schedule "
        "(dashed); values that stay as set for a whole run (by hand, or a search's chosen "
        "trial) are left out. Towers run from a grid of initial step sizes are drawn apart, a "
        "line per initial step size α₀.",
    )
    for path, alt in trajectories.trajectory_figures(traj, report.out):
        report.figure(path, alt)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
