"""How every figure of a report looks: seaborn over matplotlib (Agg), saved as PNG.

Figures are sized for a markdown viewer (about 900 px wide): axis labels carry units, step sizes
and costs that span decades are on log axes, and legends sit outside the data. A method family
keeps its palette and marker in every figure.

Rendering (text layout, rasterising, PNG encoding) is most of a report's time, and figures are
independent: inside ``drawing_in_background()`` each saved figure is drawn by a forked child
process while this one goes on with the next section (``FigureDrawer``).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
import traceback
from collections.abc import Iterator
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
    """Lay ``fig`` out, write it to ``path`` (its folder made) and close it; inside
    ``drawing_in_background()`` the file is complete only when that block ends."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if _drawer is not None:
        _drawer.submit(fig, path)
    else:
        _draw(fig, path)
    plt.close(fig)
    return path


def _draw(fig: plt.Figure, path: Path) -> None:
    # tight_layout spaces the axes only (a figure legend keeps its place), so it runs here, in
    # the child that draws, rather than in each figure's function
    fig.tight_layout()
    fig.savefig(path, dpi=DPI, bbox_inches="tight")


class FigureDrawer:
    """Draws figures to PNG in child processes, at most ``workers`` at a time.

    A child is a fork: it inherits the figure as built (nothing is pickled, the rcParams are the
    same) and draws exactly what this process would. ``wait`` joins every child and raises the
    first failure with the child's traceback, so a figure that cannot be drawn still stops the
    report, as it would when drawn here.
    """

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._context = multiprocessing.get_context("fork")
        self._running: list[tuple[Path, multiprocessing.Process, object]] = []
        self._failures: list[str] = []

    def submit(self, fig: plt.Figure, path: Path) -> None:
        while len(self._running) >= self.workers:
            self._join(self._running.pop(0))
        receive, send = self._context.Pipe(duplex=False)
        child = self._context.Process(target=_draw_in_child, args=(fig, path, send), daemon=True)
        child.start()
        send.close()
        self._running.append((path, child, receive))

    def wait(self) -> None:
        while self._running:
            self._join(self._running.pop(0))
        if self._failures:
            raise RuntimeError("a figure could not be drawn:\n" + self._failures[0])

    def _join(self, job: tuple[Path, multiprocessing.Process, object]) -> None:
        path, child, receive = job
        message = receive.recv() if receive.poll(None) else ""  # type: ignore[attr-defined]
        child.join()
        receive.close()  # type: ignore[attr-defined]
        if message or child.exitcode != 0:
            self._failures.append(f"{path.name}: {message or f'exit code {child.exitcode}'}")


def _draw_in_child(fig: plt.Figure, path: Path, send: object) -> None:
    try:
        _draw(fig, path)
        send.send("")  # type: ignore[attr-defined]
    except BaseException:  # the parent raises it: the child only reports
        send.send(traceback.format_exc())  # type: ignore[attr-defined]


_drawer: FigureDrawer | None = None


def background_workers() -> int:
    """Children that draw beside this process: as many as the cores it may use (this process
    mostly waits for them once its sections are built; one fewer left a core idle: 8.7 s
    against 10.7 s for a 1,000-run report on 2 cores); 0 (draw here) where fork is not safe:
    Windows has none, macOS's system libraries may crash in a forked child."""
    if not sys.platform.startswith("linux"):
        return 0
    return max(1, len(os.sched_getaffinity(0)))


@contextlib.contextmanager
def drawing_in_background(workers: int | None = None) -> Iterator[None]:
    """Inside, ``save`` hands figures to ``FigureDrawer`` children; on leaving, every figure is on
    disk (or the first failure raised). ``workers=0`` draws in this process."""
    global _drawer
    workers = background_workers() if workers is None else workers
    if workers <= 0 or _drawer is not None:  # nested: the outer block waits for all
        yield
        return
    _drawer = drawer = FigureDrawer(workers)
    try:
        yield
    finally:
        _drawer = None
        drawer.wait()


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

