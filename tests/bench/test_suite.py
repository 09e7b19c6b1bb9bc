"""Suites: TOML -> frozen dataclasses -> a plan of runs; errors name file, line and key."""

from __future__ import annotations

import dataclasses
import re
import textwrap
from pathlib import Path

import pytest

from bench.config import Budget, RunConfig
from bench.errors import UserError
from bench.methods import parse_method
from bench.record import DONE, RunResult
from bench.suite import (
    LEARNED_FROM,
    available_suites,
    is_hyperoptimized,
    load_suite,
    plain_method,
    resolve_dependent,
)
from bench.workloads import WORKLOADS

SHIPPED = ("paper-mnist", "sensitivity", "overhead", "budget", "resnet", "charlstm", "smoke")


def write(tmp_path: Path, text: str, name: str = "s.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def refused(tmp_path: Path, text: str, after_path: str) -> None:
    """Loading the suite ``text`` fails, the error naming its file then ``after_path`` (a regex)."""
    path = write(tmp_path, text)
    with pytest.raises(UserError, match=re.escape(str(path)) + after_path):
        load_suite(path)


# --- the shipped suites --------------------------------------------------------------------


def test_every_issue_suite_is_shipped_with_a_description():
    suites = available_suites()
    for name in SHIPPED:
        assert name in suites, f"suite {name} is missing"
        assert suites[name].strip(), f"suite {name} has no description"


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_suite_plans_registered_names_only(name):
    suite = load_suite(name)
    plan = suite.plan()
    assert plan, name
    ids = [c.run_id for c in plan]
    assert len(ids) == len(set(ids)), "a plan holds each run once"
    for config in plan:
        assert config.workload in WORKLOADS
        # Names are identities: every planned method is canonical and parses back to itself.
        assert parse_method(config.method).name == config.method


def test_paper_mnist_has_table1_rows_3_seeds_30_epochs_and_dependents_after_parents():
    plan = load_suite("paper-mnist").plan()
    parents = [c for c in plan if c.option(LEARNED_FROM) is None]
    dependents = [c for c in plan if c.option(LEARNED_FROM) is not None]
    assert len({c.method for c in parents}) == 18  # the rows of Table 1
    assert {c.seed for c in plan} == {0, 1, 2}
    assert all(c.budget == Budget(epochs=30) and c.workload == "mnist-mlp" for c in plan)
    hyperoptimized = [c for c in parents if is_hyperoptimized(c.method)]
    assert len(hyperoptimized) == 14 * 3
    position = {c.run_id: i for i, c in enumerate(plan)}
    assert len(dependents) == len(hyperoptimized)
    for d in dependents:
        assert position[d.option(LEARNED_FROM)] < plan.index(d)


def test_sensitivity_grid_spans_1e_8_to_1_with_9_points_per_height():
    plan = load_suite("sensitivity").plan()
    methods = {c.method for c in plan}
    assert len(methods) == 9 * (4 + 4)  # SGD and Adam heights 0-3, as the paper's figure
    heights = {c.method.count("/") for c in plan}
    assert heights == {0, 1, 2, 3}
    assert {c.seed for c in plan} == {0, 1, 2}


def test_smoke_suite_covers_every_method_family():
    from bench.methods import families

    plan = load_suite("smoke").plan()
    covered = set()
    for config in plan:
        for family in families():
            if family.matches(config.method):
                covered.add(family.name)
                break
    assert covered == {f.name for f in families()}
    assert any(c.method.startswith("gdtuo:") for c in plan), "the reference tower"
    assert any(c.method.startswith("torch.") for c in plan), "plain torch.optim"
    assert any(c.option(LEARNED_FROM) for c in plan), "a dependent run"
    assert len(plan) <= 40, "CI runs it: keep it small"


# --- expansion ---------------------------------------------------------------------------------


def test_expansion_is_the_product_with_group_overrides(tmp_path):
    path = write(tmp_path, """
        description = "test"
        seeds = [0, 1]
        budgets = [{ steps = 10 }]
        options = { batch_size = 64, eval_every = 1 }

        [[group]]
        workloads = ["mnist-mlp", "mnist-logreg"]
        methods = ["sgd(0.1)", "torch.sgd(lr=0.1)"]

        [[group]]
        workloads = ["mnist-mlp"]
        methods = ["sgd({lr})"]
        vary = { lr = [0.01, 1e-8] }
        seeds = [5]
        budgets = [{ steps = 3 }, { epochs = 0.5 }]
        options = { batch_size = 32 }
    """)
    suite = load_suite(path)
    assert suite.name == "s" and suite.description == "test"
    assert dataclasses.is_dataclass(suite) and suite.__dataclass_params__.frozen
    plan = suite.plan()
    assert len(plan) == 2 * 2 * 2 * 1 + 1 * 2 * 1 * 2
    second = plan[8:]
    assert {c.method for c in second} == {parse_method("sgd(0.01)").name,
                                          parse_method("sgd(1e-8)").name}
    assert {c.budget for c in second} == {Budget(steps=3), Budget(epochs=0.5)}
    assert all(c.seed == 5 and c.option("batch_size") == 32 and c.option("eval_every") == 1
               for c in second)
    assert {c.seed for c in suite.plan(seeds=[7, 8])} == {7, 8}


def test_duplicates_are_planned_once_and_jobs_per_gpu_enters_the_id_on_gpus_only(tmp_path):
    path = write(tmp_path, """
        budgets = [{ steps = 5 }]
        [[group]]
        workloads = ["mnist-mlp"]
        methods = ["sgd(0.1)", "sgd(lr=0.1)"]
    """)
    suite = load_suite(path)
    assert len(suite.plan()) == 1
    cpu = suite.plan(device="cpu", jobs_per_gpu=2)[0]
    gpu1 = suite.plan(device="cuda")[0]
    gpu2 = suite.plan(device="cuda", jobs_per_gpu=2)[0]
    assert cpu.option("jobs_per_gpu") is None and gpu1.option("jobs_per_gpu") is None
    assert gpu2.option("jobs_per_gpu") == 2 and gpu2.run_id != gpu1.run_id


def test_dependent_follows_its_parents_id_when_options_change(tmp_path):
    path = write(tmp_path, """
        budgets = [{ steps = 5 }]
        [[group]]
        workloads = ["mnist-mlp"]
        methods = ["sgd(0.1)/sgd(1e-4)"]
        rerun_learned = true
    """)
    parent, dependent = load_suite(path).plan(device="cuda", jobs_per_gpu=3)
    assert dependent.option(LEARNED_FROM) == parent.run_id


# --- dependent runs ------------------------------------------------------------------------------


def test_plain_method_takes_level_0_with_learned_values():
    assert plain_method("sgd(lr=0.01)/sgd(lr=0.0001)", {"lr": 0.0312345678}) == "sgd(lr=0.0312346)"
    assert plain_method("adam(0.001, beta2=0.99)/adam(lr=1e-5)",
                        {"lr": 0.002, "beta1": 0.85}) == "adam(lr=0.002, beta1=0.85, beta2=0.99)"
    assert plain_method("gdtuo:sgd(0.01)/sgd(1e-4)", {"lr": 0.5}) == "gdtuo:sgd(lr=0.5)"
    assert plain_method("rmsprop(0.01, learn=lr)/sgd(1e-4)", {"lr": 0.02}) == "rmsprop(lr=0.02)"
    assert is_hyperoptimized("adam(lr=0.001)/sgd(1e-5)")
    assert not is_hyperoptimized("sgd(lr=0.1, momentum=0.9)+cosine")
    assert not is_hyperoptimized("sgd-hd(lr=0.001)")


def test_resolve_dependent_makes_the_plain_run_with_the_parent_in_its_id():
    parent = RunConfig("mnist-mlp", parse_method("sgd(0.01)/sgd(1e-4)").name, 1, Budget(steps=5))
    template = parent.with_options(**{LEARNED_FROM: parent.run_id})
    result = RunResult(parent.run_id, parent.to_dict(), DONE,
                       metrics={"hyper/0.lr": 0.0421, "hyper/1.lr": 1e-4, "test_error": 0.1})
    child = resolve_dependent(template, result)
    assert child.method == parse_method("sgd(0.0421)").name
    assert child.option("parent") == parent.run_id and child.option(LEARNED_FROM) is None
    assert (child.workload, child.seed, child.budget) == (parent.workload, 1, parent.budget)
    empty = dataclasses.replace(result, metrics={"test_error": 0.1})
    with pytest.raises(UserError, match="hyper/0"):
        resolve_dependent(template, empty)


# --- errors name file, line and key; unknown names list the valid ones --------------------------


def test_unknown_top_level_key_names_file_line_and_key(tmp_path):
    path = write(tmp_path, """
        description = "x"

        seed = [0]
        [[group]]
        workloads = ["mnist-mlp"]
        methods = ["sgd(0.1)"]
    """)
    with pytest.raises(UserError) as e:
        load_suite(path)
    message = str(e.value)
    assert f"{path}:3:" in message and "'seed'" in message and "seeds" in message


def test_unknown_key_in_second_group_and_in_a_budget_name_their_lines(tmp_path):
    refused(tmp_path, """
        [[group]]
        workloads = ["mnist-mlp"]
        methods = ["sgd(0.1)"]

        [[group]]
        workloads = ["mnist-mlp"]
        method = ["sgd(0.1)"]
    """, r":7: unknown key 'method' in \[\[group\]\] number 2")
    refused(tmp_path, """
        [[group]]
        workloads = ["mnist-mlp"]
        methods = ["sgd(0.1)"]
        budgets = [{ step = 3 }]
    """, r":4: unknown key 'step' in a budget")


def test_invalid_toml_and_bad_values_name_the_line(tmp_path):
    refused(tmp_path, """
        [[group]]
        workloads = ["mnist-mlp"
        methods = ["sgd(0.1)"]
    """, r": not valid TOML.*line")
    refused(tmp_path, """
        [[group]]
        workloads = ["mnist-mlp"]
        methods = ["sgd(0.1)"]
        seeds = [-1]
    """, r":4: seeds must be")
    refused(tmp_path, """
        [[group]]
        workloads = ["mnist-mlp"]
        methods = ["sgd({lr})"]
    """, r":3: .*vary has no 'lr'")


def test_unknown_workload_and_method_list_the_valid_names(tmp_path):
    path = write(tmp_path, """
        [[group]]
        workloads = ["mnist-mlp", "imagenet"]
        methods = ["sgd(0.1)"]
    """)
    with pytest.raises(UserError) as e:
        load_suite(path)
    assert "'imagenet'" in str(e.value) and all(w in str(e.value) for w in WORKLOADS)
    path = write(tmp_path, """
        [[group]]
        workloads = ["mnist-mlp"]
        methods = ["sgd(0.1)", "lion(1e-4)"]
    """)
    with pytest.raises(UserError) as e:
        load_suite(path)
    assert f"{path}:3:" in str(e.value) and "lion" in str(e.value)
    assert "towers" in str(e.value) and "prodigy" in str(e.value)


def test_unknown_suite_name_lists_the_shipped_ones(tmp_path):
    with pytest.raises(UserError, match="valid suites: .*paper-mnist.*smoke"):
        load_suite("no-such-suite")
    with pytest.raises(UserError, match="does not exist"):
        load_suite(tmp_path / "missing.toml")


def test_the_scheduler_owns_some_options(tmp_path):
    refused(tmp_path, """
        options = { jobs_per_gpu = 2 }
        [[group]]
        workloads = ["mnist-mlp"]
        methods = ["sgd(0.1)"]
    """, r":1: option 'jobs_per_gpu' is set by the scheduler")


def test_a_misspelt_option_is_an_error_not_a_new_run_id(tmp_path):
    refused(tmp_path, """
        [[group]]
        workloads = ["mnist-mlp"]
        methods = ["sgd(0.1)"]
        options = { batchsize = 32 }
    """, r":4: unknown option 'batchsize'; valid options: .*batch")
