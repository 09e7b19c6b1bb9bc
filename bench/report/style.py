"""How every figure of a report looks: seaborn over matplotlib (Agg), saved as PNG.

Figures are sized for a markdown viewer (about 900 px wide): axis labels carry units, step sizes
and costs that span decades are on log axes, and legends sit outside the data. A method family
keeps its palette and marker in every figure.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: reports are written by workers and CI

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402

from bench.report import structure as st  # noqa: E402

DPI = 110
WIDTH = 9.0  # inches: ~1000 px at DPI, what a markdown viewer shows without scaling text away


def theme() -> None:
    """The look every figure is drawn in (called before each)."""
    sns.set_theme(style="whitegrid", context="notebook", font_scale=0.95)


def save(fig: plt.Figure, path: Path) -> Path:
    """Write ``fig`` to ``path`` (its folder made) and close it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def grid(n: int, ncols: int, height: float, width: float = WIDTH) -> tuple[plt.Figure, list]:
    """``n`` axes in rows of ``ncols``, each row ``height`` inches tall; the spare ones hidden."""
    ncols = max(1, min(ncols, n))
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, height * nrows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


# A family's runs share a palette and a marker: the family reads at a glance, shades tell apart.
FAMILY_STYLES = {st.TOWER: ("Blues", "o"), st.GDTUO: ("Reds", "X"), st.TORCH: ("Greys", "s"),
                 st.HD: ("Greens", "D"), st.SCHEDULE: ("Oranges", "^"),
                 st.LRFREE: ("Purples", "v"), st.OTHER: ("Greys", "P")}


def family_order(method: str) -> tuple:
    """Methods listed family by family (searches first), then by name."""
    info = st.method_info(method)
    return (list(FAMILY_STYLES).index(info.family) if info.family in FAMILY_STYLES else -1,
            method)


def family_styles(methods: list[str]) -> dict[str, tuple[tuple, str]]:
    """(color, marker) per method: searches in distinct colors, other families in shades."""
    by_family: dict[str, list[str]] = {}
    for m in methods:
        by_family.setdefault(st.method_info(m).family, []).append(m)
    styles = {}
    for family, members in by_family.items():
        if family == st.SEARCH:
            colors = sns.color_palette("tab10", len(members))
            marker = "."
        else:
            palette, marker = FAMILY_STYLES.get(family, FAMILY_STYLES[st.OTHER])
            colors = sns.color_palette(palette, len(members) + 2)[2:]  # the light end is unreadable
        styles |= {m: (c, marker) for m, c in zip(members, colors, strict=True)}
    return styles

