"""The one timer, memory measurements and provenance: every timing in the project comes from here.

Definitions (``../shared/DESIGN.md``, "Measurements"):

- **Step time**: the duration of one training step (batch, forward, backward, update), warm-up
  steps excluded from the statistics. On a GPU each step is bracketed by CUDA events, so the loop
  never has to synchronize per step; the events are resolved (one synchronize) only when the
  numbers are read. On the CPU, ``time.perf_counter`` brackets the step.
- **Memory**: on a GPU, ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``; on
  every device, the bytes the optimizer holds (``optimizer_bytes``) and the process's peak RSS.
- **Environment**: device name, torch and CUDA versions, the project's git commit, host, python.
"""

from __future__ import annotations

import datetime as _dt
import functools
import platform
import resource
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

# ``optimizer_bytes`` follows object attributes this deep; a tower's levels nest a few deep.
_MAX_DEPTH = 8


class StepTimer:
    """Times training steps; the same object serves the step-time statistics and the budget.

    Usage::

        timer = StepTimer(device, warmup_steps=5)
        for batch in batches:
            timer.start()
            ...one step...
            timer.stop()
        timer.total_seconds()   # every step, warm-up included (the run's cost)
        timer.summary()         # median / p10 / p90 of the steps after warm-up

    Evaluations happen between ``stop()`` and the next ``start()``, so they are never timed.

    Args:
        device: where the steps run; on CUDA the timer records events instead of synchronizing.
        warmup_steps: the first steps left out of the statistics (compilation, allocator warm-up).
    """

    def __init__(self, device: torch.device | str, warmup_steps: int = 5) -> None:
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, but got {warmup_steps=}")
        self.device = torch.device(device)
        self.warmup_steps = warmup_steps
        self._cuda = self.device.type == "cuda"
        self._durations: list[float] = []  # resolved step durations, seconds
        self._pending: list[tuple[Any, Any]] = []  # CUDA (start, end) events not yet resolved
        self._started: Any = None

    def start(self) -> None:
        """Mark the beginning of a step."""
        if self._cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record(torch.cuda.current_stream(self.device))
            self._started = event
        else:
            self._started = time.perf_counter()

    def stop(self) -> None:
        """Mark the end of the step begun by ``start()``."""
        if self._started is None:
            raise RuntimeError("StepTimer.stop() called without a matching start()")
        if self._cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record(torch.cuda.current_stream(self.device))
            self._pending.append((self._started, event))
        else:
            self._durations.append(time.perf_counter() - self._started)
        self._started = None

    @property
    def steps(self) -> int:
        """Steps timed so far, warm-up included."""
        return len(self._durations) + len(self._pending)

    def durations(self) -> list[float]:
        """Every step's duration in seconds, warm-up included (synchronizes CUDA if needed)."""
        if self._pending:
            # The one sync point of the timer: wait for the last recorded event, then read all.
            self._pending[-1][1].synchronize()
            self._durations.extend(s.elapsed_time(e) / 1000.0 for s, e in self._pending)
            self._pending.clear()
        return self._durations

    def total_seconds(self) -> float:
        """Device-seconds spent in steps so far, warm-up included: the run's cost."""
        return float(sum(self.durations()))

    def summary(self) -> dict[str, float]:
        """Median, p10 and p90 step time (seconds) over the steps after warm-up.

        Runs shorter than the warm-up fall back to every step, so a short run still reports a
        time (``warmup_steps`` in the result says how many were left out).
        """
        all_steps = self.durations()
        warmup = self.warmup_steps if len(all_steps) > self.warmup_steps else 0
        timed = all_steps[warmup:]
        if not timed:
            return {"timed_steps": 0, "warmup_steps": 0, "train_seconds": 0.0}
        return {
            "step_time_median": statistics.median(timed),
            "step_time_p10": _quantile(timed, 0.10),
            "step_time_p90": _quantile(timed, 0.90),
            "timed_steps": len(timed),
            "warmup_steps": warmup,
            "train_seconds": float(sum(timed)),
        }


def _quantile(values: list[float], q: float) -> float:
    """Linear-interpolation quantile (numpy's default), without numpy."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


# ---------------------------------------------------------------------------------------------
# Memory


def reset_cuda_peak(device: torch.device | str) -> int:
    """Start a per-run CUDA peak; returns the bytes already allocated (data, cached tensors)."""
    device = torch.device(device)
    if device.type != "cuda":
        return 0
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    return int(torch.cuda.memory_allocated(device))


def cuda_peak_bytes(device: torch.device | str) -> int:
    """``max_memory_allocated`` since the last ``reset_cuda_peak`` (0 off CUDA)."""
    device = torch.device(device)
    if device.type != "cuda":
        return 0
    torch.cuda.synchronize(device)
    return int(torch.cuda.max_memory_allocated(device))


def peak_rss_bytes() -> int:
    """The process's peak resident set size (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def optimizer_bytes(optimizer: Any, exclude: Iterable[Tensor] = ()) -> int:
    """Bytes of the tensors an optimizer holds: its state and whatever else it keeps.

    If the optimizer has a ``memory_bytes()`` method (a hypergrad tower may know better what it
    holds), that is used. Otherwise the walk covers ``optimizer.state``, every attribute of the
    object and of the objects it refers to (nested levels of a tower, the reference ``gdtuo``
    objects), and the tensors saved by autograd graphs hanging from those tensors (a tower's
    last-update graph). Each storage is counted once (deduplicated by ``data_ptr``), and the
    tensors in ``exclude`` (the model's parameters) and their gradients are left out: they belong
    to the model whatever the optimizer.

    Args:
        optimizer: a ``torch.optim.Optimizer`` or any object holding tensors.
        exclude: tensors not to count.
    """
    if callable(getattr(optimizer, "memory_bytes", None)):
        return int(optimizer.memory_bytes())
    excluded: set[int] = set()
    for tensor in exclude:
        excluded.add(_storage_key(tensor))
        if (tensor.is_leaf or tensor.retains_grad) and tensor.grad is not None:
            excluded.add(_storage_key(tensor.grad))
    walker = _TensorWalker(excluded)
    walker.visit(optimizer, 0)
    return walker.total


def _storage_key(tensor: Tensor) -> int:
    try:
        return tensor.untyped_storage().data_ptr()
    except (RuntimeError, NotImplementedError):  # tensors without storage (meta, sparse)
        return id(tensor)


class _TensorWalker:
    """Sums the storages reachable from an object, each once."""

    def __init__(self, excluded: set[int]) -> None:
        self.excluded = excluded
        self.seen_storages: set[int] = set()
        self.seen_objects: set[int] = set()
        self.total = 0

    def visit(self, obj: Any, depth: int) -> None:
        if depth > _MAX_DEPTH or id(obj) in self.seen_objects:
            return
        self.seen_objects.add(id(obj))
        if isinstance(obj, Tensor):
            self._count(obj)
            if obj.grad_fn is not None:
                self._visit_graph(obj.grad_fn)
            return
        if isinstance(obj, dict):
            for value in obj.values():
                self.visit(value, depth + 1)
        elif isinstance(obj, (list, tuple, set)):
            for value in obj:
                self.visit(value, depth + 1)
        elif isinstance(obj, torch.nn.Module):
            return  # the model (a gdtuo wrapper keeps one): not the optimizer's memory
        elif hasattr(obj, "__dict__") and not isinstance(obj, type):
            if isinstance(obj, torch.optim.Optimizer):
                # The parameters it trains (at any level) are not memory it holds.
                for group in obj.param_groups:
                    for param in group["params"]:
                        self.excluded.add(_storage_key(param))
                        if (param.is_leaf or param.retains_grad) and param.grad is not None:
                            self.excluded.add(_storage_key(param.grad))
            for value in vars(obj).values():
                self.visit(value, depth + 1)

    def _count(self, tensor: Tensor) -> None:
        key = _storage_key(tensor)
        if key in self.excluded or key in self.seen_storages:
            return
        self.seen_storages.add(key)
        try:
            self.total += tensor.untyped_storage().nbytes()
        except (RuntimeError, NotImplementedError):
            self.total += tensor.numel() * tensor.element_size()

    def _visit_graph(self, root: Any) -> None:
        """Count the tensors autograd saved for backward (``_saved_*`` attributes of nodes)."""
        stack, seen = [root], set()
        while stack:
            node = stack.pop()
            if node is None or id(node) in seen:
                continue
            seen.add(id(node))
            for name in dir(node):
                if name.startswith("_saved_"):
                    try:
                        value = getattr(node, name)
                    except RuntimeError:  # freed after backward
                        continue
                    for item in value if isinstance(value, (list, tuple)) else (value,):
                        if isinstance(item, Tensor):
                            self._count(item)
            stack.extend(next_node for next_node, _ in getattr(node, "next_functions", ()))


# ---------------------------------------------------------------------------------------------
# Provenance


def now_iso() -> str:
    """The current time, ISO 8601 in UTC, to the second."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    """The project's git commit (``HEAD``), or ``"unknown"`` outside a git checkout."""
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and commit else "unknown"


def device_name(device: torch.device | str) -> str:
    """A human name for the device: the GPU model, or the CPU model."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return _cpu_name()


@functools.lru_cache(maxsize=1)
def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def environment(device: torch.device | str, started: str | None = None) -> dict[str, Any]:
    """Where a result came from: device, versions, commit, host, python and the time span.

    Args:
        device: the training device.
        started: the run's start time (``now_iso()`` taken before training); ``ended`` is now.
    """
    return {
        "device": str(device),
        "device_name": device_name(device),
        "torch": torch.__version__,
        "cuda": torch.version.cuda or "none",
        "commit": git_commit(),
        "host": socket.gethostname(),
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "started": started or now_iso(),
        "ended": now_iso(),
    }
