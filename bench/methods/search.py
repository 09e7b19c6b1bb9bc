"""The ``search`` family: Optuna searches inside a budget of whole runs.

Names: ``SAMPLER(base=..., budget=..., pruner=..., unit=..., startup=...)`` with SAMPLER one of
``grid``, ``random``, ``tpe``, ``gp`` (Optuna's GPSampler), ``cmaes``; e.g.
``tpe(base=sgd, budget=8, pruner=median)`` or ``gp(base=sgd+cosine, budget=4)``.

- ``base``: what is tuned, ``sgd`` (lr, momentum), ``adam`` (lr, beta1, beta2), or either with a
  schedule (``sgd+cosine`` adds the warm-up fraction; see ``baselines.search``).
- ``budget``: a multiple of one full run of the config (``budget=8``: 8 x its steps, or 8 x its
  device-seconds with ``unit=seconds``).
- ``pruner``: ``none``, ``median`` or ``hyperband``, fed the validation metric at each evaluation.

Each trial is a ``train()`` run of a concrete single-run method (``torch.sgd(lr=0.0123,
momentum=0.9)``, or ``sgd(lr=..)+cosine(warmup=..)`` with a schedule) on the same workload, seed,
per-run budget and options. The search selects on the validation metric and reports the selected
trial's test metrics; its cost is every trial's, pruned ones included.

Validation: each trial holds ``Workload.search_holdout`` of the training split out (10% of the
images, 5% of the text; the run option ``holdout`` overrides it) and trains on the rest; the
search's test error is the chosen trial's, that model as it was trained (not re-trained on the
whole split), so a search's trials each see fewer examples than a single run, which trains on the
whole split. The budget is a multiple of one single run's steps on the whole split, so that a
search at ``budget=1`` costs what a tower costs.

Storage: the ``storage`` argument (the run option ``storage``), else ``$BENCH_OPTUNA_STORAGE``,
else the results store's PostgreSQL database when the store is one, else SQLite ``optuna.sqlite``
beside the results store. The study is named after the run id, so
an interrupted search resumes where it stopped (open it with ``optuna-dashboard URL``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna

from baselines import search as lib
from baselines.spec import Param, Signature, format_call, parse, positive
from bench import measure
from bench.config import RunConfig
from bench.errors import UserError
from bench.methods import Family, SearchMethod, named, parse_method
from bench.record import DONE, FAILED, RunResult

_PARAMS = (
    Param("base", kind="str", default="sgd", choices=tuple(lib.bases()), shown=True,
          doc="what is tuned"),
    Param("budget", default=8.0, check=positive, rule="> 0 (a multiple of one run)", shown=True),
    Param("pruner", kind="str", default="none", choices=lib.PRUNERS),
    Param("unit", kind="str", default="steps", choices=lib.UNITS),
    Param("startup", kind="int", default=None, check=positive, rule="> 0",
          doc="trials before the model and the median pruner take over"),
)
SIGNATURES = tuple(Signature(s, _PARAMS, f"Optuna {s} search") for s in lib.SAMPLERS)
DEFAULT_STORAGE_FILE = "optuna.sqlite"


class Search(SearchMethod):
    """A parsed search name; ``search`` runs it through the given ``train``."""

    def __init__(self, name: str) -> None:
        try:
            sig, self.args = parse(name, SIGNATURES, "search method")
        except ValueError as e:
            raise UserError(str(e)) from None
        self.sampler = sig.name
        self.name = format_call(sig, self.args)
        self.space = lib.SearchSpace.of(self.args["base"])

    def search(
        self,
        config: RunConfig,
        *,
        train: Callable[..., RunResult],
        storage: str | None = None,
        store: str | None = None,
    ) -> RunResult:
        from bench.run_plan import RunPlan
        from bench.train import load_data, resolve_device  # train imports this registry
        from bench.workloads import get_workload

        workload = get_workload(config.workload)
        device = resolve_device(config.device)
        # One run's cost is a single run's, on the whole training split: the budget is a
        # multiple of what a tower or a schedule spends, whatever the trials hold out.
        plan = RunPlan.make(config, workload, load_data(workload, device, config.seed))
        unit = self.args["unit"]
        budget = lib.SearchBudget(
            runs=self.args["budget"],
            unit=unit,
            run_steps=plan.total_steps,
            per_run=plan.total_steps if unit == "steps" else config.budget.seconds,
        )
        started = measure.now_iso()
        trial_fn = _TrialRunner(self.space, config, train, workload.metric,
                                workload.search_holdout)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        try:
            outcome = lib.run_search(
                trial_fn,
                space=self.space,
                sampler=self.sampler,
                budget=budget,
                study_name=f"{config.run_id}",
                storage=storage_url(storage, store),
                seed=config.seed,
                pruner=self.args["pruner"],
                startup=self.args["startup"],
                worst=1.0 if workload.metric == "error" else None,
            )
        except ValueError as e:
            raise UserError(str(e)) from None
        return _record(config, outcome, workload.metric, plan.steps_per_epoch, device, started)


def storage_url(storage: str | None = None, store: str | None = None) -> str:
    """The Optuna storage: the given URL, ``$BENCH_OPTUNA_STORAGE``, or the results store's.

    The store's (``store``, default ``default_location()``: ``$BENCH_STORE`` or
    ``results/bench.sqlite``): its database when it is a PostgreSQL URL (every worker on every
    machine then shares a search's study), else SQLite beside it. A plain path (no ``://``) is
    taken as a SQLite file.
    """
    url = storage or os.environ.get("BENCH_OPTUNA_STORAGE")
    if not url:
        from bench.store import default_location, is_database_url

        store = store or default_location()
        url = store if is_database_url(store) else str(Path(store).parent / DEFAULT_STORAGE_FILE)
    if "://" not in url:
        path = Path(url)
        path.parent.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{path}"
    return url


def trial_method(space: lib.SearchSpace, params: dict[str, float]) -> str:
    """The single-run method of one trial, canonical (``torch.sgd(lr=0.0123, momentum=0.9)``)."""
    p = params
    if space.schedule is None:  # plain torch.optim, named as the towers family names it
        if space.optimizer == "sgd":
            name = f"torch.sgd(lr={p['lr']!r}, momentum={p['momentum']!r})"
        else:
            name = f"torch.adam(lr={p['lr']!r}, betas=({p['beta1']!r}, {p['beta2']!r}))"
        return parse_method(name).name
    opt_keys = [d.name for d in lib.OPTIMIZER_SPACES[space.optimizer]]
    sched_keys = [d.name for d in lib.SCHEDULE_SPACES[space.schedule]]
    opt = ", ".join(f"{k}={p[k]!r}" for k in opt_keys)
    sched = ", ".join(f"{k}={p[k]!r}" for k in sched_keys)
    return parse_method(f"{space.optimizer}({opt})+{space.schedule}({sched})").name


class _TrialRunner:
    """The trial function: one ``train`` run per trial, reporting at each evaluation."""

    def __init__(self, space: lib.SearchSpace, config: RunConfig,
                 train: Callable[..., RunResult], metric: str, holdout: float) -> None:
        self.space, self.config, self.train, self.metric = space, config, train, metric
        self.holdout = holdout

    def __call__(self, params: dict[str, float],
                 report: Callable[[int, float, float, float], bool]) -> lib.TrialOutcome:
        method = trial_method(self.space, params)
        options = {k: v for k, v in self.config.options if k != "storage"}
        options["parent"] = self.config.run_id
        # A trial trains on the rest of the training split and is chosen on the held-out part.
        options.setdefault("holdout", self.holdout)
        trial_config = dataclasses.replace(
            self.config, method=method, options=tuple(sorted(options.items()))
        )
        key = f"val_{self.metric}"

        def on_eval(point: dict[str, Any]) -> bool:
            return report(point["step"], point[key], point["cost_steps"], point["cost_seconds"])

        result = self.train(trial_config, on_eval=on_eval)
        status = result.status if result.status in (DONE, FAILED) else lib.DIVERGED
        last = result.curves.get("eval") or [{}]
        return lib.TrialOutcome(
            status=status if status != DONE or result.metrics else FAILED,
            value=last[-1].get(key),
            test=last[-1].get(f"test_{self.metric}"),
            cost_steps=float(result.cost.get("steps", 0)),
            cost_seconds=float(result.cost.get("device_seconds", 0.0)),
            record={
                "run_id": result.run_id,
                "method": method,
                "metrics": result.metrics,
                "eval": result.curves.get("eval", []),
                "hyper": result.curves.get("hyper", {}),
                "timing": result.timing,
                "memory": result.memory,
                "error": result.error,
            },
        )


def _record(config: RunConfig, outcome: lib.SearchOutcome, metric: str, steps_per_epoch: int,
            device: Any, started: str) -> RunResult:
    """The search's record: the selected trial's metrics, every trial, the best-so-far curve."""
    val, test = f"val_{metric}", f"test_{metric}"
    trials = [
        {
            "number": t["number"],
            "method": t["record"].get("method"),
            "run_id": t["record"].get("run_id"),
            "params": t["params"],
            "status": t["status"],
            val: t["value"],
            test: t["test"],
            "cost_steps": t["cost_steps"],
            "cost_seconds": t["cost_seconds"],
        }
        for t in outcome.trials
    ]
    best_so_far = [
        {"trials": p["trials"], "cost_steps": p["cost_steps"], "cost_seconds": p["cost_seconds"],
         val: p["value"], test: p["test"]}
        for p in outcome.best_so_far
    ]
    best = outcome.best
    chosen = best["record"] if best else {}
    metrics = dict(chosen.get("metrics", {}))
    if best:
        metrics |= {f"hyper/0.{k}": v for k, v in best["params"].items()}
    metrics["search/trials"] = len(trials)
    curves: dict[str, Any] = {
        "eval": chosen.get("eval", []),
        "hyper": chosen.get("hyper", {}),
        "trials": trials,
        "best_so_far": best_so_far,
        "selected": None if best is None else best["number"],
        "selected_method": chosen.get("method"),
        "budget_total": outcome.total,
        "resumed_trials": outcome.resumed,
        "steps_per_epoch": steps_per_epoch,
    }
    return RunResult(
        run_id=config.run_id,
        config=config.to_dict(),
        status=DONE if best else FAILED,
        metrics=metrics,
        curves=curves,
        timing=dict(chosen.get("timing", {})),
        memory=dict(chosen.get("memory", {})),
        cost={
            "steps": outcome.cost_steps,
            "device_seconds": outcome.cost_seconds,
            "epochs": outcome.cost_steps / steps_per_epoch,
        },
        env=measure.environment(device, started),
        error=None if best else _no_trial_error(trials),
    )


def _no_trial_error(trials: list[dict[str, Any]]) -> str:
    statuses = ", ".join(sorted({t["status"] for t in trials})) or "none ran"
    return f"no trial completed within the budget (trial statuses: {statuses})"



FAMILY = Family(
    name="search",
    description="Optuna searches within a budget of whole runs: "
    + f"{'|'.join(lib.SAMPLERS)}(base={{{'|'.join(lib.bases())}}}, budget=8, "
    + f"pruner={{{'|'.join(lib.PRUNERS)}}}, unit={{{'|'.join(lib.UNITS)}}}, startup)",
    examples=("tpe(base=sgd, budget=8, pruner=median)", "gp(base=adam, budget=4)",
              "grid(base=sgd+cosine, budget=16)"),
    matches=named(lib.SAMPLERS),
    parse=Search,
)
