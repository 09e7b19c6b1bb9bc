"""The figures of a report: seaborn over matplotlib (Agg), saved as PNG beside the markdown.

Each function draws one figure from the runs frame and returns the file it wrote. Figures are
sized for a markdown viewer (about 900 px wide): axis labels carry units, step sizes and costs
that span decades are on log axes, and legends sit outside the data.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: reports are written by workers and CI

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib import ticker, transforms  # noqa: E402

from bench.report import structure as st  # noqa: E402
from bench.report.frame import done, metric_title  # noqa: E402
from bench.report.tables import IMPLEMENTATIONS, best_so_far, score_of  # noqa: E402

DPI = 110
WIDTH = 9.0  # inches: ~1000 px at DPI, what a markdown viewer shows without scaling text away


def _theme() -> None:
    sns.set_theme(style="whitegrid", context="notebook", font_scale=0.95)


def _save(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def _grid(n: int, ncols: int, height: float, width: float = WIDTH) -> tuple[plt.Figure, list]:
    ncols = max(1, min(ncols, n))
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, height * nrows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def _line_label(runs: pd.DataFrame) -> str:
    info = st.method_info(runs["method"].iloc[0])
    impl = {st.TORCH: "torch", st.GDTUO: "gdtuo"}.get(info.family, "")
    head = f"height {info.height}" + (f" ({impl})" if impl else "")
    return f"{head}: {runs['template'].iloc[0]}"


# ---------------------------------------------------------------- sensitivity


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
    _theme()
    panels = sorted(lines.groupby(["setting", "base"]),
                    key=lambda kv: (kv[0][0], _base_order(kv[0][1])))
    entries = lines.groupby(["setting", "base"])["template"].nunique().max()
    fig, axes = _grid(len(panels), 2, 3.6 + 0.2 * entries)
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
    fig.tight_layout()
    return _save(fig, path)


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


# ---------------------------------------------------------------- overhead


def overhead_figure(rows: pd.DataFrame, path: Path, memory_kind: str) -> Path:
    """One setting: a column per base optimizer; step time over plain, and memory, per height.

    Bars with the same height and implementation but different shapes (``adam/sgd`` and
    ``adam/adam``) are averaged; the table beside the figure lists each.
    """
    _theme()
    rows = rows.copy()
    rows["implementation"] = rows["family"].map(IMPLEMENTATIONS)
    rows["level"] = [("HD" if pd.isna(h) else str(int(h))) for h in rows["height"]]
    rows["time_ratio"] = rows["step_ms"] / rows["plain_ms"]
    hue_order = [v for v in IMPLEMENTATIONS.values() if v in set(rows["implementation"])]
    palette = dict(zip(IMPLEMENTATIONS.values(), sns.color_palette("deep", 4), strict=True))
    bases = sorted(rows["base"].unique(), key=_base_order)
    fig, axes = plt.subplots(2, len(bases), figsize=(max(WIDTH / 2 * len(bases), WIDTH * 0.6),
                                                     6.4), squeeze=False)
    for column, base in enumerate(bases):
        group = rows[rows["base"] == base]
        order = sorted(set(group["level"]), key=lambda x: (x == "HD", int(x) if x != "HD" else 0))
        time_ax, mem_ax = axes[0][column], axes[1][column]
        for ax, y in ((time_ax, "time_ratio"), (mem_ax, "memory_mib")):
            sns.barplot(data=group, x="level", y=y, hue="implementation", order=order,
                        hue_order=hue_order, palette=palette, ax=ax, errorbar=None)
            ax.set_xlabel("tower height (levels above the base)")
            if ax.get_legend() is not None:
                ax.get_legend().remove()
        for name, container in zip(hue_order, time_ax.containers, strict=False):
            if name != "torch.optim":  # 1.00 by definition
                time_ax.bar_label(container, fmt="%.2f", fontsize="x-small", rotation=90,
                                  label_type="center", color="white")
        time_ax.axhline(1.0, color="black", lw=1, ls="--")
        time_ax.set_title(f"{base}: step time")
        time_ax.set_ylabel("step time / plain torch.optim" if column == 0 else "")
        mem_ax.set_title(f"{base}: memory")
        mem_ax.set_ylabel(f"MiB ({memory_kind})" if column == 0 else "", fontsize="small")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=len(labels), bbox_to_anchor=(0.5, 1.04),
               fontsize="small")
    fig.tight_layout()
    return _save(fig, path)


def _base_order(base: str) -> tuple[int, str]:
    order = ("sgd", "adam", "adamw", "adagrad", "rmsprop")
    return (order.index(base) if base in order else len(order), base)


# ---------------------------------------------------------------- equal budget


def budget_figure(runs: pd.DataFrame, path: Path) -> Path:
    """Best-so-far test accuracy against cumulative cost: searches as curves, runs as points."""
    _theme()
    metric = runs["metric"].iloc[0]
    fig, axes = plt.subplots(1, 2, figsize=(WIDTH + 1, 4.2), sharey=True)
    ok = done(runs)
    styles = _family_styles(sorted(ok["method"].unique(), key=_family_order))
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
    fig.tight_layout()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2,
               fontsize="small", title="searches: mean over seeds (band: sd); runs: mean ± sd",
               title_fontsize="small", frameon=False)
    return _save(fig, path)


# A family's runs share a palette and a marker: the family reads at a glance, shades tell apart.
_FAMILY_STYLES = {st.TOWER: ("Blues", "o"), st.GDTUO: ("Reds", "X"), st.TORCH: ("Greys", "s"),
                  st.HD: ("Greens", "D"), st.SCHEDULE: ("Oranges", "^"),
                  st.LRFREE: ("Purples", "v"), st.OTHER: ("Greys", "P")}


def _family_order(method: str) -> tuple:
    info = st.method_info(method)
    return (list(_FAMILY_STYLES).index(info.family) if info.family in _FAMILY_STYLES else -1,
            method)


def _family_styles(methods: list[str]) -> dict[str, tuple[tuple, str]]:
    """(color, marker) per method: searches in distinct colors, other families in shades."""
    by_family: dict[str, list[str]] = {}
    for m in methods:
        by_family.setdefault(st.method_info(m).family, []).append(m)
    styles = {}
    for family, members in by_family.items():
        if family == st.SEARCH:
            colors = sns.color_palette("tab10", len(members))
            marker = "."
        else:
            palette, marker = _FAMILY_STYLES.get(family, _FAMILY_STYLES[st.OTHER])
            colors = sns.color_palette(palette, len(members) + 2)[2:]  # the light end is unreadable
        styles |= {m: (c, marker) for m, c in zip(members, colors, strict=True)}
    return styles


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


# ---------------------------------------------------------------- hyperparameter trajectories


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
    _theme()
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
# Families drawn together in a panel; schedules are drawn in every step-size panel.
_PANEL_GROUPS = {st.TOWER: "towers", st.GDTUO: "towers", st.HD: "hypergradient descent",
                 st.LRFREE: "learning-rate-free"}


def _varies(traj: pd.DataFrame) -> pd.Series:
    """Rows of (method, hyperparameter) series that change during training."""
    spread = traj.groupby(["method", "name"])["value"].transform(lambda v: v.max() - v.min())
    scale = traj.groupby(["method", "name"])["value"].transform(lambda v: v.abs().max())
    return spread > 1e-9 * scale


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
    """Panels in rows of three, each with its own legend below it (schedules dashed)."""
    ncols = min(3, len(panels))
    entries = max(d["method"].nunique() for _, d in panels)
    fig, axes = _grid(len(panels), ncols, 3.0 + 0.2 * entries, width=min(WIDTH + 2, 4 * ncols))
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
    fig.tight_layout()
    return _save(fig, path)


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
    fig, axes = _grid(len(panels), ncols, 3.2, width=min(WIDTH, 3.4 * ncols) + 2.2)
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
    fig.tight_layout()
    fig.legend([handles[k] for k in labels], labels, loc="center left", fontsize="x-small",
               bbox_to_anchor=(1.0, 0.5),
               title="initial step size" if by_lr0 else "dashed: set, not learned",
               title_fontsize="x-small")
    return _save(fig, path)


def _tower_order(runs: pd.DataFrame) -> tuple:
    info = st.method_info(runs["method"].iloc[0])
    return (_base_order(info.base), info.height or 0, runs["template"].iloc[0])


def _symbol(name: str) -> str:
    symbol = st.GREEK.get(name)
    return f"{symbol} ({name})" if symbol else name


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _names(sub: pd.DataFrame) -> list[str]:
    known = [n for n in ("lr", "momentum", "beta1", "beta2", "alpha", "gamma")
             if n in set(sub["name"])]
    return known + sorted(set(sub["name"]) - set(known))


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


# ---------------------------------------------------------------- performance profiles


def profile_figure(profiles: dict[float, pd.DataFrame], path: Path, r_max: float) -> Path:
    """AlgoPerf performance profiles ρ(τ), a panel per target (strict, then relaxed)."""
    _theme()
    fig, axes = _grid(len(profiles), 3, 3.6)
    methods = sorted(next(iter(profiles.values())).index, key=_family_order)
    styles = _family_styles(methods)
    for ax, (relax, prof) in zip(axes, profiles.items(), strict=True):
        taus = np.asarray(prof.columns, dtype=float)
        for method in methods:
            color, marker = styles[method]
            dashed = st.method_info(method).family == st.SEARCH
            ax.step(taus, prof.loc[method].to_numpy(), where="post", color=color,
                    linestyle="--" if dashed else "-", linewidth=1.4, label=method)
        ax.axvline(r_max, color="0.4", linewidth=0.8, linestyle=":")
        ax.set_xscale("log")
        ax.set_xlim(taus[0], taus[-1])
        ax.set_ylim(-0.03, 1.03)
        ax.set_xlabel("τ (time to target ÷ the fastest method's)")
        ax.set_title("strict target" if relax == 1.0 else f"target × {relax:g}")
    axes[0].set_ylabel("fraction of workloads within τ")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.tight_layout()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=3,
               fontsize="x-small", title=f"dashed: searches; dotted line: r_max = {r_max:g}",
               title_fontsize="small", frameon=False)
    return _save(fig, path)
