"""The published results shipped in bench/published: they parse, map to runnable specs, and a
malformed file is refused with its file, entry and key named."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import published
from bench.methods import parse_method
from bench.published import PublishedDataError, canonical, fill, load_file, published_cells
from bench.suite import is_hyperoptimized, load_suite
from bench.workloads import WORKLOADS


@pytest.fixture(scope="module")
def chandra() -> published.Paper:
    return published.load("chandra2022")


@pytest.fixture(scope="module")
def paper_mnist_methods() -> set[str]:
    suite = load_suite("paper-mnist")
    return {m for g in suite.groups for m in g.methods}


def test_every_shipped_paper_parses():
    keys = [p.key for p in published.papers()]
    assert keys == list(published.PAPERS)
    for paper in published.papers():
        assert paper.title and paper.arxiv and paper.path.is_file()


def test_table1_has_its_18_rows_and_the_reruns(chandra):
    table = chandra.table
    assert table is not None and table.workload == "mnist-mlp" and table.seeds == 3
    assert len(table.rows) == 18
    assert len({r.method for r in table.rows}) == 18
    assert table.italic_reruns == 13
    # the harness re-runs every hyperoptimized row; the paper's 13 are among them
    hyper = [r.method for r in table.rows if is_hyperoptimized(r.method)]
    assert [r.parent for r in table.reruns] == hyper
    assert len(table.reruns) >= table.italic_reruns


def test_every_table1_row_is_a_spec_of_paper_mnist(chandra, paper_mnist_methods):
    for row in chandra.table.rows:
        name = parse_method(row.method).name  # raises if the spec does not parse
        assert name in paper_mnist_methods, f"{row.label}: {row.method} is not in paper-mnist"
    assert {canonical(r.method) for r in chandra.table.rows} == paper_mnist_methods


def test_published_numbers_have_sources_and_absent_ones_say_why(chandra):
    sgd = next(r for r in chandra.table.rows if r.label == "SGD")
    assert (sgd.value.mean, sgd.value.sd, sgd.value.n) == (8.99, 0.05, 3)
    assert "Table 1" in sgd.value.source
    for item in (*chandra.table.rows, *chandra.table.reruns):
        assert item.value.known == bool(item.value.source)
        if not item.value.known:
            assert item.value.note.startswith("not read")


def test_figures_name_their_series_as_runnable_specs(chandra):
    sensitivity, resnet = chandra.figure("sensitivity"), chandra.figure("resnet")
    assert sensitivity is not None and resnet is not None
    assert [s.label for s in sensitivity.series] == [f"height {h}" for h in range(4)]
    assert sensitivity.grid[0] == 1e-8 and sensitivity.grid[-1] == 1.0
    assert len(resnet.series) == 19  # 3x3 hyperoptimized, 3x3 fixed, the step schedule
    for figure in chandra.figures:
        assert figure.where and figure.workload in WORKLOADS
        assert figure.points or figure.note.startswith("not read")
        for series in figure.series:
            for lr in figure.grid or (0.1,):
                parse_method(fill(series.method, lr))


def _claim_specs(claim: published.Claim) -> list[str]:
    specs = [s for pair in claim.comparisons() for s in pair if s] if claim.kind in (
        "better", "same", "ratio", "match") else []
    specs = [s.removeprefix(published.RERUN) for s in specs]
    for height in claim.heights:
        specs += [fill(height, lr) for lr in claim.grid or (0.1,)]
    return specs


def test_every_claim_names_specs_that_parse():
    claims = [c for p in published.papers() for c in p.claims]
    assert {c.kind for c in claims} >= {"better", "ratio", "rerun_same", "spread", "overhead",
                                        "same"}
    for claim in claims:
        assert claim.workload in WORKLOADS, claim.key
        assert claim.source
        for spec in _claim_specs(claim):
            parse_method(spec)


def test_baydin_runs_are_the_last_rows_of_their_csvs():
    runs = published.load("baydin2018").runs
    assert runs is not None and runs.repository == "gbaydin/hypergradient-descent"
    assert len(runs.runs) == 18  # 3 models x 6 methods
    for run in runs.runs:
        assert run.path.startswith(f"results/{run.model}/") and run.path.endswith(
            f"/{run.method}.csv")
        assert run.workload == "" or run.workload in WORKLOADS
        for spec in run.methods:
            parse_method(spec)
        assert run.test_loss is not None or run.note.startswith("not read")
    sgd = next(r for r in runs.runs if (r.model, r.method) == ("logreg", "sgd"))
    assert sgd.test_loss == pytest.approx(0.37374500379562375)


def test_published_cells_fill_the_report_column(chandra):
    assert published_cells("mnist-mlp", "sgd(lr=0.01)") == ["8.99 ± 0.05 (Table 1, SGD, 3 seeds)"]
    assert published_cells("mnist-mlp", "sgd(0.01)/sgd(0.01)") == ["not read"]
    assert published_cells("mnist-mlp", "sgd(lr=0.0213)", parent="sgd(0.01)/sgd(0.01)") == [
        "not read"]
    assert published_cells("fashion-mlp", "sgd(lr=0.01)") == []  # another workload
    assert published_cells("mnist-mlp", "sgd(lr=0.02)") == []  # not a row of the table
    cell = published_cells("mnist-logreg", "sgd-hd(lr=0.001, beta=0.001)")
    assert cell == ["test loss 0.2878 (Baydin et al., ICLR 2018: their run, seed 123)"]


# ---------------------------------------------------------------- malformed files

GOOD = """
[paper]
key = "t"
title = "T"
[table1]
workload = "mnist-mlp"
[[table1.row]]
label = "SGD"
method = "sgd(lr=0.01)"
mean = 1.0
sd = 0.1
source = "Table 1"
"""

BAD = [
    # (replace this, with that, the message must contain)
    ('label = "SGD"', 'label = "SGD"\nmaen = 2.0', "[[table1.row]] number 1: unknown key 'maen'"),
    ('source = "Table 1"', "", "[[table1.row]] number 1: a published number needs its 'source'"),
    ("mean = 1.0\n", "", "[[table1.row]] number 1: key 'sd' is given without 'mean'"),
    ("mean = 1.0", 'mean = "1.0"', "key 'mean' must be a finite number"),
    ('key = "t"', 'key = "t"\nyear = 2022', "[paper]: unknown key 'year'"),
    ('title = "T"', "", "[paper]: missing key 'title'"),
    ("[table1]", '[[claim]]\nkey = "c"\nexperiment = "e"\ntext = "t"\nkind = "guess"\n'
     'workload = "w"\nsource = "s"\n[table1]', "[[claim]] number 1: unknown kind 'guess'"),
    ("[table1]", '[[claim]]\nkey = "c"\nexperiment = "e"\ntext = "t"\nkind = "better"\n'
     'workload = "w"\nsource = "s"\na = "sgd"\n[table1]', "needs the keys a+b or pairs"),
    ("[table1]", '[[figure]]\nkey = "f"\nprecision = 0.5\nseries = [{ label = "h0", method = '
     '"sgd" }]\npoints = [{ series = "h9", x = 1.0, y = 2.0 }]\n[table1]',
     "points number 1: series 'h9' is not one of the figure's series"),
    ("[table1]", '[[figure]]\nkey = "f"\nseries = [{ label = "h0", method = "sgd" }]\n'
     'points = [{ series = "h0", x = 1.0, y = 2.0 }]\n[table1]', "need its 'precision'"),
]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "paper.toml"
    path.write_text(text)
    return path


def test_a_good_file_loads(tmp_path):
    paper = load_file(_write(tmp_path, GOOD))
    assert paper.table.rows[0].value == published.Value(1.0, 0.1, None, "Table 1", "")


@pytest.mark.parametrize(("old", "new", "message"), BAD)
def test_a_malformed_file_names_file_entry_and_key(tmp_path, old, new, message):
    assert old in GOOD
    path = _write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(PublishedDataError) as e:
        load_file(path)
    assert str(path) in str(e.value) and message in str(e.value)


def test_not_toml_is_refused(tmp_path):
    with pytest.raises(PublishedDataError, match="not valid TOML"):
        load_file(_write(tmp_path, GOOD + "\n[paper"))


SUITES = {"table1": "paper-mnist", "sensitivity": "sensitivity", "resnet": "resnet",
          "charlstm": "charlstm"}


@pytest.mark.parametrize(("experiment", "suite"), sorted(SUITES.items()))
def test_each_paper_claim_reads_runs_its_suite_plans(experiment, suite):
    planned = {canonical(m) for g in load_suite(suite).groups for m in g.methods}
    claims = [c for c in published.load("chandra2022").claims if c.experiment == experiment]
    assert claims
    for claim in claims:
        specs = _claim_specs(claim)
        if claim.kind == "rerun_same":
            specs = [r.parent for r in published.load("chandra2022").table.reruns]
        assert specs
        missing = [s for s in specs if canonical(s) not in planned]
        assert not missing, f"{claim.key}: not planned by {suite}: {missing}"
