"""``python -m bench``: list, run, export, and what a user mistake looks like."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from bench.arguments import seeds_type
from bench.cli import COMMANDS, main
from bench.store import Store

ROOT = Path(__file__).resolve().parents[2]
RUN = ["run", "--workload", "mnist-mlp", "--method", "torch.sgd(0.1)"]


def user_error(capsys, argv: list[str]) -> str:
    """Run ``argv``, expect exit code 2 and exactly one line on stderr; return it."""
    with pytest.raises(SystemExit) as exit_info:
        raise SystemExit(main(argv))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_list_shows_workloads_methods_and_suites(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "workloads:\n  mnist-mlp: MNIST" in out
    assert "methods:" in out and "towers:" in out and "torch.sgd(lr=0.1, momentum=0.9)" in out
    assert "suites:" in out
    assert main(["list", "workloads"]) == 0
    assert "methods:" not in capsys.readouterr().out


def test_subcommands_come_from_one_table():
    assert [c.name for c in COMMANDS][:3] == ["list", "run", "export"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([*RUN, "--seeds", "a"], "seeds must be integers in 0..2**63-1"),
        ([*RUN, "--seeds", "3-1"], "seeds must be"),
        ([*RUN, "--steps", "0"], "--steps must be a finite int > 0"),
        ([*RUN, "--epochs", "x"], "--epochs must be a finite float > 0"),
        ([*RUN, "--steps", "5", "--epochs", "1"], "not allowed with argument"),
        (["run", "--workload", "mnist-mpl", "--method", "torch.sgd(0.1)"], "mnist-mlp"),
        (["run", "--workload", "mnist-mlp", "--method", "torch.sgd(lr=-1)"], "learning rate"),
        ([*RUN, "--device", "tpu:0"], "cpu, cuda or cuda:N"),
        (["frobnicate"], "invalid choice"),
        (["run"], "required"),
    ],
)
def test_a_user_mistake_is_one_line_and_exit_code_2(capsys, argv, message):
    assert message in user_error(capsys, argv)


def test_an_unknown_method_lists_the_families(capsys):
    assert main(["run", "--workload", "mnist-mlp", "--method", "torch.sgdd(0.1)"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown torch optimizer") and "torch.adam" in err
    assert "Traceback" not in err


def test_seeds_accept_lists_and_ranges():
    assert seeds_type("0,1,2") == [0, 1, 2]
    assert seeds_type("0-2,7,1") == [0, 1, 2, 7]


def test_run_stores_each_seed_and_reports_a_stored_run_without_retraining(
    capsys, tmp_path, bench_data_dir
):
    store_path = tmp_path / "r.sqlite"
    argv = [*RUN, "--steps", "12", "--seeds", "0,1", "--store", str(store_path)]
    assert main(argv) == 0
    first = capsys.readouterr().out.splitlines()
    assert len(first) == 2
    for line, seed in zip(first, (0, 1), strict=True):
        assert " done " in line and f"seed={seed}" in line and "test_error=" in line
        assert "steps=12" in line and "step=" in line
    with Store(store_path) as store:
        results = store.results()
        assert sorted(r.config["seed"] for r in results) == [0, 1]
        assert all(r.config["method"] == "torch.sgd(lr=0.1)" for r in results)  # canonical

    assert main(argv) == 0  # again: reported, not re-trained
    again = capsys.readouterr().out.splitlines()
    assert all("not re-trained" in line for line in again)
    assert [line.split()[0] for line in again] == [line.split()[0] for line in first]

    assert main([*argv, "--force", "--seeds", "1"]) == 0
    assert "not re-trained" not in capsys.readouterr().out
    with Store(store_path) as store:
        assert len(store) == 2


def test_export_writes_readable_files(capsys, tmp_path, bench_data_dir):
    store_path = tmp_path / "r.sqlite"
    assert main([*RUN, "--steps", "5", "--store", str(store_path)]) == 0
    for fmt, read in (("csv", pd.read_csv), ("parquet", pd.read_parquet)):
        out = tmp_path / f"runs.{fmt}"
        argv = ["export", "--format", fmt, "--store", str(store_path), "--out", str(out)]
        assert main(argv) == 0
        assert f"wrote 1 runs to {out}" in capsys.readouterr().out
        frame = read(out)
        assert list(frame["method"]) == ["torch.sgd(lr=0.1)"]
        assert list(frame["status"]) == ["done"] and list(frame["cost.steps"]) == [5]
        assert "metric.test_error" in frame and "timing.step_time_median" in frame
    message = user_error(capsys, ["export", "--store", str(tmp_path / "none.sqlite")])
    assert "no results store" in message


@pytest.mark.slow
def test_missing_data_is_one_line_in_a_fresh_process(tmp_path):
    env = dict(
        os.environ,
        BENCH_DATA_DIR=str(tmp_path / "empty"),
        BENCH_NO_DOWNLOAD="1",
        XDG_CACHE_HOME=str(tmp_path / "cache"),
        OMP_NUM_THREADS="1",
    )
    (tmp_path / "empty").mkdir()
    argv = [*RUN, "--steps", "5", "--store", str(tmp_path / "r.sqlite")]
    proc = subprocess.run(
        [sys.executable, "-m", "bench", *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
    assert "train-images" in proc.stderr  # it names the missing files


@pytest.mark.slow
def test_ctrl_c_records_the_run_as_interrupted_and_exits_130(tmp_path, bench_data_dir):
    store_path = tmp_path / "r.sqlite"
    env = dict(os.environ, BENCH_DATA_DIR=str(bench_data_dir), OMP_NUM_THREADS="1")
    argv = [*RUN, "--steps", "100000", "--store", str(store_path)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench", *argv], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True
    )
    assert "mnist-mlp" in proc.stderr.readline()  # the header: training starts
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    with Store(store_path) as store:
        (row,) = store.results()
        assert row.status == "interrupted" and not store.has(row.run_id)
