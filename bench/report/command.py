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

from bench.config import RunConfig, device_kind
from bench.record import RunResult
from bench.report.build import SuiteInfo, write_report
from bench.report.load import load_results


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
    """Write the report of ``suite`` (or of everything) in ``store``; what ``bench suite`` calls.

    Args:
        suite: a suite name or path, or ``None`` for every run in the store.
        store: a store or export file; default ``$BENCH_STORE`` or ``results/bench.sqlite``.
        out: the report folder; default ``reports/SUITE`` (or the store's file name).
        title: the report's title.

    Returns:
        The markdown file written, and the number of runs it covers.
    """
    from bench.store import default_path

    store = Path(store) if store else default_path()
    results = load_results(store)
    info = None
    if suite:
        results, info = suite_results(str(suite), results)
    name = info.name if info else store.stem
    out = Path(out) if out else Path("reports") / name
    title = title or (f"Suite `{name}`" if info else f"Results in `{store}`")
    command = reproduce_command(store, out, info, results)
    path = write_report(results, out, title=title, source=str(store), command=command, suite=info)
    return path, len(results)


def suite_results(name: str, results: list[RunResult]) -> tuple[list[RunResult], SuiteInfo]:
    """The results that belong to suite ``name``, and what the report says about the suite.

    A result belongs to the suite when its config equals a planned one up to seed and device
    (so ``--seeds`` and ``--gpus`` variants count), or when it re-runs such a result (its
    ``parent`` option).
    """
    from bench.suite import load_suite

    suite = load_suite(name, validate=False)
    variants = {(device_kind(str(r.config.get("device", "cpu"))),
                 int((r.config.get("options") or {}).get("jobs_per_gpu", 1)))
                for r in results} or {("cpu", 1)}
    planned: set[str] = set()
    shapes: set[str] = set()
    for device, jobs in sorted(variants):
        for config in suite.plan(device=device, jobs_per_gpu=jobs):
            planned.add(config.run_id)
            shapes.add(_shape(config))
    members = [r for r in results if _shape(_config(r)) in shapes]
    ids = {r.run_id for r in members}
    members += [r for r in results
                if r.run_id not in ids and (r.config.get("options") or {}).get("parent") in ids]
    text = suite.path.read_text(encoding="utf-8") if suite.path else suite.description
    return members, SuiteInfo(suite.name, text, frozenset(planned), ref=name)


def _config(result: RunResult) -> RunConfig:
    return RunConfig.from_dict(result.config)


def _shape(config: RunConfig) -> str:
    """A config's id with seed and device left out."""
    return dataclasses.replace(config, seed=0, device="cpu").run_id


def reproduce_command(store: Path, out: Path, suite: SuiteInfo | None,
                      results: list[RunResult]) -> str:
    """The commands that make these results and this report again."""
    report = ["python", "-m", "bench", "report"]
    if suite is None:
        return shlex.join([*report, "--store", str(store), "--out", str(out)])
    ref = suite.ref or suite.name
    run = ["python", "-m", "bench", "suite", ref, "--store", str(store)]
    seeds = sorted({int(r.config.get("seed", 0)) for r in results})
    if seeds:
        run += ["--seeds", ",".join(map(str, seeds))]
    if any(str(r.config.get("device", "")).startswith("cuda") for r in results):
        run += ["--gpus", "all"]
    report += [ref, "--store", str(store), "--out", str(out)]
    return shlex.join(run) + "\n" + shlex.join(report)
