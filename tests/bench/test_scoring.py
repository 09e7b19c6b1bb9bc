"""AlgoPerf's scoring (bench/report/scoring.py) against worked examples computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bench.record import DONE, RunResult
from bench.report import scoring
from bench.report.frame import runs_frame

INF = math.inf

# Three workloads, three methods; C never reaches w2, A never reaches w3.
TIMES = pd.DataFrame({"w1": [10.0, 20.0, 50.0], "w2": [20.0, 10.0, INF],
                      "w3": [INF, 30.0, 30.0]}, index=["A", "B", "C"])


def test_ratios_divide_by_the_fastest_per_workload():
    r = scoring.ratios(TIMES)
    assert r.loc["A"].tolist() == [1.0, 2.0, INF]
    assert r.loc["B"].tolist() == [2.0, 1.0, 1.0]
    assert r.loc["C"].tolist() == [5.0, INF, 1.0]


def test_a_workload_no_method_reaches_counts_as_not_reached_for_all():
    times = TIMES.assign(w4=INF)
    assert (scoring.ratios(times)["w4"] == INF).all()


def test_a_method_missing_on_a_workload_is_not_reached_there():
    times = TIMES.copy()
    times.loc["A", "w1"] = np.nan
    assert scoring.ratios(times).loc["A", "w1"] == INF
    assert scoring.ratios(times).loc["B", "w1"] == 1.0  # B is now the fastest on w1


def test_profile_by_hand():
    prof = scoring.profile(scoring.ratios(TIMES), [0.5, 1.0, 1.5, 2.0, 4.0, 5.0, 100.0])
    third = 1 / 3
    assert prof.loc["A"].tolist() == pytest.approx([0, third, third, 2 * third, 2 * third,
                                                    2 * third, 2 * third])
    assert prof.loc["B"].tolist() == pytest.approx([0, 2 * third, 2 * third, 1, 1, 1, 1])
    assert prof.loc["C"].tolist() == pytest.approx([0, third, third, third, third, 2 * third,
                                                    2 * third])


def test_profiles_are_non_decreasing_in_tau():
    rng = np.random.default_rng(0)
    times = pd.DataFrame(rng.lognormal(size=(6, 9)))
    times[times > 3.0] = INF  # some never reach
    prof = scoring.profile(scoring.ratios(times), np.geomspace(1, 20, 50)).to_numpy()
    assert (np.diff(prof, axis=1) >= 0).all()
    assert ((prof >= 0) & (prof <= 1)).all()


def test_integrated_score_by_hand():
    # B = mean over workloads of max(0, 4 - r) / 3: A (3 + 2 + 0) / 9, B (2 + 3 + 3) / 9,
    # C: r = 5 is past r_max, so (0 + 0 + 3) / 9
    score = scoring.integrated_score(scoring.ratios(TIMES))
    assert score.to_dict() == pytest.approx({"A": 5 / 9, "B": 8 / 9, "C": 1 / 3})


def test_integrated_score_is_the_integral_of_the_profile():
    r = scoring.ratios(TIMES)
    taus = np.linspace(1.0, 4.0, 30001)
    prof = scoring.profile(r, taus).to_numpy()
    trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy < 2 names it trapz
    numeric = trapezoid(prof, taus, axis=1) / 3.0
    assert numeric == pytest.approx(scoring.integrated_score(r).to_numpy(), abs=1e-3)


def test_fastest_everywhere_scores_one_and_never_within_r_max_scores_zero():
    times = pd.DataFrame({"w1": [1.0, 4.5], "w2": [2.0, INF]}, index=["fast", "slow"])
    score = scoring.integrated_score(scoring.ratios(times))
    assert score["fast"] == 1.0 and score["slow"] == 0.0


def test_geomean_speedup_over_workloads_both_reached():
    times = pd.DataFrame({"w1": [10.0, 40.0], "w2": [20.0, 5.0], "w3": [INF, 1.0]},
                         index=["tower", "search"])
    out = scoring.geomean_speedup(times, {"w1": "search", "w2": "search", "w3": "search"})
    # w1: 40 / 10 = 4, w2: 5 / 20 = 0.25, w3 not reached by the tower: geomean(4, 0.25) = 1
    assert out.at["tower", "speedup"] == pytest.approx(1.0)
    assert out.at["tower", "workloads"] == 2
    assert out.at["search", "speedup"] == pytest.approx(1.0) and out.at["search", "workloads"] == 3


# ---------------------------------------------------------------- time to target on records


def _run(method: str, seed: int, errors: list[float], *, search: bool = False) -> RunResult:
    points = [{"cost_steps": 100.0 * (i + 1), "cost_seconds": 1.5 * (i + 1), "test_error": e}
              for i, e in enumerate(errors)]
    curves = {"best_so_far": points} if search else {"eval": points}
    config = {"workload": "w", "method": method, "seed": seed, "budget": {"steps": 300},
              "device": "cpu", "options": {}}
    return RunResult(f"{method}-{seed}", config, DONE, metrics={"test_error": errors[-1]},
                     curves=curves, cost={"steps": 100.0 * len(errors),
                                          "device_seconds": 1.5 * len(errors)})


def test_time_to_target_is_the_first_evaluation_at_or_below_it():
    run = _run("sgd(0.1)", 0, [0.30, 0.20, 0.25, 0.10])
    assert scoring.time_to_target(run, 20.0, "error") == 3.0  # the second point, in seconds
    assert scoring.time_to_target(run, 20.0, "error", "cost_steps") == 200.0
    assert scoring.time_to_target(run, 10.0, "error") == 6.0  # exactly at the target counts
    assert scoring.time_to_target(run, 5.0, "error") == INF  # never


def test_a_search_is_read_on_its_best_so_far_curve():
    run = _run("tpe(base=sgd, budget=4)", 0, [0.4, 0.12, 0.12, 0.08], search=True)
    assert scoring.time_to_target(run, 12.0, "error") == 3.0


def test_the_target_is_the_best_search_at_the_largest_budget():
    runs = [_run("grid(base=sgd, budget=8)", s, [0.2, 0.10 + 0.01 * s], search=True)
            for s in range(3)]
    runs += [_run("tpe(base=sgd, budget=8)", s, [0.2, 0.09 + 0.01 * s], search=True)
             for s in range(3)]
    runs += [_run("tpe(base=sgd, budget=1)", s, [0.05], search=True) for s in range(3)]
    (target,) = scoring.targets(runs_frame(runs)).values()
    # the 1x search is better but not at the largest budget; tpe's median at 8x is 10%
    assert target.method == "tpe(base=sgd, budget=8)"
    assert target.value == pytest.approx(10.0) and target.seeds == 3
    assert target.at(1.1) == pytest.approx(11.0)


def test_run_times_hold_every_seed_and_relaxation():
    runs = [_run("grid(base=sgd, budget=8)", s, [0.2, 0.1], search=True) for s in range(2)]
    runs += [_run("sgd(0.1)/sgd(0.01)", s, [0.3, 0.105]) for s in range(2)]
    frame = runs_frame(runs)
    times = scoring.run_times(frame, scoring.targets(frame), "cost_seconds")
    tower = times[times["method"] == "sgd(0.1)/sgd(0.01)"].set_index(["seed", "relax"])["time"]
    assert tower[(0, 1.0)] == INF  # 10.5% never reaches the 10% target
    assert tower[(0, 1.1)] == 3.0  # ... but reaches 11% at the second evaluation
    med = scoring.median_times(times, 1.1)
    assert med.at["sgd(0.1)/sgd(0.01)", "w"] == 3.0
