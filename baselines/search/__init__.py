"""Hyperparameter search with Optuna inside a fixed budget, for any trial function.

``run_search`` asks Optuna for trials one at a time (sequentially, so a seed fixes the search),
hands each to a trial function that trains and reports after each evaluation, and stops when the
budget is spent. It knows nothing about models: the caller's trial function turns parameters
into a training run (``bench.methods.search`` does it with ``bench.train.train``).

Contract of a trial function ``trial_fn(params, report) -> TrialOutcome``:
    - ``params``: the trial's values (rounded to ``Dim.digits`` significant digits), one per
      ``Dim`` of the space;
    - ``report(step, value, cost_steps, cost_seconds) -> bool`` after each evaluation (``value``
      the validation metric, lower is better; costs so far in this trial). True means: stop now
      (pruned by the pruner, or the search's budget is spent); the trial function must stop
      training and return what it has;
    - it returns a ``TrialOutcome`` with its total cost (a pruned trial's partial cost).

Budget: ``SearchBudget(runs=8, unit="steps")`` is 8 times one full run's steps (or measured
device-seconds with ``unit="seconds"``). Trials start while budget is left; a trial running
past it is stopped at its next evaluation, so the search overspends by less than one evaluation
interval. Every trial's cost counts, pruned and stopped ones included.

Storage: any Optuna storage URL (SQLite by default in the bench). The study is named by the
caller (the bench uses the run id), and ``load_if_exists`` resumes an interrupted search: the
finished trials and their costs are read back, a trial left running by a dead process is marked
failed (its partial cost, saved at each report, still counts), and the search goes on.

Several workers: any number of processes (on any number of machines) may run the same search at
once, sharing one study through its storage URL (PostgreSQL across machines). TPE runs with
``constant_liar`` so concurrent workers do not sample the same point; trial ``n`` samples with the
seed ``seed + 7919 * n``, so two workers never share a random sequence, and a resumed search goes on
with the seeds an uninterrupted one would use. The budget is the study's: each worker starts a trial
only while the sum of every trial's saved cost is under it, and re-reads that sum at each report.
Each trial writes only its own cost (no shared counter to lose an update on) and a saved cost lags
the real one by less than one evaluation interval E, so with N workers the search overspends by less
than N x E (one worker: less than E, as above). A running trial is another worker's while its owner
is alive: a process on this machine that still exists, or a heartbeat (a user attribute refreshed
every ``HEARTBEAT`` seconds) younger than ``STALE_AFTER``; a dead owner's trial is marked failed. A
worker whose budget is spent waits for the other workers' running trials to end, so every worker
returns the same outcome.

The package, by concept: ``space`` (the declared spaces), ``budget``, ``outcome`` (what a trial
and a search return), ``samplers`` (Optuna's storage, sampler and pruner by name), ``driver``
(the study loop, ``run_search``) and ``liveness`` (who owns a running trial, and is it alive).
"""

from baselines.search import budget, driver, outcome, samplers, space
from baselines.search.budget import *  # noqa: F403
from baselines.search.driver import *  # noqa: F403
from baselines.search.outcome import *  # noqa: F403
from baselines.search.samplers import *  # noqa: F403
from baselines.search.space import *  # noqa: F403

__all__ = [*budget.__all__, *driver.__all__, *outcome.__all__, *samplers.__all__, *space.__all__]
