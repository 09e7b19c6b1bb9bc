"""Suite files the executor tests (the local scheduler's and Ray's) write for themselves."""

from __future__ import annotations

import textwrap
from pathlib import Path


def suite_file(tmp_path: Path, groups: str, name: str = "tiny.toml") -> Path:
    """A one-seed suite of ``groups`` (TOML ``[[group]]`` tables, dedented) in ``tmp_path``."""
    path = tmp_path / name
    path.write_text('description = "tiny"\nseeds = [0]\n' + textwrap.dedent(groups))
    return path


def victim_first(workload: str, method: str, steps: int) -> str:
    """A group of one run far longer than the rest, so that it starts first (longest first):
    the run whose worker a test kills."""
    return textwrap.dedent(f"""
        [[group]]
        label = "the victim: the longest run, so it starts first"
        workloads = ["{workload}"]
        methods = ["{method}"]
        budgets = [{{ steps = {steps} }}]
    """)
