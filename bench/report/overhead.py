"""Overhead per tower level: what each level costs in step time and memory.

Per setting and base optimizer, each measured tower shape against plain torch.optim, the
reference gdtuo tower of the same shape, and the same tower without its top level: a table of
every shape, and a figure of the ratios per height.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from bench.report import structure as st
from bench.report import style
from bench.report.frame import MIB, done, num, ratio
from bench.report.order import FAMILY_ORDER, base_rank
from bench.report.tables import markdown


def overhead_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Step time and memory per tower shape (mean over runs) and the references it compares to.

    Runs that differ only in their initial step size share a row (their ``template``): the cost
    of a step does not depend on it. Columns: setting, base, family, template, height, runs,
    step_ms, memory_mib, shared, and the references ``plain_*`` (plain torch.optim with the same
    level-0 arguments, such as momentum, else the group's first; without torch.optim the height-0
    tower), ``gdtuo_*`` (the reference tower of the same shape), ``prev_*`` (the same
    implementation one level lower; for height 1, the plain optimizer), each for ``ms`` and
    ``mib``.
    """
    timed = done(frame)
    timed = timed[timed["family"].isin([st.TOWER, st.TORCH, st.GDTUO, st.HD])]
    timed = timed[timed["step_time"].notna() & timed["parent"].isna()]
    if timed.empty:
        return pd.DataFrame()
    per = (
        timed.groupby(["setting", "base", "family", "template"], dropna=False)
        .agg(height=("height", "first"), step_ms=("step_time", "mean"),
             memory=("memory", "mean"), runs=("run_id", "size"), shared=("shared_gpu", "any"))
        .reset_index()
    )
    per["step_ms"] *= 1e3
    per["memory_mib"] = per["memory"] / MIB
    per["rank"] = per["family"].map(FAMILY_ORDER.index)
    per = per.sort_values(["setting", "base", "rank", "height", "template"], na_position="last")
    groups = [_references(g) for _, g in per.groupby(["setting", "base"], sort=True)]
    return pd.concat(groups, ignore_index=True)


def _references(group: pd.DataFrame) -> pd.DataFrame:
    """Fill the reference columns of one (setting, base) group."""
    group = group.copy()
    by_template = {t: row for t, row in zip(group["template"], group.itertuples(), strict=True)}
    plains = [r for r in group.itertuples() if r.family == st.TORCH]
    if not plains:
        plains = [r for r in group.itertuples() if r.family == st.TOWER and r.height == 0]
    for col, source in (("ms", "step_ms"), ("mib", "memory_mib")):
        plain, gdtuo, prev = [], [], []
        for row in group.itertuples():
            ref = _plain_for(row, plains)
            plain.append(getattr(ref, source) if ref else None)
            twin = _gdtuo_twin(row, group, by_template) if row.family == st.TOWER else None
            gdtuo.append(getattr(twin, source) if twin else None)
            below = _level_below(row, by_template) if row.family in (st.TOWER, st.GDTUO) else None
            if below is None and row.family in (st.TOWER, st.GDTUO) and row.height == 1:
                below = ref  # a height-1 tower without its top level is the plain optimizer
            prev.append(getattr(below, source) if below else None)
        group[f"plain_{col}"], group[f"gdtuo_{col}"], group[f"prev_{col}"] = plain, gdtuo, prev
    return group


def _plain_for(row: Any, plains: list[Any]) -> Any:
    """The plain optimizer a row compares with: the same level-0 arguments, else the first."""
    if not plains:
        return None
    wanted = _settings(st.split_top(row.template, "/", strict=False)[0])
    same = [p for p in plains if _settings(p.template) == wanted]
    return same[0] if same else plains[0]


def _settings(level: str) -> frozenset[tuple[str, str]]:
    """A level's arguments other than the step size and what it learns: ``momentum=0.9``."""
    _, args = st.split_call(level.removeprefix("torch.").removeprefix("gdtuo:"))
    out = set()
    for arg in args:
        key, eq, value = (part.strip() for part in arg.partition("="))
        if not eq or key in ("lr", "learn"):
            continue  # a positional argument is the step size (``sgd(0.1)``)
        try:
            value = f"{float(value):g}"
        except ValueError:
            pass
        out.add((key, value))
    return frozenset(out)


def _gdtuo_twin(row: Any, group: pd.DataFrame, by_template: dict[str, Any]) -> Any:
    """The reference tower of the same spec, else the only reference tower of the same height."""
    twin = by_template.get("gdtuo:" + row.template)
    if twin is not None:
        return twin
    same = group[(group["family"] == st.GDTUO) & (group["height"] == row.height)]
    return by_template[same["template"].iloc[0]] if len(same) == 1 else None


def _level_below(row: Any, by_template: dict[str, Any]) -> Any:
    """The same tower without its top level (``a/b/c`` -> ``a/b``), if measured."""
    levels = st.split_top(row.template, "/", strict=False)
    return by_template.get("/".join(levels[:-1])) if len(levels) > 1 else None


def overhead_groups(rows: pd.DataFrame) -> pd.DataFrame:
    """The (setting, base) groups worth showing: a tower of height >= 1 and its plain reference."""
    keep = []
    for _, group in rows.groupby(["setting", "base"], sort=True):
        tall = group["family"].isin([st.TOWER, st.GDTUO]) & (group["height"] > 0)
        if tall.any() and group["plain_ms"].notna().any():
            keep.append(group)
    return pd.concat(keep, ignore_index=True) if keep else pd.DataFrame()


IMPLEMENTATIONS = {st.TORCH: "torch.optim", st.TOWER: "hypergrad", st.GDTUO: "gdtuo", st.HD: "HD"}


def overhead_table(rows: pd.DataFrame, memory_kind: str) -> str:
    """Step time and memory per height, as ratios to plain torch.optim, to gdtuo, per level."""
    table = []
    for r in rows.itertuples():
        height = "—" if pd.isna(r.height) else int(r.height)
        added = None if r.prev_mib is None or pd.isna(r.prev_mib) else r.memory_mib - r.prev_mib
        table.append([
            r.base, IMPLEMENTATIONS[r.family], height, r.template + (" †" if r.shared else ""),
            r.runs, f"{r.step_ms:.3g}", ratio(r.step_ms, r.plain_ms),
            ratio(r.step_ms, r.gdtuo_ms), ratio(r.step_ms, r.prev_ms), num(r.memory_mib),
            ratio(r.memory_mib, r.plain_mib), "—" if added is None else f"{added:+.3f}",
        ])
    headers = ["base", "implementation", "height", "method", "runs", "step (ms)", "× plain",
               "× gdtuo", "× level below", f"memory (MiB, {memory_kind})", "memory × plain",
               "MiB added by this level"]
    return markdown(table, headers)


def overhead_figure(rows: pd.DataFrame, path: Path, memory_kind: str) -> Path:
    """One setting: a column per base optimizer; step time over plain, and memory, per height.

    Bars with the same height and implementation but different shapes (``adam/sgd`` and
    ``adam/adam``) are averaged; the table beside the figure lists each.
    """
    style.theme()
    rows = rows.copy()
    rows["implementation"] = rows["family"].map(IMPLEMENTATIONS)
    rows["level"] = [("HD" if pd.isna(h) else str(int(h))) for h in rows["height"]]
    rows["time_ratio"] = rows["step_ms"] / rows["plain_ms"]
    hue_order = [v for v in IMPLEMENTATIONS.values() if v in set(rows["implementation"])]
    palette = dict(zip(IMPLEMENTATIONS.values(), sns.color_palette("deep", 4), strict=True))
    bases = sorted(rows["base"].unique(), key=base_rank)
    width = max(style.WIDTH / 2 * len(bases), style.WIDTH * 0.6)
    fig, axes = plt.subplots(2, len(bases), figsize=(width, 6.4), squeeze=False)
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
    return style.save(fig, path)

