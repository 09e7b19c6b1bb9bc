"""The grammar of method and optimizer names: split, parse a call, format a value.

Every name of the project is built from one shape: calls ``head(arg, key=value, ...)`` joined by a
separator outside brackets (``/`` between the levels of a tower, ``+`` between an optimizer and
its schedule, ``,`` between arguments). These names are the run ids, so they are read and printed
in one place: here. This is the bottom layer of ``hypergrad``, ``baselines`` and ``bench``: it
imports nothing of the project, so each of them can use it without an import cycle.

Contracts:

- ``split_top(text, sep)`` splits at ``sep`` only at bracket depth 0 (``()``, ``[]`` and ``{}``
  all nest), strips every part and keeps empty parts (``"a,,b"`` -> ``["a", "", "b"]``); a text
  without ``sep`` is one part. Strict (the default) raises ``GrammarError`` on an unbalanced
  bracket; ``strict=False`` never raises (for names stored by older code versions).
  ``split_spans`` gives where the same parts are, ``closing_bracket`` where a bracket closes: the
  positions a reader's error messages name (``hypergrad``'s tower specs).
- ``split_call(text)`` is the lenient reading of one call: ``head(items)`` -> ``(head, items)``
  with the top-level items as written (empty ones dropped); a text that does not end in ``)``
  is a bare head. It never raises.
- ``parse_call(text)`` is the strict reading: the head is a name (letters, digits, ``_``, ``.``,
  ``-``), positional arguments come before keyword ones, no keyword twice, no empty argument;
  values stay raw text (each family converts its own). Errors are ``GrammarError`` (a
  ``ValueError``) whose message says how to write a call. ``join_call`` is its inverse:
  ``join_call(c.head, c.items())`` reads back as ``c``.
- ``format_value(value)`` is the canonical text of a value. Two places need another spelling,
  kept by explicit options because the text is part of run ids that must not change:
  ``brackets="[]"`` for the baselines' lists (``at=[30, 60]``, where hypergrad writes tuples
  ``learn=(lr, beta1)``), and ``python=True`` for ``torch.optim`` arguments, which are Python
  literals (``torch.sgd(lr=1.0, nesterov=True)``: floats keep ``.0``, booleans are ``True``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

OPEN, CLOSE = "([{", ")]}"
_HEAD = re.compile(r"^\s*([A-Za-z_][\w.\-]*)\s*(?:\((.*)\))?\s*$", re.DOTALL)
_KEY = re.compile(r"[A-Za-z_]\w*")
CALL_USAGE = "a method is written name or name(key=value, ...), e.g. sgd-hd(lr=1e-3, beta=1e-3)"


class GrammarError(ValueError):
    """A name that does not follow the grammar; the message says where and how to write it."""


@dataclass(frozen=True)
class Call:
    """A parsed ``head(args)``: positional and keyword arguments as raw (stripped) text."""

    head: str
    args: tuple[str, ...] = ()
    kwargs: tuple[tuple[str, str], ...] = ()

    def items(self) -> list[str]:
        """The arguments as written canonically: positional ones, then ``key=value``."""
        return [*self.args, *(f"{k}={v}" for k, v in self.kwargs)]


def split_spans(text: str, sep: str, *, strict: bool = True) -> list[tuple[int, int]]:
    """Where ``split_top``'s parts are: ``(start, end)`` of each in ``text``, before stripping
    (for a reader that says at which position a name stops following the grammar).

    Raises:
        GrammarError: (``strict`` only) as ``split_top``.
    """
    spans, depth, start, i = [], 0, 0, 0
    while i < len(text):
        ch = text[i]
        if ch in OPEN:
            depth += 1
        elif ch in CLOSE:
            depth -= 1
            if depth < 0 and strict:
                raise GrammarError(f"unbalanced {ch!r} at position {i} in {text!r}")
        elif depth == 0 and text.startswith(sep, i):
            # An exponent sign (1e+3) is never at depth 0 in a name, so no special case.
            spans.append((start, i))
            start = i + len(sep)
            i = start
            continue
        i += 1
    if depth != 0 and strict:
        raise GrammarError(f"unbalanced '(' in {text!r}; close every parenthesis")
    spans.append((start, len(text)))
    return spans


def split_top(text: str, sep: str, *, strict: bool = True) -> list[str]:
    """Split ``text`` at ``sep`` outside brackets: ``a(1,2)/b`` -> ``["a(1,2)", "b"]`` on ``/``.

    Raises:
        GrammarError: (``strict`` only) a closing bracket without its opening one, or an opening
            one never closed.
    """
    return [text[start:end].strip() for start, end in split_spans(text, sep, strict=strict)]


def closing_bracket(text: str, start: int, end: int | None = None) -> int | None:
    """The index of the bracket that closes the one at ``text[start]`` (every kind nests, as in
    ``split_top``), or ``None`` when it is not closed before ``end``."""
    depth = 0
    for i in range(start, len(text) if end is None else end):
        if text[i] in OPEN:
            depth += 1
        elif text[i] in CLOSE:
            depth -= 1
            if depth == 0:
                return i
    return None


def split_call(text: str) -> tuple[str, list[str]]:
    """``adam(lr=1e-3, beta1=0.9)`` -> ``("adam", ["lr=1e-3", "beta1=0.9"])``, never raising."""
    text = text.strip()
    if "(" not in text or not text.endswith(")"):
        return text, []
    head, _, inner = text.partition("(")
    return head.strip(), [a for a in split_top(inner[:-1], ",", strict=False) if a]


def parse_call(text: str) -> Call:
    """Parse ``head``, ``head()`` or ``head(1e-3, beta=0.9, at=[30, 60])`` into a ``Call``.

    Raises:
        GrammarError: not a call, unbalanced brackets, an empty argument, a positional argument
            after a keyword one, or a keyword given twice.
    """
    m = _HEAD.match(text)
    if m is None:
        raise GrammarError(f"cannot read {text!r}: {CALL_USAGE}")
    head, inner = m.group(1), m.group(2)
    args: list[str] = []
    kwargs: list[tuple[str, str]] = []
    if inner is not None and inner.strip():
        for item in split_top(inner, ","):
            key, eq, value = item.partition("=")
            if eq and _KEY.fullmatch(key.strip()):
                if key.strip() in dict(kwargs):
                    raise GrammarError(f"parameter {key.strip()!r} given twice in {text!r}")
                kwargs.append((key.strip(), value.strip()))
            elif kwargs:
                raise GrammarError(f"positional argument {item!r} after keyword arguments in "
                                   f"{text!r}; write it as key=value")
            elif not item:
                raise GrammarError(f"empty argument in {text!r}")
            else:
                args.append(item)
    return Call(head, tuple(args), tuple(kwargs))


def join_call(head: str, items: Iterable[str]) -> str:
    """``head(a, k=v)`` from a head and argument texts; a bare ``head`` when there are none."""
    items = list(items)
    return f"{head}({', '.join(items)})" if items else head


def format_value(value: Any, *, brackets: str = "()", python: bool = False) -> str:
    """The canonical text of a value, as every name of the project prints it.

    Numbers: Python's shortest round-trip spelling (``repr``) with the exponent unpadded
    (``1e-05`` -> ``1e-5``, ``1e+16`` -> ``1e16``); integral floats without a fraction (``1.0``
    -> ``1``), an ``int`` as itself: ``0.001``, ``1e-5``, ``0.9``, ``100``. Booleans are
    ``true``/``false``; a tuple or list is its items in ``brackets``; anything else its ``str``.

    Args:
        brackets: the two characters around a sequence: ``()`` for hypergrad's tuples,
            ``[]`` for the baselines' lists.
        python: Python literals, as ``torch.optim`` names spell their arguments: floats keep
            ``repr``'s fraction (``1.0``), booleans are ``True``/``False``, strings are quoted;
            only a tuple is spelt item by item (a list, which no canonical name holds, is its
            ``repr``).
    """
    if isinstance(value, bool):
        return repr(value) if python else ("true" if value else "false")
    if isinstance(value, float):
        integral = not python and math.isfinite(value) and value == int(value)
        if integral and abs(value) < 1e15:
            return str(int(value))
        mantissa, e, exponent = repr(value).partition("e")
        return f"{mantissa}e{int(exponent)}" if e else mantissa
    if isinstance(value, tuple) or (isinstance(value, list) and not python):
        inner = ", ".join(format_value(v, brackets=brackets, python=python) for v in value)
        return f"{brackets[0]}{inner}{brackets[1]}"
    return repr(value) if python else str(value)
