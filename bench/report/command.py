"""``python -m bench report [SUITE | --store PATH] [--out reports/NAME]``.

With a suite, the report covers the runs of that suite found in the store, whatever their
seeds and device (a suite re-run with ``--seeds`` or on a GPU is still that suite); without one,
every run in the store or export file.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.config import RunConfig, device_kind
from bench.record import RunResult
from bench.suite import LEARNED_FROM

if TYPE_CHECKING:
    from bench.report.build import SuiteInfo

# bench.report.build (pandas, seaborn, matplotlib: seconds to import) and bench.report.structure
# (the method grammar: hypergrad, so torch) are imported where they are used, not here: every
# `python -m bench` command builds this module's arguments, and `bench suite` starts its workers
# before the main process imports torch.


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``report`` subcommand's arguments."""
    parser.add_argument("suite", nargs="?", help="a suite name or .toml path: report its runs only")
    parser.add_argument(
        "--store",
        help="results store (.sqlite) or export (.jsonl, .csv, .parquet); "
        "default $BENCH_STORE or results/bench.sqlite",
    )
    parser.add_argument("--out", help="report folder (default reports/SUITE or reports/STORE-NAME)")
    parser.add_argument("--title", help="the report's title")


def run_cli(args: argparse.Namespace) -> int:
    """Write the report; print where. User mistakes raise ``UserError`` (exit code 2)."""
    path, count = make_report(args.suite, args.store, args.out, title=args.title)
    print(f"wrote {path} ({count} runs)")
    return 0


def make_report(
    suite: str | None = None,
    store: str | Path | None = None,
    out: str | Path | None = None,
    *,
    title: str | None = None,
) -> tuple[Path, int]:
    """Write the report of ``suite`` (or of everything) in ``store``.

    Args:
        suite: a suite name or path, or ``None`` for every run in the store.
        store: a store (path or database URL) or an export file; default ``$BENCH_STORE`` or
            ``results/bench.sqlite``.
        out: the report folder; default ``reports/SUITE`` (or the store's file name).
        title: the report's title.

    Returns:
        The markdown file written, and the number of runs it covers.
    """
    from bench.store import default_location

    location = str(store) if store else default_location()
    from bench.report.load import load_results

    results = load_results(location)
    info = None
    if suite:
        from bench.suite import load_suite

        results, info = suite_results(load_suite(suite), results, ref=str(suite))
    return _write(results, info, location, out, title), len(results)


def write_suite_report(suite: Any, store: Any, *, plan: list[RunConfig] | None = None,
                       out: str | Path | None = None) -> Path:
    """The report ``bench suite`` writes when it ends: ``reports/SUITE/README.md``.

    Args:
        suite: the loaded ``bench.suite.Suite``.
        store: the open store the suite wrote to (anything with ``results()``).
        plan: the plan that ran (its seeds and device), to count what is not stored yet.
        out: the report folder (default ``reports/SUITE``).
    """
    results, info = suite_results(suite, list(store.results()), plan=plan)
    return _write(results, info, _store_label(store), out, None)


def _write(results: list[RunResult], info: SuiteInfo | None, location: str,
           out: str | Path | None, title: str | None) -> Path:
    name = info.name if info else Path(location).stem
    out = Path(out) if out else Path("reports") / name
    title = title or (f"Suite `{name}`" if info else f"Results in `{location}`")
    command = reproduce_command(location, out, info, results)
    from bench.report.build import write_report

    return write_report(results, out, title=title, source=location, command=command, suite=info)


def _store_label(store: Any) -> str:
    """A store's path, or its URL with the password hidden."""
    if getattr(store, "path", None) is not None:
        return str(store.path)
    from bench.store import safe_url

    return safe_url(str(getattr(store, "url", "database")))


def suite_results(suite: Any, results: list[RunResult], *, ref: str | None = None,
                  plan: list[RunConfig] | None = None) -> tuple[list[RunResult], SuiteInfo]:
    """The results that belong to ``suite``, and what the report says about the suite.

    A result belongs to the suite when its config equals a planned one up to seed and device
    (so ``--seeds`` and ``--gpus`` variants count; method names compared in today's canonical
    spelling), or when it re-runs such a result with its learned values (its ``parent`` option).

    Args:
        suite: a loaded ``bench.suite.Suite``.
        results: every result of the store.
        ref: how the user named the suite (for the command that reproduces the report).
        plan: the plan that ran; default the suite's plan on each device kind in ``results``.
    """
    if plan is None:
        variants = {(device_kind(str(r.config.get("device", "cpu"))),
                     int((r.config.get("options") or {}).get("jobs_per_gpu", 1)))
                    for r in results} or {("cpu", 1)}
        plan = [c for device, jobs in sorted(variants)
                for c in suite.plan(device=device, jobs_per_gpu=jobs)]
    shapes = {_shape(c) for c in plan}
    members = [r for r in results if _shape(_config(r)) in shapes]
    ids = {r.run_id for r in members}
    members += [r for r in results
                if r.run_id not in ids and (r.config.get("options") or {}).get("parent") in ids]
    # A planned re-run is stored under the id it gets once its parent's values are known.
    stored = {r.run_id for r in results} | {
        f"parent:{(r.config.get('options') or {}).get('parent')}" for r in members}
    tokens = {f"parent:{c.option(LEARNED_FROM)}" if c.option(LEARNED_FROM) else c.run_id
              for c in plan}
    impossible = _impossible_reruns(plan, results, stored)
    text = suite.path.read_text(encoding="utf-8") if suite.path else suite.description
    from bench.report.build import SuiteInfo

    info = SuiteInfo(suite.name, text, planned=len(tokens),
                     pending=len(tokens - stored) - len(impossible), ref=ref or suite.name,
                     impossible=impossible)
    return members, info


def _impossible_reruns(plan: list[RunConfig], results: list[RunResult],
                       stored: set[str]) -> list[str]:
    """Planned re-runs whose parent is stored but whose learned values make no valid run (the
    run queue skips them for the same reason, ``resolve_rerun``'s): not pending, they will never
    be trained."""
    from bench.record import DONE
    from bench.run_queue import resolve_rerun

    by_id = {r.run_id: r for r in results}
    out = []
    for config in plan:
        parent = by_id.get(config.option(LEARNED_FROM) or "")
        if parent is None or parent.status != DONE or f"parent:{parent.run_id}" in stored:
            continue
        rerun, why = resolve_rerun(config, parent)
        if rerun is None:
            reason = why.split(";")[0]  # the first clause: what is wrong
            out.append(f"{config.workload}, plain re-run of {config.method}, seed "
                       f"{config.seed}: {reason}")
    return sorted(out)


def _config(result: RunResult) -> RunConfig:
    from bench.report.structure import canonical_method

    config = RunConfig.from_dict(result.config)
    return dataclasses.replace(config, method=canonical_method(config.method))


def _shape(config: RunConfig) -> str:
    """A config's id with seed and device left out."""
    return dataclasses.replace(config, seed=0, device="cpu").run_id


def reproduce_command(store: str, out: Path, suite: SuiteInfo | None,
                      results: list[RunResult]) -> str:
    """The commands that make these results and this report again."""
    report = ["python", "-m", "bench", "report"]
    if suite is None:
        return shlex.join([*report, "--store", str(store), "--out", str(out)])
    ref = suite.ref
    run = ["python", "-m", "bench", "suite", ref, "--store", str(store)]
    seeds = sorted({int(r.config.get("seed", 0)) for r in results})
    if seeds:
        run += ["--seeds", ",".join(map(str, seeds))]
    if any(str(r.config.get("device", "")).startswith("cuda") for r in results):
        run += ["--gpus", "all"]
    report += [ref, "--store", str(store), "--out", str(out)]
    return shlex.join(run) + "\n" + shlex.join(report)
