"""The spec strings of towers, in the paper's notation: ``adam(1e-3, learn=lr)/sgd(1e-5)``.

A spec lists the levels bottom first, joined by ``/``: the leftmost optimizer trains the model,
each next one trains the hyperparameters of the one on its left, the last one is fixed. Each level
is ``name`` or ``name(args)``; the only positional argument is the step size ``lr``; the others
are ``key=value``: numbers (``1e-5``, ``0.9``), booleans (``true``/``false``), names
(``lr_per=tensor``) and, for ``learn``, one name or a parenthesised list (``learn=(lr, beta1)``).

``str(tower)`` prints the canonical spec: ``lr`` positional and always shown, the other arguments
in the optimizer's order when they differ from their default, ``learn``/``lr_per`` only below the
top level (they mean nothing at the top) and only when not the default; numbers in their shortest
round-trip spelling with short exponents (``1e-5``, ``0.001``), as every method name of the
project. It parses back to the same tower.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from hypergrad._arguments import LR_PER
from hypergrad._errors import HypergradError, SpecError

if TYPE_CHECKING:
    from hypergrad._base import Tower

OPTIMIZERS: dict[str, type[Tower]] = {}
"""The optimizer families by spec name, filled by :mod:`hypergrad.tower` (the families import
the base class, which parses a ``hyper=`` spec: a registry rather than an import of them)."""

GRAMMAR = (
    "SPEC = LEVEL ['/' LEVEL ...], bottom level first; LEVEL = NAME or NAME(ARGS); ARGS = [LR] "
    "[, KEY=VALUE ...]; e.g. 'adam(1e-3, learn=lr)/sgd(1e-5)'"
)

_TOKEN = re.compile(
    r"\s*(?:(?P<number>[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)|(?P<name>[A-Za-z_]\w*)"
    r"|(?P<punct>[()/,=\[\]]))"
)
_TRUE, _FALSE = ("true", "True"), ("false", "False")


# ---------------------------------------------------------------------------------------------
# Printing


def format_value(value: Any) -> str:
    """The canonical text of a spec value, as every method name of the project prints numbers.

    Numbers: Python's shortest round-trip spelling (``repr``), the exponent without padding
    (``1e-05`` -> ``1e-5``), integral values without a fraction (``1.0`` -> ``1``): ``0.001``,
    ``1e-5``, ``0.9``, ``100``. Booleans are ``true``/``false``; a tuple of names is ``(a, b)``.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        value = float(value)
        if value == int(value) and abs(value) < 1e15:
            return str(int(value))
        mantissa, e, exponent = repr(value).partition("e")
        return f"{mantissa}e{int(exponent)}" if e else mantissa
    if isinstance(value, (tuple, list)):
        return "(" + ", ".join(format_value(v) for v in value) + ")"
    return str(value)


# ---------------------------------------------------------------------------------------------
# Parsing


def _fail(problem: str, spec: str, *, cls: type[Tower] | None = None) -> SpecError:
    names = f"valid optimizers: {', '.join(sorted(OPTIMIZERS))}"
    if cls is not None:
        names = (f"arguments of {cls.name}: {', '.join(_argument_names(cls))}; learnable: "
                 f"{', '.join(cls.learnable)}")
    return SpecError(f"{problem} in spec {spec!r}; {names}; grammar: {GRAMMAR}")


def _argument_names(cls: type[Tower]) -> list[str]:
    return [*cls._spec_defaults(), "learn", "lr_per"]


def _tokens(spec: str) -> list[tuple[str, str, int]]:
    """``(kind, text, position)`` triples; kind is number, name or the punctuation itself."""
    out, pos = [], 0
    while pos < len(spec):
        if spec[pos:].strip() == "":
            break
        m = _TOKEN.match(spec, pos)
        if m is None:
            bad = spec[pos:].lstrip()[:1]
            where = pos + len(spec[pos:]) - len(spec[pos:].lstrip())
            raise _fail(f"unexpected character {bad!r} at position {where}", spec)
        kind = m.lastgroup or ""
        text = m.group(kind)
        out.append((text if kind == "punct" else kind, text, m.start(kind)))
        pos = m.end()
    out.append(("end", "", len(spec)))
    return out


class _Parser:
    """Recursive descent over the tokens of one spec; builds ``[(name, args), ...]``."""

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self.tokens = _tokens(spec)
        self.i = 0

    def peek(self) -> tuple[str, str, int]:
        return self.tokens[self.i]

    def take(self, kind: str, what: str) -> tuple[str, str, int]:
        token = self.peek()
        if token[0] != kind:
            found = "the end" if token[0] == "end" else repr(token[1])
            raise _fail(f"expected {what} at position {token[2]}, found {found}", self.spec)
        self.i += 1
        return token

    def levels(self) -> list[tuple[str, dict[str, Any], list[Any]]]:
        if self.peek()[0] == "end":
            raise _fail("empty spec", self.spec)
        out = [self.level()]
        while self.peek()[0] == "/":
            self.i += 1
            out.append(self.level())
        self.take("end", "'/' or the end of the spec")
        return out

    def level(self) -> tuple[str, dict[str, Any], list[Any]]:
        _, name, _ = self.take("name", "an optimizer name")
        if name.lower() not in OPTIMIZERS:
            raise _fail(f"unknown optimizer {name!r}", self.spec)
        kwargs: dict[str, Any] = {}
        positional: list[Any] = []
        if self.peek()[0] == "(":
            self.i += 1
            if self.peek()[0] != ")":
                self.argument(name, kwargs, positional)
                while self.peek()[0] == ",":
                    self.i += 1
                    self.argument(name, kwargs, positional)
            self.take(")", "',' or ')'")
        return name.lower(), kwargs, positional

    def argument(self, level: str, kwargs: dict[str, Any], positional: list[Any]) -> None:
        kind, text, pos = self.peek()
        if kind == "name" and self.tokens[self.i + 1][0] == "=":
            self.i += 2
            if text in kwargs:
                raise _fail(f"argument {text!r} given twice to {level}", self.spec)
            kwargs[text] = self.value(text)
            return
        if kwargs or positional:
            raise _fail(
                f"positional argument at position {pos}: only the step size comes first without "
                "a name; write key=value", self.spec, cls=OPTIMIZERS[level])
        positional.append(self.value("lr"))

    def value(self, key: str) -> Any:
        kind, text, pos = self.peek()
        if kind == "number":
            self.i += 1
            return float(text)
        if kind == "name":
            self.i += 1
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            return text
        if kind in ("(", "["):
            close = ")" if kind == "(" else "]"
            self.i += 1
            items = [self.value(key)]
            while self.peek()[0] == ",":
                self.i += 1
                if self.peek()[0] == close:
                    break
                items.append(self.value(key))
            self.take(close, f"',' or {close!r}")
            return tuple(items)
        found = "the end" if kind == "end" else repr(text)
        raise _fail(f"expected a value for {key!r} at position {pos}, found {found}", self.spec)


def _level_kwargs(cls: type[Tower], args: dict[str, Any], positional: list[Any],
                  spec: str) -> dict[str, Any]:
    """Spec arguments of one level -> constructor keyword arguments."""
    if positional:
        if "lr" in args:
            raise _fail(f"argument 'lr' given twice to {cls.name}", spec, cls=cls)
        args = {"lr": positional[0], **args}
    for alias, name in cls.spec_aliases.items():
        if alias in args:
            if name in args:
                raise _fail(f"{alias!r} and {name!r} name the same argument of {cls.name}: give "
                            "one", spec, cls=cls)
            args = {(name if k == alias else k): v for k, v in args.items()}
    valid = _argument_names(cls)
    for key in args:
        if key not in valid:
            raise _fail(f"unknown argument {key!r} for {cls.name}", spec, cls=cls)
    defaults = cls._spec_defaults()
    for key, value in args.items():
        if key == "learn":
            names = (value,) if isinstance(value, str) else value
            if not isinstance(names, tuple) or not all(isinstance(n, str) for n in names):
                raise _fail(f"learn must be a name or a list of names, but got {value!r}", spec,
                            cls=cls)
        elif key == "lr_per":
            if value not in LR_PER:
                raise _fail(f"lr_per must be one of {', '.join(LR_PER)}, but got {value!r}",
                            spec, cls=cls)
        elif isinstance(defaults[key], bool):
            if not isinstance(value, bool):
                raise _fail(f"{key} must be true or false, but got {value!r}", spec, cls=cls)
        elif not isinstance(value, float) or not math.isfinite(value):
            raise _fail(f"{key} must be a number, but got {format_value(value)}", spec, cls=cls)
    extra = {k: args.pop(k) for k in ("learn", "lr_per") if k in args}
    return {**cls._spec_to_config(args), **extra}


def parse(spec: str) -> list[tuple[type[Tower], dict[str, Any]]]:
    """The levels of a spec, bottom first: ``(class, constructor keyword arguments)``.

    Raises:
        SpecError: the spec is malformed, or names an unknown optimizer or argument.
    """
    if not isinstance(spec, str):
        raise SpecError(f"a spec is a string, but got {type(spec).__name__}; grammar: {GRAMMAR}")
    out = []
    for name, args, positional in _Parser(spec).levels():
        cls = OPTIMIZERS[name]
        out.append((cls, _level_kwargs(cls, args, positional, spec)))
    return out


def build(spec: str, params: Iterable[Any] | None) -> Tower:
    """The tower of a spec over ``params`` (``None``: unbound), its errors as spec errors."""
    levels = parse(spec)
    above: Tower | None = None
    for k in range(len(levels) - 1, -1, -1):  # the top level first: each is the hyper of the next
        cls, kwargs = levels[k]
        try:
            above = cls(params if k == 0 else None, **kwargs, hyper=above)
        except SpecError:
            raise
        except HypergradError as e:
            raise _fail(f"level {k} ({cls.name}): {str(e).split(': ', 1)[-1]}", spec,
                        cls=cls) from None
    assert above is not None
    return above


def unbound(spec: str) -> Tower:
    """The tower of a spec without parameters (to pass as ``hyper=``, or to print)."""
    return build(spec, None)


def canonical(spec: str) -> str:
    """The canonical form of a spec (what ``str()`` of its tower prints), checking it fully.

    >>> canonical("adam(lr=1e-3, learn=lr) / sgd(1e-05)")
    'adam(0.001, learn=lr)/sgd(1e-5)'
    """
    return str(unbound(spec))
