"""Sensitivity to the initial step size: the towers run from a grid of step sizes.

The lines (a tower template with at least three initial step sizes), the table of each line's
spread of final error over the grid, and the figure of error against step size with the points
the papers' figures publish beside ours.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import transforms

from bench.report import structure as st
from bench.report import style
from bench.report.frame import done, metric_title, num
from bench.report.order import base_rank, group_key, row_key
from bench.report.tables import count_cell, markdown


def sensitivity_lines(frame: pd.DataFrame, min_points: int = 3) -> pd.DataFrame:
    """Runs of the templates with at least ``min_points`` initial step sizes (one line each)."""
    towers = frame[frame["family"].isin([st.TOWER, st.GDTUO, st.TORCH]) & frame["lr0"].notna()]
    towers = towers[towers["parent"].isna()]
    points = towers.groupby(["setting", "template"])["lr0"].transform("nunique")
    return towers[points >= min_points]


def spread_table(lines: pd.DataFrame) -> str:
    """Per line (tower height): spread of final error over the grid of initial step sizes.

    Spread is over the per-step-size means across seeds; diverged runs have no final error and
    are counted in their own column.
    """
    rows = []
    groups = sorted(lines.groupby(["setting", "template"]),
                    key=lambda kv: (kv[0][0], group_key(st.method_info(kv[1]["method"].iloc[0])),
                                    row_key(st.method_info(kv[1]["method"].iloc[0]))))
    for (setting, template), runs in groups:
        per_lr = done(runs).groupby("lr0")["score"].mean().dropna()
        q75, q25 = (np.percentile(per_lr, [75, 25]) if len(per_lr) else (np.nan, np.nan))
        best = per_lr.idxmin() if len(per_lr) else None
        rows.append([
            setting, _height(runs), template, f"{runs['lr0'].min():.0e} … {runs['lr0'].max():.0e}",
            runs["lr0"].nunique(), count_cell(runs),
            num(per_lr.max() - per_lr.min() if len(per_lr) else None),
            num(q75 - q25), num(best, 2),
        ])
    unit = "pp" if lines["metric"].iloc[0] == "error" else "bpc"
    headers = ["workload", "height", "tower", "initial step sizes", "points", "runs",
               f"max − min ({unit})", f"IQR ({unit})", "best initial step"]
    return markdown(rows, headers)


def _height(runs: pd.DataFrame) -> str:
    """A line's tower height, with the implementation where it is not hypergrad's."""
    info = st.method_info(runs["method"].iloc[0])
    suffix = {st.TORCH: " (torch)", st.GDTUO: " (gdtuo)"}.get(info.family, "")
    return f"{info.height}{suffix}"


def _line_label(runs: pd.DataFrame) -> str:
    return f"height {_height(runs)}: {runs['template'].iloc[0]}"


def published_points(lines: pd.DataFrame, papers: tuple | None = None) -> pd.DataFrame:
    """The points the papers' figures publish for these lines' settings (``bench.published``).

    Columns: setting, base, height, lr0, score, precision, label, figure. A figure's points are
    taken for a setting of its workload and metric; each series' spec (its ``{lr}`` filled with
    the point's x) gives the base optimizer and the height the point belongs to.
    """
    from bench import published as pub

    papers = pub.papers() if papers is None else papers
    columns = ["setting", "base", "height", "lr0", "score", "precision", "label", "figure"]
    rows = []
    settings = lines.groupby("setting")[["workload", "metric"]].first()
    for paper in papers:
        for figure in paper.figures:
            series = {s.label: s for s in figure.series}
            for setting, (workload, metric) in settings.iterrows():
                if figure.workload != workload or figure.metric != metric:
                    continue
                for point in figure.points:
                    info = st.method_info(pub.canonical(pub.fill(series[point.series].method,
                                                                 point.x)))
                    rows.append([setting, info.base, info.height, point.x, point.y,
                                 figure.precision, f"{paper.cite}: {point.series}", figure.key])
    return pd.DataFrame(rows, columns=columns)


def sensitivity_figure(lines: pd.DataFrame, path: Path,
                       published: pd.DataFrame | None = None) -> Path:
    """Final test error against initial step size, a line per tower, a band over seeds.

    ``published``: points of the papers' figures (``published_points``), drawn as hollow
    diamonds with their reading precision as error bars, in the colour of our line of the same
    height.
    """
    style.theme()
    panels = sorted(lines.groupby(["setting", "base"]),
                    key=lambda kv: (kv[0][0], base_rank(kv[0][1])))
    entries = lines.groupby(["setting", "base"])["template"].nunique().max()
    fig, axes = style.grid(len(panels), 2, 3.6 + 0.2 * entries)
    metric = lines["metric"].iloc[0]
    for ax, ((setting, base), runs) in zip(axes, panels, strict=True):
        ok = done(runs).dropna(subset=["score"])
        labels = {t: _line_label(g) for t, g in runs.groupby("template")}
        palette = sns.color_palette("viridis", n_colors=len(labels))
        order = sorted(labels, key=lambda t: (st.method_info(runs[runs["template"] == t]
                                                              ["method"].iloc[0]).height or 0, t))
        for color, template in zip(palette, order, strict=True):
            sub = ok[ok["template"] == template]
            if len(sub):
                sns.lineplot(data=sub, x="lr0", y="score", ax=ax, color=color, marker="o",
                             errorbar="sd", label=labels[template])
            _mark_diverged(ax, runs[(runs["template"] == template)
                                    & (runs["status"] != "done")], color)
        if published is not None and len(published):
            heights = {st.method_info(runs[runs["template"] == t]["method"].iloc[0]).height: c
                       for c, t in zip(palette, order, strict=True)}
            _published(ax, published[(published["setting"] == setting)
                                     & (published["base"] == base)], heights)
        ax.set_xscale("log")
        values = ok["score"]
        if metric == "error" and len(values) and values.max() / max(values.min(), 1e-9) > 20:
            ax.set_yscale("log")
        ax.set_title(f"{setting}: {base} towers")
        ax.set_xlabel("initial step size α₀ (log scale)")
        ax.set_ylabel(f"final {metric_title(metric)}")
        ax.legend(fontsize="x-small", title="mean ± sd over seeds; × = diverged/failed",
                  title_fontsize="x-small", loc="upper center", bbox_to_anchor=(0.5, -0.2),
                  frameon=False)
    return style.save(fig, path)


def _published(ax: plt.Axes, points: pd.DataFrame, colors: dict) -> None:
    """The papers' points: hollow diamonds, error bars of the reading precision."""
    for (label, height), group in points.groupby(["label", "height"], sort=True):
        color = colors.get(height, "black")
        yerr = group["precision"].fillna(0).to_numpy()
        ax.errorbar(group["lr0"], group["score"], yerr=yerr, fmt="D", mfc="none", mec=color,
                    ecolor=color, ms=7, mew=1.5, capsize=3, lw=1,
                    label=f"published: {label} (± reading precision)")


def _mark_diverged(ax: plt.Axes, bad: pd.DataFrame, color: tuple) -> None:
    """Runs with no final error: an ``×`` at the top of the axes above their step size."""
    if bad.empty:
        return
    blend = transforms.blended_transform_factory(ax.transData, ax.transAxes)
    ax.plot(bad["lr0"], np.full(len(bad), 0.97), "x", color=color, transform=blend, ms=8, mew=2,
            clip_on=False)

