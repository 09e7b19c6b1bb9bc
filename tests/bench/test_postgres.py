"""PostgreSQL as the results store and as the Optuna storage of a search shared by two workers.

Against a real server: ``$BENCH_TEST_POSTGRES_URL`` (CI starts one with ``bash .ci/postgres
start DIR``, which prints the URL). Each test gets a fresh database on it, dropped afterwards.
The store's contract tests run on the SQLite store too, through the same ``open_store``: one
contract, two implementations.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from bench.errors import UserError
from bench.record import DIVERGED, DONE, FAILED, INTERRUPTED, RunResult
from bench.store import Store, open_store, store_exists

ROOT = Path(__file__).resolve().parents[2]
PG_URL = os.environ.get("BENCH_TEST_POSTGRES_URL")
needs_postgres = pytest.mark.skipif(
    not PG_URL,
    reason="BENCH_TEST_POSTGRES_URL is unset: start a server with `bash .ci/postgres start DIR` "
    "and export the URL it prints (CI does)",
)


@pytest.fixture
def pg_url() -> Any:
    """A fresh, empty database on the test server (dropped afterwards), as a SQLAlchemy URL."""
    if not PG_URL:
        pytest.skip("BENCH_TEST_POSTGRES_URL is unset: start a server with `bash .ci/postgres "
                    "start DIR` and export the URL it prints (CI does)")
    import sqlalchemy as sa

    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    name = f"bench_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield sa.make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


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


# --- the store's contract, on both stores ------------------------------------------------------


def test_round_trip_is_bitwise_nan_and_subnormals_included(location):
    original = result("a")
    original.curves["train_loss"].append([3, float("nan")])
    with open_store(location) as store:
        store.put(original)
        back = store.get("a")
    assert back is not None and math.isnan(back.curves["train_loss"][-1][1])
    back.curves["train_loss"].pop()
    original.curves["train_loss"].pop()
    assert back == original  # 0.1 + 0.2 and 1e-310 come back as the same floats


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


def test_a_lease_keeps_a_run_to_one_invocation_until_it_lapses_or_the_run_is_stored(location):
    from bench.store import CLAIMED, HELD, LEASE_SECONDS, STORED

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


def test_export_is_the_same_table_from_both_stores(location, tmp_path):
    with open_store(location) as store:
        store.put(result("a"))
        store.put(result("b", DIVERGED, seed=1, diverged_step=4, error="non-finite"))
        path = store.export(tmp_path / "runs.csv")
    frame = pd.read_csv(path)
    assert list(frame["run_id"]) == ["a", "b"] and list(frame["status"]) == [DONE, DIVERGED]
    assert list(frame["metric.test_error"]) == [0.1 + 0.2] * 2


# --- the factory ------------------------------------------------------------------------------


def test_open_store_picks_the_store_a_location_names(tmp_path):
    for location in (tmp_path / "a.sqlite", str(tmp_path / "b.sqlite"),
                     f"sqlite:///{tmp_path / 'c.sqlite'}"):
        with open_store(location) as store:
            assert isinstance(store, Store)
        assert store_exists(location)
    assert not store_exists(tmp_path / "absent.sqlite")
    with pytest.raises(UserError, match="unsupported results store URL 'mysql://u@h/db'; give"):
        open_store("mysql://u@h/db")


def test_an_unreachable_server_is_a_user_error_without_the_password():
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql+psycopg://bench:s3cret@127.0.0.1:{port}/bench"
    with pytest.raises(UserError, match="cannot open results store .*check that the server") as e:
        open_store(url, timeout=5)
    assert "s3cret" not in str(e.value) and "bench:***@127.0.0.1" in str(e.value)


def test_the_postgres_store_is_what_open_store_gives_for_its_url(pg_url):
    from bench.sqlstore import SQLStore

    with open_store(pg_url) as store:
        assert isinstance(store, SQLStore) and len(store) == 0


# --- several writers ----------------------------------------------------------------------------

_WRITER = """
import sys
from bench.record import RunResult
from bench.store import open_store
url, prefix, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
with open_store(url) as store:
    for i in range(n):
        store.put(RunResult(
            run_id=f"{prefix}{i % 40}",  # the same ids again and again: upserts of one row
            config={"workload": "w", "method": prefix, "seed": i},
            status="done",
            curves={"train_loss": [[s, 1.0 / (s + 1)] for s in range(2000)]},
        ))
        print(i, flush=True)
"""


def _writer(url: str, prefix: str, n: int) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", _WRITER, url, prefix, str(n)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@needs_postgres
@pytest.mark.slow
def test_writers_at_once_and_one_killed_mid_write_leave_only_complete_rows(pg_url):
    writers = [_writer(pg_url, prefix, 120) for prefix in ("a", "b", "c")]
    victim = _writer(pg_url, "k", 1_000_000)
    assert victim.stdout is not None
    for _ in range(30):  # let it write a while, then kill it wherever it is
        victim.stdout.readline()
    victim.send_signal(signal.SIGKILL)
    victim.communicate()
    for w in writers:
        out, err = w.communicate(timeout=120)
        assert w.returncode == 0, err
    with open_store(pg_url) as store:
        rows = store.results()
        assert len(store.results(method="a")) == len(store.results(method="c")) == 40
        assert len(store.results(method="k")) >= 30
        assert all(len(r.curves["train_loss"]) == 2000 for r in rows)  # every row complete
        assert {r.config["seed"] for r in store.results(method="b")} == set(range(80, 120))


# --- one search, two workers, one study in PostgreSQL ------------------------------------------

RUN_STEPS, EVAL_STEPS = 200, 42  # eval_every=0.1 epoch of mnist-logreg's 422 steps


def _search_worker(url: str, config: dict[str, Any], barrier: Any, out: Any) -> None:
    """A worker as the local scheduler's: ``run_one`` (``train``), then ``put`` to the store."""
    import torch

    from bench.config import RunConfig
    from bench.store import as_default_store
    from bench.train import load_data, resolve_device
    from bench.worker import WorkerSpec, run_one
    from bench.workloads import get_workload

    torch.set_num_threads(1)
    run = RunConfig.from_dict(config)
    load_data(get_workload(run.workload), resolve_device("cpu"), run.seed)  # cached for train
    barrier.wait(timeout=300)  # both start searching together
    with as_default_store(url):  # the study goes in the store's database
        record = run_one(run, WorkerSpec(f"worker{os.getpid()}", url, 1))
    with open_store(url) as store:
        store.put(record)
    out.put((os.getpid(), record.to_dict()))


class _Workers:
    """``n`` spawned search workers on one config, and their results as they come."""

    def __init__(self, url: str, config: Any, n: int = 2) -> None:
        context = mp.get_context("spawn")
        # Kept on self: the children unpickle them after start() returns.
        self.barrier, self.out = context.Barrier(n), context.Queue()
        self.processes = [
            context.Process(target=_search_worker, args=(url, config.to_dict(), self.barrier,
                                                         self.out))
            for _ in range(n)
        ]
        for p in self.processes:
            p.start()

    def result(self, alive: list[Any], timeout: float = 300) -> tuple[int, dict[str, Any]]:
        """The next result; fails at once when every process in ``alive`` has died instead."""
        import queue

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                return self.out.get(timeout=1.0)
            except queue.Empty:
                if not any(p.is_alive() for p in alive):
                    pytest.fail(f"the workers died: exit codes {[p.exitcode for p in alive]}")
        pytest.fail("timed out waiting for a worker's result")

    def join(self) -> None:
        for p in self.processes:
            p.join(timeout=60)
            if p.is_alive():
                p.kill()


def _search_config(budget: float, steps: int, eval_every: float) -> Any:
    from bench.config import Budget, RunConfig
    from bench.methods import parse_method

    method = parse_method(f"tpe(base=sgd, budget={budget})").name
    return RunConfig("mnist-logreg", method, 0, Budget(steps=steps), "cpu",
                     (("eval_every", eval_every), ("warmup_steps", 2)))


def _trials(url: str, run_id: str) -> list[Any]:
    import optuna

    study = optuna.load_study(study_name=run_id, storage=url)  # the store's own database
    return study.get_trials(deepcopy=False)


@needs_postgres
@pytest.mark.slow
def test_two_workers_share_one_study_and_one_budget(pg_url, bench_data_dir):
    budget = 3.5
    config = _search_config(budget, RUN_STEPS, 0.1)
    workers = _Workers(pg_url, config)
    records = dict(workers.result(workers.processes) for _ in workers.processes)
    workers.join()
    assert [p.exitcode for p in workers.processes] == [0, 0]

    trials = _trials(pg_url, config.run_id)
    owners = {t.user_attrs["owner"]["pid"] for t in trials}
    assert owners == set(records), "both workers ran trials of the one study"
    params = [tuple(sorted(t.user_attrs["params"].items())) for t in trials]
    assert len(set(params)) == len(params), "no two trials sampled the same point"
    spent = sum(t.user_attrs["cost_steps"] for t in trials)
    # The budget is the study's: spent, and overspent by less than one eval interval per worker.
    assert budget * RUN_STEPS <= spent < budget * RUN_STEPS + 2 * EVAL_STEPS, spent
    assert {t.user_attrs["status"] for t in trials} <= {"done", "cut"}

    # Each worker waited for the other's trials: both return the same outcome (but for how many
    # trials each found when it opened the study), and the store holds it once.
    first, second = (_without_resumed(r) for r in records.values())
    assert first["status"] == second["status"] == DONE
    for key in ("metrics", "curves", "cost"):
        assert first[key] == second[key]
    assert first["curves"]["budget_total"] == budget * RUN_STEPS
    assert first["cost"]["steps"] == spent and len(first["curves"]["trials"]) == len(trials)
    with open_store(pg_url) as store:
        (row,) = store.results()
    assert row.run_id == config.run_id and row.metrics == first["metrics"]
    assert _without_resumed(row.to_dict())["curves"] == first["curves"]


def _without_resumed(record: dict[str, Any]) -> dict[str, Any]:
    curves = {k: v for k, v in record["curves"].items() if k != "resumed_trials"}
    return record | {"curves": curves}


@needs_postgres
@pytest.mark.slow
def test_a_worker_killed_mid_trial_is_failed_by_the_other_and_its_cost_counts(pg_url,
                                                                               bench_data_dir):
    import optuna

    config = _search_config(2, 800, 0.25)  # evaluations every 105 steps
    workers = _Workers(pg_url, config)
    survivor, victim = workers.processes
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # until the victim's trial has saved some cost
        try:
            trials = _trials(pg_url, config.run_id)
        except KeyError:  # the study is not created yet
            trials = []
        # A trial that has saved some cost and is far from its end (a kill must not miss it).
        if any(t.state == optuna.trial.TrialState.RUNNING
               and t.user_attrs.get("owner", {}).get("pid") == victim.pid
               and 0 < t.user_attrs.get("cost_steps", 0) <= 420 for t in trials):
            break
        time.sleep(0.2)
    else:
        pytest.fail("the victim never ran a trial")
    os.kill(victim.pid, signal.SIGKILL)
    pid, record = workers.result([survivor])
    assert pid == survivor.pid and record["status"] == DONE
    workers.join()

    lost = [t for t in _trials(pg_url, config.run_id)
            if t.user_attrs["owner"]["pid"] == victim.pid
            and t.state == optuna.trial.TrialState.FAIL]
    assert len(lost) == 1 and lost[0].user_attrs["cost_steps"] > 0
    listed = {t["number"]: t for t in record["curves"]["trials"]}
    assert listed[lost[0].number]["status"] == FAILED
    assert record["cost"]["steps"] >= 2 * 800  # the lost partial trial is part of the cost
