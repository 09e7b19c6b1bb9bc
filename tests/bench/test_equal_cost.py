"""Towers against searches at equal cost (bench/report/equal_cost.py): the verdicts follow from
the numbers of a built store, in each direction, and the report's first screen says so."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bench.record import DIVERGED, DONE, RunResult
from bench.report import equal_cost
from bench.report.build import write_report
from bench.report.frame import runs_frame
from bench.store import open_store

TOWER = "sgd(0.01)/sgd(0.01)"
SEEDS = range(5)


def _run(method: str, seed: int, points: list[tuple[float, float, float]], *,
         search: bool = False, workload: str = "mnist-mlp", status: str = DONE) -> RunResult:
    """``points``: (steps, seconds, test error) at each evaluation (a search: best so far)."""
    curve = [{"cost_steps": s, "cost_seconds": t, "test_error": e} for s, t, e in points]
    config = {"workload": workload, "method": method, "seed": seed, "budget": {"epochs": 10},
              "device": "cpu", "options": {}}
    steps, seconds, error = points[-1]
    return RunResult(f"{workload}-{method}-{seed}", config, status,
                     metrics={} if status == DIVERGED else {"test_error": error},
                     curves={"best_so_far" if search else "eval": curve},
                     cost={"steps": steps, "device_seconds": seconds})


def _tower(seed: int, error: float = 0.05) -> RunResult:
    # one run: 1000 steps, 10 s (+ a little per seed), ending at ``error``
    return _run(TOWER, seed, [(500, 5.0, 0.2), (1000, 10.0 + 0.1 * seed, error)])


def _search(budget: int, seed: int, curve: list[tuple[float, float]]) -> RunResult:
    """``curve``: (seconds, best-so-far error) after each trial of 1000 steps."""
    return _run(f"grid(base=sgd, budget={budget})", seed,
                [(1000.0 * (i + 1), t, e) for i, (t, e) in enumerate(curve)], search=True)


def _store(*runs: RunResult) -> list[RunResult]:
    return list(runs)


def test_a_search_that_needs_four_times_the_cost():
    runs = [_tower(s) for s in SEEDS]
    runs += [_search(1, s, [(10.0, 0.08)]) for s in SEEDS]
    # the 8x search reaches the tower's 5% after its 4th trial, at 40 s
    runs += [_search(8, s, [(10.0, 0.08), (20.0, 0.07), (30.0, 0.06), (40.0 + s, 0.05),
                            (80.0, 0.04)]) for s in SEEDS]
    (m,) = equal_cost.matches(runs_frame(runs))
    assert m.search == "grid(base=sgd, budget=8)" and m.matched == 5 and m.seeds == 5
    assert m.ratio.value == pytest.approx(42.0 / 10.2)  # median search cost / median tower cost
    assert m.ratio.low <= m.ratio.value <= m.ratio.high
    (v,) = equal_cost.verdicts(runs_frame(runs), {"mnist-mlp": 1000.0})
    assert v.kind == "search needed more"
    assert v.text.startswith(f"`{TOWER}` reached 5.00% test error (median of 5 seeds) at 1.0× "
                             "one run's cost; the best search (`grid`) needed 4.1× [")
    assert "matched on 5 of 5" in v.text


def test_a_search_at_one_run_that_beats_the_tower():
    runs = [_tower(s) for s in SEEDS]
    runs += [_search(1, s, [(10.0, 0.045)]) for s in SEEDS]
    runs += [_search(8, s, [(10.0, 0.045), (80.0, 0.04)]) for s in SEEDS]
    (v,) = equal_cost.verdicts(runs_frame(runs), {"mnist-mlp": 1000.0})
    assert v.kind == "search at 1x"
    assert "a search at 1× beats it: `grid(base=sgd, budget=1)` reached 4.50%" in v.text


def test_no_search_budget_matches_the_tower():
    runs = [_tower(s, error=0.02) for s in SEEDS]
    runs += [_search(1, s, [(10.0, 0.08)]) for s in SEEDS]
    runs += [_search(8, s, [(10.0, 0.08), (80.0, 0.03)]) for s in SEEDS]
    (m,) = equal_cost.matches(runs_frame(runs))
    assert m.matched == 0 and m.ratio.value == math.inf
    (v,) = equal_cost.verdicts(runs_frame(runs), {"mnist-mlp": 1000.0})
    assert v.kind == "no search matched"
    assert "no search budget matched it (up to 8×)" in v.text


def test_a_search_matching_on_too_few_seeds_has_an_open_interval():
    runs = [_tower(s) for s in SEEDS]
    runs += [_search(1, s, [(10.0, 0.08)]) for s in SEEDS]
    # reaches 5% on seeds 0 and 1 only: the median over 5 seeds is "not reached"
    runs += [_search(8, s, [(10.0, 0.08), (40.0, 0.05 if s < 2 else 0.06)]) for s in SEEDS]
    (m,) = equal_cost.matches(runs_frame(runs))
    assert m.matched == 2 and m.ratio.value == math.inf
    assert equal_cost.verdicts(runs_frame(runs), {"mnist-mlp": 1000.0})[0].kind == \
        "no search matched"


def test_the_grid_cost_of_a_towers_worst_case():
    # height 0 over 4 step sizes: errors 50, 10, 5, 20 %; the tower's worst is 12%: m = 2 of n = 4
    lr0 = [1e-4, 1e-3, 1e-2, 1e-1]
    plain = [_run(f"sgd({lr:g})", 0, [(1000, 10.0, e)]) for lr, e in
             zip(lr0, [0.5, 0.1, 0.05, 0.2], strict=True)]
    tower = [_run(f"sgd({lr:g})/sgd({lr:g})", 0, [(1000, 11.0, e)]) for lr, e in
             zip(lr0, [0.12, 0.06, 0.05, 0.07], strict=True)]
    from bench.report.sensitivity import sensitivity_lines

    (g,) = equal_cost.grid_costs(sensitivity_lines(runs_frame(plain + tower)))
    assert (g.points, g.good, g.diverged) == (4, 2, 0)
    assert g.worst == pytest.approx(12.0) and g.median == pytest.approx(6.5)
    assert g.expected_runs == pytest.approx(5 / 3) and g.worst_runs == 3
    assert "needs 1.7 runs on average (3 in the worst order)" in equal_cost.grid_cost_sentence(g)


def test_a_tower_that_diverges_somewhere_on_the_grid():
    lr0 = [1e-3, 1e-2, 1e-1]
    plain = [_run(f"adam({lr:g})", 0, [(1000, 10.0, 0.05)]) for lr in lr0]
    tower = [_run(f"adam({lr:g})/adam({lr:g})", 0, [(1000, 11.0, 0.04)],
                  status=DIVERGED if lr == 1e-1 else DONE) for lr in lr0]
    from bench.report.sensitivity import sensitivity_lines

    (g,) = equal_cost.grid_costs(sensitivity_lines(runs_frame(plain + tower)))
    assert g.diverged == 1 and g.worst == math.inf
    assert "diverged at 1 of 3 initial step sizes" in equal_cost.grid_cost_sentence(g)


def test_the_report_opens_with_the_answer(tmp_path: Path):
    runs = []
    for workload in ("mnist-mlp", "fashion-mlp"):
        runs += [_run(TOWER, s, [(500, 5.0, 0.2), (1000, 10.0, 0.05)], workload=workload)
                 for s in SEEDS]
        runs += [_run(f"grid(base=sgd, budget={b})", s,
                      [(1000.0 * (i + 1), 10.0 * (i + 1), e) for i, e in
                       enumerate([0.08, 0.07, 0.06, 0.05, 0.045, 0.045, 0.045, 0.045][:b])],
                      search=True, workload=workload) for s in SEEDS for b in (1, 8)]
    store = tmp_path / "s.sqlite"
    with open_store(store) as db:
        for r in runs:
            db.put(r)
    with open_store(store) as db:
        stored = list(db.results())
    out = write_report(stored, tmp_path / "report", title="t", source="s", command="c")
    text = out.read_text()
    assert text.index("## Summary") < text.index("## Runs")
    assert "Of 2 (tower, workload) pairs: 0 matched by no search up to the largest budget, " \
           "2 matched by a search only at a higher cost, 0 beaten by a search of one run's " \
           "budget." in text
    # target: the 8x search's 4.5%; the tower never gets there, the 8x search at 50 s
    assert "(target 4.50%, set by `grid(base=sgd, budget=8)`)" in text
    assert "needed 4.0× [4.0×, 4.0×] the tower's device-seconds" in text
    assert (tmp_path / "report" / "profiles.png").is_file()
    assert "## Can towers replace tuning?" in text and "score at target ×1" in text
