"""The Claims section: every verdict rule of bench.report.claims, each in both directions, on a
results store built for the purpose (a SQLite store of made-up finished runs, read back as a
report reads it)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from bench import published as pub
from bench.config import Budget, RunConfig
from bench.record import DIVERGED, DONE, RunResult
from bench.report import claims, load_results, write_report
from bench.report.frame import runs_frame
from bench.store import Store

W = "mnist-mlp"
SGD, TOWER = "sgd(lr=0.01)", "sgd(lr=0.01)/sgd(lr=0.01)"
ADAM, ADAM_TOWER = "adam(lr=0.001)", "adam(lr=0.001)/sgd(lr=1e-5)"
GRID = (1e-3, 1e-2, 1e-1)
HEIGHTS = ("sgd(lr={lr})", "sgd(lr={lr})/sgd(lr={lr})")

_ids = itertools.count()


def record(method: str, seed: int, error: float | None, *, status: str = DONE,
           step_time: float | None = None, lr: float | None = None, parent: str | None = None,
           loss: float | None = None) -> RunResult:
    """A finished (or diverged) run of ``method``; ``error`` in percent."""
    options = {"parent": parent} if parent else {}
    config = RunConfig(W, method, seed, Budget(steps=10), "cpu", tuple(options.items()))
    metrics: dict[str, float] = {}
    if error is not None:
        metrics["test_error"] = error / 100
    if loss is not None:
        metrics["test_loss"] = loss
    if lr is not None:
        metrics["hyper/0.lr"] = lr
    timing = {"step_time_median": step_time} if step_time is not None else {}
    return RunResult(f"run{next(_ids)}", config.to_dict(), status, metrics=metrics,
                     timing=timing, error=None if status == DONE else "diverged",
                     diverged_step=None if status == DONE else 3)


def runs(method: str, errors: list[float], **kw) -> list[RunResult]:
    return [record(method, seed, e, **kw) for seed, e in enumerate(errors)]


def store_frame(tmp_path: Path, results: list[RunResult]):
    """Put the results in a SQLite store and read them back as a report does."""
    path = tmp_path / "claims.sqlite"
    with Store(path) as store:
        for r in results:
            store.put(r)
    return runs_frame(load_results(path))


PAPER = """
[paper]
key = "test"
title = "T"
authors = "A. Author, B. Author"
venue = "V"
"""


def paper(tmp_path: Path, *claim_tables: str) -> tuple[pub.Paper, ...]:
    path = tmp_path / "paper.toml"
    path.write_text(PAPER + "\n".join(claim_tables))
    return (pub.load_file(path),)


def claim(key: str, kind: str, body: str, experiment: str = "e") -> str:
    return (f'[[claim]]\nkey = "{key}"\nexperiment = "{experiment}"\ntext = "{key}"\n'
            f'kind = "{kind}"\nworkload = "{W}"\nsource = "a test"\n{body}\n')


def verdicts(rows: list[claims.ClaimRow]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for row in rows:
        out.setdefault(row.claim.key, []).append(row.verdict)
    return out


# ---------------------------------------------------------------- match


def test_match_reproduced_within_two_combined_sd_and_not_beyond(tmp_path):
    papers = paper(tmp_path, claim("near", "match", f'a = "{SGD}"\nmean = 9.0\nsd = 0.05'),
                   claim("far", "match", f'a = "{TOWER}"\nmean = 9.0\nsd = 0.05'))
    frame = store_frame(tmp_path, runs(SGD, [8.9, 9.0, 9.1]) + runs(TOWER, [5.3, 5.4, 5.5]))
    rows = {r.claim.key: r for r in claims.evaluate(frame, papers)}
    assert rows["near"].verdict == claims.REPRODUCED
    assert rows["near"].sigmas == pytest.approx(0.0, abs=1e-9)
    assert rows["far"].verdict == claims.NOT_REPRODUCED
    # (5.4 - 9.0) / sqrt(0.1² + 0.05²)
    assert rows["far"].sigmas == pytest.approx(-3.6 / (0.1**2 + 0.05**2) ** 0.5)
    assert "is not reproduced" in rows["far"].why
    assert "(n=3)" in rows["far"].ours


def test_match_one_seed_uses_the_stated_tolerance(tmp_path):
    papers = paper(tmp_path, claim("a", "match", f'a = "{SGD}"\nmean = 9.0\ntolerance = 0.5'),
                   claim("b", "match", f'a = "{TOWER}"\nmean = 9.0\ntolerance = 0.5'))
    frame = store_frame(tmp_path, [record(SGD, 0, 9.4), record(TOWER, 0, 9.6)])
    assert verdicts(claims.evaluate(frame, papers)) == {"a": [claims.REPRODUCED],
                                                        "b": [claims.NOT_REPRODUCED]}


def test_a_match_without_runs_is_not_run(tmp_path):
    papers = paper(tmp_path, claim("m", "match", f'a = "{TOWER}"\nmean = 5.0'),
                   claim("other", "match", f'a = "{SGD}"\nmean = 9.0'))
    frame = store_frame(tmp_path, runs(SGD, [9.0, 9.0]) + [record(TOWER, 0, None,
                                                                  status=DIVERGED)])
    rows = {r.claim.key: r for r in claims.evaluate(frame, papers)}
    assert rows["m"].verdict == claims.NOT_RUN and "no finished run" in rows["m"].why


# ---------------------------------------------------------------- better and same


def test_better_reproduced_only_beyond_the_noise_and_in_its_direction(tmp_path):
    papers = paper(tmp_path, claim("clear", "better", f'a = "{TOWER}"\nb = "{SGD}"'),
                   claim("noise", "better", f'a = "{ADAM_TOWER}"\nb = "{ADAM}"'),
                   claim("reverse", "better", f'a = "{SGD}"\nb = "{TOWER}"'))
    frame = store_frame(tmp_path, runs(SGD, [9.0, 9.1, 8.9]) + runs(TOWER, [5.0, 5.1, 4.9])
                        + runs(ADAM, [5.0, 5.4, 4.6]) + runs(ADAM_TOWER, [4.9, 5.3, 4.5]))
    rows = {r.claim.key: r for r in claims.evaluate(frame, papers)}
    assert rows["clear"].verdict == claims.REPRODUCED
    assert rows["clear"].sigmas == pytest.approx(4.0 / (2 * 0.1**2) ** 0.5)
    assert rows["noise"].verdict == claims.NOT_REPRODUCED and "within the noise" in rows[
        "noise"].why
    assert rows["reverse"].verdict == claims.NOT_REPRODUCED and "opposite" in rows["reverse"].why


def test_better_pairs_give_a_row_each_and_read_other_metrics(tmp_path):
    pairs = f'pairs = [["{TOWER}", "{SGD}"], ["{ADAM_TOWER}", "{ADAM}"]]\nmetric = "loss"'
    papers = paper(tmp_path, claim("p", "better", pairs))
    frame = store_frame(tmp_path, runs(SGD, [9, 9], loss=0.30) + runs(TOWER, [9, 9], loss=0.20)
                        + runs(ADAM, [9, 9], loss=0.20) + runs(ADAM_TOWER, [9, 9], loss=0.25))
    assert verdicts(claims.evaluate(frame, papers)) == {
        "p": [claims.REPRODUCED, claims.NOT_REPRODUCED]}


def test_same_reproduced_within_the_noise_and_not_beyond(tmp_path):
    papers = paper(tmp_path, claim("eq", "same", f'a = "{TOWER}"\nb = "{SGD}"'),
                   claim("ne", "same", f'a = "{ADAM_TOWER}"\nb = "{ADAM}"'))
    frame = store_frame(tmp_path, runs(SGD, [5.0, 5.2, 5.1]) + runs(TOWER, [5.1, 5.0, 5.2])
                        + runs(ADAM, [5.0, 5.1, 5.2]) + runs(ADAM_TOWER, [6.0, 6.1, 6.2]))
    assert verdicts(claims.evaluate(frame, papers)) == {"eq": [claims.REPRODUCED],
                                                        "ne": [claims.NOT_REPRODUCED]}


def test_a_missing_side_is_not_run_with_its_name(tmp_path):
    papers = paper(tmp_path, claim("x", "better", f'a = "{TOWER}"\nb = "{SGD}"'))
    frame = store_frame(tmp_path, runs(TOWER, [5.0, 5.1]))
    [row] = claims.evaluate(frame, papers)
    assert row.verdict == claims.NOT_RUN and "sgd(lr=0.01)" in row.why


def test_claims_of_other_workloads_and_absent_experiments_are_left_out(tmp_path):
    papers = paper(tmp_path, claim("x", "better", f'a = "{TOWER}"\nb = "{SGD}"'))
    frame = store_frame(tmp_path, runs(ADAM, [5.0, 5.1]))
    assert claims.evaluate(frame, papers) == []


# ---------------------------------------------------------------- ratio


def test_ratio_reproduced_within_tolerance_and_not_beyond(tmp_path):
    body = f'a = "{TOWER}"\nb = "{SGD}"\nvalue = 0.5\ntolerance = 0.1'
    papers = paper(tmp_path, claim("half", "ratio", body))
    halved = store_frame(tmp_path, runs(SGD, [9.0, 9.0, 9.0]) + runs(TOWER, [4.6, 4.6, 4.6]))
    assert verdicts(claims.evaluate(halved, papers)) == {"half": [claims.REPRODUCED]}
    (tmp_path / "claims.sqlite").unlink()
    barely = store_frame(tmp_path, runs(SGD, [9.0, 9.0, 9.0]) + runs(TOWER, [7.2, 7.2, 7.2]))
    assert verdicts(claims.evaluate(barely, papers)) == {"half": [claims.NOT_REPRODUCED]}


# ---------------------------------------------------------------- re-runs


def _with_reruns(parent_errors: list[float], rerun_errors: list[float | None],
                 lrs: list[float]) -> list[RunResult]:
    out = []
    for seed, (pe, re_, lr) in enumerate(zip(parent_errors, rerun_errors, lrs, strict=True)):
        parent = record(TOWER, seed, pe, lr=lr)
        out.append(parent)
        if re_ is not None:
            out.append(record(f"sgd(lr={lr})", seed, re_, parent=parent.run_id))
    return out


def test_reruns_as_good_as_their_tower_and_not(tmp_path):
    papers = paper(tmp_path, claim("r", "rerun_same", f'parents = "{TOWER}"'))
    good = store_frame(tmp_path, _with_reruns([5.0, 5.1, 5.2], [5.1, 5.2, 5.0],
                                              [0.02, 0.02, 0.02]))
    assert verdicts(claims.evaluate(good, papers)) == {"r": [claims.REPRODUCED]}
    (tmp_path / "claims.sqlite").unlink()
    bad = store_frame(tmp_path, _with_reruns([5.0, 5.1, 5.2], [7.0, 7.1, 7.2],
                                             [0.02, 0.02, 0.02]))
    assert verdicts(claims.evaluate(bad, papers)) == {"r": [claims.NOT_REPRODUCED]}


def test_reruns_that_cannot_be_made_are_counted_per_row(tmp_path):
    frame = store_frame(tmp_path, _with_reruns([5.0, 5.1, 5.2], [5.1, None, None],
                                               [0.02, -0.003, 0.0]))
    counts = {c.parent: c for c in claims.rerun_counts(frame, paper(tmp_path))}
    count = counts["sgd(0.01)/sgd(0.01)"]
    assert (count.parents_done, count.reruns_stored, count.impossible) == (3, 1, 2)
    assert count.reasons[0].startswith("seed 1: lr must be > 0")
    assert count.reasons[1].startswith("seed 2: lr must be > 0")


def test_shipped_table1_reruns_are_counted_without_stored_reruns(tmp_path):
    frame = store_frame(tmp_path, _with_reruns([5.0, 5.1], [None, None], [0.02, -0.1]))
    counts = [c for c in claims.rerun_counts(frame) if c.parent == "sgd(0.01)/sgd(0.01)"]
    assert [(c.parents_done, c.reruns_stored, c.impossible) for c in counts] == [(2, 0, 1)]


# ---------------------------------------------------------------- spread and overhead


def _grid_runs(spreads: dict[int, tuple[float, float, float]], seeds: int = 2,
               step_times: dict[int, float] | None = None) -> list[RunResult]:
    out = []
    for h, errors in spreads.items():
        for lr, error in zip(GRID, errors, strict=True):
            for seed in range(seeds):
                method = pub.fill(HEIGHTS[h], lr)
                if error is None:
                    out.append(record(method, seed, None, status=DIVERGED))
                else:
                    out.append(record(method, seed, error + 0.05 * seed,
                                      step_time=(step_times or {}).get(h)))
    return out


SPREAD = 'heights = ["sgd(lr={lr})", "sgd(lr={lr})/sgd(lr={lr})"]\ngrid = [1e-3, 1e-2, 1e-1]'


def test_taller_towers_less_sensitive_reproduced_and_not(tmp_path):
    papers = paper(tmp_path, claim("s", "spread", SPREAD))
    flatter = store_frame(tmp_path, _grid_runs({0: (30.0, 8.0, 5.0), 1: (6.0, 5.0, 5.5)}))
    [row] = claims.evaluate(flatter, papers)
    assert row.verdict == claims.REPRODUCED
    assert row.detail["spreads"] == pytest.approx([25.0, 1.0])
    (tmp_path / "claims.sqlite").unlink()
    steeper = store_frame(tmp_path, _grid_runs({0: (6.0, 5.0, 5.5), 1: (30.0, 8.0, 5.0)}))
    [row] = claims.evaluate(steeper, papers)
    assert row.verdict == claims.NOT_REPRODUCED and "grows" in row.why


def test_a_diverged_grid_point_counts_as_the_stated_score(tmp_path):
    papers = paper(tmp_path, claim("s", "spread", SPREAD + "\ndiverged_score = 90.0"))
    frame = store_frame(tmp_path, _grid_runs({0: (None, 8.0, 5.0), 1: (6.0, 5.0, 5.5)}))
    [row] = claims.evaluate(frame, papers)
    assert row.verdict == claims.REPRODUCED
    assert row.detail["spreads"][0] == pytest.approx(90.0 - 5.025)  # 5.025: the best point
    assert "1 diverged" in row.ours


def test_overhead_within_the_stated_ratio_and_beyond(tmp_path):
    body = SPREAD + "\nmax_ratio = 1.25"
    papers = paper(tmp_path, claim("o", "overhead", body))
    cheap = store_frame(tmp_path, _grid_runs({0: (5, 5, 5), 1: (5, 5, 5)},
                                             step_times={0: 0.010, 1: 0.011}))
    [row] = claims.evaluate(cheap, papers)
    assert row.verdict == claims.REPRODUCED and row.detail["ratios"] == pytest.approx([1.1])
    (tmp_path / "claims.sqlite").unlink()
    dear = store_frame(tmp_path, _grid_runs({0: (5, 5, 5), 1: (5, 5, 5)},
                                            step_times={0: 0.010, 1: 0.020}))
    [row] = claims.evaluate(dear, papers)
    assert row.verdict == claims.NOT_REPRODUCED


def test_one_run_of_a_grid_spec_is_not_a_sensitivity_study(tmp_path):
    papers = paper(tmp_path, claim("s", "spread", SPREAD))
    frame = store_frame(tmp_path, runs(SGD, [9.0]) + runs(TOWER, [5.0]))
    assert claims.evaluate(frame, papers) == []


# ---------------------------------------------------------------- the shipped claims, a report


def test_the_report_of_a_table1_store_has_the_claims_and_published_numbers(tmp_path):
    results = (runs("sgd(lr=0.01)", [5.4, 5.5, 5.3])
               + runs("sgd(lr=0.01)/sgd(lr=0.01)", [2.4, 2.5, 2.6], lr=0.05, step_time=0.002)
               + runs("adam(lr=0.001, beta2=0.99, v0=1e-8)", [2.5, 2.6, 2.4]))
    frame_results = load_results(_put(tmp_path, results))
    out = write_report(frame_results, tmp_path / "report", title="t", source="s", command="c")
    text = out.read_text()
    section = text[text.index("## Claims of the papers"):]
    assert "8.99 ± 0.05 (Table 1, SGD, 3 seeds)" in text  # the published column
    assert "| not read" in text
    # the SGD row's published 8.99 is far from 5.4: said in plain words
    assert "does not hold here: the published 8.99 ± 0.05 is not reproduced" in section
    assert "SGD/SGD beats SGD" in section and "not run" in section  # Adam/SGD has no runs
    assert "17 of 18 rows" in section
    assert "finished seeds" not in section  # no re-runs planned or impossible: no count table


def _put(tmp_path: Path, results: list[RunResult]) -> Path:
    path = tmp_path / "report.sqlite"
    with Store(path) as store:
        for r in results:
            store.put(r)
    return path


def test_reruns_of_rows_without_runs_make_one_not_run_row(tmp_path):
    papers = paper(tmp_path, claim("r", "rerun_same", f'parents = "{TOWER}; {ADAM_TOWER}"'))
    frame = store_frame(tmp_path, _with_reruns([5.0, 5.1], [5.0, 5.1], [0.02, 0.02]))
    rows = claims.evaluate(frame, papers)
    assert [r.verdict for r in rows] == [claims.REPRODUCED]  # only the row that ran
    (tmp_path / "claims.sqlite").unlink()
    other = store_frame(tmp_path, runs(ADAM, [5.0]))
    papers = paper(tmp_path, claim("r", "rerun_same", f'parents = "{TOWER}; {ADAM_TOWER}"'),
                   claim("b", "better", f'a = "{ADAM_TOWER}"\nb = "{ADAM}"'))
    rows = [r for r in claims.evaluate(other, papers) if r.claim.key == "r"]
    assert [(r.verdict, r.why) for r in rows] == [
        (claims.NOT_RUN, "no run of any of its 2 hyperoptimized rows in these results")]


# ---------------------------------------------------------------- published points on the figure

FIGURE = """
[[figure]]
key = "sensitivity"
title = "SGD towers"
workload = "mnist-mlp"
precision = 0.5
series = [{ label = "height 0", method = "sgd(lr={lr})" },
          { label = "height 1", method = "sgd(lr={lr})/sgd(lr={lr})" }]
grid = [1e-3, 1e-2, 1e-1]
points = [{ series = "height 0", x = 1e-3, y = 20.0 }, { series = "height 1", x = 1e-2, y = 4.0 }]
"""


def test_published_points_are_drawn_beside_ours(tmp_path, monkeypatch):
    from bench.report import sensitivity

    papers = paper(tmp_path, FIGURE)
    frame = store_frame(tmp_path, _grid_runs({0: (30.0, 8.0, 5.0), 1: (6.0, 5.0, 5.5)}))
    lines = sensitivity.sensitivity_lines(frame)
    points = sensitivity.published_points(lines, papers)
    assert points[["base", "height", "lr0", "score", "precision"]].values.tolist() == [
        ["sgd", 0, 1e-3, 20.0, 0.5], ["sgd", 1, 1e-2, 4.0, 0.5]]
    assert sensitivity.published_points(lines.assign(workload="fashion-mlp"), papers).empty
    drawn = []
    original = sensitivity._published
    monkeypatch.setattr(sensitivity, "_published",
                        lambda ax, pts, colors: drawn.append(len(pts)) or original(ax, pts, colors))
    path = sensitivity.sensitivity_figure(lines, tmp_path / "s.png", points)
    assert path.read_bytes()[:4] == b"\x89PNG" and drawn == [2]


def test_the_shipped_figures_have_no_points_and_the_report_says_so(tmp_path):
    frame_results = _grid_runs({0: (30.0, 8.0, 5.0), 1: (6.0, 5.0, 5.5)})
    results = load_results(_put(tmp_path, frame_results))
    text = write_report(results, tmp_path / "r", title="t", source="s", command="c").read_text()
    assert "The paper's figure (SGD towers of height 0 to 3" in text
    assert "none of its points are drawn" in text and "Hollow diamonds" not in text
