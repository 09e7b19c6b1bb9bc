"""Reports from a small real store (``report_store`` in tests/conftest.py), and their parts."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from bench.cli import main
from bench.errors import UserError
from bench.methods import parse_method
from bench.record import DIVERGED, DONE, RunResult
from bench.report import load_results, write_jsonl, write_report
from bench.report.frame import runs_frame
from bench.report.structure import GDTUO, HD, LRFREE, SCHEDULE, SEARCH, TORCH, TOWER, method_info

# --------------------------------------------------------------------- method structure (fast)

STRUCTURE = [
    # name, family, base, height, lr0, template
    ("adam(lr=0.001)/sgd(1e-05)", TOWER, "adam", 1, 1e-3, "adam(lr=·)/sgd(1e-05)"),
    ("sgd(0.1)/sgd(1e-05)/sgd(1e-05)", TOWER, "sgd", 2, 0.1, "sgd(·)/sgd(1e-05)/sgd(1e-05)"),
    ("sgd(lr=0.1)", TOWER, "sgd", 0, 0.1, "sgd(lr=·)"),
    ("torch.sgd(lr=0.1, momentum=0.9)", TORCH, "sgd", 0, 0.1, "torch.sgd(lr=·, momentum=0.9)"),
    ("gdtuo:adam(lr=0.001)/sgd(1e-05)", GDTUO, "adam", 1, 1e-3, "gdtuo:adam(lr=·)/sgd(1e-05)"),
    ("sgd-hd(lr=0.01, beta=0.001)", HD, "sgd", None, 0.01, "sgd-hd(lr=·, beta=0.001)"),
    ("sgd(lr=0.1)+cosine(warmup=0.05)", SCHEDULE, "sgd", None, 0.1,
     "sgd(lr=·)+cosine(warmup=0.05)"),
    ("prodigy", LRFREE, "prodigy", None, None, "prodigy"),
    ("tpe(base=sgd, budget=4)", SEARCH, "tpe", None, None, "tpe(base=sgd, budget=4)"),
]


@pytest.mark.parametrize(("name", "family", "base", "height", "lr0", "template"), STRUCTURE)
def test_method_structure(name, family, base, height, lr0, template):
    info = method_info(name)
    assert (info.family, info.base, info.height, info.lr0, info.template) == (
        family, base, height, lr0, template)


# Names today's registry rejects (stored by older code versions) are read by the naming rules.
OLD_NAMES = [
    ("sgd(lr=0.1, nesterov_ish=1)/sgd(1e-05)", TOWER, "sgd", 1, 0.1),
    ("torch.sgd(lr=0.1, old_arg=1)", TORCH, "sgd", 0, 0.1),
    ("sgd-hd(lr=0.01, gone=2)", HD, "sgd", None, 0.01),
    ("tpe(base=sgd, budget=4, retired=1)", SEARCH, "tpe", None, None),
]


@pytest.mark.parametrize(("name", "family", "base", "height", "lr0"), OLD_NAMES)
def test_old_names_fall_back_to_the_naming_rules(name, family, base, height, lr0):
    with pytest.raises(UserError):
        parse_method(name)
    info = method_info(name)
    assert (info.family, info.base, info.height, info.lr0) == (family, base, height, lr0)


def test_search_budget_and_sampler_come_from_the_parse():
    info = method_info("gp(base=sgd, budget=8)")
    assert (info.budget, info.sampler) == (8.0, "gp")
    assert method_info("sgd(0.1)").budget is None


def _record(method: str, error: float = 0.1) -> RunResult:
    config = {"workload": "w", "method": method, "seed": 0, "budget": {"steps": 10},
              "device": "cpu", "options": {}}
    return RunResult(method, config, DONE, metrics={"test_error": error})


def test_grid_templates_follow_what_varies():
    # the paper's sensitivity study: every level starts at the same step size
    tied = [_record(f"adam({lr})/adam({lr})") for lr in ("1e-3", "1e-2", "1e-1")]
    # a grid over the level-0 step size only, one point of which equals the level above's
    level0 = [_record(f"sgd({lr})/sgd(0.01)") for lr in ("0.001", "0.01", "0.1")]
    frame = runs_frame(tied + level0).set_index("method")["template"]
    assert set(frame[[r.config["method"] for r in tied]]) == {"adam(·)/adam(·)"}
    assert set(frame[[r.config["method"] for r in level0]]) == {"sgd(·)/sgd(0.01)"}


# --------------------------------------------------------------------- a report of a real store

@pytest.fixture(scope="module")
def results(report_store: Path) -> list[RunResult]:
    return load_results(report_store)


@pytest.fixture(scope="module")
def report(results: list[RunResult], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report") / "all"
    return write_report(results, out, title="all runs", source="store", command="python -m ...")


def _section(text: str, title: str) -> str:
    """The markdown of the ``## title`` section, up to the next ``## ``."""
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 3)
    return text[start:] if end < 0 else text[start:end]


@pytest.mark.slow
def test_report_has_every_section_and_figure(report: Path):
    text = report.read_text()
    for title in ("Runs", "Environment", "Test error by method", "Sensitivity",
                  "Overhead per tower level", "Equal budget", "Hyperparameter trajectories"):
        assert f"## {title}" in text
    linked = set(re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text))
    written = {p.name for p in report.parent.glob("*.png")}
    assert linked == written  # every figure is shown, every link resolves
    assert {"sensitivity.png", "overhead-mnist-mlp.png", "budget-mnist-logreg.png"} <= written
    assert any(name.startswith("trajectories-") for name in written)
    # how a search's test error is obtained, where searches are compared with single runs
    assert _section(text, "Equal budget").count("chosen trial's model is tested as it was") == 1
    for name in written:  # real PNGs of a readable size
        data = (report.parent / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        assert 400 <= width <= 2200 and 200 <= height <= 3000


@pytest.mark.slow
def test_counts_and_problem_runs_are_shown(report: Path, results: list[RunResult]):
    text = report.read_text()
    n_done = sum(r.status == DONE for r in results)
    n_diverged = sum(r.status == DIVERGED for r in results)
    assert n_diverged >= 1  # torch.sgd(lr=1e6)
    assert re.search(rf"\| done\s+\| {n_done}\s+\|", text)
    assert re.search(rf"\| diverged\s+\| {n_diverged}\s+\|", text)
    problems = text[text.index("Runs that are not results"):text.index("## Environment")]
    assert "torch.sgd(lr=1000000.0)" in problems or "torch.sgd(lr=1e+06)" in problems
    # the diverged run also stays in the table of its workload, counted, never dropped
    table = _section(text, "Test error by method")
    assert "0 + 1 diverged" in table


@pytest.mark.slow
def test_paper_table_numbers_and_rerun_row(report: Path, results: list[RunResult]):
    table = _section(report.read_text(), "Test error by method")
    errors = [100 * r.metrics["test_error"] for r in results
              if r.config["method"] == "torch.sgd(lr=0.1)" and r.config["workload"] ==
              "mnist-logreg"]
    assert len(errors) == 2
    expected = f"{np.mean(errors):.2f} ± {np.std(errors, ddof=1):.2f}"
    row = next(line for line in table.splitlines() if "| torch.sgd(lr=0.1) " in line)
    assert expected in row and "| 2 " in row
    # the re-run of the tower with its learned step size: in italics, right under its parent
    lines = table.splitlines()
    tower = parse_method("sgd(lr=0.1)/sgd(0.001)").name
    parent = next(i for i, line in enumerate(lines) if f"| {tower} " in line)
    assert "*sgd re-run with these values*" in lines[parent + 1]
    assert "α=" in lines[parent]  # the learned final step size


@pytest.mark.slow
def test_published_column_and_claims_section(report: Path, results: list[RunResult]):
    text = report.read_text()
    table = _section(text, "Test error by method")
    # mnist-mlp's sgd(lr=0.01) is Table 1's SGD row: its published number, where it is from
    row = next(line for line in table.splitlines() if "| sgd(0.01) " in line)
    assert [c.strip() for c in row.split("|")][-2] == "8.99 ± 0.05 (Table 1, SGD, 3 seeds)"
    # Baydin et al. logged no run of torch.sgd(lr=0.1) on the logistic regression: empty
    row = next(line for line in table.splitlines() if "| torch.sgd(lr=0.1) " in line)
    assert [c.strip() for c in row.split("|")][-2] == ""
    claims = _section(text, "Claims of the papers")
    errors = [100 * r.metrics["test_error"] for r in results if r.config["workload"] == "mnist-mlp"
              and r.config["method"] == "sgd(0.01)"]
    verdict = "reproduced" if abs(errors[0] - 8.99) <= 2 * 0.05 else "**not reproduced**"
    sgd = next(line for line in claims.splitlines() if "Table 1, SGD: test error" in line)
    assert f"| {verdict} " in sgd and "(n=1)" in sgd
    assert "| not run " in claims  # SGD/SGD and the other rows were not run here
    # the tower's plain re-run on the logistic regression: counted
    assert re.search(r"\| mnist-logreg\s+\| sgd\(0.1\)/sgd\(0.001\)\s+\| 2\s+\| 1\s+\|",
                     claims)


@pytest.mark.slow
def test_sensitivity_spread_is_computed_per_height(report: Path, results: list[RunResult]):
    section = _section(report.read_text(), "Sensitivity")
    frame = runs_frame(results)
    grid = frame[(frame["workload"] == "mnist-mlp") & (frame["family"] == TOWER)
                 & (frame["height"] == 0) & (frame["status"] == DONE)
                 & frame["parent"].isna()]  # the re-run with learned values is no grid point
    spread = grid["score"].max() - grid["score"].min()
    template = grid["template"].iloc[0]  # sgd(·), as the canonical name writes it
    row = next(line for line in section.splitlines() if f"| {template} " in line)
    assert f"| {spread:.3g} " in row


@pytest.mark.slow
def test_overhead_compares_with_plain_and_gdtuo(report: Path):
    section = _section(report.read_text(), "Overhead per tower level")
    mlp = section[section.index("### mnist-mlp"):]  # where plain, tower and gdtuo all ran
    tower = next(line for line in mlp.splitlines() if "| hypergrad " in line and "/sgd(" in line)
    ratios = re.findall(r"(\d+\.\d\d)×", tower)
    assert len(ratios) >= 3  # × plain, × gdtuo, × level below
    assert "| gdtuo " in mlp and "| torch.optim " in mlp


@pytest.mark.slow
def test_budget_table_and_search_matches(report: Path):
    section = _section(report.read_text(), "Equal budget")
    # one run's cost (30 steps), and the search's own budget (two whole runs)
    assert "accuracy (%) at 1× (30 steps)" in section and "at 2× (60 steps)" in section
    assert "tpe(base=sgd, budget=2)" in section
    assert "first match" in section


@pytest.mark.slow
def test_sections_follow_the_data(results: list[RunResult], tmp_path: Path):
    write_report(results, tmp_path, title="t", source="s", command="c")
    (tmp_path / "mine.png").write_bytes(b"not the report's")
    plain = [r for r in results if r.config["method"] == "torch.sgd(lr=0.1)"]
    text = write_report(plain, tmp_path, title="t", source="s", command="c").read_text()
    # the earlier report's figures are gone, the user's own file is not
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["mine.png"]
    assert "## Test error by method" in text
    for absent in ("## Sensitivity", "## Overhead", "## Equal budget"):
        assert absent not in text
    empty = write_report([], tmp_path / "empty", title="t", source="s", command="c").read_text()
    assert "| total       | 0 " in empty


# --------------------------------------------------------------------- the command line


@pytest.mark.slow
def test_cli_report_of_a_suite(report_store: Path, tmp_path: Path, capsys):
    suite = tmp_path / "two.toml"
    suite.write_text(
        'description = "the plain runs"\nseeds = [0, 1]\nbudgets = [{ steps = 30 }]\n\n'
        '[[group]]\nworkloads = ["mnist-logreg"]\nmethods = ["torch.sgd(0.1)"]\n'
    )  # not the canonical spelling: the plan canonicalises it, as the store's names are
    out = tmp_path / "out"
    assert main(["report", str(suite), "--store", str(report_store), "--out", str(out)]) == 0
    text = (out / "README.md").read_text()
    assert "(2 runs)" in capsys.readouterr().out
    assert "Planned by suite `two`: 2 runs; 0 not in the store yet." in text
    assert 'methods = ["torch.sgd(0.1)"]' in text  # the suite's config
    assert f"python -m bench suite {suite} --store {report_store}" in text  # reproduces it
    assert "mnist-mlp" not in text


@pytest.mark.slow
def test_the_suite_command_writes_its_report(report_store: Path, tmp_path: Path, monkeypatch,
                                             capsys):
    from bench.executors.command import write_report as suite_hook
    from bench.store import Store
    from bench.suite import load_suite

    path = tmp_path / "towers.toml"
    path.write_text(
        'description = "a tower and its re-run"\nseeds = [0, 1]\nbudgets = [{ steps = 30 }]\n\n'
        '[[group]]\nworkloads = ["mnist-logreg"]\nmethods = ["sgd(lr=0.1)/sgd(0.001)"]\n'
        'rerun_learned = true\n'
    )
    suite = load_suite(path)
    monkeypatch.chdir(tmp_path)
    with Store(report_store) as store:
        suite_hook(suite, suite.plan(), store)  # what `bench suite` does when it ends
    assert "report: reports/towers/README.md" in capsys.readouterr().out
    text = (tmp_path / "reports" / "towers" / "README.md").read_text()
    # two towers and one re-run stored; the re-run of seed 1 is still to come
    assert "Planned by suite `towers`: 4 runs; 1 not in the store yet." in text
    assert "| total       | 3 " in text and "*sgd re-run with these values*" in text


def test_cli_report_of_a_missing_store_is_one_line(tmp_path: Path, capsys):
    code = main(["report", "--store", str(tmp_path / "nothing.sqlite")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "does not exist" in err
    assert not (tmp_path / "nothing.sqlite").exists()  # a report never creates a store


@pytest.mark.slow
def test_exports_load_back(report_store: Path, results: list[RunResult], tmp_path: Path):
    jsonl, csv = tmp_path / "r.jsonl", tmp_path / "r.csv"
    assert main(["export", "--format", "jsonl", "--store", str(report_store), "--out",
                 str(jsonl)]) == 0
    assert main(["export", "--format", "csv", "--store", str(report_store), "--out",
                 str(csv)]) == 0
    by_id = {r.run_id: r for r in results}
    assert {r.run_id: r for r in load_results(jsonl)} == by_id  # complete, curves included
    for flat in load_results(csv):  # final numbers, no curves
        full = by_id[flat.run_id]
        assert (flat.status, flat.config["method"], flat.config["seed"]) == (
            full.status, full.config["method"], full.config["seed"])
        assert flat.metrics.get("test_error") == pytest.approx(full.metrics.get("test_error"))
    again = write_jsonl(load_results(jsonl), tmp_path / "again.jsonl")
    assert again.read_text() == jsonl.read_text()  # stable order and keys: diffs stay small


def test_a_rerun_that_cannot_be_made_is_listed_not_pending(tmp_path: Path):
    """A tower that learned a step size of 0 or below has no plain re-run (the scheduler skips
    it): the report lists it with the reason instead of counting it as still to train."""
    from bench.report.command import suite_results
    from bench.suite import LEARNED_FROM, load_suite

    path = tmp_path / "reruns.toml"
    path.write_text('description = "re-runs"\nseeds = [0, 1]\nbudgets = [{ steps = 10 }]\n'
                    '[[group]]\nworkloads = ["mnist-mlp"]\nmethods = ["sgd(0.01)/sgd(0.01)"]\n'
                    'rerun_learned = true\n')
    suite = load_suite(str(path))
    plan = suite.plan()
    towers = [c for c in plan if not c.option(LEARNED_FROM)]
    assert len(towers) == 2 and len(plan) == 4
    learned = {0: -0.02, 1: 0.03}  # seed 0 learned a negative step size
    results = [RunResult(c.run_id, c.to_dict(), DONE, metrics={"test_error": 0.1,
                                                               "hyper/0.lr": learned[c.seed]})
               for c in towers]
    _, info = suite_results(suite, results, plan=plan)
    assert info.planned == 4
    assert info.pending == 1  # seed 1's re-run can still be trained
    assert len(info.impossible) == 1
    assert "seed 0" in info.impossible[0] and "lr must be > 0" in info.impossible[0]
