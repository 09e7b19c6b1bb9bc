"""Suites: TOML files that expand to a plan of runs.

A suite file (``bench/suites/NAME.toml``) holds a one-line ``description``, suite-wide defaults
(``seeds``, ``budgets``, ``options``) and one or more ``[[group]]`` tables. Each group expands to
workloads x methods x seeds x budgets; its own ``seeds``, ``budgets`` and ``options`` override the
defaults (``options`` are merged). Example::

    description = "two towers on the MLP"
    seeds = [0, 1, 2]
    budgets = [{ epochs = 30 }]
    options = { batch_size = 256 }

    [[group]]
    label = "table 1"
    workloads = ["mnist-mlp"]
    methods = ["sgd({lr})", "sgd({lr})/sgd(1e-4)"]
    vary = { lr = [0.01, 0.1] }     # fills {lr}: one method per value
    rerun_learned = true            # also re-run the plain optimizer with the learned values

Unknown keys are errors that name the file, the line and the key; unknown workloads and methods
are errors listing the valid names, raised when the suite is loaded, before any run starts.

A *dependent* run (``rerun_learned``) is planned as a ``RunConfig`` whose ``method`` is its
parent's method and whose options hold ``learned_from = <parent run id>``; once the parent is
stored, ``resolve_dependent`` turns it into the concrete run: the parent's level-0 optimizer with
the parent's final learned values (``metrics["hyper/0.lr"]`` ...), with ``parent = <id>`` in its
options. Its id is therefore known only after the parent ran.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.config import Budget, RunConfig
from bench.errors import UserError, unknown_name
from bench.record import RunResult

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

SUITES_DIR = Path(__file__).parent / "suites"

SUITE_KEYS = ("description", "seeds", "budgets", "options", "group")
GROUP_KEYS = (
    "label", "workloads", "methods", "seeds", "budgets", "options", "vary", "rerun_learned"
)
BUDGET_KEYS = ("steps", "epochs", "seconds")
# The option a dependent run carries until its parent's learned values are known.
LEARNED_FROM = "learned_from"
# Options the suite may not set: the scheduler owns them.
RESERVED_OPTIONS = ("jobs_per_gpu", "parent", LEARNED_FROM)
# The run options the training loop reads (``bench.train``; ``storage``: a search's Optuna
# storage). Every option is part of the run id, so a misspelt one would silently make new runs
# that differ in nothing: it is an error instead. (Kept here, not read from bench.train: checking a
# suite must not import torch.)
RUN_OPTIONS = ("batch_size", "eval_every", "hyper_every", "check_every", "warmup_steps",
               "diverge_factor", "holdout", "storage")



def _whole(low: int) -> Any:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and low <= v <= 10**9


def _real(check: Any) -> Any:
    return lambda v: (isinstance(v, (int, float)) and not isinstance(v, bool)
                      and math.isfinite(v) and check(v))


# What each run option must be (the training loop checks them again, but only once a run starts:
# a suite file's mistake is caught here with its file, line and key).
OPTION_RULES: dict[str, tuple[Any, str]] = {
    "batch_size": (_whole(1), "a whole number >= 1"),
    "eval_every": (_real(lambda v: v > 0), "a number of epochs > 0"),
    "hyper_every": (_whole(1), "a whole number of steps >= 1"),
    "check_every": (_whole(1), "a whole number of steps >= 1"),
    "warmup_steps": (_whole(0), "a whole number of steps >= 0"),
    "diverge_factor": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
                       and v > 0, "a number > 0 (inf turns the test off)"),
    "holdout": (_real(lambda v: 0 <= v < 1), "a fraction in [0, 1)"),
    "storage": (lambda v: isinstance(v, str) and bool(v), "an Optuna storage URL or path"),
}


@dataclass(frozen=True)
class Group:
    """One ``[[group]]`` of a suite, defaults applied and ``vary`` expanded."""

    label: str
    workloads: tuple[str, ...]
    methods: tuple[str, ...]
    seeds: tuple[int, ...]
    budgets: tuple[Budget, ...]
    options: tuple[tuple[str, Any], ...] = ()
    rerun_learned: bool = False
    line: int = 0

    def configs(self, seeds: tuple[int, ...] | None, device: str,
                extra: dict[str, Any] | None = None) -> list[RunConfig]:
        """The group's runs: workloads x methods x seeds x budgets, dependents after parents.

        ``extra`` options (the scheduler's) are added to every run before ids are taken, so a
        dependent's ``learned_from`` names its parent's final id.
        """
        options = tuple(sorted((dict(self.options) | (extra or {})).items()))
        out: list[RunConfig] = []
        dependents: list[RunConfig] = []
        for workload, method, seed, budget in itertools.product(
            self.workloads, self.methods, seeds or self.seeds, self.budgets
        ):
            config = RunConfig(workload, method, seed, budget, device, options)
            out.append(config)
            if self.rerun_learned and is_hyperoptimized(method):
                dependents.append(config.with_options(**{LEARNED_FROM: config.run_id}))
        return out + dependents


@dataclass(frozen=True)
class Suite:
    """A loaded suite: its name, description, file and groups."""

    name: str
    description: str
    path: Path
    groups: tuple[Group, ...] = field(default_factory=tuple)

    def plan(
        self,
        seeds: tuple[int, ...] | list[int] | None = None,
        device: str = "cpu",
        jobs_per_gpu: int = 1,
    ) -> list[RunConfig]:
        """Every run of the suite, each once, parents before their dependents.

        Args:
            seeds: replaces every group's seeds when given (``--seeds``).
            device: ``"cpu"`` or ``"cuda"`` (the index is the scheduler's business).
            jobs_per_gpu: runs sharing one GPU; above 1 (on a GPU) it is recorded in each run's
                options, so it is part of the id: shared timings never stand in for exclusive ones.
        """
        seeds = tuple(seeds) if seeds else None
        extra: dict[str, Any] = {}
        if jobs_per_gpu > 1 and device.startswith("cuda"):
            extra["jobs_per_gpu"] = jobs_per_gpu
        seen: set[str] = set()
        plan: list[RunConfig] = []
        for group in self.groups:
            for config in group.configs(seeds, device, extra):
                if config.run_id not in seen:
                    seen.add(config.run_id)
                    plan.append(config)
        return plan


# --- finding and loading suites -------------------------------------------------------------


def available_suites() -> dict[str, str]:
    """The shipped suites: name -> one-line description."""
    out = {}
    for path in sorted(SUITES_DIR.glob("*.toml")):
        with open(path, "rb") as f:
            out[path.stem] = str(tomllib.load(f).get("description", ""))
    return out


def suite_path(name_or_path: str | Path) -> Path:
    """A suite file by name (``smoke``) or by path (``my/suite.toml``)."""
    text = str(name_or_path)
    path = Path(text)
    if path.suffix == ".toml" or "/" in text or path.is_file():
        if not path.is_file():
            raise UserError(f"suite file {text!r} does not exist; give a shipped suite's name "
                            f"({', '.join(available_suites())}) or the path of a .toml file")
        return path
    shipped = SUITES_DIR / f"{text}.toml"
    if not shipped.is_file():
        raise unknown_name("suite", text, list(available_suites()))
    return shipped


def load_suite(name_or_path: str | Path, *, validate: bool = True) -> Suite:
    """Load a suite by name or path.

    Args:
        name_or_path: a shipped suite's name or the path of a TOML file.
        validate: check every workload and method name (they must be registered).

    Raises:
        UserError: an unknown suite, a malformed file (naming file, line and key), an unknown
            workload or method (listing the valid names).
    """
    path = suite_path(name_or_path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        line = path.read_bytes()[: e.start].count(b"\n") + 1
        raise UserError(f"{path}:{line}: not UTF-8 text (byte {e.start}); save the suite file "
                        "as UTF-8") from None
    except OSError as e:
        raise UserError(f"cannot read suite file {str(path)!r}: {e.strerror or e}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{path}: not valid TOML: {e}") from None
    return _Parser(path, text, validate).suite(data)


class _Parser:
    """Turns the TOML data of one file into a ``Suite``, errors naming file, line and key."""

    def __init__(self, path: Path, text: str, validate: bool) -> None:
        self.path, self.lines, self.validate = path, text.splitlines(), validate
        self.group_lines = [
            i + 1 for i, line in enumerate(self.lines) if re.match(r"\s*\[\[\s*group\s*\]\]", line)
        ]

    # errors ------------------------------------------------------------------------------

    def line_of(self, key: str, start: int = 1) -> int:
        """The first line at or after ``start`` where ``key`` is assigned (0 when not found)."""
        pattern = re.compile(rf'(^|[{{,\s])"?{re.escape(key)}"?\s*=')
        for i in range(max(start, 1) - 1, len(self.lines)):
            if pattern.search(self.lines[i].split("#")[0]):
                return i + 1
        return 0

    def error(self, message: str, key: str, start: int = 1) -> UserError:
        line = self.line_of(key, start) or start
        return UserError(f"{self.path}:{line}: {message}")

    def check_keys(self, table: dict[str, Any], valid: tuple[str, ...], where: str,
                   start: int = 1) -> None:
        for key in table:
            if key not in valid:
                raise self.error(
                    f"unknown key {key!r} in {where}; valid keys: {', '.join(valid)}", key, start
                )

    # the suite -----------------------------------------------------------------------------

    def suite(self, data: dict[str, Any]) -> Suite:
        self.check_keys(data, SUITE_KEYS, "the suite")
        description = data.get("description", "")
        if not isinstance(description, str):
            raise self.error("description must be a string", "description")
        defaults = {
            "seeds": self.seeds(data.get("seeds", [0]), 1),
            "budgets": self.budgets(data.get("budgets", [{}]), 1),
            "options": self.options(data.get("options", {}), 1),
        }
        groups = data.get("group")
        if not isinstance(groups, list) or not groups or not all(
            isinstance(g, dict) for g in groups
        ):
            line = self.line_of("group") or 1
            raise UserError(f"{self.path}:{line}: a suite needs at least one [[group]] table "
                            "with workloads and methods (write [[group]] on a line of its own)")
        parsed = tuple(self.group(g, i, defaults) for i, g in enumerate(groups))
        return Suite(self.path.stem, description, self.path, parsed)

    def group(self, g: dict[str, Any], index: int, defaults: dict[str, Any]) -> Group:
        start = self.group_lines[index] if index < len(self.group_lines) else 1
        self.check_keys(g, GROUP_KEYS, f"[[group]] number {index + 1}", start)
        for key in ("workloads", "methods"):
            value = g.get(key)
            if not isinstance(value, list) or not value or not all(
                isinstance(x, str) for x in value
            ):
                raise self.error(f"[[group]] number {index + 1} needs {key}, a non-empty list "
                                 f"of names such as [\"mnist-mlp\"], but got {value!r}", key, start)
        methods = self.expand(g["methods"], g.get("vary", {}), start)
        options = dict(defaults["options"]) | dict(self.options(g.get("options", {}), start))
        group = Group(
            label=str(g.get("label", f"group {index + 1}")),
            workloads=tuple(g["workloads"]),
            methods=methods,
            seeds=self.seeds(g["seeds"], start) if "seeds" in g else defaults["seeds"],
            budgets=self.budgets(g["budgets"], start) if "budgets" in g else defaults["budgets"],
            options=tuple(sorted(options.items())),
            rerun_learned=self.flag(g.get("rerun_learned", False), "rerun_learned", start),
            line=start,
        )
        return self.validated(group) if self.validate else group

    # values ---------------------------------------------------------------------------------

    def seeds(self, value: Any, start: int) -> tuple[int, ...]:
        if not isinstance(value, list) or not value or len(value) > 10_000 or not all(
            isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= 2**63 - 1 for s in value
        ):
            raise self.error("seeds must be a non-empty list (at most 10,000) of integers in "
                             f"0..2**63-1, but got {value!r}"[:300], "seeds", start)
        return tuple(value)

    def budgets(self, value: Any, start: int) -> tuple[Budget, ...]:
        if not isinstance(value, list) or not value:
            raise self.error("budgets must be a non-empty list of tables such as "
                             f"{{ steps = 100 }}, but got {value!r}", "budgets", start)
        out = []
        for b in value:
            if not isinstance(b, dict):
                raise self.error(f"each budget must be a table, but got {b!r}", "budgets", start)
            self.check_keys(b, BUDGET_KEYS, "a budget", start)
            try:
                out.append(Budget(**b))
            except (UserError, TypeError) as e:
                raise self.error(str(e), "budgets", start) from None
        return tuple(out)

    def options(self, value: Any, start: int) -> tuple[tuple[str, Any], ...]:
        if not isinstance(value, dict):
            raise self.error(f"options must be a table, but got {value!r}", "options", start)
        for key in value:
            if key in RESERVED_OPTIONS:
                raise self.error(f"option {key!r} is set by the scheduler, not by a suite; "
                                 "remove it", key, start)
            if self.validate and key not in RUN_OPTIONS:
                raise self.error(f"unknown option {key!r}; valid options: {', '.join(RUN_OPTIONS)}",
                                 key, start)
            rule = OPTION_RULES.get(key)
            if rule is not None and not rule[0](value[key]):
                raise self.error(f"option {key} must be {rule[1]}, but got {key} = "
                                 f"{value[key]!r}", key, start)
        return tuple(sorted(value.items()))

    def flag(self, value: Any, key: str, start: int) -> bool:
        if not isinstance(value, bool):
            raise self.error(f"{key} must be true or false, but got {value!r}", key, start)
        return value

    def expand(self, methods: list[str], vary: Any, start: int) -> tuple[str, ...]:
        """Fill ``{name}`` placeholders from ``vary`` (every combination), in file order."""
        if not isinstance(vary, dict) or not all(
            isinstance(v, list) and v for v in vary.values()
        ):
            raise self.error("vary must be a table of non-empty lists, such as "
                             f"{{ lr = [0.01, 0.1] }}, but got {vary!r}", "vary", start)
        out: list[str] = []
        for method in methods:
            names = re.findall(r"\{(\w+)\}", method)
            for name in names:
                if name not in vary:
                    raise self.error(f"method {method!r} uses {{{name}}} but vary has no "
                                     f"{name!r}; add it to vary", "methods", start)
            keys = sorted(set(names))
            for values in itertools.product(*(vary[k] for k in keys)):
                filled = {k: _fmt(v) for k, v in zip(keys, values, strict=True)}
                out.append(re.sub(r"\{(\w+)\}", lambda m, f=filled: f[m.group(1)], method))
        return tuple(dict.fromkeys(out))

    def validated(self, group: Group) -> Group:
        """Check workloads and methods against the registries; methods become canonical."""
        from bench.methods import describe_methods, parse_method
        from bench.workloads import WORKLOADS

        for w in group.workloads:
            if w not in WORKLOADS:
                err = unknown_name("workload", w, list(WORKLOADS))
                raise self.error(str(err), "workloads", group.line)
        canonical = []
        for m in group.methods:
            try:
                canonical.append(parse_method(m).name)
            except UserError as e:
                message = str(e)
                if "valid methods" not in message:  # a family's own error: show them all
                    message += f"\nvalid methods:\n{describe_methods()}"
                raise self.error(f"in method {m!r}: {message}", "methods", group.line) from None
        return Group(**{**group.__dict__, "methods": tuple(dict.fromkeys(canonical))})


def _fmt(value: Any) -> str:
    return format(value, "g") if isinstance(value, float) else str(value)


# --- dependent runs: the plain optimizer re-run with a parent's learned values -------------


def _levels(spec: str) -> list[str]:
    """A tower spec's levels, leftmost first (``/`` outside brackets, ``hypergrad.grammar``)."""
    # Imported here: hypergrad's package imports torch, and loading a suite must not.
    from hypergrad.grammar import split_top

    return split_top(spec, "/", strict=False)


def is_hyperoptimized(method: str) -> bool:
    """A tower of height >= 1 (``/`` outside parentheses): its level-0 hyperparameters are learned.

    Schedules (``+``), HD, learning-rate-free and search methods have no top-level ``/``.
    """
    body = method.removeprefix("gdtuo:")
    return len(_levels(body)) > 1


def learned_values(result: RunResult) -> dict[str, float]:
    """The parent's final level-0 learned hyperparameters, ``{"lr": ..., "beta1": ...}``.

    Per-group or per-tensor values (``hyper/0.lr[3]``) have no single plain counterpart and are
    left out.
    """
    out = {}
    for key, value in result.metrics.items():
        m = re.fullmatch(r"hyper/0\.(\w+)", key)
        if m:
            out[m.group(1)] = float(value)
    return out


def plain_method(parent_method: str, values: dict[str, float]) -> str:
    """The parent's level-0 optimizer as a height-0 method, its hyperparameters set to ``values``.

    ``adam(lr=1e-3)/sgd(1e-5)`` with ``{"lr": 0.0021}`` gives ``adam(lr=0.0021)``; keyword
    arguments of level 0 that were not learned are kept, a leading positional one (the step size)
    is replaced when ``lr`` was learned. What the level above learned (``learn=``, ``lr_per=``, or
    a ``^...`` marker) is dropped: nothing is above it any more.
    """
    prefix = ""
    body = parent_method
    if body.startswith("gdtuo:"):
        prefix, body = "gdtuo:", body[len("gdtuo:"):]
    from hypergrad.grammar import split_call

    head, args = split_call(_levels(body)[0])
    m = re.fullmatch(r"([\w.\-]+)(\^[^()]*)?", head)
    if not m:
        raise UserError(f"cannot read the level-0 optimizer of {parent_method!r}")
    name = m.group(1)
    kept: dict[str, str] = {}
    for i, arg in enumerate(args):
        if "=" in arg:
            k, v = (s.strip() for s in arg.split("=", 1))
            if k not in ("learn", "lr_per"):  # what a level above learns: no level above now
                kept[k] = v
        elif i == 0:
            kept["lr"] = arg
    for k, v in values.items():
        # Six significant digits: the learned values as the paper reports them, and a short name.
        kept[k] = format(float(f"{v:.6g}"), "g")
    ordered = (["lr"] if "lr" in kept else []) + sorted(k for k in kept if k != "lr")
    return f"{prefix}{name}({', '.join(f'{k}={kept[k]}' for k in ordered)})"


def resolve_dependent(config: RunConfig, parent: RunResult) -> RunConfig:
    """The concrete run of a dependent ``config`` once its parent's result is stored.

    Raises:
        UserError: the parent learned nothing that can be re-run (no ``hyper/0.*`` metrics).
    """
    values = learned_values(parent)
    if not values:
        raise UserError(f"run {parent.run_id} ({config.method}) recorded no level-0 learned "
                        "hyperparameters (metrics hyper/0.*); its plain re-run cannot be made")
    from bench.methods import parse_method

    method = parse_method(plain_method(config.method, values)).name
    options = {k: v for k, v in config.options if k != LEARNED_FROM}
    options["parent"] = config.option(LEARNED_FROM)
    return RunConfig(config.workload, method, config.seed, config.budget, config.device,
                     tuple(sorted(options.items())))
