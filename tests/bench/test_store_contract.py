"""The results store's contract (``bench.store.interface.ResultStore``), the same tests on every
implementation: a SQLite file always, a fresh PostgreSQL database when
``$BENCH_TEST_POSTGRES_URL`` names a server (``bash .ci/postgres start DIR`` prints one), both
opened through ``open_store`` as the commands open them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from bench.errors import UserError
from bench.record import DIVERGED, DONE, FAILED, INTERRUPTED, RunResult
from bench.store import CLAIMED, HELD, LEASE_SECONDS, STORED, ResultStore, open_store


@pytest.fixture(params=["sqlite", "postgres"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a store lives: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "r.sqlite")
    return request.getfixturevalue("pg_url")


def result(run_id: str, status: str = DONE, **kw: Any) -> RunResult:
    seed = kw.pop("seed", 0)
    method = kw.pop("method", "sgd(0.1)")
    return RunResult(
        run_id=run_id,
        config={"workload": "mnist-mlp", "method": method, "seed": seed,
                "budget": {"steps": 10, "epochs": None, "seconds": None}, "device": "cpu",
                "options": {"eval_every": 0.5}},
        status=status,
        metrics={"test_error": 0.1 + 0.2, "val_error": 1 / 3, "hyper/0.lr": 0.05},
        curves={"eval": [{"step": 10, "test_error": 0.1}], "train_loss": [[1, 2.3], [2, 1e-310]]},
        timing={"step_time_median": 0.001, "timed_steps": 5},
        memory={"optimizer_bytes": 1024},
        cost={"steps": 10, "device_seconds": 0.01},
        env={"commit": "abc", "device_name": "cpu", "started": "2024-01-01T00:00:00+00:00"},
        **kw,
    )


# -- atomic rows, returned as put ---------------------------------------------------------------


def test_open_store_gives_a_result_store(location):
    with open_store(location) as store:
        assert isinstance(store, ResultStore) and len(store) == 0


def test_round_trip_is_bitwise_nan_and_subnormals_included(location):
    original = result("a")
    original.curves["train_loss"].append([3, float("nan")])
    with open_store(location) as store:
        store.put(original)
        back = store.get("a")
    assert back is not None and back.to_dict().keys() == original.to_dict().keys()
    assert math.isnan(back.curves["train_loss"][-1][1])  # diverged curves hold NaN
    back.curves["train_loss"].pop()
    original.curves["train_loss"].pop()
    assert back == original  # 0.1 + 0.2 and 1e-310 come back as the same floats


# -- what is kept, what has() says ----------------------------------------------------------------


def test_has_get_put_delete_and_filters(location):
    with open_store(location) as store:
        store.put(result("done"))
        store.put(result("diverged", DIVERGED, diverged_step=3, error="boom"))
        store.put(result("failed", FAILED, error="RuntimeError: x"))
        store.put(result("interrupted", INTERRUPTED, method="adam(0.001)", seed=1))
        assert [store.has(i) for i in ("done", "diverged", "failed", "interrupted", "absent")] \
            == [True, True, False, False, False]
        assert store.get("absent") is None and store.get("diverged").diverged_step == 3
        assert [r.run_id for r in store.results()] == [
            "interrupted", "diverged", "done", "failed"]  # workload, method, seed, run id
        assert [r.run_id for r in store.results(status=FAILED)] == ["failed"]
        assert [r.run_id for r in store.results(["done", "nope"], method="sgd(0.1)")] == ["done"]
        assert store.results([]) == [] and store.results(workload="svhn") == []
        store.put(result("failed"))  # a re-run replaces the failed row
        assert store.has("failed") and len(store) == 4
        store.delete("failed")
        assert store.get("failed") is None and len(store) == 3


def test_put_replaces_and_delete_removes(location):
    with open_store(location) as store:
        store.put(result("a", FAILED, error="first try"))
        store.put(result("a"))
        assert len(store) == 1 and store.get("a").status == DONE
        store.delete("a")
        assert len(store) == 0 and store.get("a") is None


def test_a_failed_or_interrupted_record_never_replaces_a_kept_one(location):
    with open_store(location) as store:
        for kept in (DONE, DIVERGED):
            for later in (FAILED, INTERRUPTED):
                run_id = f"{kept}-{later}"
                store.put(result(run_id, kept))
                store.put(result(run_id, later, error="it broke"))
                assert store.get(run_id).status == kept and store.has(run_id)
        store.put(result("done-failed", DIVERGED))  # a kept one replaces a kept one
        assert store.get("done-failed").status == DIVERGED


def test_results_filters(location):
    with open_store(location) as store:
        store.put(result("x2", seed=2))
        store.put(result("x1", seed=1))
        store.put(result("y", method="adam(0.001)"))
        store.put(result("z", FAILED, method="adam(0.001)", seed=1))
        assert [r.run_id for r in store.results()] == ["y", "z", "x1", "x2"]
        assert [r.run_id for r in store.results(method="sgd(0.1)")] == ["x1", "x2"]
        assert [r.run_id for r in store.results(status=FAILED)] == ["z"]
        assert [r.run_id for r in store.results(["x2", "y", "nope"])] == ["y", "x2"]
        assert store.results([]) == []
        assert store.results(workload="cifar10-resnet20") == []


# -- leases ---------------------------------------------------------------------------------------


def test_a_lease_keeps_a_run_to_one_invocation_until_it_lapses_or_the_run_is_stored(location):
    with open_store(location) as a, open_store(location) as b:
        assert a.claim("r", "A", now=1000.0) == CLAIMED
        assert a.claim("r", "A", now=1001.0) == CLAIMED  # its own lease: still its
        assert b.claim("r", "B", now=1030.0) == HELD
        lapse = 1000.0 + LEASE_SECONDS + 1
        assert b.claim("r", "B", now=lapse) == CLAIMED  # A died: B takes over
        assert a.claim("r", "A", now=lapse) == HELD
        b.put(result("r"))
        b.release("r", "B")
        assert a.claim("r", "A") == STORED
        assert b.claim("free", "B") == CLAIMED
        b.heartbeat("B")  # renewed now: A cannot take it
        assert a.claim("free", "A") == HELD
        b.release("free", "B")
        assert a.claim("free", "A") == CLAIMED


def test_heartbeat_and_release_touch_only_their_owners_leases(location):
    with open_store(location) as store:
        assert store.claim("a", "A", now=1000.0) == store.claim("b", "B", now=1000.0) == CLAIMED
        store.heartbeat("A")  # A is alive; B has not been heard of since 1000
        assert store.claim("a", "C") == HELD and store.claim("b", "C") == CLAIMED
        store.release("a", "B")  # not B's lease: nothing
        assert store.claim("a", "C") == HELD
        store.release("a", "A")
        assert store.claim("a", "C") == CLAIMED


# -- export ---------------------------------------------------------------------------------------


def test_export_csv_and_parquet_are_the_same_table_from_every_store(location, tmp_path):
    with open_store(location) as store:
        store.put(result("a"))
        store.put(result("b", DIVERGED, seed=1, diverged_step=4, error="non-finite"))
        csv = store.export(tmp_path / "out" / "runs.csv", "csv")
        parquet = store.export(tmp_path / "runs.parquet", "parquet")
        with pytest.raises(UserError, match="valid formats: csv, parquet"):
            store.export(tmp_path / "runs.xlsx", "xlsx")
    for frame in (pd.read_csv(csv), pd.read_parquet(parquet)):
        assert list(frame["run_id"]) == ["a", "b"]
        assert list(frame["status"]) == [DONE, DIVERGED]
        assert list(frame["metric.test_error"]) == [0.1 + 0.2] * 2
        assert list(frame["timing.step_time_median"]) == [0.001, 0.001]
        assert list(frame["cost.steps"]) == [10, 10]
        assert list(frame["budget_steps"]) == [10, 10]
        assert frame["diverged_step"].iloc[1] == 4
