"""Reports: markdown with tables (tabulate) and PNG figures (seaborn) from a result set.

Modules, in the order data flows through them: ``load`` (a store or an exported file ->
records), ``structure`` (what a method name says: family, base optimizer, height, initial step
size), ``frame`` (a table of runs), a module per section with its tables and figures
(``method_table``, ``claims`` with ``claim_rules``, ``equal_cost``, ``sensitivity``,
``overhead``, ``budget``, ``trajectories``, ``profiles``; ``tables``, ``order`` and ``style``
are what they share), ``build`` (which sections the data supports; ``write_report``),
``command`` (the ``report`` subcommand, ``make_report``, and ``write_suite_report``, which
``bench suite`` calls when it ends).

The public names below load lazily, so reading results (``bench compare``) does not import
matplotlib.
"""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    "SuiteInfo": "bench.report.build",
    "write_report": "bench.report.build",
    "make_report": "bench.report.command",
    "write_suite_report": "bench.report.command",
    "add_arguments": "bench.report.command",
    "run_cli": "bench.report.command",
    "load_results": "bench.report.load",
    "write_jsonl": "bench.report.load",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'bench.report' has no attribute {name!r}")
