"""The scheduler with real worker processes: resume, failure isolation, clean stops.

Each test drives ``python -m bench suite`` in a subprocess on a tiny suite written to a tmp dir
(a few MNIST MLP steps per run), reads its progress lines, and kills processes for real.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from bench.errors import UserError
from bench.estimates import estimate_steps
from bench.methods import parse_method
from bench.progress import Progress
from bench.record import DONE, FAILED
from bench.run_queue import RunQueue
from bench.slots import cpu_slots, gpu_slots
from bench.store import Store
from bench.suite import load_suite
from tests.bench.tiny_suites import suite_file, victim_first

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 240


TINY = """
budgets = [{ steps = 12 }]
options = { warmup_steps = 2 }

[[group]]
workloads = ["mnist-mlp"]
methods = ["sgd(lr=0.1)", "sgd(lr=0.05)", "torch.sgd(lr=0.1)", "torch.adam(lr=0.001)",
           "sgd(lr=0.1)/sgd(lr=0.0001)"]
rerun_learned = true
"""  # 5 runs and 1 dependent: the plain re-run of the tower with its learned step size
N_TINY = 6


def env() -> dict[str, str]:
    e = dict(os.environ)
    e.setdefault("BENCH_DATA_DIR", str(ROOT.parent / "shared" / "data"))
    e["OMP_NUM_THREADS"] = "1"
    e["PYTHONUNBUFFERED"] = "1"
    return e


def start(suite: Path, store: Path, *extra: str) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "bench", "suite", str(suite), "--store", str(store),
           "--no-report", *extra]
    return subprocess.Popen(cmd, cwd=ROOT, env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def run(suite: Path, store: Path, *extra: str) -> tuple[int, str]:
    proc = start(suite, store, *extra)
    out, _ = proc.communicate(timeout=TIMEOUT)
    return proc.returncode, out


def read_until(proc: subprocess.Popen[str], predicate, lines: list[str]) -> str:
    """Read progress lines until one satisfies ``predicate``; returns it."""
    deadline = time.monotonic() + TIMEOUT
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError("the suite ended early:\n" + "".join(lines))
        lines.append(line)
        if predicate(line):
            return line
    raise AssertionError("timed out:\n" + "".join(lines))


def worker_pids(lines: list[str]) -> set[int]:
    return {int(line.split("pid=")[1].split("]")[0]) for line in lines if "pid=" in line}


def gone(pid: int, within: float = 10.0) -> bool:
    """The process has exited (a zombie nobody reaps counts as exited)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.1)
    return False


def check_store(path: Path) -> list[dict]:
    """The store passes SQLite's integrity check and every row is a complete record."""
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    rows = conn.execute("SELECT run_id, status, config, metrics, curves, env FROM runs").fetchall()
    conn.close()
    out = []
    for run_id, status, config, metrics, curves, env_ in rows:
        record = {"run_id": run_id, "status": status, "config": json.loads(config),
                  "metrics": json.loads(metrics), "curves": json.loads(curves),
                  "env": json.loads(env_)}
        if status == DONE:
            assert "test_error" in record["metrics"] and record["curves"]["eval"], run_id
        out.append(record)
    return out


def metrics_by_id(path: Path) -> dict[str, dict]:
    with Store(path) as store:
        return {r.run_id: r.metrics for r in store.results()}


# --- resume after the suite process is killed ----------------------------------------------


@pytest.mark.slow
def test_sigkill_of_the_suite_resumes_to_the_uninterrupted_result(tmp_path):
    suite = suite_file(tmp_path, TINY)
    killed, clean = tmp_path / "killed.sqlite", tmp_path / "clean.sqlite"
    proc = start(suite, killed, "--cpu-workers", "1")
    lines: list[str] = []
    finished = 0

    def second_done(line: str) -> bool:
        nonlocal finished
        finished += line.startswith("done ")
        return finished == 2

    read_until(proc, second_done, lines)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    for pid in worker_pids(lines):
        assert gone(pid), f"worker {pid} outlived the killed suite"

    rows = check_store(killed)
    assert len(rows) >= 2 and all(r["status"] == DONE for r in rows)
    stored = len(rows)

    code, out = run(suite, killed, "--cpu-workers", "1")
    assert code == 0, out
    assert f"plan: {N_TINY} runs, {stored} already stored, {N_TINY - stored} to train" in out, out
    assert out.count("\ndone ") == N_TINY - stored, out  # only what was missing is trained

    # The reference: uninterrupted, on two workers (one thread each, as above: same numbers).
    code, out = run(suite, clean, "--cpu-workers", "2")
    assert code == 0, out
    resumed, uninterrupted = metrics_by_id(killed), metrics_by_id(clean)
    assert len(uninterrupted) == N_TINY
    assert resumed == uninterrupted  # bitwise: the same floats, the dependent included


@pytest.mark.slow
def test_ctrl_c_keeps_finished_runs_and_discards_running_ones(tmp_path):
    suite = suite_file(tmp_path, TINY)
    store = tmp_path / "s.sqlite"
    proc = start(suite, store, "--cpu-workers", "2")
    lines: list[str] = []
    read_until(proc, lambda line: line.startswith("done "), lines)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole group
    out, _ = proc.communicate(timeout=60)
    lines.append(out)
    assert proc.returncode == 130, "".join(lines)
    assert "run the same command again to resume" in out
    for pid in worker_pids(lines):
        assert gone(pid)
    rows = check_store(store)
    assert rows and all(r["status"] == DONE for r in rows)
    # The next invocation trains only the rest (its run queue, planned without any worker).
    with Store(store) as s:
        queue = RunQueue(Progress([], live=False))
        assert queue.prepare(load_suite(suite).plan(), s) == N_TINY - len(rows)


# --- failures are recorded, the suite goes on ------------------------------------------------


@pytest.mark.slow
def test_a_killed_worker_and_a_raising_run_are_failed_and_the_rest_finishes(tmp_path):
    suite = suite_file(tmp_path, victim_first("mnist-mlp", "sgd(lr=0.1)", 400) + """
        [[group]]
        label = "a run that raises: a holdout that holds out no image"
        workloads = ["mnist-mlp"]
        methods = ["sgd(lr=0.2)"]
        budgets = [{ steps = 5 }]
        options = { holdout = 1e-9 }

        [[group]]
        workloads = ["mnist-mlp"]
        methods = ["sgd(lr=0.05)", "torch.sgd(lr=0.1)"]
        budgets = [{ steps = 5 }]
    """)
    store = tmp_path / "s.sqlite"
    proc = start(suite, store, "--cpu-workers", "1")
    lines: list[str] = []
    first = read_until(proc, lambda line: line.startswith("start "), lines)
    assert "400 steps" in first, first
    victim = int(first.split("pid=")[1].split("]")[0])
    os.kill(victim, signal.SIGKILL)
    out, _ = proc.communicate(timeout=TIMEOUT)
    text = "".join(lines) + out
    assert proc.returncode == 1, text  # a failure is never exit 0
    rows = {r["config"]["method"]: r for r in check_store(store)}
    with Store(store) as s:
        victim_record = s.results(method=parse_method("sgd(0.1)").name)[0]
        raised = s.results(method=parse_method("sgd(0.2)").name)[0]
    assert victim_record.status == FAILED
    assert "worker died" in victim_record.error and "SIGKILL" in victim_record.error
    assert raised.status == FAILED and "holds out none" in raised.error
    assert rows[parse_method("sgd(0.05)").name]["status"] == DONE
    assert rows["torch.sgd(lr=0.1)"]["status"] == DONE
    assert "2 done, 0 diverged, 2 failed" in text, text


# --- mistakes stop before anything runs -------------------------------------------------------


def cli(*args: str) -> tuple[int, str]:
    import contextlib
    import io

    from bench.cli import main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        code = main(list(args))
    return code, buf.getvalue()


def test_malformed_suite_names_file_line_and_key_and_runs_nothing(tmp_path):
    suite = suite_file(tmp_path, """
        [[group]]
        workloads = ["mnist-mlp"]
        methods = ["sgd(0.1)"]
        budget = [{ steps = 3 }]
    """)
    store = tmp_path / "s.sqlite"
    code, out = cli("suite", str(suite), "--store", str(store))
    assert code == 2 and f"{suite}:7: unknown key 'budget'" in out, out
    assert not store.exists()


def test_unknown_workload_or_method_lists_valid_names_and_runs_nothing(tmp_path):
    store = tmp_path / "s.sqlite"
    for groups, names in (
        ('[[group]]\nworkloads = ["mnist-mlp", "svhn"]\nmethods = ["sgd(0.1)"]\n',
         ("'svhn'", "mnist-mlp", "warpeace-lstm")),
        ('[[group]]\nworkloads = ["mnist-mlp"]\nmethods = ["sgd(0.1)", "lamb(0.1)"]\n',
         ("'lamb(0.1)'", "towers", "prodigy")),
    ):
        code, out = cli("suite", str(suite_file(tmp_path, groups)), "--store", str(store))
        assert code == 2 and all(n in out for n in names), out
        assert not store.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without CUDA")
def test_gpus_without_cuda_fail_before_anything_runs(tmp_path):
    with pytest.raises(UserError, match="visible devices: none"):
        gpu_slots("0")
    store = tmp_path / "s.sqlite"
    code, out = cli("suite", "smoke", "--gpus", "all", "--store", str(store))
    assert code == 2 and "needs CUDA" in out and not store.exists()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_gpu_that_is_not_there_is_named_with_the_visible_ones():
    missing = torch.cuda.device_count()
    with pytest.raises(UserError, match=rf"GPU \[{missing}\].*visible devices: 0 \("):
        gpu_slots(f"0,{missing}")
    slots = gpu_slots("0", jobs_per_gpu=2)
    assert [s.name for s in slots] == ["gpu0.0", "gpu0.1"] and slots[0].device == "cuda"


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_suite_on_a_shared_gpu_records_the_sharing(tmp_path):
    store = tmp_path / "s.sqlite"
    code, out = run(suite_file(tmp_path, TINY), store, "--gpus", "0", "--jobs-per-gpu", "2")
    assert code == 0, out
    rows = check_store(store)
    assert len(rows) == N_TINY
    for r in rows:
        assert r["config"]["device"] == "cuda" and r["config"]["options"]["jobs_per_gpu"] == 2
        assert r["env"]["jobs_per_gpu"] == 2 and r["env"]["slot"] in ("gpu0.0", "gpu0.1")
        assert r["env"]["device_name"] == torch.cuda.get_device_name(0)


def test_cpu_workers_share_the_cores():
    slots = cpu_slots(2)
    assert [s.name for s in slots] == ["cpu0", "cpu1"]
    assert all(s.threads >= 1 and s.device == "cpu" for s in slots)
    with pytest.raises(UserError, match="--cpu-workers must be >= 1"):
        cpu_slots(0)


def test_dry_run_prints_counts_per_workload_and_method_and_the_cost(tmp_path):
    store = tmp_path / "s.sqlite"
    code, out = cli("suite", str(suite_file(tmp_path, TINY)), "--dry-run", "--store", str(store),
                    "--cpu-workers", "2")
    assert code == 0, out
    assert "6 runs (6 to train, 0 already stored), 72 steps in all, on 2 slots" in out, out
    assert f"plain re-run of {parse_method('sgd(0.1)/sgd(1e-4)').name}" in out
    assert not store.exists()


def test_longest_runs_are_estimated_longest():
    plan = load_suite("overhead").plan()
    short = next(c for c in plan if c.workload == "mnist-mlp")
    assert estimate_steps(short) == 200
    paper = load_suite("paper-mnist").plan()[0]
    assert estimate_steps(paper) == 30 * 235  # all 60,000 training images / 256, 30 epochs


# --- the scheduler's efficiency, in the closing line ----------------------------------------

def test_efficiency_is_the_runs_wall_time_over_workers_times_the_suites():
    from bench.executors.command import summary_text
    from bench.progress import Summary

    summary = Summary(planned=3, done=3, workers=2, run_seconds=18.0)
    assert summary.efficiency(10.0) == pytest.approx(0.9)
    assert "scheduler efficiency 0.90 (the runs' 18.0 s over 2 workers × 10.0 s)" in (
        summary_text(summary, 10.0))
    assert Summary(planned=3, done=3, run_seconds=18.0).efficiency(10.0) is None  # workers?
    assert Summary(planned=3, stored=3, workers=2).efficiency(10.0) is None  # nothing trained
    assert "efficiency" not in summary_text(Summary(planned=1, stored=1), 1.0)


def test_a_suite_prints_its_schedulers_efficiency(tmp_path):
    code, out = run(suite_file(tmp_path, TINY), tmp_path / "s.sqlite", "--cpu-workers", "2")
    assert code == 0, out
    closing = next(line for line in out.splitlines() if line.startswith("finished in"))
    value = float(closing.split("scheduler efficiency ")[1].split()[0])
    assert 0.0 < value <= 1.0, closing
    assert "over 2 workers" in closing
