"""Hyperparameter trajectories: the level-0 values over training, learned or scheduled.

Per setting, up to two figures: the single methods (a panel per hyperparameter) and the towers
run from a grid of initial step sizes (a panel per tower and hyperparameter, a line per α₀).
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import ticker

from bench.report import structure as st
from bench.report import style
from bench.report.order import base_rank


def trajectory_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Level-0 hyperparameter trajectories as rows (setting, method, template, lr0, seed, name,
    step, value).

    Per-tensor or per-group values (``0.lr[3]``) are summarised by their median at each step.
    """
    rows = []
    for r in frame[frame["status"] == "done"].itertuples():
        for key, points in ((r.result.curves or {}).get("hyper") or {}).items():
            if not key.startswith("0.") or len(points) < 2:
                continue
            name = key.partition("[")[0].removeprefix("0.")
            rows.extend((r.setting, r.method, r.template, r.lr0, r.seed, name, float(s),
                         float(v)) for s, v in points)
    keys = ["setting", "method", "template", "lr0", "seed", "name", "step"]
    traj = pd.DataFrame(rows, columns=[*keys, "value"])
    if traj.empty:
        return traj
    return traj.groupby(keys, as_index=False, dropna=False)["value"].median()


def trajectory_figures(traj: pd.DataFrame, out: Path) -> list[tuple[Path, str]]:
    """Learned step size (and momentum, β's) over training, against fixed schedules.

    Per setting, up to two figures: the other methods (a panel per hyperparameter, split by
    family when it holds more than ``MAX_LINES`` lines; schedules dashed in every step-size
    panel; methods whose values never change are left out), and the towers run from a grid of
    initial step sizes (a panel per tower and hyperparameter, a line per initial step size α₀).
    Returns (file, description) pairs.
    """
    style.theme()
    traj = _with_groups(traj)
    written = []
    for setting, sub in traj.groupby("setting", sort=True):
        singles, grids = sub[~sub["grid"]], sub[sub["grid"]]
        panels = _single_panels(setting, singles[_varies(singles)])
        if panels:
            path = out / f"trajectories-{_slug(setting)}.png"
            written.append((_method_panels(panels, path), f"trajectories, {setting}"))
        learned = grids.groupby("template")["value"].transform(lambda v: v.nunique() > 1)
        grids = grids[learned.astype(bool)]
        if len(grids):
            towers = sorted(grids.groupby("template"), key=lambda kv: _tower_order(kv[1]))
            panels = [(f"{setting}, {textwrap.fill(t, 40)}: {_symbol(n)}", g[g["name"] == n])
                      for t, g in towers for n in _names(g)]
            path = out / f"trajectories-{_slug(setting)}-grid.png"
            written.append((_panels(panels, path, by_lr0=True),
                            f"trajectories from a grid of initial step sizes, {setting}"))
    return written


MAX_LINES = 7
LEGEND_CHARS_PER_COLUMN = 40  # an x-small label this long fills a third of a figure's width
# Families drawn together in a panel; schedules are drawn in every step-size panel.
_PANEL_GROUPS = {st.TOWER: "towers", st.GDTUO: "towers", st.HD: "hypergradient descent",
                 st.LRFREE: "learning-rate-free"}


def _varies(traj: pd.DataFrame) -> pd.Series:
    """Rows of (method, hyperparameter) series that change during training in some run. A
    value set once per run (by hand, or a search's chosen trial) differs between seeds but is
    not learned: it is left out, as a band over seeds would fill the panel."""
    by_run = traj.groupby(["method", "name", "seed"], dropna=False)["value"]
    scale = traj["value"].abs().groupby([traj["method"], traj["name"]]).transform("max")
    moves = (by_run.transform("max") - by_run.transform("min")) > 1e-9 * scale
    return moves.groupby([traj["method"], traj["name"]]).transform("any")


def any_varies(traj: pd.DataFrame) -> bool:
    """Whether any series of ``traj`` changes during training (else there is nothing to draw)."""
    return bool(len(traj)) and bool(_varies(traj).any())


def _single_panels(setting: str, traj: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """(title, lines) per panel: a hyperparameter, split by family when it has many lines."""
    family = traj["method"].map(lambda m: st.method_info(m).family)
    schedules = traj[family == st.SCHEDULE]
    learned = traj[family != st.SCHEDULE]
    groups = learned["method"].map(lambda m: _PANEL_GROUPS.get(st.method_info(m).family, "other"))
    panels = []
    for name in _names(traj):
        lines, reference = learned[learned["name"] == name], schedules[schedules["name"] == name]
        title = f"{setting}: {_symbol(name)}"
        if lines["method"].nunique() <= MAX_LINES:
            parts = [(title, lines)] if len(lines) or len(reference) else []
        else:
            parts = [(f"{title}, {g}", lines[groups[lines.index] == g])
                     for g in sorted(set(groups[lines.index]))]
        panels += [(t, pd.concat([part, reference])) for t, part in parts]
    return panels


def _method_panels(panels: list[tuple[str, pd.DataFrame]], path: Path) -> Path:
    """Panels in rows of three, each with its own legend below it (schedules dashed); one panel
    per row when a method's name is too long for a third of the width (the legends would
    overlap and squeeze the axes)."""
    longest = max(len(m) for _, d in panels for m in d["method"].unique())
    ncols = 1 if longest > LEGEND_CHARS_PER_COLUMN else min(3, len(panels))
    entries = max(d["method"].nunique() for _, d in panels)
    fig, axes = style.grid(len(panels), ncols, 3.0 + 0.2 * entries,
                           width=style.WIDTH if ncols == 1 else min(style.WIDTH + 2, 4 * ncols))
    for ax, (title, data) in zip(axes, panels, strict=True):
        methods = sorted(data["method"].unique(), key=_method_order)
        colors = iter(sns.color_palette("tab10", 10) * 3)
        greys = iter(["#222222", "#777777", "#aaaaaa"] * 5)
        for method in methods:
            fixed = st.method_info(method).family == st.SCHEDULE
            _mean_sd_line(ax, data[data["method"] == method],
                          next(greys) if fixed else next(colors), method, "--" if fixed else "-")
        _scale(ax, data["value"])
        _learned_in_view(ax, data)
        ax.set_title(title, fontsize="small")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(_symbol(data["name"].iloc[0]))
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), fontsize="x-small",
                  frameon=False)
    return style.save(fig, path)


def _mean_sd_line(ax: plt.Axes, data: pd.DataFrame, color: object, label: str, ls: str) -> None:
    """Mean over seeds at each step with a ± sd band: what ``sns.lineplot(errorbar="sd")``
    draws, aggregated once here (seaborn's per-call groupby was most of a report's time)."""
    agg = data.groupby("step")["value"].agg(["mean", "std"]).sort_index()
    x, mean, sd = agg.index.to_numpy(dtype=float), agg["mean"].to_numpy(), agg["std"].to_numpy()
    ax.plot(x, mean, color=color, label=label, ls=ls)
    if np.isfinite(sd).any():
        ax.fill_between(x, mean - sd, mean + sd, color=color, alpha=0.2, lw=0)


def _learned_in_view(ax: plt.Axes, data: pd.DataFrame) -> None:
    """On a log axis, a schedule annealing towards 0 must not squash the learned lines."""
    if ax.get_yscale() != "log":
        return
    family = data["method"].map(lambda m: st.method_info(m).family)
    learned = data.loc[(family != st.SCHEDULE) & (data["value"] > 0), "value"]
    if len(learned):
        low = max(learned.min() / 5, data.loc[data["value"] > 0, "value"].min())
        ax.set_ylim(bottom=low)


def _with_groups(traj: pd.DataFrame) -> pd.DataFrame:
    """Mark the towers run from at least three initial step sizes (``grid``)."""
    traj = traj.copy()
    counts = traj.groupby(["setting", "template"])["method"].transform("nunique")
    traj["grid"] = (counts >= 3) & traj["lr0"].notna()
    return traj


def _panels(panels: list[tuple[str, pd.DataFrame]], path: Path, *, by_lr0: bool) -> Path:
    """Draw panels in rows of three with one legend for all (colors keyed by method or α₀)."""
    ncols = min(3, len(panels))
    fig, axes = style.grid(len(panels), ncols, 3.2, width=min(style.WIDTH, 3.4 * ncols) + 2.2)
    keys = sorted({k for _, d in panels for k in (d["lr0"] if by_lr0 else d["method"])},
                  key=(lambda k: k) if by_lr0 else _method_order)
    colors = dict(zip(keys, sns.color_palette("viridis" if by_lr0 else "tab10", len(keys)),
                      strict=True))
    for ax, (title, data) in zip(axes, panels, strict=True):
        for key in keys:
            line = data[(data["lr0"] if by_lr0 else data["method"]) == key]
            if line.empty:
                continue
            info = st.method_info(line["method"].iloc[0])
            fixed = info.family in (st.SCHEDULE, st.TORCH, st.SEARCH)
            _mean_sd_line(ax, line, colors[key], f"α₀={key:g}" if by_lr0 else key,
                          "--" if fixed else "-")
        _scale(ax, data["value"])
        ax.set_title(title, fontsize="small")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(_symbol(data["name"].iloc[0]))
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    handles, labels = {}, {}
    for ax in axes:
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, h)
    labels = list(handles)
    fig.legend([handles[k] for k in labels], labels, loc="center left", fontsize="x-small",
               bbox_to_anchor=(1.0, 0.5),
               title="initial step size" if by_lr0 else "dashed: set, not learned",
               title_fontsize="x-small")
    return style.save(fig, path)


def _tower_order(runs: pd.DataFrame) -> tuple:
    info = st.method_info(runs["method"].iloc[0])
    return (base_rank(info.base), info.height or 0, runs["template"].iloc[0])


def _symbol(name: str) -> str:
    symbol = st.GREEK.get(name)
    return f"{symbol} ({name})" if symbol else name


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _names(sub: pd.DataFrame) -> list[str]:
    present = set(sub["name"].unique())
    known = [n for n in ("lr", "momentum", "beta1", "beta2", "alpha", "gamma") if n in present]
    return known + sorted(present - set(known))


def _method_order(method: str) -> tuple:
    info = st.method_info(method)
    return (info.template, info.lr0 or 0.0, method)


def _scale(ax: plt.Axes, values: pd.Series) -> None:
    """Log y when positive values span more than a decade (step sizes do); plain tick labels.

    A schedule that ends at exactly 0 (cosine) does not prevent it: its last point is clipped.
    """
    v = values[values > 0]
    if len(v) and len(v) >= 0.95 * len(values) and v.max() / v.min() > 10:
        ax.set_yscale("log")
    else:  # β2 moving in its sixth digit: show the digits, not an offset
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda y, _: f"{y:.7g}"))
