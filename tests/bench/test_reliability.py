"""Reliability: a trained result is never lost, a failure never replaces a success, results do not
depend on the worker count, and every bad input is one line, exit 2, with the store unchanged.

The faults are real: a write lock held by another connection, a store of a newer schema, a file
corrupt beyond its header, a truncated ``.gz``, a crash injected into the training loop of a
``--force`` re-run, suites trained in fresh processes with one and with two CPU workers.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli import main
from bench.record import DONE, FAILED, INTERRUPTED, RunResult
from bench.store import Store
from bench.store import sqlite as store_module

ROOT = Path(__file__).resolve().parents[2]
RUN = ["run", "--workload", "mnist-logreg", "--method", "torch.sgd(0.1)", "--steps", "20"]


def record(run_id: str, status: str = DONE, error: float = 0.1, seed: int = 0) -> RunResult:
    return RunResult(
        run_id=run_id,
        config={"workload": "mnist-logreg", "method": "sgd(0.1)", "seed": seed,
                "budget": {"steps": 10, "epochs": None, "seconds": None}, "device": "cpu",
                "options": {}},
        status=status,
        metrics={"test_error": error},
        error=None if status == DONE else "it broke",
    )


def digest(path: Path) -> str:
    """The store's content, WAL folded in (a checksum of the bytes would see the WAL move)."""
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT run_id, status, metrics FROM runs ORDER BY run_id").fetchall()
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()


def one_line_error(capsys, argv: list[str]) -> str:
    """Run ``argv`` in this process: exit 2, exactly one line on stderr, no traceback."""
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own errors exit from inside main
        code = e.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if not line.startswith("note: ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


# -- results are never lost ------------------------------------------------------------------


def test_a_write_that_keeps_failing_lands_in_the_side_file_and_is_imported_next_time(
        tmp_path, monkeypatch, capsys):
    path = tmp_path / "s.sqlite"
    Store(path).close()
    monkeypatch.setattr(store_module, "WRITE_RETRY_SECONDS", 0.2)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holding the write lock throughout
    try:
        with Store(path, timeout=0.05) as store:
            store.put(record("a"))
            assert not store.has("a")
        assert "kept in" in capsys.readouterr().err
        assert (tmp_path / "s.sqlite.pending.jsonl").is_file()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with Store(path) as store:
        assert store.get("a").metrics == {"test_error": 0.1}
    assert "imported 1 result" in capsys.readouterr().err
    assert not (tmp_path / "s.sqlite.pending.jsonl").exists()


def test_a_side_file_line_that_still_cannot_be_written_stays_and_the_rest_are_imported(
        tmp_path, capsys):
    path = tmp_path / "s.sqlite"
    Store(path).close()
    side = tmp_path / "s.sqlite.pending.jsonl"
    good, huge = record("good").to_dict(), record("huge").to_dict()
    huge["config"]["seed"] = 2**64  # SQLite's integers end at 2**63 - 1
    side.write_text(json.dumps(good) + "\n" + json.dumps(huge) + "\n" + '{"cut short')
    with Store(path) as store:
        assert store.has("good") and not store.has("huge")
    assert [json.loads(line)["run_id"] for line in side.read_text().splitlines()] == ["huge"]
    err = capsys.readouterr().err
    assert "still cannot be written" in err and ":3: not a result" in err


@pytest.mark.parametrize("later", [FAILED, INTERRUPTED])
def test_a_failure_never_replaces_a_kept_result_but_a_success_replaces_a_failure(tmp_path, later):
    with Store(tmp_path / "s.sqlite") as store:
        store.put(record("a", DONE, error=0.1))
        store.put(record("a", later))
        assert store.get("a").status == DONE and store.get("a").metrics["test_error"] == 0.1
        store.put(record("b", later))
        store.put(record("b", DONE, error=0.2))
        assert store.get("b").status == DONE
        store.put(record("a", DONE, error=0.3))  # a forced re-run that finished replaces
        assert store.get("a").metrics["test_error"] == 0.3


def test_a_forced_rerun_that_crashes_keeps_the_stored_result(
        tmp_path, monkeypatch, capsys, bench_data_dir):
    path = tmp_path / "s.sqlite"
    argv = [*RUN, "--store", str(path)]
    assert main(argv) == 0
    with Store(path) as store:
        (before,) = store.results()
    capsys.readouterr()

    import torch

    def crash(self, x):
        raise RuntimeError("injected fault in the forward pass")

    monkeypatch.setattr(torch.nn.Linear, "forward", crash)
    assert main([*argv, "--force"]) == 1  # the re-run failed, and says so
    assert "failed" in capsys.readouterr().out
    with Store(path) as store:
        (after,) = store.results()
    assert after.status == DONE and after.metrics == before.metrics


def test_a_checkpoint_leaves_every_row_in_the_sqlite_file_alone(tmp_path, capsys):
    path = tmp_path / "s.sqlite"
    with Store(path) as store:
        for i in range(5):
            store.put(record(f"r{i}"))
        copy = tmp_path / "copy.sqlite"
        shutil.copy(path, copy)  # the .sqlite alone, as a user copies it
        assert main(["export", "--store", str(path), "--checkpoint",
                     "--out", str(tmp_path / "x.csv")]) == 0
        shutil.copy(path, copy)
    with sqlite3.connect(copy) as conn:
        assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 5


@pytest.mark.slow
def test_two_suites_on_one_store_train_each_run_once(tmp_path, bench_data_dir):
    suite = tmp_path / "four.toml"
    suite.write_text(
        'description = "four short runs"\nseeds = [0, 1]\nbudgets = [{ steps = 150 }]\n'
        '[[group]]\nworkloads = ["mnist-mlp"]\nmethods = ["sgd(0.05)/sgd(0.01)", "adam(0.001)"]\n')
    env = {**os.environ, "BENCH_DATA_DIR": str(bench_data_dir)}
    store = tmp_path / "shared.sqlite"
    command = [sys.executable, "-m", "bench", "suite", str(suite), "--cpu-workers", "1",
               "--store", str(store), "--no-report"]
    first, second = (subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True) for _ in range(2))
    outputs = [p.communicate(timeout=600)[0] for p in (first, second)]
    assert [p.returncode for p in (first, second)] == [0, 0], outputs
    trained = [line for out in outputs for line in out.splitlines() if line.startswith("done [")]
    assert len(trained) == 4, outputs  # each of the four runs trained by exactly one of them
    assert len({line.split()[2] for line in trained}) == 4
    with Store(store) as s:
        assert len(s.results()) == 4


# -- results do not depend on the worker count ---------------------------------------------------


@pytest.mark.slow
def test_one_and_two_cpu_workers_give_bitwise_equal_results(tmp_path, bench_data_dir):
    suite = tmp_path / "two.toml"
    suite.write_text(
        'description = "two short runs"\nseeds = [0]\nbudgets = [{ steps = 60 }]\n'
        '[[group]]\nworkloads = ["mnist-mlp"]\n'
        'methods = ["sgd(0.05)/sgd(0.01)", "adam(0.001)"]\n')
    env = {**os.environ, "BENCH_DATA_DIR": str(bench_data_dir)}
    found = {}
    for workers in (1, 2):
        store = tmp_path / f"w{workers}.sqlite"
        done = subprocess.run(
            [sys.executable, "-m", "bench", "suite", str(suite), "--cpu-workers", str(workers),
             "--store", str(store), "--no-report"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        with Store(store) as s:
            found[workers] = {r.run_id: (r.metrics["test_error"], r.metrics["train_loss"],
                                         r.curves["train_loss"]) for r in s.results()}
    assert len(found[1]) == 2 and found[1] == found[2]


# -- every bad input is one line, exit 2, and leaves the store as it was -------------------------


@pytest.fixture()
def stored(tmp_path) -> Path:
    path = tmp_path / "stored.sqlite"
    with Store(path) as store:
        store.put(record("kept"))
    return path


def suite_file(tmp_path: Path, body: str, name: str = "bad.toml") -> str:
    path = tmp_path / name
    path.write_text('description = "bad"\nseeds = [0]\nbudgets = [{ steps = 5 }]\n' + body)
    return str(path)


GROUP = '[[group]]\nworkloads = ["mnist-logreg"]\nmethods = ["sgd(0.1)"]\n'

BAD = [
    # (argv, with {store} and {tmp}, a part of the one line)
    ([*RUN, "--seeds", "0-2000000000"], "seeds"),
    ([*RUN, "--seeds", "18446744073709551616"], "seeds must be integers in 0..2**63-1"),
    (["run", "--workload", "mnist-logreg", "--method", "sgd(0.1)", "--epochs", "inf"],
     "--epochs must be a finite"),
    (["run", "--workload", "mnist-logreg", "--method", "sgd(1e300)", "--steps", "5"], "1e+300"),
    (["suite", "smoke", "--cpu-workers", "1000", "--dry-run"], "cpu-workers"),
    (["suite", "{tmp}/group.toml"], "group"),
    (["suite", "{tmp}/latin1.toml"], "UTF-8"),
    (["suite", "{tmp}/batch.toml"], "batch_size"),
    (["suite", "{tmp}/zero.toml"], "batch_size"),
    (["suite", "{tmp}/steps.toml"], "steps"),
    (["suite", "{tmp}/half.toml"], "steps"),
    (["suite", "{tmp}/eval.toml"], "eval_every"),
    (["suite", "{tmp}/letters.toml"], "workloads"),
    ([*RUN, "--store", "{store}/under/a/file.sqlite"], "is a file, not a folder"),
    (["run", *RUN[1:], "--store", "{tmp}/newer.sqlite"], "newer"),
    (["export", "--store", "{tmp}/corrupt.sqlite", "--out", "{tmp}/x.csv"], "corrupt"),
    (["report", "--store", "{tmp}/corrupt.sqlite", "--out", "{tmp}/r"], "corrupt"),
    ([*RUN, "--store", "{tmp}/corrupt.sqlite"], "corrupt"),
    (["export", "--store", "{store}", "--out", "{tmp}"], "folder"),
    (["compare", "{tmp}/notobject.jsonl", "{tmp}/notobject.jsonl"], "notobject.jsonl:1"),
    (["compare", "{tmp}/broken.parquet", "{tmp}/broken.parquet"], "broken.parquet"),
]


def write_bad_inputs(tmp: Path, stored: Path) -> None:
    suite_file(tmp, 'group = "x"\n', "group.toml")
    (tmp / "latin1.toml").write_bytes('description = "caf\xe9"\n'.encode("latin-1"))
    suite_file(tmp, GROUP + 'options = { batch_size = "abc" }\n', "batch.toml")
    suite_file(tmp, GROUP + "options = { batch_size = 0 }\n", "zero.toml")
    (tmp / "steps.toml").write_text(f'description = "b"\nbudgets = [{{ steps = true }}]\n{GROUP}')
    (tmp / "half.toml").write_text(f'description = "b"\nbudgets = [{{ steps = 2.5 }}]\n{GROUP}')
    suite_file(tmp, GROUP + "options = { eval_every = 0 }\n", "eval.toml")
    suite_file(tmp, '[[group]]\nworkloads = "mnist-logreg"\nmethods = ["sgd(0.1)"]\n',
               "letters.toml")
    shutil.copy(stored, tmp / "newer.sqlite")
    with sqlite3.connect(tmp / "newer.sqlite") as conn:
        conn.execute(f"PRAGMA user_version = {store_module.SCHEMA_VERSION + 1}")
    corrupt = tmp / "corrupt.sqlite"
    with Store(corrupt) as store:
        for i in range(300):  # several pages, so that the damage lies beyond the header
            store.put(record(f"r{i}", error=i / 300))
        store.checkpoint()
    data = bytearray(corrupt.read_bytes())
    data[8192:12288] = os.urandom(4096)
    corrupt.write_bytes(bytes(data))
    (tmp / "notobject.jsonl").write_text("[1, 2]\n")
    (tmp / "broken.parquet").write_bytes(b"PAR1 this is not parquet")


@pytest.mark.parametrize(("argv", "message"), BAD, ids=[" ".join(a)[:60] for a, _ in BAD])
def test_a_bad_input_is_one_line_exit_2_and_the_store_is_unchanged(
        tmp_path, stored, capsys, bench_data_dir, argv, message):
    write_bad_inputs(tmp_path, stored)
    before = digest(stored)
    argv = [a.format(store=stored, tmp=tmp_path) for a in argv]
    if "--store" not in argv and argv[0] in ("run", "suite"):
        argv += ["--store", str(stored)]
    assert message in one_line_error(capsys, argv)
    assert digest(stored) == before


def test_a_damaged_gz_is_one_line_naming_the_file(tmp_path, bench_data_dir):
    data = tmp_path / "data"
    shutil.copytree(bench_data_dir / "mnist", data / "mnist")
    images = data / "mnist" / "t10k-images-idx3-ubyte.gz"
    images.write_bytes(images.read_bytes()[:5000])  # truncated mid-stream
    # A fresh process, as a user meets it (this one holds the intact data, decoded).
    done = subprocess.run([sys.executable, "-m", "bench", *RUN, "--store",
                           str(tmp_path / "s.sqlite")], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "BENCH_DATA_DIR": str(data)}, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: ") and "t10k-images-idx3-ubyte.gz is damaged" in line
    with gzip.open(bench_data_dir / "mnist" / "t10k-images-idx3-ubyte.gz") as f:
        assert len(f.read(16)) == 16  # the shared copy is intact


def test_a_read_only_store_is_still_readable(tmp_path, stored, capsys):
    stored.chmod(0o444)
    stored.parent.chmod(0o555)
    try:
        if os.access(stored, os.W_OK):
            pytest.skip("running as a user who can write anything (root): no read-only file")
        assert main(["export", "--store", str(stored), "--out", str(tmp_path.parent / "x.csv")
                     ]) == 0
        line = one_line_error(capsys, [*RUN, "--store", str(stored)])
        assert "read" in line
    finally:
        stored.parent.chmod(0o755)
        stored.chmod(0o644)
