"""``python -m bench``: the command line.

One function per subcommand (``cmd_<name>(args) -> int``) and one function that declares its
arguments (``<name>_arguments(parser)``); ``COMMANDS`` is the table that wires them. To add a
subcommand, write the two functions and add a ``Command`` row.

Exit codes: 0 success; 1 a run failed (its record is stored); 2 a user mistake (one line on
stderr, ``error: ...``, no traceback); 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from bench.arguments import positive, seeds_type, store_argument
from bench.config import Budget, RunConfig
from bench.errors import UserError
from bench.record import FAILED, INTERRUPTED, RunResult

EXIT_OK, EXIT_FAILED, EXIT_USER, EXIT_INTERRUPTED = 0, 1, 2, 130


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line and exit code 2 (no usage dump)."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        sys.exit(EXIT_USER)


# ---------------------------------------------------------------------------------------------
# list


def list_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "what", nargs="?", choices=("workloads", "methods", "suites"), help="only this section"
    )


def cmd_list(args: argparse.Namespace) -> int:
    """Workloads, method families (with examples) and suites, a line each."""
    sections = [args.what] if args.what else ["workloads", "methods", "suites"]
    for section in sections:
        print(f"{section}:")
        if section == "workloads":
            from bench.workloads import WORKLOADS

            for name, cls in WORKLOADS.items():
                print(f"  {name}: {cls.description}")
                print(textwrap.fill(f"source: {cls.source}", width=100, initial_indent=" " * 6,
                                    subsequent_indent=" " * 6))
        elif section == "methods":
            from bench.methods import describe_methods

            print(describe_methods())
        else:
            from bench.suite import available_suites

            for name, description in available_suites().items():
                print(f"  {name}: {description}")
    return EXIT_OK


# ---------------------------------------------------------------------------------------------
# run


def run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workload", required=True, help="a workload (see `list workloads`)")
    parser.add_argument("--method", required=True, help='e.g. "adam/sgd(1e-5)" (see `list`)')
    parser.add_argument("--seeds", type=seeds_type, default=[0], help="0,1,2 or 0-2 (default 0)")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--epochs", type=positive(float, "--epochs"), help="training epochs")
    budget.add_argument("--steps", type=positive(int, "--steps"), help="optimizer steps")
    parser.add_argument(
        "--seconds", type=positive(float, "--seconds"), help="also stop after this much step time"
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    store_argument(parser)
    parser.add_argument("--force", action="store_true", help="re-train runs already stored")


def cmd_run(args: argparse.Namespace) -> int:
    """Train (or report, if stored) one run per seed; one summary line per run."""
    from bench.methods import parse_method
    from bench.store import open_store
    from bench.train import holdout, load_data, resolve_device
    from bench.workloads import get_workload

    # Every name is checked before anything trains.
    workload = get_workload(args.workload)
    method = parse_method(args.method)
    device = resolve_device(args.device)
    budget = Budget(steps=args.steps, epochs=args.epochs, seconds=args.seconds)
    configs = [
        RunConfig(args.workload, method.name, seed, budget, args.device) for seed in args.seeds
    ]
    status = EXIT_OK
    with open_store(args.store) as store:
        store.check_writable()  # a store that cannot take the result: before anything trains
        for i, config in enumerate(configs, 1):
            if store.has(config.run_id) and not args.force:
                result = store.get(config.run_id)
                assert result is not None
                print(summary_line(result, workload.metric, cached=True), flush=True)
                continue
            load_data(workload, device, config.seed, holdout(config))  # missing data: fail early
            print(
                f"[{i}/{len(configs)}] {config.workload} {config.method} seed {config.seed}"
                f" ({budget.label()}, {config.device}) id {config.run_id}",
                file=sys.stderr,
                flush=True,
            )
            start = time.perf_counter()
            # A search keeps its Optuna study beside (or, for a URL, in) this store.
            result = _train_with_progress(config, store, args.store)
            wall = time.perf_counter() - start
            store.put(result)
            print(summary_line(result, workload.metric, wall=wall), flush=True)
            if result.status == FAILED:
                status = EXIT_FAILED
    return status


def _train_with_progress(config: RunConfig, store: Any, location: str | None) -> RunResult:
    """The worker's ``train_or_fail`` under a tqdm bar; Ctrl-C records the run as
    ``interrupted`` and re-raises.

    Args:
        store: the open store, for the ``interrupted`` record.
        location: where it is (``--store``; ``None``: the default), which a search's study
            follows.
    """
    from tqdm import tqdm

    from bench import measure
    from bench.worker import train_or_fail

    started = measure.now_iso()
    bar = tqdm(total=None, unit="step", dynamic_ncols=True, leave=False, disable=None)

    def progress(step: int, total: int, info: dict[str, Any]) -> None:
        if step == 0:
            bar.reset(total=total)
            plan = info.get("plan")
            if plan is not None:  # the derived numbers, printed once (also in logs)
                tqdm.write(
                    f"  {plan.total_steps} steps ({plan.steps_per_epoch} per epoch), batch "
                    f"{plan.batch_size}, evaluation every {plan.eval_every} steps",
                    file=sys.stderr,
                )
            return
        bar.update(step - bar.n)
        bar.set_postfix(loss=f"{info['loss']:.4g}", epoch=f"{info['epoch']:.2f}", refresh=False)

    try:
        return train_or_fail(config, progress=progress, store=location)
    except KeyboardInterrupt:
        if store.has(config.run_id):  # --force: keep the earlier result rather than lose it
            raise
        store.put(
            RunResult(
                config.run_id,
                config.to_dict(),
                INTERRUPTED,
                env=measure.environment(config.device, started),
                error="interrupted by the user",
            )
        )
        raise
    finally:
        bar.close()


def summary_line(
    result: RunResult, metric: str = "error", *, wall: float | None = None, cached: bool = False
) -> str:
    """``<id> <status> <workload> <method> seed=N test_error=... steps=... train=... step=...``.

    ``train`` is the timed step time (the run's cost), ``wall`` the whole run with evaluations.
    """
    config = result.config
    parts = [
        result.run_id,
        f"{result.status:<8}",
        config.get("workload", "?"),
        config.get("method", "?"),
        f"seed={config.get('seed')}",
    ]
    key = f"test_{metric}"
    if key in result.metrics:
        parts.append(f"{key}={result.metrics[key]:.4f}")
    parts.append(f"steps={int(result.cost.get('steps', 0))}")
    if "device_seconds" in result.cost:
        parts.append(f"train={result.cost['device_seconds']:.1f}s")
    if wall is not None:
        parts.append(f"wall={wall:.1f}s")
    if "step_time_median" in result.timing:
        parts.append(f"step={result.timing['step_time_median'] * 1e3:.2f}ms")
    if result.error:
        parts.append(f"({result.error})")
    if cached:
        parts.append("[stored, not re-trained; --force to re-train]")
    return "  ".join(parts)


# ---------------------------------------------------------------------------------------------
# export


def export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format", choices=("csv", "parquet", "jsonl"), default="csv",
        help="csv/parquet: flat final numbers; jsonl: complete records with curves (baselines)",
    )
    store_argument(parser)
    parser.add_argument("--out", type=Path, help="output file (default: results/bench.<format>)")
    parser.add_argument(
        "--checkpoint", action="store_true",
        help="first fold the store's write-ahead log (the -wal file) into the .sqlite file, so "
        "that the file alone holds every run (then it can be copied on its own)",
    )


def cmd_export(args: argparse.Namespace) -> int:
    """Every stored run as a flat table (CSV or Parquet) or as complete records (JSON lines)."""
    from bench.errors import output_path
    from bench.store import open_store, store_exists

    if args.store is not None and not store_exists(args.store):
        raise UserError(f"no results store at {str(args.store)!r}; run something first")
    out = output_path(args.out or Path("results") / f"bench.{args.format}", "export file")
    # Exporting only reads (a store on a read-only mount exports); --checkpoint writes.
    with open_store(args.store, readonly=not args.checkpoint) as store:
        if args.checkpoint and hasattr(store, "checkpoint"):
            store.checkpoint()
            print(f"checkpointed {store.path}: the file alone holds every run")
        n = len(store)
        if args.format == "jsonl":
            from bench.report.load import write_jsonl

            path = write_jsonl(store.results(), out)
        else:
            path = store.export(out, args.format)
    print(f"wrote {n} runs to {path}")
    return EXIT_OK


# ---------------------------------------------------------------------------------------------
# suite (bench/executors/command.py)


def suite_arguments(parser: argparse.ArgumentParser) -> None:
    from bench.executors.command import add_arguments

    add_arguments(parser)


def cmd_suite(args: argparse.Namespace) -> int:
    """Train a suite's runs over GPUs or CPU workers, resuming, then write its report."""
    from bench.executors.command import run_cli

    return run_cli(args)


# ---------------------------------------------------------------------------------------------
# report and compare (bench/report/, bench/compare.py)


def report_arguments(parser: argparse.ArgumentParser) -> None:
    from bench.report.command import add_arguments

    add_arguments(parser)


def cmd_report(args: argparse.Namespace) -> int:
    """Write a markdown report with figures for a suite or a whole store."""
    from bench.report.command import run_cli

    return run_cli(args)


def compare_arguments(parser: argparse.ArgumentParser) -> None:
    from bench.compare import add_arguments

    add_arguments(parser)


def cmd_compare(args: argparse.Namespace) -> int:
    """Compare a candidate result set with a baseline; exit 1 on a regression."""
    from bench.compare import run_cli

    return run_cli(args)


# ---------------------------------------------------------------------------------------------
# the table of subcommands


@dataclass(frozen=True)
class Command:
    """A subcommand: its name, one-line help, argument declaration and implementation."""

    name: str
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


COMMANDS: list[Command] = [
    Command("list", "workloads, methods and suites, a line each", list_arguments, cmd_list),
    Command("run", "train runs (one per seed) and store them", run_arguments, cmd_run),
    Command("export", "stored results as CSV or Parquet", export_arguments, cmd_export),
    Command("suite", "train a suite of runs over GPUs or CPU workers (resumes)", suite_arguments,
            cmd_suite),
    Command("report", "a markdown report with figures (a suite's runs, or a store)",
            report_arguments, cmd_report),
    Command("compare", "compare results with a baseline; exit 1 on a regression",
            compare_arguments, cmd_compare),
]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m bench",
        description="hypergrad-bench: hyperoptimizer towers against their baselines",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for command in COMMANDS:
        p = sub.add_parser(command.name, help=command.help, description=command.help)
        command.arguments(p)
        p.set_defaults(run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code.

    Every failure that is not a run's is one line on stderr and exit 2: a ``UserError`` as
    its message; an environment fault (a disk, a database, memory) as what failed; anything
    else as one line naming a log file that holds its traceback.
    """
    import sqlite3

    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USER
    except KeyboardInterrupt:
        print("error: interrupted; stored runs are kept, run again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as e:
        where = f" ({e.filename})" if e.filename else ""
        print(f"error: {e.strerror or e}{where}; check the path, its permissions and the free "
              "space", file=sys.stderr)
        return EXIT_USER
    except sqlite3.DatabaseError as e:
        print(f"error: the results store failed: {e}; check the --store file", file=sys.stderr)
        return EXIT_USER
    except MemoryError:
        print("error: out of memory; give a smaller plan (fewer seeds, runs or workers)",
              file=sys.stderr)
        return EXIT_USER
    except Exception as e:  # a bug: one line here, the traceback in a file
        log = _write_traceback()
        print(f"error: internal error {type(e).__name__}: {' '.join(str(e).split())[:200]} "
              f"(traceback in {log}; please report it)", file=sys.stderr)
        return EXIT_USER


def _write_traceback() -> str:
    """The current exception's traceback in a new file under the temporary folder."""
    import tempfile
    import traceback

    with tempfile.NamedTemporaryFile("w", prefix="bench-error-", suffix=".log",
                                     delete=False) as f:
        traceback.print_exc(file=f)
    return f.name
