"""The command line's argument types and shared arguments.

A type turns one argument's text into its value, or raises ``argparse.ArgumentTypeError``: the
parser then prints one line and exits with code 2. Every subcommand that takes seeds, a positive
number or a store declares it through here, so that they all read and reject it alike.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any

MAX_SEEDS = 10_000  # seeds of one command: beyond it, a range is a typo, not a plan


def seeds_type(text: str) -> list[int]:
    """``0,1,2`` or ``0-4`` (inclusive) or a mix: ``0-2,7``."""
    from bench.config import MAX_SEED

    seeds: list[int] = []
    try:
        for part in text.split(","):
            low, _, high = part.strip().partition("-")
            first, last = int(low), int(high) if high else int(low)
            if first < 0 or last < first or last > MAX_SEED:
                raise ValueError
            if len(seeds) + last - first + 1 > MAX_SEEDS:
                raise argparse.ArgumentTypeError(
                    f"at most {MAX_SEEDS} seeds, but {text!r} names "
                    f"{len(seeds) + last - first + 1:,}; give a shorter range such as 0-4")
            seeds.extend(range(first, last + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"seeds must be integers in 0..2**63-1 like 0,1,2 or 0-4, but got {text!r}"
        ) from None
    return list(dict.fromkeys(seeds))


def positive(kind: type, what: str) -> Callable[[str], Any]:
    """The type of a finite ``kind`` (``int`` or ``float``) > 0; ``what`` names the argument."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not value > 0 or not math.isfinite(value):
            raise argparse.ArgumentTypeError(
                f"{what} must be a finite {kind.__name__} > 0, but got {text!r}")
        return value

    return parse


def store_argument(parser: argparse.ArgumentParser) -> None:
    """``--store PATH``, shared by the subcommands that read or write results."""
    parser.add_argument(
        "--store",
        default=None,
        help="results database: a SQLite file or a postgresql+psycopg://USER@HOST:PORT/DB URL "
        "(default: $BENCH_STORE or results/bench.sqlite)",
    )
