"""Can towers replace tuning? Each tower against each search at equal cost, in numbers and words.

- **Tower against search**: the tower's median final error over seeds is the error to match. A
  tower costs one run (its device-seconds); a search costs what it spent until the trial it would
  choose first reaches that error. Their ratio is a ratio of medians over paired seeds, with a
  bootstrap interval (``intervals.ratio_of_medians``). Each sampler is read at its largest
  budget: its best-so-far curve also shows what its smaller budgets would have found.
- **Sensitivity as cost**: the worst error of a tower over a grid of initial step sizes, and what
  a grid search of the plain optimizer over the same grid needs to reach it. Visiting the grid
  in random order, with m of its n points at or below the tower's worst error, the expected
  number of runs until the first such point is (n + 1) / (m + 1) (draws without replacement);
  in the worst order, n − m + 1. The grid search is credited with knowing the test error of each
  point (an oracle; a real one chooses on validation, and can only do worse).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bench.record import DONE
from bench.report import scoring
from bench.report import structure as st
from bench.report.intervals import Interval, bootstrap, median, ratio_of_medians


@dataclass(frozen=True)
class Match:
    """One tower against one sampler on one setting."""

    setting: str
    tower: str
    sampler: str
    search: str  # the sampler's largest-budget search, whose curve is read
    budget: float  # its budget factor
    error: float  # the tower's median final error (the error to match)
    ratio: Interval | None  # search cost / tower cost, over paired seeds
    matched: int  # seeds on which the search reached the tower's error within its budget
    seeds: int


@dataclass(frozen=True)
class Verdict:
    setting: str
    tower: str
    text: str
    kind: str  # "search at 1x", "search needed more", "no search matched"


def towers(frame: pd.DataFrame) -> pd.DataFrame:
    """Finished hyperoptimized towers (height ≥ 1), not re-runs."""
    ok = frame[(frame["status"] == DONE) & frame["parent"].isna()]
    return ok[(ok["family"] == st.TOWER) & (ok["height"] > 0)]


def _searches(frame: pd.DataFrame) -> pd.DataFrame:
    ok = frame[(frame["status"] == DONE) & (frame["family"] == st.SEARCH)]
    return ok.assign(budget_factor=ok["method"].map(scoring.search_budget),
                     sampler=ok["method"].map(scoring.search_sampler))


def matches(frame: pd.DataFrame) -> list[Match]:
    """Every tower against every sampler's largest-budget search, per setting."""
    out = []
    searches = _searches(frame)
    for (setting, tower), runs in towers(frame).groupby(["setting", "method"], sort=True):
        error = float(median(runs["score"].to_numpy()))
        tower_cost = dict(zip(runs["seed"], runs["cost_seconds"], strict=True))
        here = searches[searches["setting"] == setting]
        for sampler, group in here.groupby("sampler", sort=True):
            top = group[group["budget_factor"] == group["budget_factor"].max()]
            seeds = sorted(set(top["seed"]) & set(tower_cost))
            by_seed = dict(zip(top["seed"], top["result"], strict=True))
            cost = [scoring.time_to_target(by_seed[s], error, runs["metric"].iloc[0])
                    for s in seeds]
            ratio = ratio_of_medians(cost, [tower_cost[s] for s in seeds])
            out.append(Match(str(setting), str(tower), str(sampler), str(top["method"].iloc[0]),
                             float(top["budget_factor"].iloc[0]), error, ratio,
                             sum(math.isfinite(c) for c in cost), len(seeds)))
    return out


def _search_at_1x(frame: pd.DataFrame, setting: str) -> pd.DataFrame:
    """Per search of budget ≤ 1× in ``setting``: its median final error and seeds."""
    s = _searches(frame)
    s = s[(s["setting"] == setting) & (s["budget_factor"] <= 1.0)]
    return s.groupby("method").agg(error=("score", "median"), seeds=("seed", "nunique"))


def _ratio_text(r: Interval, budget: float) -> str:
    def one(x: float) -> str:
        if not math.isfinite(x):
            return f">{budget:g}×"
        return f"{x:.1f}×" if x < 10 else f"{x:.0f}×"

    return f"{one(r.value)} [{one(r.low)}, {one(r.high)}]"


def verdicts(frame: pd.DataFrame, unit_steps: dict[str, float]) -> list[Verdict]:
    """A sentence per (setting, tower) that follows from the numbers; see the module docstring."""
    out = []
    by_pair: dict[tuple[str, str], list[Match]] = {}
    for m in matches(frame):
        by_pair.setdefault((m.setting, m.tower), []).append(m)
    tw = towers(frame)
    for (setting, tower), ms in by_pair.items():
        runs = tw[(tw["setting"] == setting) & (tw["method"] == tower)]
        unit = unit_steps.get(setting) or float(runs["cost_steps"].median())
        cost = float(runs["cost_steps"].median()) / unit
        head = (f"`{tower}` reached {ms[0].error:.2f}% test error (median of "
                f"{len(runs)} seeds) at {cost:.1f}× one run's cost")
        cheap = _search_at_1x(frame, setting)
        beaten = cheap[cheap["error"] <= ms[0].error]
        found = [m for m in ms if m.ratio is not None and math.isfinite(m.ratio.value)]
        if len(beaten):
            best = beaten["error"].idxmin()
            error, seeds = beaten.at[best, "error"], beaten.at[best, "seeds"]
            text = (f"{head}; a search at 1× beats it: `{best}` reached {error:.2f}% (median of "
                    f"{seeds} seeds).")
            kind = "search at 1x"
        elif found:
            best_m = min(found, key=lambda m: m.ratio.value)
            text = (f"{head}; the best search (`{best_m.sampler}`) needed "
                    f"{_ratio_text(best_m.ratio, best_m.budget)} the tower's device-seconds to "
                    f"match it (95% interval over {best_m.seeds} paired seeds; matched on "
                    f"{best_m.matched} of {best_m.seeds}).")
            kind = "search needed more"
        else:
            top = max(m.budget for m in ms)
            text = (f"{head}; no search budget matched it (grid, TPE and GP up to {top:g}× one "
                    f"run's budget, {ms[0].seeds} seeds)."
                    if len(ms) > 1 else f"{head}; no search budget matched it (up to {top:g}×).")
            kind = "no search matched"
        out.append(Verdict(setting, tower, text, kind))
    return out


def error_intervals(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (setting, method): the mean final score over seeds with its bootstrap interval."""
    rows = []
    ok = frame[(frame["status"] == DONE) & frame["parent"].isna() & frame["score"].notna()]
    for (setting, method), runs in ok.groupby(["setting", "method"], sort=True):
        rows.append({"setting": setting, "method": method, "family": runs["family"].iloc[0],
                     "error": bootstrap(runs["score"].to_numpy())})
    return pd.DataFrame(rows, columns=["setting", "method", "family", "error"])


def time_intervals(times: pd.DataFrame, relax: float = 1.0) -> dict[tuple[str, str], Interval]:
    """Per (setting, method): the median time to target over seeds with its interval."""
    at = times[times["relax"] == relax]
    return {(s, m): bootstrap(g["time"].to_numpy(), median)
            for (s, m), g in at.groupby(["setting", "method"], sort=True)}


# ---------------------------------------------------------------- sensitivity as cost


@dataclass(frozen=True)
class GridCost:
    """A tower's spread over a grid of initial step sizes, and a grid search's cost to match it."""

    setting: str
    tower: str  # the template, e.g. ``sgd(·)/sgd(·)``
    height: int
    points: int
    diverged: int  # initial step sizes at which every seed diverged
    median: float  # over the grid's per-point means; inf if most points diverged
    worst: float  # inf when some point diverged
    grid: str  # the height-0 template searched over
    good: int  # grid points of the height-0 optimizer at or below ``worst``
    expected_runs: float  # (n + 1) / (m + 1), inf when m = 0
    worst_runs: float  # n − m + 1, inf when m = 0


def _per_point(runs: pd.DataFrame) -> pd.Series:
    """Mean final score per initial step size; a point whose every seed diverged is ``inf``."""
    means = runs.groupby("lr0")["score"].mean()
    return means.fillna(math.inf)


def grid_costs(lines: pd.DataFrame) -> list[GridCost]:
    """For each tower line of height ≥ 1, against the height-0 line of its base and setting."""
    out = []
    scored = lines[lines["status"].isin(scoring.SCORED)]
    for (setting, _), group in scored.groupby(["setting", "base"], sort=True):
        plain = group[(group["height"] == 0) & (group["family"] == st.TOWER)]
        if plain.empty:
            continue
        grid = _per_point(plain)
        for template, runs in group[group["height"] > 0].groupby("template", sort=True):
            if runs["family"].iloc[0] != st.TOWER:
                continue
            per = _per_point(runs)
            shared = grid[grid.index.isin(per.index)]
            worst = float(per.max())
            n, m = len(shared), int((shared <= worst).sum())
            out.append(GridCost(
                str(setting), str(template), int(runs["height"].iloc[0]), len(per),
                int(np.isinf(per).sum()), float(median(per.to_numpy())), worst,
                str(plain["template"].iloc[0]), m,
                (n + 1) / (m + 1) if m else math.inf, n - m + 1 if m else math.inf))
    return out


def grid_cost_sentence(g: GridCost) -> str:
    if not math.isfinite(g.worst):
        return (f"`{g.tower}` diverged at {g.diverged} of {g.points} initial step sizes: used "
                f"untuned it fails outright {g.diverged / g.points:.0%} of the time, a worst case "
                "any finished run of the grid search beats.")
    if not g.good:
        return (f"`{g.tower}`: worst {g.worst:.2f}% over {g.points} initial step sizes; no point "
                f"of the grid search over `{g.grid}` reaches it, at any cost.")
    return (f"`{g.tower}`: worst {g.worst:.2f}% over {g.points} initial step sizes; a grid search "
            f"over `{g.grid}` needs {g.expected_runs:.2g} runs on average ({g.worst_runs:g} in the "
            f"worst order) to reach it, against the tower's one.")


def summary(frame: pd.DataFrame, verdict_list: list[Verdict], scores: pd.Series | None,
            tgts: dict[str, scoring.Target]) -> str | None:
    """The first screen: how many towers each outcome has, the top integrated scores, per
    workload the best tower's verdict."""
    if not verdict_list:
        return None
    kinds = pd.Series([v.kind for v in verdict_list]).value_counts()
    n = len(verdict_list)
    lines = [
        f"**Can towers replace tuning?** Of {n} (tower, workload) pairs: "
        f"{kinds.get('no search matched', 0)} matched by no search up to the largest budget, "
        f"{kinds.get('search needed more', 0)} matched by a search only at a higher cost, "
        f"{kinds.get('search at 1x', 0)} beaten by a search of one run's budget."
    ]
    if scores is not None and len(scores):
        top = scores.sort_values(ascending=False).head(3)
        lines.append("AlgoPerf integrated score (time to the strict target, device-seconds, "
                     "r_max = 4; 1 is fastest everywhere): "
                     + ", ".join(f"`{m}` {s:.2f}" for m, s in top.items()) + ".")
    tw = towers(frame)
    for setting in sorted({v.setting for v in verdict_list}):
        here = tw[tw["setting"] == setting].groupby("method")["score"].median()
        best = here.idxmin()
        verdict = next(v for v in verdict_list if v.setting == setting and v.tower == best)
        target = tgts.get(setting)
        aim = (f" (target {target.value:.2f}%, set by `{target.method}`)" if target else "")
        lines.append(f"- **{setting}**{aim}: best tower {verdict.text}")
    return "\n\n".join(lines[:2]) + "\n\n" + "\n".join(lines[2:])


def interval_text(i: Interval | None, digits: int = 2, unit: str = "") -> str:
    """``2.41 [2.30, 2.52] (n=5)``; ``inf`` shown as "not reached"."""
    if i is None:
        return "—"

    def one(x: float) -> str:
        return "∞" if not np.isfinite(x) else f"{x:.{digits}f}{unit}"

    if not np.isfinite(i.value):
        return f"not reached (n={i.n})"
    return f"{one(i.value)} [{one(i.low)}, {one(i.high)}] (n={i.n})"


# ---------------------------------------------------------------- the whole analysis


@dataclass
class Analysis:
    """Everything the equal-cost section and the summary show, computed once per report."""

    targets: dict[str, scoring.Target]
    units: dict[str, float]  # one single run's cost in steps, per setting
    seconds: pd.DataFrame  # scoring.run_times on device-seconds, every relaxation
    steps: pd.DataFrame  # scoring.run_times on steps, the strict target
    ratios: dict[float, pd.DataFrame]  # per relaxation: performance ratios, methods x settings
    scores: pd.DataFrame  # per method: B per relaxation, speed-up, workloads reached
    verdicts: list[Verdict]
    matches: list[Match]


def analyse(frame: pd.DataFrame, units: dict[str, float]) -> Analysis | None:
    """The equal-cost analysis of the settings that have searches, or ``None`` if none has."""
    tgts = scoring.targets(frame)
    if not tgts:
        return None
    frame = frame[frame["setting"].isin(list(tgts))]
    seconds = scoring.run_times(frame, tgts, "cost_seconds")
    steps = scoring.run_times(frame, tgts, "cost_steps", relaxations=(1.0,))
    ratio_by = {relax: scoring.ratios(scoring.median_times(seconds, relax))
                for relax in scoring.RELAXATIONS}
    scores = pd.DataFrame({f"B at {relax:g}×": scoring.integrated_score(r)
                           for relax, r in ratio_by.items()})
    speed = scoring.geomean_speedup(scoring.median_times(seconds, 1.0),
                                    {s: t.method for s, t in tgts.items()})
    reached = (ratio_by[1.0].apply(np.isfinite)).sum(axis=1)
    scores = scores.join(speed).assign(reached=reached)
    scores = scores.sort_values([f"B at {scoring.RELAXATIONS[0]:g}×", "speedup"],
                                ascending=False)
    return Analysis(tgts, units, seconds, steps, ratio_by, scores, verdicts(frame, units),
                    matches(frame))


# ---------------------------------------------------------------- tables (markdown)


def _markdown(rows: list[list], headers: list[str]) -> str:
    from bench.report.tables import markdown

    return markdown(rows, headers)


def targets_table(a: Analysis) -> str:
    rows = [[t.setting, f"{t.value:.2f}", " / ".join(f"{t.at(r):.2f}" for r in scoring.RELAXATIONS),
             f"`{t.method}`", t.seeds, f"{a.units.get(t.setting, math.nan):,.0f}"]
            for t in a.targets.values()]
    return _markdown(rows, ["workload", "target (test error %)",
                            "strict / " + " / ".join(f"×{r:g}" for r in scoring.RELAXATIONS[1:]),
                            "set by (median over seeds)", "seeds", "one run (steps)"])


def scores_table(a: Analysis) -> str:
    n = len(a.targets)
    rows = []
    for method, row in a.scores.iterrows():
        speed = ("—" if not np.isfinite(row["speedup"])
                 else f"{row['speedup']:.2f}× ({int(row['workloads'])} of {n})")
        rows.append([f"`{method}`", st.FAMILY_TITLES[st.method_info(method).family],
                     *(f"{row[f'B at {r:g}×']:.2f}" for r in scoring.RELAXATIONS),
                     f"{int(row['reached'])} of {n}", speed])
    return _markdown(rows, ["method", "kind",
                            *(f"score at target ×{r:g}" for r in scoring.RELAXATIONS),
                            "workloads reaching the strict target",
                            "geomean speed-up vs the target's search"])


def time_table(a: Analysis, frame: pd.DataFrame, setting: str) -> str:
    """Per method on one setting: final error, and the time to the strict target, with
    intervals over seeds."""
    errors = error_intervals(frame[frame["setting"] == setting])
    secs, steps = time_intervals(a.seconds), time_intervals(a.steps)
    unit = a.units.get(setting, math.nan)
    at = a.seconds[(a.seconds["setting"] == setting) & (a.seconds["relax"] == 1.0)]
    reached = at.groupby("method")["time"].agg(lambda t: f"{np.isfinite(t).sum()} of {len(t)}")
    order = a.scores.index.tolist()
    rows = []
    for e in sorted(errors.itertuples(), key=lambda e: (order.index(e.method)
                                                          if e.method in order else len(order))):
        st_i = steps.get((setting, e.method))
        in_runs = (None if st_i is None else
                   Interval(st_i.value / unit, st_i.low / unit, st_i.high / unit, st_i.n))
        rows.append([f"`{e.method}`", interval_text(e.error), reached.get(e.method, "—"),
                     interval_text(in_runs, 2, "×"), interval_text(secs.get((setting, e.method)),
                                                                    1, " s")])
    return _markdown(rows, ["method", "test error % (mean [95% CI], seeds)",
                            "seeds reaching the target",
                            "time to target, in runs' steps (median [95% CI])",
                            "time to target, device-seconds (median [95% CI])"])


def matches_table(a: Analysis, setting: str) -> str | None:
    rows = [[f"`{m.tower}`", f"{m.error:.2f}", f"`{m.search}`",
             "—" if m.ratio is None else _ratio_text(m.ratio, m.budget),
             f"{m.matched} of {m.seeds}"] for m in a.matches if m.setting == setting]
    if not rows:
        return None
    return _markdown(rows, ["tower", "its median error %", "search (curve read)",
                            "search ÷ tower device-seconds to match (median [95% CI])",
                            "seeds matched within budget"])


def grid_cost_table(costs: list[GridCost]) -> str:
    def runs(x: float) -> str:
        return "never" if not math.isfinite(x) else f"{x:.2g}"

    rows = [[g.setting, g.height, f"`{g.tower}`", g.points,
             "diverged" if not math.isfinite(g.median) else f"{g.median:.2f}",
             f"diverged at {g.diverged}" if not math.isfinite(g.worst) else f"{g.worst:.2f}",
             f"`{g.grid}`", g.good, runs(g.expected_runs), runs(g.worst_runs)] for g in costs]
    return _markdown(rows, ["workload", "height", "tower", "initial step sizes",
                            "median error %", "worst error %", "grid search over",
                            "grid points at or below the worst", "runs to reach it (expected)",
                            "runs (worst order)"])
