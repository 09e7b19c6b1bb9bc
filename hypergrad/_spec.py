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

Specs are split and their values printed by :mod:`hypergrad.grammar`, the one grammar of the
project's names; this module reads the values, checks them against the families and builds the
tower, its errors naming the position where a spec leaves the grammar.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from hypergrad._arguments import LR_PER
from hypergrad._errors import HypergradError, SpecError
from hypergrad.grammar import closing_bracket, format_value, split_spans

if TYPE_CHECKING:
    from hypergrad._base import Tower

OPTIMIZERS: dict[str, type[Tower]] = {}
"""The optimizer families by spec name, filled by :mod:`hypergrad.tower` (the families import
the base class, which parses a ``hyper=`` spec: a registry rather than an import of them)."""

GRAMMAR = (
    "SPEC = LEVEL ['/' LEVEL ...], bottom level first; LEVEL = NAME or NAME(ARGS); ARGS = [LR] "
    "[, KEY=VALUE ...]; e.g. 'adam(1e-3, learn=lr)/sgd(1e-5)'"
)

_NAME = re.compile(r"[A-Za-z_]\w*")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_KEYWORD = re.compile(r"\s*([A-Za-z_]\w*)\s*=")
# What a spec is made of: numbers, names and punctuation, white space between them.
_LEXICON = re.compile(rf"(?:\s*(?:{_NUMBER.pattern}|{_NAME.pattern}|[()/,=\[\]]))*\s*")
_TRUE, _FALSE = ("true", "True"), ("false", "False")


def _fail(problem: str, spec: str, *, cls: type[Tower] | None = None) -> SpecError:
    names = f"valid optimizers: {', '.join(sorted(OPTIMIZERS))}"
    if cls is not None:
        names = (f"arguments of {cls.name}: {', '.join(_argument_names(cls))}; learnable: "
                 f"{', '.join(cls.learnable)}")
    return SpecError(f"{problem} in spec {spec!r}; {names}; grammar: {GRAMMAR}")


def _argument_names(cls: type[Tower]) -> list[str]:
    return [*cls._spec_defaults(), "learn", "lr_per"]


class _Reader:
    """Reads one spec left to right over the splits of :mod:`hypergrad.grammar` (levels at ``/``,
    arguments and list items at ``,``, outside brackets) into ``[(name, kwargs, positional),
    ...]``; an error names the position where the spec leaves the grammar."""

    def __init__(self, spec: str) -> None:
        self.spec = spec

    def parts(self, sep: str, start: int, end: int) -> list[tuple[int, int]]:
        """``grammar.split_spans`` of ``spec[start:end]``, as positions in the spec."""
        return [(start + a, start + b)
                for a, b in split_spans(self.spec[start:end], sep, strict=False)]

    def skip(self, pos: int, end: int) -> int:
        """The first position from ``pos`` on (``end`` at the most) that is not white space."""
        while pos < end and self.spec[pos].isspace():
            pos += 1
        return pos

    def expected(self, what: str, pos: int) -> SpecError:
        found = "the end"
        if pos < len(self.spec):
            token = _NUMBER.match(self.spec, pos) or _NAME.match(self.spec, pos)
            found = repr(token.group() if token else self.spec[pos])
        return _fail(f"expected {what} at position {pos}, found {found}", self.spec)

    def levels(self) -> list[tuple[str, dict[str, Any], list[Any]]]:
        bad = _LEXICON.match(self.spec).end()
        if bad < len(self.spec):
            raise _fail(f"unexpected character {self.spec[bad]!r} at position {bad}", self.spec)
        if not self.spec.strip():
            raise _fail("empty spec", self.spec)
        return [self.level(start, end) for start, end in self.parts("/", 0, len(self.spec))]

    def level(self, start: int, end: int) -> tuple[str, dict[str, Any], list[Any]]:
        """``NAME`` or ``NAME(ARGS)`` in ``spec[start:end]``."""
        pos = self.skip(start, end)
        m = _NAME.match(self.spec, pos, end)
        if m is None:
            raise self.expected("an optimizer name", pos)
        name = m.group().lower()
        if name not in OPTIMIZERS:
            raise _fail(f"unknown optimizer {m.group()!r}", self.spec)
        kwargs: dict[str, Any] = {}
        positional: list[Any] = []
        pos = self.skip(m.end(), end)
        if pos < end and self.spec[pos] == "(":
            close = closing_bracket(self.spec, pos, end)
            if self.skip(pos + 1, end) != close or self.spec[close] != ")":  # not NAME()
                for a, b in self.parts(",", pos + 1, end if close is None else close):
                    self.argument(name, a, b, kwargs, positional)
            if close is None or self.spec[close] != ")":
                raise self.expected("',' or ')'", end if close is None else close)
            pos = self.skip(close + 1, end)
        if pos < end:
            raise self.expected("'/' or the end of the spec", pos)
        return name, kwargs, positional

    def argument(self, level: str, start: int, end: int, kwargs: dict[str, Any],
                 positional: list[Any]) -> None:
        """``KEY=VALUE``, or the step size first without a name."""
        m = _KEYWORD.match(self.spec, start, end)
        if m is not None:
            key = m.group(1)
            if key in kwargs:
                raise _fail(f"argument {key!r} given twice to {level}", self.spec)
            kwargs[key] = self.value(key, m.end(), end, ")")
            return
        if kwargs or positional:
            raise _fail(
                f"positional argument at position {self.skip(start, end)}: only the step size "
                "comes first without a name; write key=value", self.spec, cls=OPTIMIZERS[level])
        positional.append(self.value("lr", start, end, ")"))

    def value(self, key: str, start: int, end: int, close: str) -> Any:
        """A number, a name (``true``/``false``: a boolean) or a bracketed list of values, alone
        in ``spec[start:end]`` (what follows it must be the ``close`` of the brackets around)."""
        pos = self.skip(start, end)
        if pos < end and self.spec[pos] in "([":
            value, after = self.items(key, pos, end)
        else:
            m = _NUMBER.match(self.spec, pos, end) or _NAME.match(self.spec, pos, end)
            if m is None:
                raise self.expected(f"a value for {key!r}", pos)
            text, after = m.group(), m.end()
            value = (float(text) if _NUMBER.fullmatch(text) else True if text in _TRUE
                     else False if text in _FALSE else text)
        if self.skip(after, end) < end:
            raise self.expected(f"',' or {close!r}", self.skip(after, end))
        return value

    def items(self, key: str, start: int, end: int) -> tuple[tuple[Any, ...], int]:
        """The values of the list opening at ``start`` (a trailing comma allowed) and the
        position after its closing bracket."""
        close = ")" if self.spec[start] == "(" else "]"
        at = closing_bracket(self.spec, start, end)
        closed = at is not None and self.spec[at] == close
        parts = self.parts(",", start + 1, end if at is None else at)
        if closed and len(parts) > 1 and not self.spec[slice(*parts[-1])].strip():
            parts.pop()  # a trailing comma
        items = tuple(self.value(key, a, b, close) for a, b in parts)
        if at is None or not closed:
            raise self.expected(f"',' or {close!r}", end if at is None else at)
        return items, at + 1


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
    for name, args, positional in _Reader(spec).levels():
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
