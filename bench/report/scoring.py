"""Time to target and the scores MLCommons AlgoPerf gives training algorithms.

Definitions from Dahl et al. 2023, *Benchmarking Neural Network Training Algorithms*, section 4
(the AlgoPerf: Training Algorithms benchmark):

- **time to target** t(m, w): the cost at the first evaluation at which method m's run on
  workload w reaches the target; ``inf`` when it never does. Over repetitions (our seeds) the
  median is taken, as AlgoPerf takes the median over its studies.
- **performance ratio** r(m, w) = t(m, w) / min over methods t(·, w).
- **performance profile** ρ_m(τ) = the fraction of workloads with r(m, w) ≤ τ.
- **benchmark score** B_m = 1/(r_max − 1) ∫₁^{r_max} ρ_m(τ) dτ with r_max = 4, which for a step
  function is the mean over workloads of max(0, r_max − r(m, w)) / (r_max − 1): 1 for a method
  fastest everywhere, 0 for one never within 4× of the fastest.

This project's choices where AlgoPerf's setting differs (written in every report):

- **The target** of a workload is the median final test error of the best-tuned baseline at the
  largest budget: among the searches with the largest budget factor, the one whose median final
  error is lowest (AlgoPerf sets targets from tuned baselines' runs the same way). Relaxed
  targets multiply it by ``RELAXATIONS`` (1.1: within 10% of it, relative, so that workloads
  whose errors differ tenfold are relaxed alike): a method that nearly matches tuning shows on
  the relaxed profiles, not only as "not reached".
- **Test error, not validation error**: single runs train on the whole training split, as both
  papers did, so they have no validation split; a search's curve is the test error of the trial
  it would choose (on its own validation split) at each point of its cumulative cost.
- **Cost** is device-seconds of training (evaluations excluded, as AlgoPerf excludes them) or
  optimizer steps; a search's cost is every trial's, pruned ones included.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from bench.record import DIVERGED, DONE
from bench.report import structure as st
from bench.report.intervals import median

R_MAX = 4.0
RELAXATIONS = (1.0, 1.1, 1.25)
AXES = {"seconds": "cost_seconds", "steps": "cost_steps"}
SCORED = (DONE, DIVERGED)  # a diverged run reached what it reached before it diverged


@dataclass(frozen=True)
class Target:
    """A workload's target: ``value`` (test error in %, or bpc) and what set it."""

    setting: str
    value: float
    method: str
    seeds: int

    def at(self, relax: float) -> float:
        return self.value * relax


def search_budget(method: str) -> float | None:
    """A search's budget factor (``tpe(base=sgd, budget=8)`` -> 8), from the parsed method."""
    return st.method_info(method).budget


def search_sampler(method: str) -> str | None:
    """A search's sampler (``tpe``), from the parsed method."""
    return st.method_info(method).sampler


def targets(frame: pd.DataFrame) -> dict[str, Target]:
    """Per setting with searches: the best search's median final score at the largest budget."""
    out = {}
    ok = frame[(frame["status"] == DONE) & (frame["family"] == st.SEARCH) & frame["score"].notna()]
    for setting, runs in ok.groupby("setting", sort=True):
        budgets = runs["method"].map(search_budget)
        top = runs[budgets == budgets.max()]
        medians = top.groupby("method")["score"].median()
        best = str(medians.idxmin())
        out[str(setting)] = Target(str(setting), float(medians[best]), best,
                                   int((top["method"] == best).sum()))
    return out


def curve(result: Any) -> list[dict[str, float]]:
    """Where a run's cost and test score are both known, in cost order: a search's best-so-far
    points (its chosen trial's test error at each cumulative cost), else its evaluations."""
    curves = result.curves or {}
    points = curves["best_so_far"] if "best_so_far" in curves else curves.get("eval")
    return sorted(points or [], key=lambda p: p.get("cost_steps", 0.0))


def _score(point: dict[str, float], metric: str) -> float | None:
    if metric == "bpc":
        return point.get("test_bpc")
    error = point.get("test_error")
    return None if error is None else 100.0 * float(error)


def time_to_target(result: Any, target: float, metric: str, axis: str = "cost_seconds") -> float:
    """The cost at the first point at or below ``target`` (lower is better), ``inf`` if none."""
    for p in curve(result):
        value = _score(p, metric)
        reached = value is not None and math.isfinite(value) and value <= target
        if reached and p.get(axis) is not None:
            return float(p[axis])
    return math.inf


def run_times(frame: pd.DataFrame, tgts: dict[str, Target], axis: str,
              relaxations: Sequence[float] = RELAXATIONS) -> pd.DataFrame:
    """A row per (setting, method, seed, relax): the run's time to the (relaxed) target."""
    rows = []
    runs = frame[frame["status"].isin(SCORED) & frame["parent"].isna()
                 & frame["setting"].isin(list(tgts))]
    for r in runs.itertuples():
        target = tgts[r.setting]
        for relax in relaxations:
            rows.append({"setting": r.setting, "method": r.method, "family": r.family,
                         "seed": r.seed, "relax": relax,
                         "time": time_to_target(r.result, target.at(relax), r.metric, axis)})
    return pd.DataFrame(rows, columns=["setting", "method", "family", "seed", "relax", "time"])


def median_times(times: pd.DataFrame, relax: float) -> pd.DataFrame:
    """Methods x settings: the median over seeds of the time to target (``inf``: not reached)."""
    at = times[times["relax"] == relax]
    table = at.groupby(["method", "setting"])["time"].agg(lambda t: float(median(t.to_numpy())))
    return table.unstack("setting")


def ratios(times: pd.DataFrame) -> pd.DataFrame:
    """Performance ratios: each time over the fastest method's on that workload.

    A method missing on a workload (not run there) is ``inf``, as AlgoPerf counts a workload a
    submission cannot run; a workload no method reaches gives every method ``inf``.
    """
    times = times.fillna(math.inf)
    best = times.min(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = times / best.where(np.isfinite(best), np.nan)
    return out.fillna(math.inf)


def profile(ratio: pd.DataFrame, taus: Iterable[float]) -> pd.DataFrame:
    """ρ_m(τ): methods x τ, the fraction of workloads with ratio ≤ τ (non-decreasing in τ)."""
    taus = list(taus)
    r = ratio.to_numpy(dtype=float)
    values = np.stack([(r <= tau).mean(axis=1) for tau in taus], axis=1)
    return pd.DataFrame(values, index=ratio.index, columns=taus)


def integrated_score(ratio: pd.DataFrame, r_max: float = R_MAX) -> pd.Series:
    """B_m = 1/(r_max − 1) ∫₁^{r_max} ρ_m(τ) dτ, exactly (ρ is a step function)."""
    r = ratio.to_numpy(dtype=float)
    gain = np.clip(r_max - r, 0.0, r_max - 1.0)  # inf -> 0; r = 1 -> r_max - 1
    gain[~np.isfinite(gain)] = 0.0
    return pd.Series(gain.mean(axis=1) / (r_max - 1.0), index=ratio.index, name="score")


def geomean_speedup(times: pd.DataFrame, reference: dict[str, str]) -> pd.DataFrame:
    """Per method: the geometric mean over workloads of t(reference) / t(method), where both
    reached the target, and on how many workloads that was.

    ``reference`` maps a setting to the method its time is taken from (the target's search).
    """
    rows = {}
    for method in times.index:
        speedups = []
        for setting, ref in reference.items():
            if setting not in times.columns or ref not in times.index:
                continue
            t, t_ref = times.at[method, setting], times.at[ref, setting]
            if np.isfinite(t) and np.isfinite(t_ref) and t > 0:
                speedups.append(t_ref / t)
        geo = float(np.exp(np.mean(np.log(speedups)))) if speedups else math.nan
        rows[method] = {"speedup": geo, "workloads": len(speedups)}
    return pd.DataFrame.from_dict(rows, orient="index", columns=["speedup", "workloads"])
