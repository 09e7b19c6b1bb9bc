"""The table of test error by method, in the layout of Chandra et al.'s Table 1."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.report import structure as st
from bench.report.frame import done, mean_std, metric_title
from bench.report.order import group_key, row_key
from bench.report.tables import count_cell, markdown


def learned_values(runs: pd.DataFrame) -> str:
    """Final level-0 hyperparameters (learned, or chosen by a search), mean over results."""
    values: dict[str, list[float]] = {}
    for r in done(runs)["result"]:
        for key, value in r.metrics.items():
            if key.startswith("hyper/0.") and value is not None:
                values.setdefault(key.removeprefix("hyper/"), []).append(float(value))
    plain = {k: v for k, v in values.items() if "[" not in k}
    parts = [f"{st.hyper_label(k)}={np.mean(v):.3g}" for k, v in sorted(plain.items())]
    indexed: dict[str, list[float]] = {}
    for key, v in values.items():
        if "[" in key:
            indexed.setdefault(key.partition("[")[0], []).append(float(np.mean(v)))
    for key, v in sorted(indexed.items()):
        parts.append(f"{st.hyper_label(key)}[·] in [{min(v):.3g}, {max(v):.3g}]")
    return ", ".join(parts) or "—"


def _learns(info: st.MethodInfo) -> bool:
    """Methods whose final values are worth a column: learned, adapted, or chosen by a search."""
    if info.family in (st.TOWER, st.GDTUO):
        return bool(info.height)
    return info.family in (st.HD, st.LRFREE, st.SEARCH)


def method_table(frame: pd.DataFrame) -> str:
    """One setting's methods in the paper's layout.

    A row per method, grouped by base optimizer (the group named on its first row), test error
    mean ± std over seeds with their number, the final learned values, re-runs of the plain
    optimizer with a row's learned values in italics under that row, and what the papers
    published for the row (``bench.published``: the number and where it is from, ``not read``
    where the paper has the row but its number could not be read, empty where it has none).
    """
    from bench.published import published_cells

    metric = frame["metric"].iloc[0]
    workload = str(frame["workload"].iloc[0])

    def published(method: str, parent: str | None = None) -> str:
        return "; ".join(published_cells(workload, method, parent=parent))

    parents = dict(zip(frame["run_id"], frame["method"], strict=True))
    reruns = frame[frame["parent"].notna()].copy()
    reruns["parent_method"] = reruns["parent"].map(lambda p: parents.get(p, p))
    rows, last_group = [], None
    methods = frame[frame["parent"].isna()].groupby("method", sort=False)
    ordered = sorted(methods, key=lambda kv: (group_key(st.method_info(kv[0])),
                                              row_key(st.method_info(kv[0]))))
    for method, runs in ordered:
        info = st.method_info(method)
        group = group_key(info)[1]
        label = group if group != last_group else ""
        last_group = group
        hyper = learned_values(runs) if _learns(info) else ""
        rows.append([label, method, mean_std(done(runs)["score"]), count_cell(runs), hyper,
                     published(method)])
        for base, rerun in reruns[reruns["parent_method"] == method].groupby("base"):
            text = f"*{base} re-run with these values*"
            cells = [mean_std(done(rerun)["score"]), count_cell(rerun)]
            cell = published(str(rerun["method"].iloc[0]), parent=method)
            rows.append(["", text, *(f"*{c}*" for c in cells), "", cell and f"*{cell}*"])
    orphans = reruns[~reruns["parent_method"].isin(frame["method"])]
    for method, runs in orphans.groupby("method"):
        rows.append(["", f"*{method} (re-run; parent missing)*", mean_std(done(runs)["score"]),
                     count_cell(runs), "", ""])
    headers = ["base", "method", metric_title(metric), "runs", "learned final values", "published"]
    return markdown(rows, headers)

