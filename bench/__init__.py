"""hypergrad-bench: the harness.

The flow, one module per arrow:
suite file (``suite/``) -> run queue (``run_queue.py``) -> scheduler (``scheduler.py``, or
``executors/ray_executor.py`` on a cluster; ``executors/command.py`` is the ``suite`` command)
-> worker (``worker.py``) -> training loop (``train.py``, its numbers in ``run_plan.py``)
-> results store (``store/``) -> report (``report/``).
"""

from __future__ import annotations

# Part of every run id: bump it when a change alters what a stored result means, so that old
# results are re-run rather than mixed with new ones. 2: the workloads as the papers ran them
# (mnist-mlp the reference network on pixels / 255, single runs on the whole training split).
CODE_VERSION = "2"
