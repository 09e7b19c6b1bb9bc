"""Method names with parameters: ``name(a=1, b=0.9)``, parsed, checked and printed back canonically.

Names are identities: the canonical form lists the parameters in their declared order, keyword
style, with the ones that always matter (``shown``) always printed and the others only when they
differ from their default. ``parse`` then ``format`` round-trips: ``format(parse(s))`` parses to
the same values. Errors are ``ValueError`` whose message lists the valid names and parameters.
The text itself (splitting, reading a call, printing a value) is ``hypergrad.grammar``'s; this
module adds what a baseline's name means: its signature, conversions and checks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from hypergrad.grammar import Call, format_value, parse_call, split_top

# The baselines write lists in square brackets (``at=[30, 60]``): part of their run ids.
LIST = "[]"
_TRUE, _FALSE = ("true", "yes", "on"), ("false", "no", "off")


@dataclass(frozen=True)
class Param:
    """One parameter of a named method.

    Attributes:
        name: the keyword.
        kind: ``float``, ``int``, ``bool``, ``str`` or ``list`` (a list of floats, ``[a, b]``).
        default: its value when not given; ``None`` means "not set" (printed only when given).
        check: a predicate on the converted value, with ``rule`` saying what it requires.
        rule: the requirement in words, e.g. ``"> 0"`` or ``"in [0, 1)"``.
        choices: for ``str``, the valid values.
        shown: always printed in the canonical name (the parameters that define the method).
        doc: a few words for the error messages and the CLI.
    """

    name: str
    kind: str = "float"
    default: Any = None
    check: Callable[[Any], bool] | None = None
    rule: str = ""
    choices: tuple[str, ...] = ()
    shown: bool = False
    doc: str = ""

    def describe(self) -> str:
        if self.choices:
            return f"{self.name}={{{'|'.join(self.choices)}}}"
        default = "" if self.default is None else f"={format_value(self.default, brackets=LIST)}"
        return f"{self.name}{default}"


@dataclass(frozen=True)
class Signature:
    """The parameters a method name accepts, in canonical order (positional order too)."""

    name: str
    params: tuple[Param, ...] = field(default_factory=tuple)
    doc: str = ""

    def describe(self) -> str:
        """``name(p1=default, p2={a|b})``: what the error messages list."""
        if not self.params:
            return self.name
        return f"{self.name}({', '.join(p.describe() for p in self.params)})"

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        valid = ", ".join(p.name for p in self.params) or "none"
        raise ValueError(
            f"unknown parameter {name!r} for {self.name}; valid parameters: {valid} "
            f"(usage: {self.describe()})"
        )


def convert(param: Param, raw: str, where: str) -> Any:
    """Convert one raw argument to ``param.kind`` and check it; the error says the rule."""
    text = raw.strip()
    try:
        value = _convert(param, text)
    except ValueError:
        rule = " (finite, at most 3.4e38: float32)" if param.kind == "float" else ""
        raise ValueError(
            f"{where}: {param.name} must be a {param.kind}{rule}, but got {param.name}={text}"
        ) from None
    if param.choices and value not in param.choices:
        raise ValueError(
            f"{where}: {param.name} must be one of {', '.join(param.choices)}, "
            f"but got {param.name}={text}"
        )
    if param.check is not None and not param.check(value):
        raise ValueError(f"{where}: {param.name} must be {param.rule}, but got {param.name}={text}")
    return value


FLOAT32_MAX = 3.4028234663852886e38


def _convert(param: Param, text: str) -> Any:
    if param.kind == "float":
        value = float(text)
        if not math.isfinite(value) or abs(value) > FLOAT32_MAX:  # hyperparameters are float32
            raise ValueError(text)
        return value
    if param.kind == "int":
        value = float(text)
        if value != int(value):
            raise ValueError(text)
        return int(value)
    if param.kind == "bool":
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ValueError(text)
    if param.kind == "list":
        inner = text[1:-1] if text.startswith("[") and text.endswith("]") else text
        return tuple(float(x) for x in split_top(inner, ",") if x)
    return text


def bind(sig: Signature, call: Call) -> dict[str, Any]:
    """Match a call's arguments to ``sig``: every parameter gets a value (default or given)."""
    where = sig.name
    if len(call.args) > len(sig.params):
        raise ValueError(
            f"{where} takes at most {len(sig.params)} positional arguments, but got "
            f"{len(call.args)}; usage: {sig.describe()}"
        )
    values = {p.name: p.default for p in sig.params}
    given = list(zip((p.name for p in sig.params), call.args, strict=False)) + list(call.kwargs)
    seen: set[str] = set()
    for key, raw in given:
        param = sig.param(key)
        if key in seen:
            raise ValueError(f"{where}: parameter {key!r} given twice; give it once")
        seen.add(key)
        values[key] = convert(param, raw, where)
    return values


def format_call(sig: Signature, values: dict[str, Any]) -> str:
    """The canonical name: shown parameters always, the others only when not at their default."""
    parts = []
    for p in sig.params:
        value = values.get(p.name, p.default)
        if value is None:
            continue
        if p.shown or value != p.default:
            parts.append(f"{p.name}={format_value(value, brackets=LIST)}")
    return f"{sig.name}({', '.join(parts)})" if parts else sig.name


def parse(text: str, signatures: Sequence[Signature], kind: str = "method") -> tuple[
    Signature, dict[str, Any]
]:
    """Parse one ``name(args)`` against a set of signatures; an unknown name lists them all."""
    call = parse_call(text)
    for sig in signatures:
        if sig.name == call.head:
            return sig, bind(sig, call)
    listing = "; ".join(s.describe() for s in signatures)
    raise ValueError(f"unknown {kind} {call.head!r}; valid {kind}s: {listing}")


# Small predicates shared by the signatures.
def positive(x: float) -> bool:
    return x > 0


def non_negative(x: float) -> bool:
    return x >= 0


def unit_interval(x: float) -> bool:
    """In [0, 1): a momentum or a beta."""
    return 0 <= x < 1


def fraction(x: float) -> bool:
    """In [0, 1]: a fraction of training."""
    return 0 <= x <= 1
