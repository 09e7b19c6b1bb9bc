"""What a method name says about its structure: family, base optimizer, height, initial step size.

Names are identities (``bench.methods``): the report groups and labels runs by them. What a
method is (family, base optimizer, height, initial step size, a search's budget and sampler)
comes from its parse, ``bench.methods.parse_method(name).meta()``; a name the registry no longer
parses (stored by an older code version) is read by ``hypergrad.grammar``'s lenient splitting
and the naming rules, so old results stay readable when the registry has moved on. The template
(the name with its initial step size blanked) is always made from the name's own text, so it
prints back as written.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from hypergrad.grammar import split_call, split_top

# Families as the report names them. ``towers`` of the registry splits into three by prefix.
TOWER = "tower"  # hypergrad towers, height 0 included: ``adam(lr=1e-3)/sgd(1e-5)``
TORCH = "torch"  # plain torch.optim: ``torch.sgd(lr=0.1)``
GDTUO = "gdtuo"  # the paper's reference implementation: ``gdtuo:adam/sgd(1e-5)``
HD = "hd"  # Baydin et al.: ``sgd-hd(...)``
SCHEDULE = "schedule"  # torch.optim + lr_scheduler: ``sgd(lr=0.1)+cosine(...)``
LRFREE = "lrfree"  # ``prodigy``, ``dadapt-adam``, ...
SEARCH = "search"  # ``tpe(...)``, ``grid(...)``, ...
OTHER = "other"

FAMILY_TITLES = {
    TOWER: "hypergrad towers",
    TORCH: "plain torch.optim",
    GDTUO: "reference gdtuo towers",
    HD: "hypergradient descent (Baydin et al.)",
    SCHEDULE: "fixed schedules",
    LRFREE: "learning-rate-free",
    SEARCH: "hyperparameter search",
    OTHER: "other",
}

# Heads of the names of families without a step size, for names the registry no longer parses.
_SEARCH_NAMES = ("grid", "random", "tpe", "gp", "cmaes")
_LRFREE_NAMES = ("prodigy", "dadapt-adam", "dadapt-sgd", "schedulefree-adamw", "schedulefree-sgd")

# Symbols for the hyperparameter names used in tables.
GREEK = {"lr": "α", "momentum": "μ", "beta1": "β1", "beta2": "β2", "alpha": "γ", "gamma": "γ"}


@dataclass(frozen=True)
class MethodInfo:
    """The structure of one method name.

    Attributes:
        name: the method name as stored.
        family: one of the family constants above.
        base: the level-0 optimizer (``sgd``, ``adam``, ...), or the method's own name for
            families without one (``prodigy``, ``tpe``).
        height: number of hyperoptimizers above level 0 (towers and gdtuo; 0 for plain torch),
            else ``None``.
        lr0: the initial level-0 step size written in the name, else ``None``.
        template: the name with the level-0 step size replaced by ``·``: runs that differ only in
            their initial step size share a template (one line of a sensitivity plot).
        tied_template: the name with every level's step size that equals the initial one
            replaced by ``·``: the template of a grid whose levels all start at the same step
            size (``adam(1e-3)/adam(1e-3)``, as the paper's sensitivity study runs them).
        budget: a search's budget in single runs, else ``None``.
        sampler: a search's sampler (``tpe``), else ``None``.
    """

    name: str
    family: str
    base: str
    height: int | None
    lr0: float | None
    template: str
    tied_template: str = ""
    budget: float | None = None
    sampler: str | None = None

    @property
    def is_tower_like(self) -> bool:
        """Towers, their reference twin and plain torch.optim: rows of the paper's table."""
        return self.family in (TOWER, TORCH, GDTUO)


@functools.lru_cache(maxsize=4096)
def _parsed(name: str) -> Any | None:
    """The registry's parse of ``name`` (a ``bench.methods.Method``), or ``None`` if it no longer
    parses (a name stored by an older code version) or the registry cannot load."""
    try:
        from bench.methods import parse_method

        return parse_method(name)
    except Exception:  # an old or unknown name stays readable by the text rules below
        return None


def canonical_method(name: str) -> str:
    """The name as today's registry prints it, or as given if it no longer parses.

    Canonical spellings can change between code versions (``sgd(0.0001)`` -> ``sgd(1e-4)``):
    matching a stored run with a plan or with another result set goes through this.
    """
    parsed = _parsed(name)
    return name if parsed is None else parsed.name


def _step_size(args: list[str]) -> tuple[int, float] | None:
    """The index and value of the step size in an argument list: ``lr=`` or the first positional."""
    for i, arg in enumerate(args):
        key, eq, value = arg.partition("=")
        if (eq and key.strip() == "lr") or (not eq and i == 0):
            try:
                return i, float(value if eq else key)
            except ValueError:
                return None
    return None


def _with_dot(head: str, args: list[str], index: int) -> str:
    """Rebuild ``head(args)`` with the step size at ``index`` written as ``·``."""
    key, eq, _ = args[index].partition("=")
    shown = [*args[:index], f"{key.strip()}=·" if eq else "·", *args[index + 1 :]]
    return f"{head}({', '.join(shown)})"


def _meta_from_text(prefix: str, levels: list[str], schedule: list[str]) -> tuple:
    """(family, base, height, lr0) by the naming rules of ``bench.methods``, for a name the
    registry no longer parses: towers, ``torch.``, ``gdtuo:``, ``-hd``, ``+schedule``,
    searches."""
    head, args = split_call(levels[0])
    if head in _SEARCH_NAMES:
        return SEARCH, head, None, None
    if head in _LRFREE_NAMES:
        return LRFREE, head, None, None
    found = _step_size(args)
    lr0 = found[1] if found else None
    if head.endswith("-hd"):
        return HD, head.removesuffix("-hd"), None, lr0
    if schedule:
        return SCHEDULE, head, None, lr0
    family = {"gdtuo:": GDTUO, "torch.": TORCH}.get(prefix, TOWER)
    return family, head, 0 if family == TORCH else len(levels) - 1, lr0


@functools.lru_cache(maxsize=4096)
def method_info(name: str) -> MethodInfo:
    """Read the structure of a method name (cached: reports ask once per name).

    What the method is comes from its parse (``Method.meta``); the templates from its text."""
    body = name.strip()
    prefix = ""
    for marker in ("gdtuo:", "torch."):
        if body.startswith(marker):
            prefix, body = marker, body[len(marker) :]
    main, *schedule = split_top(body, "+", strict=False)
    levels = split_top(main, "/", strict=False)
    parsed = _parsed(name)
    budget = sampler = None
    if parsed is not None:
        meta = parsed.meta()
        family, base, height, lr0 = meta.family, meta.base, meta.height, meta.lr0
        budget, sampler = meta.budget, meta.sampler
    else:
        family, base, height, lr0 = _meta_from_text(prefix, levels, schedule)
    template = tied = name
    head, args = split_call(levels[0])
    found = _step_size(args) if family not in (SEARCH, LRFREE) else None
    if found:
        tail = "".join(f"+{s}" for s in schedule)
        first = prefix + _with_dot(head, args, found[0])
        template = first + "".join(f"/{lv}" for lv in levels[1:]) + tail
        tied = first + "".join(f"/{_tied(lv, found[1])}" for lv in levels[1:]) + tail
    return MethodInfo(name, family, base, height, lr0, template, tied, budget, sampler)


def _tied(level: str, lr0: float) -> str:
    """A level with its step size written ``·`` when it equals the initial step size ``lr0``."""
    head, args = split_call(level)
    found = _step_size(args)
    return _with_dot(head, args, found[0]) if found and found[1] == lr0 else level


def hyper_label(key: str) -> str:
    """``0.lr`` -> ``α``, ``1.lr`` -> ``α@1``, ``0.beta1`` -> ``β1``, ``0.lr[3]`` -> ``α[3]``."""
    level, _, rest = key.partition(".")
    if not rest:
        return key
    bare, bracket, index = rest.partition("[")
    label = GREEK.get(bare, bare) + (f"[{index}" if bracket else "")
    return label if level == "0" else f"{label}@{level}"
