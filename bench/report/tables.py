"""The tables of a report, as GitHub markdown (tabulate), each from the runs frame.

Every function takes the frame of ``bench.report.frame.runs_frame`` (or a part of it) and returns
markdown text; the caller decides which sections to show.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from tabulate import tabulate

from bench.record import DIVERGED, DONE, FAILED, INTERRUPTED, STATUSES
from bench.report import structure as st
from bench.report.frame import MIB, done, mean_std, metric_title, num, ratio

# Order of base optimizers in the paper's table, and of the other families after them.
BASE_ORDER = ("sgd", "adam", "adamw", "adagrad", "rmsprop")
FAMILY_ORDER = (st.TORCH, st.TOWER, st.GDTUO, st.HD, st.SCHEDULE, st.LRFREE, st.SEARCH, st.OTHER)


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
    n_done = int((runs["status"] == DONE).sum())
    others = runs[runs["status"] != DONE]["status"].value_counts()
    return " + ".join([str(n_done), *(f"{c} {s}" for s, c in sorted(others.items()))])


# ---------------------------------------------------------------- the paper's table (Table 1)


def group_key(info: st.MethodInfo) -> tuple[int, str]:
    """Tower-like rows group by base optimizer in the paper's order; other families follow."""
    if info.is_tower_like:
        rank = BASE_ORDER.index(info.base) if info.base in BASE_ORDER else len(BASE_ORDER)
        return rank, info.base
    return 100 + FAMILY_ORDER.index(info.family), st.FAMILY_TITLES[info.family]


def _row_key(info: st.MethodInfo) -> tuple:
    return (info.height if info.height is not None else 0, FAMILY_ORDER.index(info.family),
            info.template, info.lr0 or 0.0, info.name)


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
                                              _row_key(st.method_info(kv[0]))))
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


# ---------------------------------------------------------------- sensitivity


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
                                    _row_key(st.method_info(kv[1]["method"].iloc[0]))))
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
    info = st.method_info(runs["method"].iloc[0])
    suffix = {st.TORCH: " (torch)", st.GDTUO: " (gdtuo)"}.get(info.family, "")
    return f"{info.height}{suffix}"


# ---------------------------------------------------------------- overhead


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
    wanted = _settings(st.split_top(row.template, "/")[0])
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
    levels = st.split_top(row.template, "/")
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


# ---------------------------------------------------------------- equal budget


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


# ---------------------------------------------------------------- claims of the papers


def _claim_numbers(rows: Sequence[Any]) -> dict[tuple[str, str], int]:
    """A number per claim (paper, key), in the order the rows first name it."""
    numbers: dict[tuple[str, str], int] = {}
    for row in rows:
        numbers.setdefault((row.claim.paper, row.claim.key), len(numbers) + 1)
    return numbers


def claims_table(rows: Sequence[Any]) -> str:
    """The checked claims (``bench.report.claims.ClaimRow``): a row per claim and setting."""
    numbers = _claim_numbers(rows)
    table = []
    for r in rows:
        verdict = r.verdict if r.verdict != "not reproduced" else "**not reproduced**"
        table.append([f"[{numbers[(r.claim.paper, r.claim.key)]}]", r.setting, r.text,
                      r.published, r.ours, "—" if r.sigmas is None else f"{r.sigmas:+.1f}",
                      verdict, r.why])
    return markdown(table, ["#", "workload", "claim", "published", "ours (mean ± sd, n)",
                            "Δ (combined sd)", "verdict", "why"])


def claims_sources(rows: Sequence[Any]) -> str:
    """Where each claim is from, numbered as in ``claims_table``."""
    numbers = _claim_numbers(rows)
    seen = {}
    for r in rows:
        seen.setdefault((r.claim.paper, r.claim.key), r.claim)
    return "\n".join(f"[{numbers[k]}] {c.paper}: {c.source}" for k, c in seen.items())


def claims_summary(rows: Sequence[Any]) -> str:
    """Counts by verdict, and in plain words each claim that did not hold here."""
    counts = {v: sum(r.verdict == v for r in rows)
              for v in ("reproduced", "not reproduced", "not run")}
    text = (f"**{counts['reproduced']} reproduced, {counts['not reproduced']} not reproduced, "
            f"{counts['not run']} not run.**")
    failed = [r for r in rows if r.verdict == "not reproduced"]
    if failed:
        text += "\n\nWhere a published claim does not hold on these runs:\n\n" + "\n".join(
            f"- {r.setting}: *{r.text}* does not hold here: {r.why}." for r in failed)
    return text


def unread_published(rows: Sequence[Any]) -> str | None:
    """What the papers publish for the shown experiments that could not be read (so the
    report can say it was not compared)."""
    from bench import published as pub

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


def _reason(items: Sequence[Any]) -> str:
    return items[0].value.note.removeprefix("not read: ") if items else ""


def rerun_count_table(counts: Sequence[Any]) -> str:
    """Per hyperoptimized row: finished parents, re-runs stored, re-runs that cannot be made."""
    rows = [[c.setting, c.parent, c.parents_done, c.reruns_stored, c.impossible,
             "; ".join(c.reasons) or "—"] for c in counts]
    return markdown(rows, ["workload", "hyperoptimized row", "finished seeds", "re-runs done",
                           "re-runs that cannot be made", "why"])
