"""Finding and reading suite files: a shipped suite by name or any TOML file by path, parsed
into a ``Suite``; every mistake is an error naming the file, the line and the key (see
``bench.suite`` for the format)."""

from __future__ import annotations

import itertools
import math
import re
from pathlib import Path
from typing import Any

from bench.config import Budget
from bench.errors import UserError, unknown_name
from bench.suite.dependent import LEARNED_FROM
from bench.suite.plan import Group, Suite

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

__all__ = [
    "BUDGET_KEYS", "GROUP_KEYS", "OPTION_RULES", "RESERVED_OPTIONS", "RUN_OPTIONS", "SUITE_KEYS",
    "SUITES_DIR", "available_suites", "load_suite", "suite_path",
]

SUITES_DIR = Path(__file__).parent.parent / "suites"

SUITE_KEYS = ("description", "seeds", "budgets", "options", "group")
GROUP_KEYS = (
    "label", "workloads", "methods", "seeds", "budgets", "options", "vary", "rerun_learned"
)
BUDGET_KEYS = ("steps", "epochs", "seconds")
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
