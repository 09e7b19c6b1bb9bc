"""Suites: TOML files that expand to a plan of runs.

A suite file (``bench/suites/NAME.toml``) holds a one-line ``description``, suite-wide defaults
(``seeds``, ``budgets``, ``options``) and one or more ``[[group]]`` tables. Each group expands to
workloads x methods x seeds x budgets; its own ``seeds``, ``budgets`` and ``options`` override the
defaults (``options`` are merged). Example::

    description = "two towers on the MLP"
    seeds = [0, 1, 2]
    budgets = [{ epochs = 30 }]
    options = { batch_size = 256 }

    [[group]]
    label = "table 1"
    workloads = ["mnist-mlp"]
    methods = ["sgd({lr})", "sgd({lr})/sgd(1e-4)"]
    vary = { lr = [0.01, 0.1] }     # fills {lr}: one method per value
    rerun_learned = true            # also re-run the plain optimizer with the learned values

Unknown keys are errors that name the file, the line and the key; unknown workloads and methods
are errors listing the valid names, raised when the suite is loaded, before any run starts.

A *dependent* run (``rerun_learned``) is planned as a ``RunConfig`` whose ``method`` is its
parent's method and whose options hold ``learned_from = <parent run id>``; once the parent is
stored, ``resolve_dependent`` turns it into the concrete run: the parent's level-0 optimizer with
the parent's final learned values (``metrics["hyper/0.lr"]`` ...), with ``parent = <id>`` in its
options. Its id is therefore known only after the parent ran.

The package: ``plan`` (a suite and its groups, expanded into runs), ``parser`` (finding and
reading suite files) and ``dependent`` (the plain re-runs of a tower with its learned values).
"""

from bench.suite import dependent, parser, plan
from bench.suite.dependent import *  # noqa: F403
from bench.suite.parser import *  # noqa: F403
from bench.suite.plan import *  # noqa: F403

__all__ = [*dependent.__all__, *parser.__all__, *plan.__all__]
