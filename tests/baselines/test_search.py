"""The Optuna search driver (``baselines.search``) on a synthetic training curve.

The trial function here is a real one under the driver's contract (params in, reports at each
evaluation, its cost out), whose "training" is a closed-form curve: fast enough to check budget
accounting, grid coverage, pruning, resume and determinism exactly. The same driver over real
``train`` runs is tested in ``test_search_bench.py``.
"""

from __future__ import annotations

import math

import optuna
import pytest

from baselines import search as lib

RUN_STEPS, EVAL_EVERY = 100, 10


class Curve:
    """A trial function: val(step) = f(params) + 1 / (1 + step / 10), one report per 10 steps.

    ``interrupt_at`` raises KeyboardInterrupt during the given call (after two reports), as a
    killed process would stop a search.
    """

    def __init__(self, interrupt_at: int | None = None) -> None:
        self.calls: list[dict[str, float]] = []
        self.interrupt_at = interrupt_at

    @staticmethod
    def final(params: dict[str, float]) -> float:
        return (math.log10(params["lr"]) + 2) ** 2 + (params["momentum"] - 0.5) ** 2

    def __call__(self, params, report) -> lib.TrialOutcome:
        self.calls.append(params)
        value, step = math.inf, 0
        for step in range(EVAL_EVERY, RUN_STEPS + 1, EVAL_EVERY):
            if self.interrupt_at == len(self.calls) and step == 3 * EVAL_EVERY:
                raise KeyboardInterrupt
            value = self.final(params) + 1 / (1 + step / EVAL_EVERY)
            if report(step, value, step, step * 1e-3):
                break
        return lib.TrialOutcome("done", value, value + 0.01, step, step * 1e-3,
                                {"steps": step})


def run(trial_fn, *, sampler="tpe", runs=3.0, unit="steps", pruner="none", seed=0,
        storage=None, name="s", per_run=RUN_STEPS, startup=None):
    budget = lib.SearchBudget(runs=runs, unit=unit, run_steps=RUN_STEPS,
                              per_run=per_run if unit == "steps" else None)
    return lib.run_search(
        trial_fn, space=lib.SearchSpace.of("sgd"), sampler=sampler, budget=budget,
        study_name=name, storage=storage or optuna.storages.InMemoryStorage(), seed=seed,
        pruner=pruner, startup=startup,
    )


def test_budget_in_whole_runs_is_spent_and_costs_add_up():
    out = run(Curve(), runs=3)
    assert [t["status"] for t in out.trials] == ["done"] * 3
    assert out.cost_steps == sum(t["cost_steps"] for t in out.trials) == 3 * RUN_STEPS
    assert out.best_so_far[-1]["cost_steps"] == out.cost_steps
    assert math.isclose(out.cost_seconds, sum(t["cost_seconds"] for t in out.trials))
    values = [p["value"] for p in out.best_so_far]
    assert values == sorted(values, reverse=True)  # best so far never gets worse
    assert out.best["value"] == min(t["value"] for t in out.trials)


def test_a_trial_past_the_budget_is_cut_within_one_eval_interval():
    out = run(Curve(), runs=2.55)
    assert [t["status"] for t in out.trials] == ["done", "done", "cut"]
    assert 2.55 * RUN_STEPS <= out.cost_steps <= 2.55 * RUN_STEPS + EVAL_EVERY
    # A cut trial is never selected: it did not train for a whole run.
    assert out.best["number"] in (0, 1)


def test_grid_covers_its_grid_once_then_stops():
    curve = Curve()
    out = run(curve, sampler="grid", runs=100)
    grid = lib.SearchSpace.of("sgd").grid()
    assert len(out.trials) == len(grid) == 8
    assert sorted(tuple(sorted(p.items())) for p in curve.calls) == sorted(
        tuple(sorted(p.items())) for p in grid
    )


def test_grid_with_a_small_budget_takes_a_seeded_part_of_the_grid():
    a, b = Curve(), Curve()
    run(a, sampler="grid", runs=3, seed=1)
    run(b, sampler="grid", runs=3, seed=1)
    assert a.calls == b.calls and len(a.calls) == 3


def test_same_seed_same_search_other_seed_other_search():
    a, b, c = Curve(), Curve(), Curve()
    run(a, runs=4, seed=5)
    run(b, runs=4, seed=5)
    run(c, runs=4, seed=6)
    assert a.calls == b.calls
    assert a.calls != c.calls


def test_params_are_rounded_and_inside_the_space():
    curve = Curve()
    run(curve, sampler="random", runs=5)
    for p in curve.calls:
        assert 1e-4 <= p["lr"] <= 1.0 and 0.0 <= p["momentum"] <= 0.99
        assert p["lr"] == float(f"{p['lr']:.4g}")


@pytest.mark.slow
def test_an_interrupted_search_resumes_and_counts_the_lost_partial_trial(tmp_path):
    url = f"sqlite:///{tmp_path / 'optuna.sqlite'}"
    with pytest.raises(KeyboardInterrupt):
        run(Curve(interrupt_at=3), runs=4, storage=url, name="run-1")
    resumed = Curve()
    out = run(resumed, runs=4, storage=url, name="run-1")
    assert out.resumed == 3
    statuses = [t["status"] for t in out.trials]
    assert statuses[:3] == ["done", "done", "failed"]
    # The interrupted trial saved its cost at its last report (step 20) and it counts.
    assert out.trials[2]["cost_steps"] == 2 * EVAL_EVERY
    assert out.cost_steps == sum(t["cost_steps"] for t in out.trials)
    assert 4 * RUN_STEPS <= out.cost_steps <= 4 * RUN_STEPS + EVAL_EVERY
    assert len(resumed.calls) == len(out.trials) - 3
    # A finished search opened again trains nothing more.
    again = Curve()
    assert run(again, runs=4, storage=url, name="run-1").cost_steps == out.cost_steps
    assert again.calls == []


def test_median_pruner_stops_bad_trials_early_and_their_cost_counts():
    out = run(Curve(), sampler="random", runs=12, pruner="median", startup=3)
    pruned = [t for t in out.trials if t["status"] == "pruned"]
    assert pruned, "a median pruner over 12 random trials should prune some"
    assert all(t["cost_steps"] < RUN_STEPS for t in pruned)
    assert out.cost_steps == sum(t["cost_steps"] for t in out.trials)
    assert out.cost_steps <= 12 * RUN_STEPS + EVAL_EVERY
    assert len(out.trials) > 12  # pruning buys more trials within the same budget


def test_hyperband_pruner_runs():
    out = run(Curve(), sampler="tpe", runs=6, pruner="hyperband")
    assert out.cost_steps <= 6 * RUN_STEPS + EVAL_EVERY
    assert out.best is not None


@pytest.mark.slow  # Optuna's GP fits its model with torch: seconds per trial
@pytest.mark.parametrize("sampler", ["gp", "cmaes"])
def test_model_based_samplers_run(sampler):
    out = run(Curve(), sampler=sampler, runs=5, startup=2)
    assert len(out.trials) == 5 and out.best is not None


def test_budget_in_seconds_is_measured_on_the_first_whole_run():
    out = run(Curve(), runs=2.5, unit="seconds")
    assert out.total == pytest.approx(2.5 * RUN_STEPS * 1e-3)
    assert out.cost_seconds <= out.total + EVAL_EVERY * 1e-3 + 1e-12
    assert out.trials[-1]["status"] == "cut"


def test_failing_trials_stop_the_search_after_three_in_a_row():
    def failing(params, report):
        return lib.TrialOutcome("failed", None, None, 0, 0.0)

    out = run(failing, runs=10)
    assert [t["status"] for t in out.trials] == ["failed"] * 3
    assert out.best is None


def test_diverged_trials_are_told_as_worst_and_never_selected():
    def diverging(params, report):
        bad = params["lr"] > 0.01
        if bad:
            return lib.TrialOutcome("diverged", None, None, 50, 0.05)
        return Curve()(params, report)

    budget = lib.SearchBudget(runs=6, unit="steps", run_steps=RUN_STEPS, per_run=RUN_STEPS)
    out = lib.run_search(diverging, space=lib.SearchSpace.of("sgd"), sampler="random",
                         budget=budget, study_name="d", worst=1.0,
                         storage=optuna.storages.InMemoryStorage())
    assert any(t["status"] == "diverged" for t in out.trials)
    assert out.best is None or out.best["status"] == "done"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"sampler": "bayes"}, "valid samplers: grid, random, tpe, gp, cmaes"),
        ({"pruner": "asha"}, "valid pruners: none, median, hyperband"),
    ],
)
def test_bad_names_list_the_valid_ones(kwargs, message):
    with pytest.raises(ValueError, match=message):
        run(Curve(), **kwargs)


def test_bad_base_and_budget_say_the_rule():
    with pytest.raises(ValueError, match="valid bases: sgd, adam, sgd\\+cosine"):
        lib.SearchSpace.of("lamb")
    with pytest.raises(ValueError, match="budget must be > 0"):
        lib.SearchBudget(runs=0, unit="steps", run_steps=1, per_run=1)


def test_spaces_with_schedules_add_their_dims():
    space = lib.SearchSpace.of("adam+cosine")
    assert [d.name for d in space.dims] == ["lr", "beta1", "beta2", "warmup"]
    assert len(space.grid()) == 4 * 1 * 2 * 2


def _open_storage(url: str, barrier) -> None:
    barrier.wait()  # every process creates the tables at the same instant
    lib.make_storage(url)


def test_processes_opening_a_fresh_sqlite_storage_at_once_all_succeed(tmp_path):
    # Two searches starting together in a suite open the same new optuna.sqlite: without the
    # retry, the second one fails on Optuna's schema creation (alembic_version UNIQUE).
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    url = f"sqlite:///{tmp_path / 'optuna.sqlite'}"
    barrier = ctx.Barrier(3)
    procs = [ctx.Process(target=_open_storage, args=(url, barrier)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    assert lib.make_storage(url).get_all_studies() == []
