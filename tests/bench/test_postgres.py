"""PostgreSQL as the results store (``bench.store.postgres``) and as the Optuna storage of a
search shared by two workers: what the contract's tests (``test_store_contract.py``, run on this
store too) do not cover.

Against a real server: ``$BENCH_TEST_POSTGRES_URL`` (CI starts one with ``bash .ci/postgres
start DIR``, which prints the URL). Each test gets a fresh database on it (the ``pg_url``
fixture), dropped afterwards.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bench.errors import UserError
from bench.record import DONE, FAILED
from bench.store import open_store

ROOT = Path(__file__).resolve().parents[2]


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
    from bench.store.postgres import SQLStore

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
    from bench.train import load_data, resolve_device
    from bench.worker import WorkerSpec, run_one
    from bench.workloads import get_workload

    torch.set_num_threads(1)
    run = RunConfig.from_dict(config)
    load_data(get_workload(run.workload), resolve_device("cpu"), run.seed)  # cached for train
    barrier.wait(timeout=300)  # both start searching together
    record = run_one(run, WorkerSpec(f"worker{os.getpid()}", url, 1))  # study: the database
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
