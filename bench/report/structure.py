"""What a method name says about its structure: family, base optimizer, height, initial step size.

Names are identities (``bench.methods``): the report groups and labels runs by reading them.
The family comes from the method registry (``bench.methods.families()``) and a tower's levels
from ``hypergrad.parse`` when they accept the name; otherwise (a name stored by an older code
version, gdtuo's spellings) ``hypergrad.grammar``'s lenient reading splits it, so old results stay
readable when the registry has moved on. The template (the name with its initial step size
blanked) is always made from the name's own text, so it prints back as written.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

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

# The registry's family names, mapped to ours (``towers`` is refined by prefix).
_REGISTRY_FAMILIES = {"hd": HD, "schedules": SCHEDULE, "lrfree": LRFREE, "search": SEARCH}
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
    """

    name: str
    family: str
    base: str
    height: int | None
    lr0: float | None
    template: str
    tied_template: str = ""

    @property
    def is_tower_like(self) -> bool:
        """Towers, their reference twin and plain torch.optim: rows of the paper's table."""
        return self.family in (TOWER, TORCH, GDTUO)


@functools.lru_cache(maxsize=4096)
def canonical_method(name: str) -> str:
    """The name as today's registry prints it, or as given if it no longer parses.

    Canonical spellings can change between code versions (``sgd(0.0001)`` -> ``sgd(1e-4)``):
    matching a stored run with a plan or with another result set goes through this.
    """
    try:
        from bench.methods import parse_method

        return parse_method(name).name
    except Exception:  # an old or unknown name stays itself: it still matches its own kind
        return name


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


def _registry_family(name: str) -> str | None:
    """The registry family accepting ``name``, or ``None`` if the registry is unavailable."""
    try:
        from bench.methods import families

        for family in families():
            if family.matches(name):
                return family.name
    except Exception:  # a registry that cannot load must not stop a report: fall back to rules
        return None
    return None


def _fallback_family(name: str, level0: str) -> str:
    """The family by the naming rules of ``bench.methods`` (towers, torch., gdtuo:, -hd, +schedule,
    searches), when the registry cannot say."""
    head = split_call(level0)[0]
    if head in _SEARCH_NAMES:
        return "search"
    if head.endswith("-hd"):
        return "hd"
    if head in _LRFREE_NAMES:
        return "lrfree"
    if len(split_top(name, "+", strict=False)) > 1:
        return "schedules"
    return "towers"


@functools.lru_cache(maxsize=4096)
def method_info(name: str) -> MethodInfo:
    """Read the structure of a method name (cached: reports ask once per run)."""
    body = name.strip()
    prefix = ""
    for marker in ("gdtuo:", "torch."):
        if body.startswith(marker):
            prefix, body = marker, body[len(marker) :]
    main, *schedule = split_top(body, "+", strict=False)
    levels = split_top(main, "/", strict=False)
    registry = _registry_family(name) or _fallback_family(name, levels[0])
    family = _REGISTRY_FAMILIES.get(registry, OTHER)
    if registry == "towers":
        family = {"gdtuo:": GDTUO, "torch.": TORCH}.get(prefix, TOWER)
    head, args = split_call(levels[0])
    base = head.removesuffix("-hd") if family == HD else head
    found = _step_size(args) if family not in (SEARCH, LRFREE) else None
    lr0 = found[1] if found else None
    template = tied = name
    if found:
        tail = "".join(f"+{s}" for s in schedule)
        first = prefix + _with_dot(head, args, found[0])
        template = first + "".join(f"/{lv}" for lv in levels[1:]) + tail
        tied = first + "".join(f"/{_tied(lv, found[1])}" for lv in levels[1:]) + tail
    height = len(levels) - 1 if family in (TOWER, GDTUO) else 0 if family == TORCH else None
    if family in (TOWER, GDTUO):
        parsed = _tower_levels(main)
        if parsed:  # the library's own reading of the spec wins over ours
            height, base, lr0 = len(parsed) - 1, parsed[0][0], parsed[0][1]
    return MethodInfo(name, family, base, height, lr0, template, tied)


def _tied(level: str, lr0: float) -> str:
    """A level with its step size written ``·`` when it equals the initial step size ``lr0``."""
    head, args = split_call(level)
    found = _step_size(args)
    return _with_dot(head, args, found[0]) if found and found[1] == lr0 else level


def _tower_levels(spec: str) -> list[tuple[str, float | None]] | None:
    """``hypergrad.parse``'s levels as (optimizer name, step size), or ``None`` if it cannot."""
    try:
        import hypergrad

        levels = hypergrad.parse(spec)
    except Exception:  # an old or foreign spec (gdtuo's defaults): our reading stands
        return None
    out = []
    for cls, kwargs in levels:
        lr = kwargs.get("lr")
        out.append((cls.__name__.lower(), float(lr) if isinstance(lr, (int, float)) else None))
    return out


def hyper_label(key: str) -> str:
    """``0.lr`` -> ``α``, ``1.lr`` -> ``α@1``, ``0.beta1`` -> ``β1``, ``0.lr[3]`` -> ``α[3]``."""
    level, _, rest = key.partition(".")
    if not rest:
        return key
    bare, bracket, index = rest.partition("[")
    label = GREEK.get(bare, bare) + (f"[{index}" if bracket else "")
    return label if level == "0" else f"{label}@{level}"
