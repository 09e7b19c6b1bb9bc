"""A worker's path through one run (``bench.worker``): the store it is given is the one a search's
Optuna study follows, passed along explicitly, never through the environment; what a run raises
becomes its ``failed`` record."""

from __future__ import annotations

import os
from pathlib import Path

from bench.config import Budget, RunConfig
from bench.methods import parse_method
from bench.methods.search import storage_url
from bench.record import DONE, FAILED
from bench.worker import WorkerSpec, run_one


def test_the_study_follows_the_store_it_is_given(tmp_path, monkeypatch):
    monkeypatch.delenv("BENCH_OPTUNA_STORAGE", raising=False)
    monkeypatch.setenv("BENCH_STORE", str(tmp_path / "elsewhere" / "bench.sqlite"))
    given = tmp_path / "given" / "bench.sqlite"
    assert storage_url(store=str(given)) == f"sqlite:///{given.parent / 'optuna.sqlite'}"
    assert storage_url(store="postgresql://u@h/db") == "postgresql://u@h/db"
    assert storage_url("sqlite:///x.db", store=str(given)) == "sqlite:///x.db"  # given: first
    assert os.environ["BENCH_STORE"] == str(tmp_path / "elsewhere" / "bench.sqlite")


def _bench_environment() -> dict[str, str]:
    """Our variables (torch's own, e.g. Inductor's cache folder set when Dynamo is first
    imported, are not ours to pin)."""
    return {k: v for k, v in os.environ.items() if k.startswith("BENCH_")}


def test_a_search_keeps_its_study_beside_the_workers_store(tmp_path, monkeypatch,
                                                           bench_data_dir):
    monkeypatch.delenv("BENCH_OPTUNA_STORAGE", raising=False)
    monkeypatch.setenv("BENCH_STORE", str(tmp_path / "elsewhere" / "bench.sqlite"))
    before = _bench_environment()
    store = tmp_path / "given" / "bench.sqlite"
    store.parent.mkdir()
    method = parse_method("random(base=sgd, budget=2)").name
    config = RunConfig("mnist-logreg", method, 0, Budget(steps=5), "cpu")
    result = run_one(config, WorkerSpec("cpu0", str(store), 1, env=(("workers", 1),)))
    assert result.status == DONE, result.error
    assert (store.parent / "optuna.sqlite").is_file()
    assert not Path(tmp_path / "elsewhere").exists()
    assert _bench_environment() == before  # nothing passed through the environment
    assert result.env["slot"] == "cpu0" and result.env["workers"] == 1


def test_what_a_run_raises_is_its_failed_record(tmp_path, bench_data_dir):
    plain = RunConfig("mnist-logreg", parse_method("sgd(lr=0.2)").name, 0, Budget(steps=5), "cpu")
    config = plain.with_options(holdout=1e-9)  # a holdout that holds out no image
    result = run_one(config, WorkerSpec("cpu0", str(tmp_path / "s.sqlite"), 1))
    assert result.status == FAILED and "holds out none" in result.error
    assert result.run_id == config.run_id and result.env["slot"] == "cpu0"


# --- how a worker is started (bench.scheduler: a forkserver for CPU slots) --------------------


def test_a_forked_worker_takes_the_environment_of_the_moment_it_is_started(tmp_path, monkeypatch,
                                                                             bench_data_dir):
    """The forkserver keeps the environment it was started with; a variable set afterwards in
    the scheduler's process (here: a data folder with nothing in it) must still reach the
    worker, as it would a spawned one."""
    from bench.progress import Progress
    from bench.scheduler import Scheduler
    from bench.slots import cpu_slots
    from bench.store import Store

    slots = cpu_slots(1)
    store_path = tmp_path / "s.sqlite"
    scheduler = Scheduler(slots, None, str(store_path), progress=Progress(slots, live=False))
    scheduler.start_workers()  # the forkserver, with the environment as it is now
    empty = tmp_path / "no-data-here"
    empty.mkdir()
    monkeypatch.setenv("BENCH_DATA_DIR", str(empty))
    monkeypatch.setenv("BENCH_NO_DOWNLOAD", "1")
    config = RunConfig("mnist-logreg", parse_method("sgd(lr=0.2)").name, 0, Budget(steps=5), "cpu")
    with Store(store_path) as store:
        scheduler.store = store
        summary = scheduler.run([config])
        record = store.get(config.run_id)
    assert summary.failed == 1 and record.status == FAILED
    assert "no-data-here" in record.error, record.error


def test_the_cli_starts_without_torch():
    """``bench suite`` starts its workers (a forkserver importing torch, seconds) before the main
    process imports anything heavy: building the command line must not import torch."""
    import subprocess
    import sys

    code = ("import sys, bench.cli; bench.cli.build_parser(); "
            "print(sorted(m for m in ('torch', 'hypergrad', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
