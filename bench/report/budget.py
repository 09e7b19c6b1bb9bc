"""Equal budget: what each search had found after each amount of training, beside single runs.

A search's best-so-far curve (its chosen trial's value after each trial, against the cumulative
cost of every trial) is read at budget levels, multiples of one single run's cost: a table of
accuracy (or bpc) per level, a table of the cost at which a search first matches each tower, and
a figure of the curves against optimizer steps and device-seconds.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib import ticker

from bench.report import structure as st
from bench.report import style
from bench.report.frame import done, mean_std, num
from bench.report.tables import count_cell, markdown


def budget_levels(setting_runs: pd.DataFrame) -> tuple[float, list[float]]:
    """One run's cost in steps (median over single runs) and the budget levels to tabulate.

    Levels: 1×, 4×, 16×, ... that run's cost up to the largest cost, and each search's own cost.
    """
    singles = done(setting_runs)
    singles = singles[(singles["family"] != st.SEARCH) & singles["cost_steps"].notna()]
    searches = setting_runs[setting_runs["family"] == st.SEARCH]
    unit = float(singles["cost_steps"].median()) if len(singles) else np.nan
    if np.isnan(unit) or unit <= 0:
        costs = [p["cost_steps"] for r in searches["result"] for p in best_so_far(r)]
        unit = float(min(costs)) if costs else 1.0
    top = max([unit, *setting_runs["cost_steps"].dropna().tolist()])
    levels, level = {unit}, unit
    while level <= top * 1.01:
        levels.add(level)
        level *= 4
    # each search's own total budget is a level too (a suite gives 1x, 4x, 16x; others need not)
    levels |= set(done(searches).groupby("method")["cost_steps"].mean().dropna().round())
    return unit, sorted(levels)


def best_so_far(result: Any) -> list[dict[str, float]]:
    """A search's best-so-far points, sorted by cost (empty for other runs)."""
    points = (result.curves or {}).get("best_so_far") or []
    return sorted(points, key=lambda p: p.get("cost_steps", 0))


def score_of(point: dict[str, float], metric: str) -> float | None:
    """A best-so-far point's value on the report's budget axis: accuracy (%) or bpc."""
    if metric == "bpc":
        return point.get("test_bpc")
    error = point.get("test_error")
    return None if error is None else 100.0 * (1.0 - float(error))


def better(a: float, b: float, metric: str) -> bool:
    """``a`` at least as good as ``b``: accuracy higher, bpc lower."""
    return a <= b if metric == "bpc" else a >= b


def search_at(result: Any, cost: float, metric: str, axis: str = "cost_steps") -> float | None:
    """A search's best-so-far value at a cumulative cost, ``None`` before its first trial ends."""
    value = None
    for p in sorted(best_so_far(result), key=lambda p: p.get(axis, 0)):
        if p.get(axis) is not None and p[axis] <= cost * 1.0001:
            value = score_of(p, metric)
    return value


def budget_table(runs: pd.DataFrame, unit: float, levels: list[float]) -> str:
    """Accuracy (or bpc) of each method at each budget level (mean over seeds)."""
    metric = runs["metric"].iloc[0]
    rows = []
    for method, group in runs.groupby("method", sort=True):
        info, ok = st.method_info(method), done(group)
        cost = ok["cost_steps"].mean()
        cells = []
        for level in levels:
            if info.family == st.SEARCH:
                values = [search_at(r, level, metric) for r in ok["result"]]
                cells.append(mean_std([v for v in values if v is not None]))
            else:
                fit = not pd.isna(cost) and cost <= level * 1.01
                cells.append(mean_std(_budget_score(ok, metric)) if fit else "—")
        rows.append([method, st.FAMILY_TITLES[info.family], num(cost, 4), count_cell(group),
                     *cells])
    what = "accuracy (%)" if metric == "error" else "bpc"
    headers = ["method", "kind", "cost (steps)", "runs",
               *(f"{what} at {lv / unit:g}× ({lv:.4g} steps)" for lv in levels)]
    return markdown(rows, headers)


def _budget_score(runs: pd.DataFrame, metric: str) -> pd.Series:
    return runs["score"] if metric == "bpc" else 100.0 - runs["score"]


def match_table(runs: pd.DataFrame, unit: float) -> str | None:
    """For each search, the cost at which its best-so-far first matches each tower's mean.

    Towers are the hyperoptimized ones (height >= 1); a search that never reaches a tower's
    mean test accuracy within its budget says so.
    """
    metric = runs["metric"].iloc[0]
    ok = done(runs)
    towers = ok[(ok["family"] == st.TOWER) & (ok["height"] > 0) & ok["parent"].isna()]
    searches = ok[ok["family"] == st.SEARCH]
    if towers.empty or searches.empty:
        return None
    targets = {m: _budget_score(g, metric).mean() for m, g in towers.groupby("method")}
    rows = []
    for search, group in searches.groupby("method", sort=True):
        for tower, target in targets.items():
            hits = [_first_match(r, target, metric) for r in group["result"]]
            found = [h for h in hits if h is not None]
            cell = "not within budget"
            if found:
                steps, seconds = np.mean([h[0] for h in found]), np.mean([h[1] for h in found])
                cell = f"{steps:.4g} steps ({steps / unit:.2g}×), {num(seconds)} s"
            rows.append([search, tower, f"{target:.2f}", f"{len(found)} of {len(hits)}", cell])
    what = "accuracy (%)" if metric == "error" else "bpc"
    return markdown(rows, ["search", "tower", f"tower {what}", "seeds matching", "first match"])


def _first_match(result: Any, target: float, metric: str) -> tuple[float, float] | None:
    for p in best_so_far(result):
        value = score_of(p, metric)
        if value is not None and better(value, target, metric):
            return float(p.get("cost_steps", np.nan)), float(p.get("cost_seconds", np.nan))
    return None


def budget_figure(runs: pd.DataFrame, path: Path) -> Path:
    """Best-so-far test accuracy against cumulative cost: searches as curves, runs as points."""
    style.theme()
    metric = runs["metric"].iloc[0]
    fig, axes = plt.subplots(1, 2, figsize=(style.WIDTH + 1, 4.2), sharey=True)
    ok = done(runs)
    styles = style.family_styles(sorted(ok["method"].unique(), key=style.family_order))
    for ax, axis, label in ((axes[0], "cost_steps", "cumulative cost (optimizer steps)"),
                            (axes[1], "cost_seconds", "cumulative cost (device-seconds)")):
        for method, (color, marker) in styles.items():
            group = ok[ok["method"] == method]
            if st.method_info(method).family == st.SEARCH:
                _search_curve(ax, group, axis, metric, color, method)
            else:
                _run_point(ax, group, axis, metric, color, marker, method)
        ax.set_xlabel(label + _log_x(ax))
    _robust_ylim(axes[0], ok, metric)
    axes[0].set_ylabel("best-so-far test accuracy (%)" if metric == "error"
                       else "best-so-far test bits per character")
    axes[0].set_title("at equal optimizer steps")
    axes[1].set_title("at equal device time")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2,
               fontsize="small", title="searches: mean over seeds (band: sd); runs: mean ± sd",
               title_fontsize="small", frameon=False)
    return style.save(fig, path)


def _robust_ylim(ax: plt.Axes, ok: pd.DataFrame, metric: str) -> None:
    """Keep the axis on where the methods compete: a run far below the rest is named, not drawn.

    Accuracy only (higher is better): the bottom is at the lowest search value or the 10th
    percentile of the single runs, whichever is lower; runs under it are listed in the corner.
    """
    if metric != "error":
        return
    singles = ok[ok["family"] != st.SEARCH].groupby("method")["score"].mean().dropna()
    searches = [score_of(p, metric) for r in ok[ok["family"] == st.SEARCH]["result"]
                for p in best_so_far(r)]
    values = [100.0 - v for v in singles] + [v for v in searches if v is not None]
    if len(singles) < 5 or not values:
        return
    floor = min([np.percentile(100.0 - singles, 10)] + [v for v in searches if v is not None])
    top = max(values)
    below = {m: 100.0 - v for m, v in singles.items() if 100.0 - v < floor}
    if not below:
        return
    margin = 0.08 * max(top - floor, 1e-6)
    ax.set_ylim(floor - margin, top + margin)
    text = "below the axis: " + "; ".join(f"{m} ({v:.1f}%)" for m, v in below.items())
    ax.text(0.01, 0.01, textwrap.fill(text, 60), transform=ax.transAxes, fontsize="x-small",
            va="bottom", color="dimgray")


def _search_curve(ax: plt.Axes, group: pd.DataFrame, axis: str, metric: str, color: tuple,
                  label: str) -> None:
    """The mean over seeds of the step functions of best-so-far value, with a band (sd)."""
    curves = []
    for r in group["result"]:
        pts = [(p.get(axis), score_of(p, metric)) for p in best_so_far(r)]
        pts = sorted((x, y) for x, y in pts if x is not None and y is not None)
        if pts:
            curves.append(pts)
    if not curves:
        return
    grid = np.unique([x for c in curves for x, _ in c])
    stack = np.array([_step_values(c, grid) for c in curves])
    mean = np.nanmean(stack, axis=0)
    ax.step(grid, mean, where="post", color=color, lw=2, label=label, marker=".", ms=6)
    if len(curves) > 1:
        sd = np.nanstd(stack, axis=0, ddof=1)
        ax.fill_between(grid, mean - sd, mean + sd, step="post", color=color, alpha=0.2, lw=0)


def _log_x(ax: plt.Axes) -> str:
    """Log x when the data span more than a factor of 8; ticks as plain numbers either way."""
    low, high = ax.dataLim.x0, ax.dataLim.x1
    if low > 0 and high / low > 8:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        return ", log scale"
    return ""


def _step_values(points: list[tuple[float, float]], grid: np.ndarray) -> np.ndarray:
    xs = np.array([x for x, _ in points])
    ys = np.array([y for _, y in points])
    idx = np.searchsorted(xs, grid, side="right") - 1
    return np.where(idx >= 0, ys[np.clip(idx, 0, None)], np.nan)


def _run_point(ax: plt.Axes, group: pd.DataFrame, axis: str, metric: str, color: tuple,
               marker: str, label: str) -> None:
    x = group[axis].dropna()
    y = group["score"] if metric == "bpc" else 100.0 - group["score"]
    y = y.dropna()
    if x.empty or y.empty:
        return
    sd = (lambda s: s.std(ddof=1) if len(s) > 1 else 0.0)  # noqa: E731
    ax.errorbar(x.mean(), y.mean(), xerr=sd(x), yerr=sd(y), fmt=marker, color=color, ms=7,
                capsize=3, label=label)

