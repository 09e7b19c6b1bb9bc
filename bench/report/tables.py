"""Markdown tables (tabulate, GitHub style), and the tables every report opens with.

``markdown`` renders every table of a report; ``count_cell`` is how a table counts runs. The
header's tables: runs per status, the environments, and the runs that are not results.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from tabulate import tabulate

from bench.record import DIVERGED, DONE, FAILED, INTERRUPTED, STATUSES
from bench.report.frame import num


def markdown(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    """A GitHub markdown table; ``|`` inside cells is escaped so it cannot split a column."""
    clean = [[str(c).replace("|", "\\|").replace("\n", " ") for c in row] for row in rows]
    return tabulate(clean, headers=list(headers), tablefmt="github", disable_numparse=True)


def status_counts(frame: pd.DataFrame) -> str:
    """Runs per status; every status is listed, zero counts included."""
    counts = frame["status"].value_counts()
    rows = [[s, int(counts.get(s, 0))] for s in STATUSES]
    return markdown([*rows, ["total", len(frame)]], ["status", "runs"])


def environment_table(frame: pd.DataFrame) -> str:
    """Distinct environments (device, torch, CUDA, commit, host) and how many runs each."""
    keys = ("device_name", "torch", "cuda", "commit", "host")
    envs = pd.DataFrame([{k: (r.env or {}).get(k) for k in keys} for r in frame["result"]])
    envs = envs.fillna("—").astype(str)
    envs["commit"] = envs["commit"].str.slice(0, 12)
    grouped = envs.groupby(list(keys), sort=True).size().reset_index(name="runs")
    return markdown(grouped.values.tolist(), [*keys, "runs"])


def problem_runs(frame: pd.DataFrame) -> str | None:
    """Failed, diverged and interrupted runs, each listed with its reason; ``None`` if none."""
    bad = frame[frame["status"].isin([FAILED, DIVERGED, INTERRUPTED])]
    if bad.empty:
        return None
    rows = [
        [r.setting, r.method, r.seed, r.status, num(r.diverged_step, 9), _short(r.error)]
        for r in bad.itertuples()
    ]
    return markdown(rows, ["workload", "method", "seed", "status", "at step", "reason"])


def _short(text: Any, limit: int = 140) -> str:
    if text is None or (isinstance(text, float) and np.isnan(text)):
        return "—"
    text = str(text).strip().splitlines()[0] if str(text).strip() else "—"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def count_cell(runs: pd.DataFrame) -> str:
    """``3``, or ``2 + 1 diverged``: runs that are not results are counted, never dropped."""
    counts = Counter(runs["status"])
    n_done = counts.pop(DONE, 0)
    return " + ".join([str(n_done), *(f"{c} {s}" for s, c in sorted(counts.items()))])
