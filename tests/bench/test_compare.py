"""``bench compare`` on a small real store (``report_store``) and candidates planted from it."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from bench.cli import main
from bench.compare import compare, parse_fail_on
from bench.errors import UserError
from bench.methods import parse_method
from bench.record import DONE, FAILED, RunResult
from bench.report import load_results, write_jsonl


@pytest.fixture(scope="module")
def baseline(report_store: Path) -> list[RunResult]:
    return load_results(report_store)


def _planted(results: list[RunResult], tmp_path: Path, change, name: str = "cand") -> Path:
    """A candidate export: the baseline's records with ``change(record)`` applied to copies."""
    records = [copy.deepcopy(r) for r in results]
    for r in records:
        change(r)
    return write_jsonl(records, tmp_path / f"{name}.jsonl")


def _run(*argv: str, capsys) -> tuple[int, str, str]:
    code = main(["compare", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.slow
def test_equal_sets_pass(report_store: Path, baseline, tmp_path: Path, capsys):
    export = write_jsonl(baseline, tmp_path / "baseline.jsonl")
    code, out, _ = _run(str(export), str(report_store), capsys=capsys)
    assert code == 0
    assert "**PASS**" in out and "REGRESSION" not in out
    assert f"Matched {len(baseline)} runs" in out
    for metric in ("## error", "## step_time", "## memory"):
        assert metric in out


@pytest.mark.slow
def test_worse_error_is_a_regression(report_store: Path, baseline, tmp_path: Path, capsys):
    def worse(r: RunResult) -> None:
        if r.config["method"] == "torch.sgd(lr=0.1)" and r.status == DONE:
            r.metrics["test_error"] += 0.01  # +1 percentage point

    cand = _planted(baseline, tmp_path, worse)
    out_file = tmp_path / "cmp.md"
    code, out, _ = _run(str(report_store), str(cand), "--out", str(out_file), capsys=capsys)
    assert code == 1
    assert "**FAIL**" in out and out_file.read_text() == out
    rows = [line for line in out.splitlines() if "REGRESSION" in line]
    assert rows and all("torch.sgd(lr=0.1)" in line and "+1.00pp" in line for line in rows)
    # a wider threshold lets the same change through
    code, _, _ = _run(str(report_store), str(cand), "--fail-on", "error:+2pp", capsys=capsys)
    assert code == 0


@pytest.mark.slow
def test_slower_steps_are_a_regression(report_store: Path, baseline, tmp_path: Path, capsys):
    def slower(r: RunResult) -> None:
        if r.timing.get("step_time_median"):
            r.timing["step_time_median"] *= 1.5

    cand = _planted(baseline, tmp_path, slower)
    code, out, _ = _run(str(report_store), str(cand), "--fail-on", "step_time:+20%",
                        capsys=capsys)
    assert code == 1
    assert "+50.00%" in out
    code, _, _ = _run(str(report_store), str(cand), "--fail-on", "step_time:+60%", capsys=capsys)
    assert code == 0


@pytest.mark.slow
def test_a_run_failing_in_the_candidate_is_a_regression(report_store: Path, baseline,
                                                        tmp_path: Path, capsys):
    target = next(r for r in baseline if r.status == DONE)

    def fail(r: RunResult) -> None:
        if r.run_id == target.run_id:
            r.status, r.error, r.metrics = FAILED, "RuntimeError: planted", {}

    cand = _planted(baseline, tmp_path, fail)
    code, out, _ = _run(str(report_store), str(cand), "--fail-on", "", capsys=capsys)
    assert code == 1
    section = out[out.index("## Status changes"):]
    assert target.config["method"] in section and "**REGRESSION**" in section


@pytest.mark.slow
def test_matching_ignores_ids_device_index_spelling_and_lists_missing(baseline, tmp_path: Path):
    def on(device: str, new_ids: bool) -> list[RunResult]:
        records = [copy.deepcopy(r) for r in baseline]
        for r in records:
            r.config["device"] = device
            if new_ids:  # a new code version: every id changes, spellings may too
                r.run_id = "x" + r.run_id[1:]
                r.config["method"] = r.config["method"].replace("torch.sgd(lr=", "torch.sgd(")
        return records

    records = on("cuda:1", new_ids=True)
    dropped = records.pop()
    result = compare(on("cuda:0", new_ids=False), records, parse_fail_on("error:+0.5pp"))
    assert result.matched == len(baseline) - 1 and result.regressions == 0
    assert [(side, key[1], seed) for side, key, seed in result.missing] == [
        ("candidate", parse_method(dropped.config["method"]).name, dropped.config["seed"])]


def test_seeds_are_averaged_before_comparing():
    def run(seed: int, error: float) -> RunResult:
        config = {"workload": "w", "method": "m", "seed": seed, "budget": {"steps": 10},
                  "device": "cpu", "options": {}}
        return RunResult(f"id{seed}{error}", config, DONE, metrics={"test_error": error})

    base = [run(0, 0.10), run(1, 0.12)]
    cand = [run(0, 0.12), run(1, 0.10)]  # each seed moves 2pp, the mean does not
    result = compare(base, cand, parse_fail_on("error:+0.5pp"))
    assert result.regressions == 0
    (row,) = result.rows["error"]
    assert (row.seeds, row.base, row.cand, row.change) == (2, pytest.approx(11.0),
                                                           pytest.approx(11.0), "+0.00pp")


def test_missing_file_exits_2_in_one_line(tmp_path: Path, capsys):
    there = write_jsonl([], tmp_path / "empty.jsonl")
    code, out, err = _run(str(there), str(tmp_path / "absent.jsonl"), capsys=capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "absent.jsonl" in err and "Traceback" not in err


@pytest.mark.parametrize("fail_on", ["error", "error:+x", "speed:+1%", "error:-1pp",
                                     "step_time:+1pp"])
def test_malformed_fail_on_exits_2_in_one_line(tmp_path: Path, capsys, fail_on: str):
    there = write_jsonl([], tmp_path / "empty.jsonl")
    code, _, err = _run(str(there), str(there), "--fail-on", fail_on, capsys=capsys)
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: --fail-on")
    with pytest.raises(UserError):
        parse_fail_on(fail_on)


def test_fail_on_grammar():
    parsed = parse_fail_on("error:+0.5pp, step_time:20%,memory:+3")
    assert [(t.metric, t.amount, t.unit) for t in parsed] == [
        ("error", 0.5, "pp"), ("step_time", 20.0, "%"), ("memory", 3.0, "abs")]
    assert parse_fail_on("") == []


def test_nothing_in_common_is_bad_input(tmp_path: Path, capsys):
    def run(workload: str) -> RunResult:
        config = {"workload": workload, "method": "m", "seed": 0, "budget": {}, "device": "cpu",
                  "options": {}}
        return RunResult(workload, config, DONE, metrics={"test_error": 0.1})

    a = write_jsonl([run("a")], tmp_path / "a.jsonl")
    b = write_jsonl([run("b")], tmp_path / "b.jsonl")
    code, _, err = _run(str(a), str(b), capsys=capsys)
    assert code == 2 and "no run" in err
