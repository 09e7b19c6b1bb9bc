"""The search loop over one Optuna study: resume, then ask / train / tell until the budget is out.

``run_search`` asks Optuna for trials one at a time (sequentially, so a seed fixes the search) and
hands each to the caller's trial function (the contract is in ``baselines.search``). Trial ``n``
samples with the seed ``seed + 7919 * n``, so two workers never share a random sequence and a
resumed search goes on with the seeds an uninterrupted one would use. The budget is the study's:
a trial starts only while the sum of every trial's saved cost is under it, and that sum is read
again at each report.
"""

from __future__ import annotations

import math
import random
import time
import uuid
import warnings
from typing import Any

import optuna
from optuna.trial import TrialState

from baselines.search.budget import SearchBudget
from baselines.search.liveness import WAIT_POLL, Heartbeat, owner_alive, owner_attrs
from baselines.search.outcome import CUT, DIVERGED, DONE, FAILED, PRUNED, SearchOutcome, TrialFn
from baselines.search.samplers import PRUNERS, SAMPLERS, make_pruner, make_sampler, make_storage
from baselines.search.space import SearchSpace

__all__ = ["run_search"]


def run_search(
    trial_fn: TrialFn,
    *,
    space: SearchSpace,
    sampler: str,
    budget: SearchBudget,
    study_name: str,
    storage: str | optuna.storages.BaseStorage,
    seed: int = 0,
    pruner: str = "none",
    startup: int | None = None,
    worst: float | None = None,
) -> SearchOutcome:
    """Search ``space`` with ``sampler`` until ``budget`` is spent (or the grid is covered).

    Args:
        trial_fn: trains one trial (see the module's contract).
        space: the declared search space.
        sampler: one of ``SAMPLERS``.
        budget: the total budget.
        study_name: the Optuna study; an existing study of that name is resumed.
        storage: an Optuna storage URL or object.
        seed: seeds the sampler (and the grid's order): the same seed gives the same search.
        pruner: one of ``PRUNERS``, fed at each report.
        startup: trials before the model-based samplers and the median pruner take over
            (default: a third of the budget's runs, at least 3).
        worst: the value told to Optuna for a diverged trial (e.g. 1.0 for an error rate); with
            ``None`` diverged trials are told as failed.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; valid samplers: {', '.join(SAMPLERS)}")
    if pruner not in PRUNERS:
        raise ValueError(f"unknown pruner {pruner!r}; valid pruners: {', '.join(PRUNERS)}")
    startup = startup if startup is not None else max(3, math.ceil(budget.runs / 3))
    study = _open_study(study_name, storage, space, sampler, pruner, budget, seed, startup)
    driver = _Driver(study, trial_fn, space, sampler, budget, seed, worst, startup)
    driver.resume()
    driver.run()
    return driver.outcome()


def _open_study(name: str, storage: Any, space: SearchSpace, sampler: str, pruner: str,
                budget: SearchBudget, seed: int, startup: int) -> optuna.Study:
    storage = make_storage(storage) if isinstance(storage, str) else storage
    # Reseed with the number of trials already there: a resumed search continues its sequence
    # instead of replaying the first samples of a fresh one.
    try:
        existing = len(optuna.load_study(study_name=name, storage=storage).trials)
    except KeyError:
        existing = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study = optuna.create_study(
            study_name=name,
            storage=storage,
            sampler=make_sampler(sampler, seed + 7919 * existing, startup),
            pruner=make_pruner(pruner, budget.run_steps, startup),
            direction="minimize",
            load_if_exists=True,
        )
    study.set_user_attr("space", space.describe())
    study.set_user_attr("sampler", sampler)
    study.set_user_attr("budget", f"{budget.runs:g} x one run ({budget.unit})")
    return study



class _Driver:
    """The search loop over one study: resume, then ask / train / tell until the budget is out."""

    def __init__(self, study: optuna.Study, trial_fn: TrialFn, space: SearchSpace,
                 sampler: str, budget: SearchBudget, seed: int, worst: float | None,
                 startup: int = 3) -> None:
        self.study, self.trial_fn, self.space = study, trial_fn, space
        self.sampler, self.budget, self.seed, self.worst = sampler, budget, seed, worst
        self.startup = startup
        self.per_run = budget.per_run
        self.resumed = 0
        self.token = uuid.uuid4().hex  # tells this driver's trials from others in this process

    # -- budget --------------------------------------------------------------------------------
    @property
    def total(self) -> float | None:
        return None if self.per_run is None else self.budget.runs * self.per_run

    def _cost(self, steps: float, seconds: float) -> float:
        return steps if self.budget.unit == "steps" else seconds

    def spent(self) -> float:
        return sum(self._cost(t["cost_steps"], t["cost_seconds"]) for t in self.trials())

    # -- the loop ------------------------------------------------------------------------------
    def resume(self) -> None:
        """Mark trials left running by a dead process as failed; their saved cost counts.

        Waiting trials (a grid point enqueued, never started) are left for ``ask`` to take, and
        trials that another live worker is running are left to it.
        """
        self._fail_stale()
        self.resumed = len(self.study.get_trials(deepcopy=False))
        self._measure_per_run()

    def _measure_per_run(self) -> None:
        if self.per_run is None:
            done = [t for t in self.trials() if t["status"] == DONE]
            if done:
                self.per_run = done[0]["cost_seconds"]

    def _fail_stale(self) -> int:
        """Fail the running trials whose owner is dead; returns how many still run elsewhere."""
        alive = 0
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if owner_alive(t.user_attrs, t.datetime_start):
                alive += 1
            else:
                self.study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
        return alive

    def run(self) -> None:
        """Trials until the budget is spent (or the grid covered), then wait for other workers."""
        failures_in_a_row = 0
        while self.total is None or self.spent() < self.total:
            params = self._next_params()
            if params is None:  # the grid is covered
                break
            status = self._one_trial(params)
            failures_in_a_row = failures_in_a_row + 1 if status == FAILED else 0
            if failures_in_a_row >= 3:  # every trial fails: more would only repeat the error
                break
            self._measure_per_run()  # another worker's trial may have measured it
        # Other workers' trials still count and may be selected: the outcome waits for them.
        while self._fail_stale():
            time.sleep(WAIT_POLL)

    def _next_params(self) -> dict[str, float] | None:
        if self.sampler != "grid":
            return {}
        done = [t["params"] for t in self.trials() if t["status"] != FAILED]
        points = self.space.grid()
        random.Random(self.seed).shuffle(points)
        for point in points:
            if not any(_same(point, p) for p in done):
                return point
        return None

    def _one_trial(self, fixed: dict[str, float]) -> str:
        if fixed:
            self.study.enqueue_trial(fixed)
        trial = self.study.ask()
        # Seeded by the trial's number (unique across workers), before anything is sampled.
        self.study.sampler = make_sampler(self.sampler, self.seed + 7919 * trial.number,
                                          self.startup)
        trial.set_user_attr("owner", owner_attrs(self.token))
        params = {
            d.name: d.round(trial.suggest_float(d.name, d.low, d.high, log=d.log))
            for d in self.space.dims
        }
        trial.set_user_attr("params", params)
        reporter = _Reporter(self, trial)
        try:
            with Heartbeat(trial, self.token):
                outcome = self.trial_fn(params, reporter)
        except BaseException:  # an interrupt too: the trial is over, its saved cost counts
            self._finish(trial, FAILED, None, None, reporter.cost_steps, reporter.cost_seconds, {})
            raise
        status = reporter.stopped or outcome.status
        self._finish(trial, status, outcome.value, outcome.test, outcome.cost_steps,
                     outcome.cost_seconds, outcome.record)
        if status == DONE and self.per_run is None:
            self.per_run = outcome.cost_seconds
        return status

    def _finish(self, trial: optuna.Trial, status: str, value: float | None, test: float | None,
                cost_steps: float, cost_seconds: float, record: dict[str, Any]) -> None:
        try:
            self._tell(trial, status, value, test, cost_steps, cost_seconds, record)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # another worker took this trial's owner for dead and failed it; its cost counts

    def _tell(self, trial: optuna.Trial, status: str, value: float | None, test: float | None,
              cost_steps: float, cost_seconds: float, record: dict[str, Any]) -> None:
        for key, v in (("status", status), ("value", value), ("test", test),
                       ("cost_steps", cost_steps), ("cost_seconds", cost_seconds),
                       ("record", record)):
            trial.set_user_attr(key, v)
        if status == DONE and value is not None and math.isfinite(value):
            self.study.tell(trial, value)
        elif status == DIVERGED and self.worst is not None:
            self.study.tell(trial, self.worst)
        elif status in (PRUNED, CUT):
            self.study.tell(trial, state=TrialState.PRUNED)
        else:
            self.study.tell(trial, state=TrialState.FAIL)

    # -- results -------------------------------------------------------------------------------
    def trials(self) -> list[dict[str, Any]]:
        out = []
        for t in self.study.get_trials(deepcopy=False):
            a = t.user_attrs
            out.append({
                "number": t.number,
                "params": a.get("params", {}),
                "status": a.get("status", FAILED if t.state.is_finished() else "running"),
                "value": a.get("value"),
                "test": a.get("test"),
                "cost_steps": float(a.get("cost_steps", 0.0)),
                "cost_seconds": float(a.get("cost_seconds", 0.0)),
                "record": a.get("record", {}),
            })
        return sorted(out, key=lambda t: t["number"])

    def outcome(self) -> SearchOutcome:
        trials = self.trials()
        best, curve, steps, seconds = None, [], 0.0, 0.0
        for i, t in enumerate(trials):
            steps += t["cost_steps"]
            seconds += t["cost_seconds"]
            if t["status"] == DONE and t["value"] is not None and (
                best is None or t["value"] < best["value"]
            ):
                best = t
            curve.append({
                "trials": i + 1,
                "cost_steps": steps,
                "cost_seconds": seconds,
                "value": None if best is None else best["value"],
                "test": None if best is None else best["test"],
            })
        return SearchOutcome(trials, best, curve, steps, seconds, self.total, self.resumed)


class _Reporter:
    """The ``report`` callback of one trial: saves its cost, enforces the budget, prunes."""

    def __init__(self, driver: _Driver, trial: optuna.Trial) -> None:
        self.driver, self.trial = driver, trial
        self.cost_steps = self.cost_seconds = 0.0
        self.stopped: str | None = None

    def __call__(self, step: int, value: float, cost_steps: float, cost_seconds: float) -> bool:
        d = self.driver
        self.cost_steps, self.cost_seconds = float(cost_steps), float(cost_seconds)
        # Saved at each report: if the process dies, a resumed search still counts this cost,
        # and the other workers of a shared search count it now.
        try:
            self.trial.set_user_attr("cost_steps", self.cost_steps)
            self.trial.set_user_attr("cost_seconds", self.cost_seconds)
        except optuna.exceptions.UpdateFinishedTrialError:
            self.stopped = FAILED  # another worker took this trial for dead: stop, it is lost
            return True
        if step >= d.budget.run_steps or not math.isfinite(value):
            return False  # the trial's last evaluation (or a divergence the trainer reports)
        total = d.total
        # The whole study's cost, read now: other workers' trials spend the same budget.
        others = sum(d._cost(t["cost_steps"], t["cost_seconds"]) for t in d.trials()
                     if t["number"] != self.trial.number)
        if total is not None and others + d._cost(cost_steps, cost_seconds) >= total:
            self.stopped = CUT
            return True
        self.trial.report(value, step)
        if self.trial.should_prune():
            self.stopped = PRUNED
            return True
        return False



def _same(a: dict[str, float], b: dict[str, float]) -> bool:
    return a.keys() == b.keys() and all(math.isclose(a[k], b[k], rel_tol=1e-9) for k in a)
