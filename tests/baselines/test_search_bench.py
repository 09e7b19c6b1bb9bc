"""Search methods through the real training loop (``bench.train.train``) on real MNIST."""

from __future__ import annotations

import math

import pytest

from baselines import search as lib
from bench.config import Budget, RunConfig
from bench.methods import parse_method
from bench.methods.search import storage_url, trial_method
from bench.train import train

RUN_STEPS, EVAL_EVERY = 60, 20
SPE = 422  # mnist-logreg: 54,000 training images / batch 128
pytestmark = pytest.mark.usefixtures("bench_data_dir")


def config(method: str, tmp_path, seed: int = 0) -> RunConfig:
    return RunConfig(
        workload="mnist-logreg",
        method=parse_method(method).name,
        seed=seed,
        budget=Budget(steps=RUN_STEPS),
        options=(("eval_every", EVAL_EVERY / SPE), ("storage", str(tmp_path / "optuna.sqlite"))),
    )


@pytest.mark.slow
def test_tpe_spends_its_budget_and_its_cost_adds_up(tmp_path):
    result = train(config("tpe(base=sgd, budget=3)", tmp_path))
    assert result.status == "done", result.error
    trials, curve = result.curves["trials"], result.curves["best_so_far"]
    assert [t["status"] for t in trials] == ["done"] * 3
    assert result.cost["steps"] == sum(t["cost_steps"] for t in trials) == 3 * RUN_STEPS
    assert math.isclose(result.cost["device_seconds"], sum(t["cost_seconds"] for t in trials))
    assert curve[-1]["cost_steps"] == result.cost["steps"]
    # The selected trial is the best on validation; its test error is the search's.
    best = min(trials, key=lambda t: t["val_error"])
    assert result.curves["selected"] == best["number"]
    assert result.metrics["test_error"] == best["test_error"] == curve[-1]["test_error"]
    assert result.metrics["hyper/0.lr"] == best["params"]["lr"]
    # Each trial is a concrete single-run method on the same workload, seed and budget.
    assert all(t["method"].startswith("torch.sgd(lr=") for t in trials)
    assert len({t["run_id"] for t in trials}) == 3


@pytest.mark.slow
def test_a_fractional_budget_cuts_the_last_trial_within_one_eval_interval(tmp_path):
    result = train(config("random(base=sgd, budget=2.5)", tmp_path))
    trials = result.curves["trials"]
    assert [t["status"] for t in trials] == ["done", "done", "cut"]
    assert 2.5 * RUN_STEPS <= result.cost["steps"] <= 2.5 * RUN_STEPS + EVAL_EVERY
    assert result.curves["selected"] in (0, 1)


@pytest.mark.slow
def test_a_finished_search_resumes_from_its_study_without_training(tmp_path):
    cfg = config("grid(base=sgd+cosine, budget=2)", tmp_path)
    first = train(cfg)
    again = train(cfg)
    assert again.curves["resumed_trials"] == len(first.curves["trials"]) == 2
    assert again.curves["trials"] == first.curves["trials"]
    assert again.metrics == first.metrics
    assert all(")+cosine" in t["method"] for t in first.curves["trials"])


def test_trial_methods_are_canonical_single_run_names():
    space = lib.SearchSpace.of("adam")
    name = trial_method(space, {"lr": 0.00123, "beta1": 0.9, "beta2": 0.99})
    assert name == "torch.adam(lr=0.00123, betas=(0.9, 0.99))"
    assert parse_method(name).kind == "single"
    space = lib.SearchSpace.of("sgd+multistep")
    name = trial_method(space, {"lr": 0.1, "momentum": 0.9, "gamma": 0.2})
    assert name == "sgd(lr=0.1, momentum=0.9)+multistep(gamma=0.2)"


def test_storage_defaults_to_sqlite_beside_the_store(tmp_path, monkeypatch):
    monkeypatch.delenv("BENCH_OPTUNA_STORAGE", raising=False)
    monkeypatch.setenv("BENCH_STORE", str(tmp_path / "r" / "bench.sqlite"))
    assert storage_url() == f"sqlite:///{tmp_path / 'r' / 'optuna.sqlite'}"
    monkeypatch.setenv("BENCH_OPTUNA_STORAGE", "postgresql://u@h/db")
    assert storage_url() == "postgresql://u@h/db"
    assert storage_url("sqlite:///x.db") == "sqlite:///x.db"
