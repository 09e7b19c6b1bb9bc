"""The Ray executor on a real local Ray cluster (2 CPUs) started by these tests.

``python -m bench suite ... --executor ray`` runs in this process (it finds the cluster already
connected and leaves it up). Its results, the ``smoke`` suite's and a small suite's with
dependents, a search and a failing run, must equal the local scheduler's, bit for bit on the
CPU; failures are recorded and isolated as the local scheduler's are (a Ray worker process is
killed for real), Ctrl-C cancels what is outstanding, and a re-run resumes.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip("ray", reason="the Ray executor needs Ray: pip install -e '.[cluster]'")

from bench.cli import main  # noqa: E402
from bench.record import DONE, FAILED  # noqa: E402
from bench.store import open_store  # noqa: E402
from tests.bench.tiny_suites import suite_file, victim_first  # noqa: E402

pytestmark = pytest.mark.slow  # a Ray cluster takes a while to start


@pytest.fixture(scope="module")
def cluster(bench_data_dir: Path) -> Any:
    """A local Ray cluster of 2 CPUs; its workers see the data and run one thread each."""
    saved = {k: os.environ.get(k) for k in ("BENCH_DATA_DIR", "OMP_NUM_THREADS")}
    os.environ["BENCH_DATA_DIR"] = str(bench_data_dir)  # Ray's workers inherit it
    os.environ["OMP_NUM_THREADS"] = "1"
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield ray
    ray.shutdown()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def cli(*args: str) -> tuple[int, str]:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        code = main(list(args))
    return code, buf.getvalue()


def records(location: str | Path) -> dict[str, Any]:
    with open_store(location) as store:
        return {r.run_id: r for r in store.results()}


TINY = """
budgets = [{ steps = 20 }]
options = { warmup_steps = 2 }

[[group]]
workloads = ["mnist-logreg"]
methods = ["torch.sgd(lr=0.1)", "sgd(lr=0.1)/sgd(lr=0.001)"]
seeds = [0, 1]
rerun_learned = true

[[group]]
label = "a search: its trials are seeded, so it is the same search wherever it runs"
workloads = ["mnist-logreg"]
methods = ["tpe(base=sgd, budget=2)"]

[[group]]
label = "a run that raises: a holdout that holds out no image"
workloads = ["mnist-logreg"]
methods = ["sgd(lr=0.2)"]
options = { holdout = 1e-9 }
"""  # 6 runs, 2 dependents


def stores(tmp_path: Path) -> tuple[Path, Path]:
    """Two stores in two folders: each gets its own Optuna storage beside it, so a search on one
    side cannot resume the other side's study (both are named after the same run id)."""
    (tmp_path / "ray").mkdir()
    (tmp_path / "local").mkdir()
    return tmp_path / "ray" / "results.sqlite", tmp_path / "local" / "results.sqlite"


def assert_same_results(on_ray: Path, local: Path, count: int) -> dict[str, Any]:
    a, b = records(on_ray), records(local)
    assert a.keys() == b.keys() and len(a) == count
    for run_id, ours in a.items():
        theirs = b[run_id]
        assert (ours.status, ours.error) == (theirs.status, theirs.error), run_id
        assert ours.metrics == theirs.metrics, run_id  # the same floats, searches included
        assert _untimed(ours.curves.get("eval")) == _untimed(theirs.curves.get("eval")), run_id
        assert ours.env["executor"] == "ray" and ours.env["slot"].startswith("ray:")
    return a


def test_the_smoke_suite_on_ray_equals_the_local_scheduler(cluster, tmp_path):
    on_ray, local = stores(tmp_path)
    code, out = cli("suite", "smoke", "--executor", "ray", "--store", str(on_ray), "--no-report")
    assert code == 0 and "28 done, 0 diverged, 0 failed" in out, out
    code, out = cli("suite", "smoke", "--cpu-workers", "2", "--store", str(local), "--no-report")
    assert code == 0 and "28 done, 0 diverged, 0 failed" in out, out
    assert_same_results(on_ray, local, 28)


def test_a_suite_on_ray_equals_the_local_scheduler_and_resumes(cluster, tmp_path):
    suite = suite_file(tmp_path, TINY)
    on_ray, local = stores(tmp_path)
    code, out = cli("suite", str(suite), "--executor", "ray", "--store", str(on_ray),
                    "--no-report")
    assert code == 1, out  # the raising run failed: never exit 0
    assert "plan: 8 runs, 0 already stored, 8 to train" in out, out
    assert "7 done, 0 diverged, 1 failed" in out, out
    code, out = cli("suite", str(suite), "--cpu-workers", "2", "--store", str(local),
                    "--no-report")
    assert code == 1 and "7 done, 0 diverged, 1 failed" in out, out

    a = assert_same_results(on_ray, local, 8)
    failed = next(r for r in a.values() if r.status == FAILED)
    assert "holds out none" in failed.error

    # Resume: only the failed run trains again (a failure is never cached).
    code, out = cli("suite", str(suite), "--executor", "ray", "--store", str(on_ray),
                    "--no-report")
    assert code == 1 and "plan: 8 runs, 7 already stored, 1 to train" in out, out


def test_a_report_that_fails_is_exit_1_on_both_executors(cluster, tmp_path, monkeypatch):
    """The suite command ends alike on both: the runs stored, the report's failure one line."""
    import bench.report

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("no figures today")

    monkeypatch.setattr(bench.report, "write_suite_report", broken)
    suite = suite_file(tmp_path, """
        [[group]]
        workloads = ["mnist-logreg"]
        methods = ["torch.sgd(lr=0.1)"]
        budgets = [{ steps = 5 }]
    """)
    for store, executor in zip(stores(tmp_path), (["--executor", "ray"], ["--cpu-workers", "1"]),
                               strict=True):
        code, out = cli("suite", str(suite), "--store", str(store), *executor)
        assert code == 1, out
        assert "1 done, 0 diverged, 0 failed" in out, out
        assert "the report could not be written (RuntimeError: no figures today)" in out, out
        assert [r.status for r in records(store).values()] == [DONE]


def test_a_search_shared_by_two_tasks_through_postgres(cluster, tmp_path):
    # After the test above: both of the cluster's worker processes are warm, so the two tasks
    # start together.
    url = os.environ.get("BENCH_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("BENCH_TEST_POSTGRES_URL is unset: start a server with `bash .ci/postgres "
                    "start DIR` and export the URL it prints (CI does)")
    import optuna
    import sqlalchemy as sa

    from bench.suite import load_suite

    name = f"bench_ray_{os.getpid()}_{int(time.time())}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    db = sa.make_url(url).set(database=name).render_as_string(hide_password=False)
    try:
        suite = suite_file(tmp_path, """
            [[group]]
            workloads = ["mnist-logreg"]
            methods = ["tpe(base=sgd, budget=4)"]
            budgets = [{ steps = 200 }]
            options = { eval_every = 0.1 }
        """)
        code, out = cli("suite", str(suite), "--executor", "ray", "--search-workers", "2",
                        "--store", db, "--no-report")
        assert code == 0 and "1 done, 0 diverged, 0 failed" in out, out
        (config,) = load_suite(str(suite)).plan()
        with open_store(db) as store:
            (row,) = store.results()
        assert row.status == DONE and row.env["search_workers"] == 2
        trials = optuna.load_study(study_name=config.run_id, storage=db).trials
        assert len({t.user_attrs["owner"]["pid"] for t in trials}) == 2  # both tasks took part
        assert row.cost["steps"] == sum(t.user_attrs["cost_steps"] for t in trials)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _untimed(points: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    return [{k: v for k, v in p.items() if k != "cost_seconds"} for p in points or []]


def _running_tasks(run_id: str) -> list[int]:
    """The Ray worker processes running ``run_id`` now (a running task's title names it)."""
    title = f"ray::bench {run_id}".encode()
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(title):
                found.append(int(pid))
    return found


def _kill_task_when_running(run_id: str, stop: threading.Event) -> list[int]:
    """In a thread: SIGKILL the Ray worker process running ``run_id``; returns the pids killed."""
    killed: list[int] = []

    def hunt() -> None:
        while not stop.is_set():
            pids = _running_tasks(run_id)
            if pids:
                time.sleep(1.0)  # well inside its steps: training, not starting
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
                return
            time.sleep(0.1)

    threading.Thread(target=hunt, daemon=True).start()
    return killed


def test_a_killed_worker_is_failed_the_rest_finishes_and_ctrl_c_cancels(cluster, tmp_path):
    from bench.suite import load_suite

    suite = suite_file(tmp_path, victim_first("mnist-logreg", "torch.sgd(lr=0.1)", 20000) + """
        [[group]]
        workloads = ["mnist-logreg"]
        methods = ["torch.sgd(lr=0.05)", "torch.sgd(lr=0.02)"]
        budgets = [{ steps = 10 }]
    """)
    store = tmp_path / "s.sqlite"
    victim = next(c.run_id for c in load_suite(str(suite)).plan() if c.budget.steps == 20000)
    stop = threading.Event()
    killed = _kill_task_when_running(victim, stop)
    try:
        code, out = cli("suite", str(suite), "--executor", "ray", "--store", str(store),
                        "--no-report")
    finally:
        stop.set()
    assert killed, "the victim's worker was never seen running"
    assert code == 1 and "2 done, 0 diverged, 1 failed" in out, out
    rows = records(store)
    assert rows[victim].status == FAILED and "worker died" in rows[victim].error, rows[victim]
    assert [r.status for k, r in rows.items() if k != victim] == [DONE, DONE]

    # Ctrl-C while the (again) long victim runs: it is cancelled, nothing half-written, and
    # the next command trains it again.
    timer = threading.Timer(8.0, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        code, out = cli("suite", str(suite), "--executor", "ray", "--store", str(store),
                        "--no-report")
    finally:
        timer.cancel()
    assert code == 130 and "1 running cancelled" in out, out
    assert records(store)[victim].status == FAILED  # untouched: the cancelled run wrote nothing
    deadline = time.monotonic() + 30
    while _running_tasks(victim) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _running_tasks(victim), "the cancelled task is still running"


def test_mistakes_are_one_line_errors_before_anything_runs(cluster, tmp_path):
    suite = suite_file(tmp_path, """
        [[group]]
        workloads = ["mnist-logreg"]
        methods = ["sgd(0.1)"]
    """)
    store = tmp_path / "s.sqlite"
    for extra, message in (
        (("--gpus", "0"), "--gpus takes 'all'"),
        (("--cpu-workers", "2"), "--cpu-workers is for --executor local"),
        (("--gpus", "all"), "the Ray cluster has none (2 CPUs, 0 GPUs)"),
    ):
        code, out = cli("suite", str(suite), "--executor", "ray", "--store", str(store), *extra)
        assert code == 2 and message in out, out
    code, out = cli("suite", str(suite), "--address", "auto", "--store", str(store))
    assert code == 2 and "--address and --search-workers need --executor ray" in out, out
    assert not store.exists()
