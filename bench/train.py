"""The training loop: one run's config in, one result record out.

Read it top to bottom: ``train`` resolves the names, plans the budget, seeds, builds the model and
the method, then ``_loop`` steps, evaluates on schedule and watches for divergence, and
``_record`` turns what was measured into a ``RunResult``.

Sync points (where the host waits for the device) are few on purpose, so the harness costs little
over a hand-written loop (``tests/benchmarks/test_harness_speed.py``):

- every ``check_every`` steps (default 10): the pending losses are read in one transfer and
  checked for divergence (a non-finite loss, or one ``diverge_factor`` times the first step's),
  and the seconds budget is compared with the timer;
- every ``hyper_every`` steps (default: about 200 samples per run): the learned hyperparameters;
- at each evaluation (every ``eval_every`` epochs, default 1, and at the end), untimed.
"""

from __future__ import annotations

import functools
import math
import random
import traceback
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch._dynamo  # noqa: F401 - torch.optim imports it on first use (seconds): not mid-run
from torch import Tensor, nn

from bench import measure
from bench.config import CPU_THREADS, RunConfig
from bench.errors import UserError
from bench.methods import OptimizerSetup, parse_method
from bench.record import DIVERGED, DONE, FAILED, RunResult
from bench.run_plan import RunPlan
from bench.workloads import get_workload
from bench.workloads.base import Data, Workload

# ``on_eval(point) -> bool``: True stops the run (Optuna pruning, early stopping).
OnEval = Callable[[dict[str, Any]], bool]
# ``progress(step, total_steps, info)``: called at each check and evaluation, never per step.
Progress = Callable[[int, int, dict[str, Any]], None]

LOSS_POINTS = 1000  # at most this many points in the stored train-loss curve
DATA_CACHE_SIZE = 2  # datasets kept per process (several seeds of one workload share little)


def train(
    config: RunConfig,
    *,
    on_eval: OnEval | None = None,
    progress: Progress | None = None,
    store: str | None = None,
    storage: str | None = None,
) -> RunResult:
    """Train one run and measure it.

    Never raises for a failing run: an exception becomes status ``failed`` (message kept, CUDA
    out-of-memory included) and a non-finite loss or parameter becomes ``diverged`` with the
    step (also when the loss exceeds ``bench.run_plan.DIVERGE_FACTOR`` times the first step's:
    option ``diverge_factor``). Raises ``UserError`` for an unknown workload, method or device, or
    missing data, before anything trains; re-raises ``KeyboardInterrupt`` (the caller records
    ``interrupted`` or discards the run).

    Args:
        config: the run; ``config.method`` should be canonical (``parse_method(m).name``).
        on_eval: called after each evaluation with the eval point (``step``, ``epoch``,
            ``cost_steps``, ``cost_seconds``, ``train_loss``, ``val_*``, ``test_*``); returning
            True stops the run, recorded as ``curves["stopped_early"] = True``.
        progress: called as ``progress(step, total_steps, info)`` every few steps (``info``
            holds ``loss`` and ``epoch``); the first call, at step 0, gives the ``RunPlan``.
        store: the results store the run is for (a path or a database URL; default
            ``$BENCH_STORE``'s): a search keeps its Optuna study beside or in it.
        storage: the Optuna storage of a search whose run names none (default
            ``$BENCH_OPTUNA_STORAGE``, else the store's; ``bench.methods.search.storage_url``).

    Returns:
        The run's record (``bench.record.RunResult``).
    """
    # 1. Names -> objects; a user's mistake stops here, before anything runs.
    method = parse_method(config.method)
    workload = get_workload(config.workload)
    if method.kind == "search":
        return method.search(config, train=train, storage=config.option("storage") or storage,
                             store=store)
    device = resolve_device(config.device)
    if device.type == "cpu":  # the same numbers whichever process trains it (bench.config)
        torch.set_num_threads(CPU_THREADS)
    data = load_data(workload, device, config.seed, holdout(config))
    plan = RunPlan.make(config, workload, data)

    # 2. Everything random follows the seed: model init, batch order, augmentation.
    seed_everything(config.seed)
    generator = torch.Generator(device=device).manual_seed(config.seed)
    run = _Run(config=config, plan=plan, started=measure.now_iso())
    run.cuda_baseline = measure.reset_cuda_peak(device)
    model: nn.Module | None = None
    setup: OptimizerSetup | None = None
    try:
        model = workload.build_model().to(device)
        setup = method.setup(
            model.parameters(),
            total_steps=plan.total_steps,
            steps_per_epoch=plan.steps_per_epoch,
            model=model,
        )
        # 3. The loop.
        _loop(run, workload, data, model, setup, generator, on_eval, progress)
    except Exception as e:  # a failing run is a result, never a crash of the harness
        run.status, run.error = FAILED, _one_line(e)
        run.traceback = traceback.format_exc()
    # 4. The record.
    result = _record(run, model, setup, device)
    del model, setup
    if device.type == "cuda" and run.status == FAILED:
        torch.cuda.empty_cache()  # an out-of-memory run must not starve the next one
    return result


@dataclass
class _Run:
    """What the loop measures, kept outside it so a failed run still reports its partial cost."""

    config: RunConfig
    plan: RunPlan
    started: str
    status: str = DONE
    error: str | None = None
    traceback: str | None = None
    diverged_step: int | None = None
    step: int = 0
    stopped_early: bool = False
    timer: measure.StepTimer | None = None
    losses: list[float] = field(default_factory=list)  # one per step, read in batches
    evals: list[dict[str, Any]] = field(default_factory=list)
    hyper: dict[str, list[list[float]]] = field(default_factory=dict)
    eval_seconds: float = 0.0
    cuda_baseline: int = 0


def _loop(
    run: _Run,
    workload: Workload,
    data: Data,
    model: nn.Module,
    setup: OptimizerSetup,
    generator: torch.Generator,
    on_eval: OnEval | None,
    progress: Progress | None,
) -> None:
    """Step until the budget is spent, the run diverges, or ``on_eval`` stops it."""
    plan = run.plan
    timer = run.timer = measure.StepTimer(next(model.parameters()).device, plan.warmup_steps)
    pending: list[Tensor] = []  # losses of the steps not yet read back (no per-step sync)
    l2 = list(model.parameters()) if workload.l2 else None
    model.train()
    setup.train_mode()
    _sample_hyper(run, setup)
    if progress is not None:
        progress(0, plan.total_steps, {"epoch": 0.0, "plan": plan})
    batches: Any = iter(())
    while run.step < plan.total_steps:
        timer.start()
        batch = next(batches, None)
        if batch is None:  # the epoch is over: draw the next order (timed: it is training)
            batches = iter(workload.train_batches(data.train, plan.batch_size, generator))
            batch = next(batches)
        loss = setup.step(functools.partial(_batch_loss, workload, model, *batch, l2))
        timer.stop()
        run.step += 1
        pending.append(loss.detach())

        evaluate = run.step == plan.total_steps or run.step % plan.eval_every == 0
        out_of_time = False
        if evaluate or run.step % plan.check_every == 0:
            # Sync point: read the pending losses back; stop at the first diverging one.
            if _read_losses(run, pending):
                return
            out_of_time = plan.seconds is not None and timer.total_seconds() >= plan.seconds
            evaluate = evaluate or out_of_time
            if progress is not None:
                progress(run.step, plan.total_steps, _progress_info(run))
        if run.step % plan.hyper_every == 0:
            _sample_hyper(run, setup)
        if evaluate:
            if _evaluate(run, workload, data, model, setup, on_eval) or out_of_time:
                break
    if not run.hyper or _last_hyper_step(run) != run.step:
        _sample_hyper(run, setup)


def _batch_loss(
    workload: Workload, model: nn.Module, inputs: Tensor, targets: Tensor,
    l2: list[Tensor] | None,
) -> Tensor:
    loss = workload.loss(model(inputs), targets)
    if l2 is None:
        return loss
    # (l2 / 2) * sum ||w||^2: its gradient is l2 * w, torch.optim's coupled weight decay.
    return loss + 0.5 * workload.l2 * torch.stack([p.square().sum() for p in l2]).sum()


def _read_losses(run: _Run, pending: list[Tensor]) -> bool:
    """Move the pending losses to the host; on a non-finite one, mark the run diverged."""
    if not pending:
        return False
    first = len(run.losses) + 1  # the step of pending[0]
    values = torch.stack(pending).float().tolist()
    pending.clear()
    run.losses.extend(values)
    limit = run.plan.diverge_factor * max(abs(run.losses[0]), 1.0)
    for offset, value in enumerate(values):
        if not math.isfinite(value):
            _diverge(run, first + offset, f"non-finite training loss ({value}) at step")
            return True
        if value > limit:
            _diverge(
                run,
                first + offset,
                f"training loss {value:.4g} above {run.plan.diverge_factor:g}x the first step's "
                f"({run.losses[0]:.4g}) at step",
            )
            return True
    return False


def _diverge(run: _Run, step: int, why: str) -> None:
    run.status, run.diverged_step = DIVERGED, step
    run.error = f"{why} {step}"


def _evaluate(
    run: _Run,
    workload: Workload,
    data: Data,
    model: nn.Module,
    setup: OptimizerSetup,
    on_eval: OnEval | None,
) -> bool:
    """Evaluate on val (when held out) and test, untimed (the harness switches modes); True
    stops the run."""
    if not _finite_parameters(model):
        _diverge(run, run.step, "non-finite parameter at the evaluation of step")
        return True
    clock = measure.StepTimer(next(model.parameters()).device, warmup_steps=0)
    clock.start()
    model.eval()
    setup.eval_mode()
    with torch.no_grad():
        val = workload.evaluate(model, data.val) if data.val is not None else {}
        test = workload.evaluate(model, data.test)
    model.train()
    setup.train_mode()
    clock.stop()
    run.eval_seconds += clock.total_seconds()

    since = run.evals[-1]["step"] if run.evals else 0
    window = run.losses[since : run.step]
    point: dict[str, Any] = {
        "step": run.step,
        "epoch": run.step / run.plan.steps_per_epoch,
        "cost_steps": run.step,
        "cost_seconds": run.timer.total_seconds() if run.timer else 0.0,
        "train_loss": sum(window) / len(window) if window else float("nan"),
    }
    point |= {f"val_{k}": float(v) for k, v in val.items()}
    point |= {f"test_{k}": float(v) for k, v in test.items()}
    run.evals.append(point)
    if on_eval is not None and on_eval(dict(point)):
        run.stopped_early = True
        return True
    return False


def _finite_parameters(model: nn.Module) -> bool:
    """One sync: are every parameter and floating buffer finite?"""
    tensors = [t for t in (*model.parameters(), *model.buffers()) if t.is_floating_point()]
    if not tensors:
        return True
    return bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())


def _sample_hyper(run: _Run, setup: OptimizerSetup) -> None:
    for name, value in setup.hyperparameters().items():
        run.hyper.setdefault(name, []).append([run.step, float(value)])


def _last_hyper_step(run: _Run) -> int:
    return int(max(points[-1][0] for points in run.hyper.values()))


def _progress_info(run: _Run) -> dict[str, Any]:
    return {"loss": run.losses[-1], "epoch": run.step / run.plan.steps_per_epoch}


def _record(
    run: _Run, model: nn.Module | None, setup: OptimizerSetup | None, device: torch.device
) -> RunResult:
    """Assemble the record from what the run measured."""
    metrics: dict[str, float] = {}
    if run.status == DONE and run.evals:
        final = run.evals[-1]
        metrics = {k: v for k, v in final.items() if k.split("_")[0] in ("train", "val", "test")}
    if run.status == DONE:
        metrics |= {f"hyper/{name}": points[-1][1] for name, points in run.hyper.items()}
    curves: dict[str, Any] = {
        "eval": run.evals,
        "train_loss": _downsample(run.losses, LOSS_POINTS),
        "hyper": run.hyper,
        "steps_per_epoch": run.plan.steps_per_epoch,
    }
    if run.stopped_early:
        curves["stopped_early"] = True
    if run.traceback:
        curves["traceback"] = run.traceback
    timer = run.timer
    timing = timer.summary() if timer else {}
    timing["eval_seconds"] = run.eval_seconds
    memory: dict[str, float] = {"peak_rss_bytes": measure.peak_rss_bytes()}
    if setup is not None:
        exclude = list(model.parameters()) if model is not None else []
        memory["optimizer_bytes"] = measure.optimizer_bytes(setup.optimizer, exclude)
    if device.type == "cuda":
        memory["cuda_peak_bytes"] = measure.cuda_peak_bytes(device)
        memory["cuda_baseline_bytes"] = run.cuda_baseline
    cost = {
        "steps": run.step,
        "device_seconds": timer.total_seconds() if timer else 0.0,
        "epochs": run.step / run.plan.steps_per_epoch,
    }
    return RunResult(
        run_id=run.config.run_id,
        config=run.config.to_dict(),
        status=run.status,
        metrics=metrics,
        curves=curves,
        timing=timing,
        memory=memory,
        cost=cost,
        env=measure.environment(device, run.started),
        error=run.error,
        diverged_step=run.diverged_step,
    )


def _downsample(values: list[float], max_points: int) -> list[list[float]]:
    """``[[step, mean loss of the window ending there], ...]``, at most ``max_points`` points."""
    if not values:
        return []
    window = max(1, math.ceil(len(values) / max_points))
    out = []
    for end in range(window, len(values) + window, window):
        chunk = values[end - window : end]
        out.append([min(end, len(values)), sum(chunk) / len(chunk)])
    return out


# ---------------------------------------------------------------------------------------------
# Setup helpers


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (every device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda`` or ``cuda:N``; a device that is not there is a ``UserError``."""
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise UserError(f"invalid device {name!r} ({e}); use cpu, cuda or cuda:N") from e
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise UserError(f"unsupported device {name!r}; use cpu, cuda or cuda:N")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise UserError(f"device {name!r} asked for, but CUDA is not available here; use cpu")
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index >= count:
        visible = ", ".join(f"cuda:{i}" for i in range(count))
        raise UserError(f"device {name!r} is not there; visible devices: {visible}")
    return torch.device("cuda", index)


_DATA: OrderedDict[tuple[str, str, int], Data] = OrderedDict()


def holdout(config: RunConfig) -> float:
    """The fraction of the training split held out for validation: the run option ``holdout``,
    else 0 (a single run trains on the whole training split, as both papers did; a search sets it
    on its trials, ``Workload.search_holdout``)."""
    value = config.option("holdout", 0.0)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise UserError(f"option holdout must be a number in [0, 1), but got holdout={value!r}")
    return float(value)


def load_data(workload: Workload, device: torch.device, seed: int, holdout: float = 0.0) -> Data:
    """The workload's splits on ``device`` for ``seed``, cached for the next runs of the process
    (with nothing held out the split does not depend on the seed: every seed shares it)."""
    key = (workload.name, str(device), seed if holdout else None, holdout)
    if key in _DATA:
        _DATA.move_to_end(key)
        return _DATA[key]
    data = workload.load_data(device, seed, holdout)
    _DATA[key] = data
    while len(_DATA) > DATA_CACHE_SIZE:
        _DATA.popitem(last=False)
    return data


def _one_line(error: BaseException) -> str:
    message = str(error).strip().splitlines()
    return f"{type(error).__name__}: {message[0]}" if message else type(error).__name__
