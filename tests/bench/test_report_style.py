"""Figures drawn by forked children (``bench.report.style.drawing_in_background``) are the
figures this process would draw, and a child's failure stops the report."""

from __future__ import annotations

import sys

import matplotlib.artist
import numpy as np
import pytest

from bench.report import style

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="figures are drawn in forked children on Linux only")


def _figure(seed: int = 0):
    style.theme()
    fig, axes = style.grid(2, 2, 3.0)
    rng = np.random.default_rng(seed)
    for ax in axes:
        ax.plot(np.cumsum(rng.normal(size=200)), label="a walk")
        ax.set_xscale("log")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2))
        ax.set_title("a title that the layout must make room for")
    return fig


class _Broken(matplotlib.artist.Artist):
    def draw(self, renderer):
        raise ValueError("this artist cannot be drawn")


def test_a_child_draws_the_same_bytes_as_this_process(tmp_path):
    style.save(_figure(), tmp_path / "here.png")
    with style.drawing_in_background(workers=1):
        path = style.save(_figure(), tmp_path / "child.png")
        assert path == tmp_path / "child.png"
    assert (tmp_path / "child.png").read_bytes() == (tmp_path / "here.png").read_bytes()


def test_every_figure_is_on_disk_when_the_block_ends(tmp_path):
    with style.drawing_in_background(workers=2):
        paths = [style.save(_figure(seed), tmp_path / f"f{seed}.png") for seed in range(5)]
    assert all(p.stat().st_size > 10_000 for p in paths)


def test_a_failure_in_a_child_is_raised_with_its_traceback(tmp_path):
    broken = _figure()
    broken.axes[0].add_artist(_Broken())
    with pytest.raises(RuntimeError, match=r"(?s)broken.png.*this artist cannot be drawn"):
        with style.drawing_in_background(workers=1):
            style.save(broken, tmp_path / "broken.png")
            style.save(_figure(1), tmp_path / "fine.png")
    assert (tmp_path / "fine.png").is_file()  # the others are still drawn


def test_no_workers_draws_here_and_nested_blocks_wait_in_the_outer(tmp_path):
    with style.drawing_in_background(workers=0):
        style.save(_figure(), tmp_path / "here.png")
        assert (tmp_path / "here.png").is_file()
    with style.drawing_in_background(workers=1):
        with style.drawing_in_background(workers=1):
            style.save(_figure(), tmp_path / "inner.png")
        assert style.background_workers() >= 1
    assert (tmp_path / "inner.png").is_file()
