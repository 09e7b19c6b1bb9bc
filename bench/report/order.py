"""The order methods are listed in, in every table and figure of a report.

Base optimizers come in the order of Chandra et al.'s Table 1, the other families after them; a
group's rows go by tower height, family, tower shape and initial step size.
"""

from __future__ import annotations

from bench.report import structure as st

# Order of base optimizers in the paper's table, and of the other families after them.
BASE_ORDER = ("sgd", "adam", "adamw", "adagrad", "rmsprop")
FAMILY_ORDER = (st.TORCH, st.TOWER, st.GDTUO, st.HD, st.SCHEDULE, st.LRFREE, st.SEARCH, st.OTHER)


def base_rank(base: str) -> tuple[int, str]:
    """A base optimizer's place: the paper's order, then any other base by name."""
    return (BASE_ORDER.index(base) if base in BASE_ORDER else len(BASE_ORDER), base)


def group_key(info: st.MethodInfo) -> tuple[int, str]:
    """Tower-like rows group by base optimizer in the paper's order; other families follow."""
    if info.is_tower_like:
        return base_rank(info.base)
    return 100 + FAMILY_ORDER.index(info.family), st.FAMILY_TITLES[info.family]


def row_key(info: st.MethodInfo) -> tuple:
    """A row's place within its group."""
    return (info.height if info.height is not None else 0, FAMILY_ORDER.index(info.family),
            info.template, info.lr0 or 0.0, info.name)
