"""The results store: round trips, caching rules, atomic rows, several writers, export."""

from __future__ import annotations

import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from bench.errors import UserError
from bench.record import DIVERGED, DONE, FAILED, INTERRUPTED, RunResult
from bench.store import Store, default_path

ROOT = Path(__file__).resolve().parents[2]


def result(run_id: str, status: str = DONE, **kw: object) -> RunResult:
    seed = kw.pop("seed", 0)
    method = kw.pop("method", "sgd(0.1)")
    return RunResult(
        run_id=run_id,
        config={
            "workload": "mnist-mlp",
            "method": method,
            "seed": seed,
            "budget": {"steps": 10, "epochs": None, "seconds": None},
            "device": "cpu",
            "options": {"eval_every": 0.5},
        },
        status=status,
        metrics={"test_error": 0.1, "val_error": 0.12, "hyper/0.lr": 0.05},
        curves={"eval": [{"step": 10, "test_error": 0.1}], "train_loss": [[1, 2.3], [2, 1.5]]},
        timing={"step_time_median": 0.001, "timed_steps": 5},
        memory={"optimizer_bytes": 1024},
        cost={"steps": 10, "device_seconds": 0.01},
        env={"commit": "abc", "device_name": "cpu", "started": "2024-01-01T00:00:00+00:00"},
        **kw,
    )


def integrity(path: Path) -> str:
    with sqlite3.connect(path) as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]


def test_put_get_round_trip(tmp_path):
    with Store(tmp_path / "r.sqlite") as store:
        original = result("a")
        original.curves["train_loss"].append([3, float("nan")])  # diverged curves hold NaN
        store.put(original)
        back = store.get("a")
    assert back is not None
    assert back.to_dict().keys() == original.to_dict().keys()
    assert math.isnan(back.curves["train_loss"][-1][1])
    back.curves["train_loss"].pop()
    original.curves["train_loss"].pop()
    assert back == original


def test_has_is_true_only_for_results_worth_keeping(tmp_path):
    with Store(tmp_path / "r.sqlite") as store:
        store.put(result("done"))
        store.put(result("diverged", DIVERGED, diverged_step=3, error="boom"))
        store.put(result("failed", FAILED, error="RuntimeError: x"))
        store.put(result("interrupted", INTERRUPTED))
        assert [store.has(i) for i in ("done", "diverged", "failed", "interrupted", "absent")] == [
            True,
            True,
            False,
            False,
            False,
        ]
        assert store.get("absent") is None
        assert store.get("diverged").diverged_step == 3


def test_put_replaces_and_delete_removes(tmp_path):
    with Store(tmp_path / "r.sqlite") as store:
        store.put(result("a", FAILED, error="first try"))
        store.put(result("a"))
        assert len(store) == 1 and store.get("a").status == DONE
        store.delete("a")
        assert len(store) == 0 and store.get("a") is None


def test_results_filters(tmp_path):
    with Store(tmp_path / "r.sqlite") as store:
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


def test_default_path_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("BENCH_STORE", str(tmp_path / "env.sqlite"))
    assert default_path() == tmp_path / "env.sqlite"
    monkeypatch.delenv("BENCH_STORE")
    assert default_path() == Path("results/bench.sqlite")


def test_a_folder_or_a_non_database_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="is a folder"):
        Store(tmp_path)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(UserError, match="is corrupt"):
        Store(junk)


def test_export_csv_and_parquet_are_readable(tmp_path):
    with Store(tmp_path / "r.sqlite") as store:
        store.put(result("a"))
        store.put(result("b", DIVERGED, seed=1, diverged_step=4, error="non-finite"))
        csv = store.export(tmp_path / "out" / "runs.csv", "csv")
        parquet = store.export(tmp_path / "runs.parquet", "parquet")
        with pytest.raises(UserError, match="valid formats: csv, parquet"):
            store.export(tmp_path / "runs.xlsx", "xlsx")
    for frame in (pd.read_csv(csv), pd.read_parquet(parquet)):
        assert list(frame["run_id"]) == ["a", "b"]
        assert list(frame["status"]) == [DONE, DIVERGED]
        assert list(frame["metric.test_error"]) == [0.1, 0.1]
        assert list(frame["timing.step_time_median"]) == [0.001, 0.001]
        assert list(frame["cost.steps"]) == [10, 10]
        assert list(frame["budget_steps"]) == [10, 10]
        assert frame["diverged_step"].iloc[1] == 4


# -- several processes ---------------------------------------------------------------------------

_WRITER = """
import sys
from bench.record import RunResult
from bench.store import Store
path, prefix, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
store = Store(path)
for i in range(n):
    store.put(RunResult(
        run_id=f"{prefix}{i}",
        config={"workload": "w", "method": prefix, "seed": i},
        status="done",
        curves={"train_loss": [[s, 1.0 / (s + 1)] for s in range(2000)]},
    ))
print("wrote", n, flush=True)
"""


def _writer(path: Path, prefix: str, n: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path), prefix, str(n)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_two_processes_write_at_once(tmp_path):
    path = tmp_path / "shared.sqlite"
    writers = [_writer(path, prefix, 150) for prefix in ("a", "b")]
    for w in writers:
        out, err = w.communicate(timeout=120)
        assert w.returncode == 0, err
    with Store(path) as store:
        assert len(store) == 300
        assert len(store.results(method="a")) == len(store.results(method="b")) == 150
        assert all(len(r.curves["train_loss"]) == 2000 for r in store.results())
    assert integrity(path) == "ok"


@pytest.mark.slow
def test_a_writer_killed_mid_write_leaves_only_complete_rows(tmp_path):
    path = tmp_path / "killed.sqlite"
    writer = _writer(path, "k", 100_000)
    time.sleep(3.0)  # importing torch takes a moment; then it writes continuously
    writer.send_signal(signal.SIGKILL)
    writer.communicate()
    assert integrity(path) == "ok"
    with Store(path) as store:
        rows = store.results()
        assert 0 < len(rows) < 100_000
        assert all(len(r.curves["train_loss"]) == 2000 for r in rows)  # every row complete
        store.put(result("after"))
        assert store.has("after")


@pytest.mark.slow
def test_a_run_killed_mid_training_leaves_no_row_and_the_next_run_works(tmp_path, bench_data_dir):
    path = tmp_path / "runs.sqlite"
    cmd = [
        sys.executable,
        "-m",
        "bench",
        "run",
        "--workload",
        "mnist-mlp",
        "--method",
        "torch.sgd(lr=0.1)",
        "--store",
        str(path),
    ]
    env = dict(os.environ, BENCH_DATA_DIR=str(bench_data_dir), OMP_NUM_THREADS="1")
    proc = subprocess.Popen(
        [*cmd, "--steps", "100000"], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True
    )
    header = proc.stderr.readline()  # printed just before training starts
    assert "mnist-mlp" in header, header + proc.stderr.read()
    time.sleep(2.0)  # well inside the 100,000 steps
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert integrity(path) == "ok"
    with Store(path) as store:
        assert len(store) == 0
    done = subprocess.run(
        [*cmd, "--steps", "20"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    with Store(path) as store:
        (row,) = store.results()
        assert row.status == DONE and row.cost["steps"] == 20
