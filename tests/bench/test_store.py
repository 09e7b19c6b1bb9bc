"""The SQLite store (``bench.store.sqlite``) and opening a store: what the contract's tests
(``test_store_contract.py``) do not cover: the default location, a folder or a file that is not a
database, processes writing one file at once, and writers killed mid-write or mid-training."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.errors import UserError
from bench.record import DONE, RunResult
from bench.store import Store, default_location, open_store, store_exists

ROOT = Path(__file__).resolve().parents[2]


def integrity(path: Path) -> str:
    with sqlite3.connect(path) as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]


def test_default_location_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("BENCH_STORE", str(tmp_path / "env.sqlite"))
    assert default_location() == str(tmp_path / "env.sqlite")
    monkeypatch.delenv("BENCH_STORE")
    assert default_location() == "results/bench.sqlite"


def test_open_store_picks_the_store_a_location_names(tmp_path):
    for location in (tmp_path / "a.sqlite", str(tmp_path / "b.sqlite"),
                     f"sqlite:///{tmp_path / 'c.sqlite'}"):
        with open_store(location) as store:
            assert isinstance(store, Store)
        assert store_exists(location)
    assert not store_exists(tmp_path / "absent.sqlite")
    with pytest.raises(UserError, match="unsupported results store URL 'mysql://u@h/db'; give"):
        open_store("mysql://u@h/db")


def test_a_folder_or_a_non_database_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="is a folder"):
        Store(tmp_path)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(UserError, match="is corrupt"):
        Store(junk)


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
        store.put(RunResult(run_id="after", config={"workload": "w"}, status=DONE))
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
