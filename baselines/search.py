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
"""

from __future__ import annotations

import math
import os
import random
import socket
import threading
import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState

SAMPLERS = ("grid", "random", "tpe", "gp", "cmaes")
PRUNERS = ("none", "median", "hyperband")
UNITS = ("steps", "seconds")

# Trial statuses kept in the trial's user attributes ("status"); only "done" can be selected.
DONE, PRUNED, CUT, DIVERGED, FAILED = "done", "pruned", "cut", "diverged", "failed"
# Liveness of a running trial (several workers): refreshed every HEARTBEAT seconds, its owner is
# taken for dead when the last refresh is older than STALE_AFTER (or, on the same machine, when its
# process is gone).
HEARTBEAT, STALE_AFTER, WAIT_POLL = 20.0, 120.0, 2.0


@dataclass(frozen=True)
class Dim:
    """One searched hyperparameter: a float in ``[low, high]`` (log-uniform when ``log``).

    ``grid`` holds its values for the grid search; ``digits`` the significant digits a sampled
    value keeps (readable, reproducible trial names).
    """

    name: str
    low: float
    high: float
    log: bool = False
    grid: tuple[float, ...] = ()
    digits: int = 4

    def round(self, value: float) -> float:
        rounded = float(f"{value:.{self.digits}g}")
        return min(self.high, max(self.low, rounded))


# The declared spaces: per optimizer, then per schedule (their parameters add to the optimizer's).
OPTIMIZER_SPACES: dict[str, tuple[Dim, ...]] = {
    "sgd": (
        Dim("lr", 1e-4, 1.0, log=True, grid=(1e-3, 1e-2, 1e-1, 1.0)),
        Dim("momentum", 0.0, 0.99, grid=(0.0, 0.9)),
    ),
    "adam": (
        Dim("lr", 1e-5, 1e-1, log=True, grid=(1e-4, 1e-3, 1e-2, 1e-1)),
        Dim("beta1", 0.5, 0.99, grid=(0.9,)),
        Dim("beta2", 0.9, 0.9999, grid=(0.99, 0.999)),
    ),
}
SCHEDULE_SPACES: dict[str, tuple[Dim, ...]] = {
    "constant": (),
    "cosine": (Dim("warmup", 0.0, 0.2, grid=(0.0, 0.05)),),
    "multistep": (Dim("gamma", 0.01, 0.5, log=True, grid=(0.1,)),),
    "exponential": (Dim("gamma", 0.5, 1.0, grid=(0.9,)),),
    "onecycle": (Dim("pct", 0.1, 0.5, grid=(0.3,)),),
}


@dataclass(frozen=True)
class SearchSpace:
    """The space of a base: ``sgd``, ``adam``, or ``OPTIMIZER+SCHEDULE`` (``sgd+cosine``)."""

    base: str
    optimizer: str
    schedule: str | None
    dims: tuple[Dim, ...]

    @classmethod
    def of(cls, base: str) -> SearchSpace:
        optimizer, _, schedule = base.partition("+")
        if optimizer not in OPTIMIZER_SPACES:
            raise ValueError(f"unknown search base {base!r}; valid bases: {', '.join(bases())}")
        if schedule and schedule not in SCHEDULE_SPACES:
            raise ValueError(f"unknown search base {base!r}; valid bases: {', '.join(bases())}")
        dims = OPTIMIZER_SPACES[optimizer] + (SCHEDULE_SPACES[schedule] if schedule else ())
        return cls(base, optimizer, schedule or None, dims)

    def grid(self) -> list[dict[str, float]]:
        """Every grid point, in a fixed order (the grid search shuffles it with its seed)."""
        points: list[dict[str, float]] = [{}]
        for d in self.dims:
            points = [p | {d.name: v} for p in points for v in d.grid]
        return points

    def describe(self) -> str:
        parts = [
            f"{d.name} in [{d.low:g}, {d.high:g}]{' log' if d.log else ''}" for d in self.dims
        ]
        return f"{self.base}: " + ", ".join(parts)


def bases() -> list[str]:
    """Every valid base: the optimizers, alone or with a schedule."""
    names = list(OPTIMIZER_SPACES)
    names += [f"{o}+{s}" for o in OPTIMIZER_SPACES for s in SCHEDULE_SPACES if s != "constant"]
    return names


@dataclass(frozen=True)
class SearchBudget:
    """``runs`` x one full run, counted in ``unit`` (``steps`` or device-``seconds``).

    ``per_run`` is one full run's cost in that unit; ``None`` (seconds only) measures it from the
    first trial that completes. ``run_steps`` is one full run's number of steps (a report at that
    step is a trial's last: never stopped, never pruned).
    """

    runs: float
    unit: str
    run_steps: int
    per_run: float | None

    def __post_init__(self) -> None:
        if not self.runs > 0:
            raise ValueError(f"budget must be > 0 (a multiple of one run), but got {self.runs}")
        if self.unit not in UNITS:
            raise ValueError(f"unit must be one of {', '.join(UNITS)}, but got {self.unit!r}")
        if self.unit == "steps" and self.per_run is None:
            raise ValueError("a budget in steps needs per_run (one run's steps)")


@dataclass
class TrialOutcome:
    """What a trial function returns: its status (``done``, ``diverged`` or ``failed``), its
    validation and test metric (lower is better), its whole cost, and a record to keep."""

    status: str
    value: float | None
    test: float | None
    cost_steps: float
    cost_seconds: float
    record: dict[str, Any] = field(default_factory=dict)


@dataclass
class SearchOutcome:
    """A finished (or budget-exhausted) search.

    Attributes:
        trials: one dict per trial, by number: ``number``, ``params``, ``status``, ``value``,
            ``test``, ``cost_steps``, ``cost_seconds``, ``record``.
        best: the selected trial (lowest validation value among ``done`` trials) or ``None``.
        best_so_far: after each trial, ``cost_steps``, ``cost_seconds`` (cumulative),
            ``trials`` (how many so far), ``value`` and ``test`` of the best so far (or None).
        cost_steps, cost_seconds: the sums over every trial.
        total: the budget in its unit (None while unknown); ``resumed``: trials read back.
    """

    trials: list[dict[str, Any]]
    best: dict[str, Any] | None
    best_so_far: list[dict[str, Any]]
    cost_steps: float
    cost_seconds: float
    total: float | None
    resumed: int


TrialFn = Callable[[dict[str, float], Callable[[int, float, float, float], bool]], TrialOutcome]


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
            if _owner_alive(t.user_attrs, t.datetime_start):
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
        trial.set_user_attr("owner", _owner(self.token))
        params = {
            d.name: d.round(trial.suggest_float(d.name, d.low, d.high, log=d.log))
            for d in self.space.dims
        }
        trial.set_user_attr("params", params)
        reporter = _Reporter(self, trial)
        try:
            with _Heartbeat(trial, self.token):
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


# -- several workers: who owns a running trial, and is it alive --------------------------------

_ACTIVE: set[str] = set()  # tokens of the drivers of this process that are running a trial


def _owner(token: str) -> dict[str, Any]:
    return {"machine": _machine(), "pid": os.getpid(), "token": token,
            "host": socket.gethostname(), "alive": time.time()}


def _machine() -> str | None:
    """This kernel and PID namespace (pids are comparable within it), or None off Linux."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
        return f"{boot}/{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        return None


def _owner_alive(attrs: dict[str, Any], started: Any) -> bool:
    """Whether the worker that runs a trial is alive (see the module docstring)."""
    owner = attrs.get("owner")
    if owner is None:  # asked, not yet claimed: alive only while young
        import datetime

        age = abs((datetime.datetime.now() - started).total_seconds()) if started else math.inf
        return age < STALE_AFTER
    beat = float(attrs.get("alive", owner.get("alive", 0.0)))
    machine = _machine()
    if machine is not None and owner.get("machine") == machine:
        if owner.get("pid") == os.getpid():
            return owner.get("token") in _ACTIVE
        return _pid_alive(int(owner.get("pid", 0)))
    return time.time() - beat < STALE_AFTER


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


class _Heartbeat:
    """While a trial runs: refresh its ``alive`` attribute every ``HEARTBEAT`` seconds."""

    def __init__(self, trial: optuna.Trial, token: str) -> None:
        self.trial, self.token = trial, token
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, name="trial-heartbeat", daemon=True)

    def _beat(self) -> None:
        while not self.stop.wait(HEARTBEAT):
            try:
                self.trial.set_user_attr("alive", time.time())
            except Exception:  # noqa: BLE001 - finished or storage gone: nothing left to do
                return

    def __enter__(self) -> _Heartbeat:
        _ACTIVE.add(self.token)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        _ACTIVE.discard(self.token)


def _same(a: dict[str, float], b: dict[str, float]) -> bool:
    return a.keys() == b.keys() and all(math.isclose(a[k], b[k], rel_tol=1e-9) for k in a)

