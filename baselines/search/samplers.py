"""The Optuna parts of a search, by name: its storage, its sampler and its pruner."""

from __future__ import annotations

import time
from typing import Any

import optuna

__all__ = ["PRUNERS", "SAMPLERS", "make_pruner", "make_sampler", "make_storage"]

SAMPLERS = ("grid", "random", "tpe", "gp", "cmaes")
PRUNERS = ("none", "median", "hyperband")


def make_storage(url: str) -> optuna.storages.BaseStorage:
    """An Optuna storage for ``url``; SQLite gets a long lock timeout (several processes)."""
    import sqlalchemy.exc

    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite:"):
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}
    # Workers opening a fresh database at once race to create Optuna's tables (two searches
    # starting together in a suite; PostgreSQL refuses the second CREATE TYPE, SQLite the second
    # alembic_version row): the loser tries again and finds them made.
    for attempt in range(4):
        try:
            return optuna.storages.RDBStorage(url, **kwargs)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError,
                sqlalchemy.exc.OperationalError):
            time.sleep(0.2 * (attempt + 1))
    return optuna.storages.RDBStorage(url, **kwargs)  # the last try: its error is the answer


def make_sampler(name: str, seed: int, startup: int) -> optuna.samplers.BaseSampler:
    """The Optuna sampler of a search (the grid search enqueues its points itself)."""
    if name in ("grid", "random"):
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "tpe":
        # constant_liar: trials running in other workers count as bad, so they are not re-sampled.
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup,
                                          constant_liar=True)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup)
    return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=startup,
                                        warn_independent_sampling=False)


def make_pruner(name: str, run_steps: int, startup: int) -> optuna.pruners.BasePruner:
    """``none``, ``median`` (after ``startup`` trials) or ``hyperband`` (3 rungs per run)."""
    if name == "none":
        return optuna.pruners.NopPruner()
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=startup)
    return optuna.pruners.HyperbandPruner(min_resource=max(1, run_steps // 9),
                                          max_resource=max(1, run_steps), reduction_factor=3)
