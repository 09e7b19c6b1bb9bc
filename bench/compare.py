"""``python -m bench compare BASELINE CANDIDATE [--fail-on ...]``: two result sets, one verdict.

Runs are matched by config (workload, method, budget, device kind and options, then seed),
never by run id (which changes with the code version) nor by device index; method names are
compared in today's canonical spelling, so a baseline written by older code still matches.
Per config the metrics are averaged over the seeds present and ``done`` on both sides, then
compared against the thresholds. A run ``done`` in the baseline but failed, diverged or
interrupted in the candidate is a regression whatever the thresholds. Runs present on one side
only are listed.

Exit codes: 0 no threshold crossed, 1 a regression, 2 bad input (a missing or unreadable
file, a malformed ``--fail-on``, nothing in common between the two sets).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from bench.config import device_kind
from bench.errors import UserError, write_output
from bench.record import DONE, RunResult
from bench.report.load import load_results

DEFAULT_FAIL_ON = "error:+0.5pp,step_time:+20%,memory:+10%"
# Options that say how a run was scheduled, not what it computes: not part of the match.
_SCHEDULING_OPTIONS = ("parent", "learned_from", "jobs_per_gpu")


@dataclass(frozen=True)
class Metric:
    """A compared quantity: how to read it from a run, show it, and which units a threshold takes.

    Every metric is lower-is-better. ``scale`` converts the stored value into the shown unit.
    """

    name: str
    title: str
    read: Callable[[RunResult], float | None]
    unit: str
    scale: float = 1.0
    units: tuple[str, ...] = ("%", "abs")


def _get(section: str, key: str) -> Callable[[RunResult], float | None]:
    def read(r: RunResult) -> float | None:
        return _finite(getattr(r, section).get(key))

    return read


def _memory(r: RunResult) -> float | None:
    """CUDA peak on a GPU, else the optimizer's bytes (peak RSS is the whole process's)."""
    return _finite(r.memory.get("cuda_peak_bytes", r.memory.get("optimizer_bytes")))


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("error", "test error", _get("metrics", "test_error"), "%", 100.0, ("pp", "%")),
        Metric("bpc", "test bits per character", _get("metrics", "test_bpc"), "bpc"),
        Metric("loss", "test loss", _get("metrics", "test_loss"), ""),
        Metric("step_time", "median step time", _get("timing", "step_time_median"), "ms", 1e3),
        Metric("memory", "memory (CUDA peak, else optimizer)", _memory, "MiB", 2.0**-20),
        Metric("cost_seconds", "device-seconds", _get("cost", "device_seconds"), "s"),
    )
}


@dataclass(frozen=True)
class Threshold:
    """``error:+0.5pp``: the candidate may be worse by at most ``amount`` in ``unit``."""

    metric: str
    amount: float
    unit: str  # "pp" (percentage points), "%" (relative), "abs" (the metric's own unit)

    def __str__(self) -> str:
        shown = {"pp": "pp", "%": "%", "abs": " " + METRICS[self.metric].unit}[self.unit]
        return f"{self.metric} +{self.amount:g}{shown.rstrip()}"

    def change(self, base: float, cand: float, metric: Metric) -> float:
        """The candidate's change in this threshold's unit (positive = worse)."""
        if self.unit == "%":
            return math.inf if base == 0 and cand > 0 else 0.0 if base == 0 else (
                100.0 * (cand - base) / abs(base))
        return (cand - base) * metric.scale


def parse_fail_on(text: str) -> list[Threshold]:
    """Parse ``"error:+0.5pp,step_time:+20%,memory:+10%"``.

    Each item is ``METRIC:+AMOUNT[UNIT]``; UNIT is ``pp`` (error only), ``%`` (relative), or
    none (the metric's own unit: ms, MiB, bpc, ...). An empty string gives no thresholds.

    Raises:
        UserError: an unknown metric, a negative or malformed amount, a unit the metric lacks.
    """
    thresholds = []
    for item in (i.strip() for i in text.split(",")):
        if not item:
            continue
        name, colon, amount = (s.strip() for s in item.partition(":"))
        if not colon or name not in METRICS:
            raise UserError(
                f"--fail-on item {item!r} must be METRIC:+AMOUNT[pp|%] with METRIC one of "
                f"{', '.join(METRICS)}; e.g. {DEFAULT_FAIL_ON!r}"
            )
        unit = "pp" if amount.endswith("pp") else "%" if amount.endswith("%") else "abs"
        number = amount.removesuffix("pp").removesuffix("%").strip()
        try:
            value = float(number)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < 0 or number.startswith("-"):
            raise UserError(
                f"--fail-on amount for {name} must be a number >= 0 such as +0.5pp or +20%, "
                f"but got {amount!r} (every metric is lower-is-better; give the allowed increase)"
            )
        if unit not in METRICS[name].units:
            raise UserError(
                f"--fail-on unit {unit!r} does not apply to {name}; use one of "
                f"{', '.join(METRICS[name].units)} (abs = no unit, in {METRICS[name].unit})"
            )
        thresholds.append(Threshold(name, value, unit))
    return thresholds


# ---------------------------------------------------------------------------------------------
# matching


def config_key(result: RunResult) -> tuple[str, ...]:
    """What makes runs comparable, seed aside: workload, method, budget, device kind, options."""
    # Imported here: the method grammar imports torch, which the CLI's start must not (bench
    # suite starts its workers first).
    from bench.report.structure import canonical_method

    c = result.config
    options = {k: v for k, v in (c.get("options") or {}).items() if k not in _SCHEDULING_OPTIONS}
    budget = {k: v for k, v in (c.get("budget") or {}).items() if v is not None}
    return (
        str(c.get("workload")),
        canonical_method(str(c.get("method"))),
        json.dumps(budget, sort_keys=True),
        device_kind(str(c.get("device", "cpu"))),
        json.dumps(options, sort_keys=True, default=str),
    )


def _by_config(results: Iterable[RunResult]) -> dict[tuple[str, ...], dict[int, RunResult]]:
    out: dict[tuple[str, ...], dict[int, RunResult]] = {}
    for r in results:
        out.setdefault(config_key(r), {})[int(r.config.get("seed", 0))] = r
    return out


@dataclass
class Row:
    """One metric of one config: means over the seeds done on both sides."""

    key: tuple[str, ...]
    seeds: int
    base: float
    cand: float
    change: str
    verdict: str
    regression: bool


@dataclass
class Comparison:
    """Everything ``compare`` found; ``regressions`` decides the exit code."""

    thresholds: list[Threshold]
    matched: int = 0
    rows: dict[str, list[Row]] = field(default_factory=dict)
    status_changes: list[tuple[tuple[str, ...], int, str, str, bool]] = field(default_factory=list)
    missing: list[tuple[str, tuple[str, ...], int]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> int:
        rows = sum(r.regression for rows in self.rows.values() for r in rows)
        return rows + sum(1 for *_, bad in self.status_changes if bad)


def compare(baseline: list[RunResult], candidate: list[RunResult],
            thresholds: list[Threshold]) -> Comparison:
    """Match, aggregate over seeds, and judge every metric (see the module docstring)."""
    base, cand = _by_config(baseline), _by_config(candidate)
    result = Comparison(thresholds)
    limits = {t.metric: t for t in thresholds}
    for key in sorted(set(base) | set(cand)):
        b_runs, c_runs = base.get(key, {}), cand.get(key, {})
        for seed in sorted(set(b_runs) - set(c_runs)):
            result.missing.append(("candidate", key, seed))
        for seed in sorted(set(c_runs) - set(b_runs)):
            result.missing.append(("baseline", key, seed))
        common = sorted(set(b_runs) & set(c_runs))
        result.matched += len(common)
        for seed in common:
            b, c = b_runs[seed].status, c_runs[seed].status
            if b != c:
                result.status_changes.append((key, seed, b, c, b == DONE))
        pairs = [(b_runs[s], c_runs[s]) for s in common
                 if b_runs[s].status == DONE and c_runs[s].status == DONE]
        for metric in METRICS.values():
            row = _row(key, pairs, metric, limits.get(metric.name))
            if row is not None:
                result.rows.setdefault(metric.name, []).append(row)
    result.notes += _device_notes(baseline, candidate)
    return result


def _row(key: tuple[str, ...], pairs: list[tuple[RunResult, RunResult]], metric: Metric,
         limit: Threshold | None) -> Row | None:
    values = [(metric.read(b), metric.read(c)) for b, c in pairs]
    values = [(b, c) for b, c in values if b is not None and c is not None]
    if not values:
        return None
    base = sum(b for b, _ in values) / len(values)
    cand = sum(c for _, c in values) / len(values)
    unit = limit.unit if limit else ("pp" if metric.name == "error" else "%")
    probe = limit or Threshold(metric.name, 0.0, unit)
    delta = probe.change(base, cand, metric)
    shown = {"pp": "pp", "%": "%", "abs": " " + metric.unit}[unit].rstrip()
    change = f"{delta:+.2f}{shown}" if math.isfinite(delta) else "+inf%"
    regression = limit is not None and delta > limit.amount + 1e-12
    if limit is None:
        verdict = "—"
    elif regression:
        verdict = f"**REGRESSION** (> +{limit.amount:g}{shown})"
    elif delta < -limit.amount:
        verdict = "better"
    else:
        verdict = "ok"
    return Row(key, len(values), base * metric.scale, cand * metric.scale, change, verdict,
               regression)


def _device_notes(baseline: list[RunResult], candidate: list[RunResult]) -> list[str]:
    def names(rs: list[RunResult]) -> set[str]:
        return {str(r.env.get("device_name")) for r in rs if r.env.get("device_name")}

    b, c = names(baseline), names(candidate)
    if b and c and b != c:
        return [f"Timings come from different devices (baseline: {', '.join(sorted(b))}; "
                f"candidate: {', '.join(sorted(c))}): step_time and memory compare hardware "
                f"as well as code."]
    return []


# ---------------------------------------------------------------------------------------------
# output


def to_markdown(result: Comparison, baseline: str, candidate: str) -> str:
    """The comparison as markdown: verdict, a table per metric, status changes, missing runs."""
    from tabulate import tabulate

    def table(rows: list[list[object]], headers: list[str]) -> str:
        return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)

    verdict = (f"**FAIL**: {result.regressions} regression(s)" if result.regressions
               else "**PASS**: no threshold crossed")
    limits = ", ".join(map(str, result.thresholds)) or "none (report only)"
    parts = [
        f"# Comparison: `{candidate}` against `{baseline}`",
        f"{verdict}. Thresholds: {limits}. Matched {result.matched} runs by config and seed; "
        "metrics are means over the seeds done on both sides.",
        *result.notes,
    ]
    headers = ["workload", "method", "budget", "device", "seeds", "baseline", "candidate",
               "change", "verdict"]
    for name, rows in result.rows.items():
        metric = METRICS[name]
        unit = f" ({metric.unit})" if metric.unit else ""
        body = [[*_key_cells(r.key), r.seeds, f"{r.base:.4g}", f"{r.cand:.4g}", r.change,
                 r.verdict] for r in rows]
        parts.append(f"## {name}: {metric.title}{unit}\n\n" + table(body, headers))
    if result.status_changes:
        body = [[*_key_cells(k), seed, b, c, "**REGRESSION**" if bad else "fixed"]
                for k, seed, b, c, bad in result.status_changes]
        parts.append("## Status changes\n\n" + table(
            body, ["workload", "method", "budget", "device", "seed", "baseline", "candidate",
                   "verdict"]))
    if result.missing:
        body = [[f"missing in {side}", *_key_cells(k), seed] for side, k, seed in result.missing]
        parts.append("## Runs on one side only\n\n" + table(
            body, ["", "workload", "method", "budget", "device", "seed"]))
    return "\n\n".join(parts) + "\n"


def _key_cells(key: tuple[str, ...]) -> list[str]:
    from bench.report.frame import budget_label

    workload, method, budget, device, options = key
    label = budget_label(json.loads(budget))
    if options != "{}":
        label += f" {options}"
    return [workload, method.replace("|", "\\|"), label, device]


# ---------------------------------------------------------------------------------------------
# command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``compare`` subcommand's arguments."""
    parser.add_argument("baseline", help="store (.sqlite) or export (.jsonl, .csv, .parquet)")
    parser.add_argument("candidate", help="store (.sqlite) or export (.jsonl, .csv, .parquet)")
    parser.add_argument(
        "--fail-on",
        default=DEFAULT_FAIL_ON,
        help=f"thresholds METRIC:+AMOUNT[pp|%%], comma-separated; metrics: "
        f"{', '.join(METRICS)} (default {DEFAULT_FAIL_ON.replace('%', '%%')!r}; '' for none)",
    )
    parser.add_argument("--out", type=Path, help="also write the markdown to this file")


def run_cli(args: argparse.Namespace) -> int:
    """Print the comparison; 1 when a threshold is crossed, 0 otherwise (2 via ``UserError``)."""
    thresholds = parse_fail_on(args.fail_on)
    baseline, candidate = load_results(args.baseline), load_results(args.candidate)
    result = compare(baseline, candidate, thresholds)
    if result.matched == 0:
        raise UserError(
            f"no run of {args.candidate!r} matches one of {args.baseline!r} by config "
            f"(workload, method, budget, device kind, seed): compare results of the same suite"
        )
    text = to_markdown(result, str(args.baseline), str(args.candidate))
    sys.stdout.write(text)
    if args.out:
        write_output(args.out, text)
    return 1 if result.regressions else 0


def _finite(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
