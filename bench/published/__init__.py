"""Published results of the two papers the harness reproduces, as data shipped with the package.

One TOML file per paper in this folder (``chandra2022.toml``: Chandra et al., NeurIPS 2022;
``baydin2018.toml``: Baydin et al., ICLR 2018), loaded into frozen dataclasses:

- ``[paper]``: key, title, authors, venue, arxiv.
- ``[table1]`` with ``[[table1.row]]`` and ``[[table1.rerun]]`` (Chandra et al.'s Table 1): each
  row names the exact method spec that runs it (``bench/suites/paper-mnist.toml``) and, where it
  could be read, ``mean`` and ``sd`` (test error in %) with their ``source``; a re-run names its
  ``parent`` row's spec and the paper's ``learned`` values. A value that could not be read is
  absent, and its ``note`` (or the table's ``unread_note``) says so: never a guess.
- ``[[figure]]``: the points read from a figure (``points``, each ``{series, x, y}``), where they
  were read (``where``) and how precisely a value can be read from it (``precision``, in the
  figure's units); ``points = []`` where the figure could not be seen.
- ``[runs]`` with ``[[runs.run]]`` (Baydin et al.'s logged runs): the last row of each CSV of
  their repository, with the harness's specs of the same optimizer (``methods``).
- ``[[claim]]``: the claims ``bench.report.claims`` checks against stored results (its docstring
  has the rules).

Unknown keys and values of the wrong type are errors (``PublishedDataError``, a ``UserError``)
naming the file, the entry and the key. Adding a number read from the paper is an edit of the
TOML file only.

The package: ``records`` (the data, as frozen dataclasses), ``reader`` (the code reading and
checking the files) and ``lookups`` (what the papers published for a run, for the report).
"""

from __future__ import annotations

from bench.published import lookups, reader, records
from bench.published.lookups import *  # noqa: F403
from bench.published.reader import *  # noqa: F403
from bench.published.records import *  # noqa: F403

__all__ = [*lookups.__all__, *reader.__all__, *records.__all__]
