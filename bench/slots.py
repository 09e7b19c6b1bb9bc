"""Slots: where the workers of a suite run, one run at a time each (a GPU, a share of one, or a
CPU core), checked against this machine before anything runs."""

from __future__ import annotations

import os
from dataclasses import dataclass

from bench.config import CPU_THREADS
from bench.errors import UserError


@dataclass(frozen=True)
class Slot:
    """Where one worker runs: ``device`` is ``"cpu"`` or ``"cuda"``."""

    name: str
    device: str
    threads: int
    cuda_visible: str | None = None


def cpu_cores() -> int:
    """The cores this process may use (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def cpu_slots(workers: int) -> list[Slot]:
    """``workers`` CPU slots, one core each.

    Every CPU run computes with ``bench.config.CPU_THREADS`` (one) intra-op thread, however many
    workers share the machine: a matrix product split over two threads rounds differently, and a
    run's numbers must not depend on the slot that trained it (its id does not name the slot).
    """
    if workers < 1:
        raise UserError(f"--cpu-workers must be >= 1, but got {workers}")
    if workers > cpu_cores():
        raise UserError(f"--cpu-workers must be at most the {cpu_cores()} cores of this machine "
                        f"(a worker per core), but got {workers}")
    return [Slot(f"cpu{i}", "cpu", CPU_THREADS) for i in range(workers)]


def visible_gpus() -> list[str]:
    """The GPUs this process sees, as ``"index (name)"``; empty without CUDA."""
    import torch

    if not torch.cuda.is_available():
        return []
    return [f"{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())]


def gpu_slots(gpus: str, jobs_per_gpu: int = 1) -> list[Slot]:
    """Slots for ``--gpus 0,1`` or ``--gpus all``, checked before anything runs.

    Raises:
        UserError: CUDA is not available, or a named GPU is not visible (the message lists the
            visible devices).
    """
    import torch

    if jobs_per_gpu < 1:
        raise UserError(f"--jobs-per-gpu must be >= 1, but got {jobs_per_gpu}")
    if not torch.cuda.is_available():
        raise UserError(
            f"--gpus {gpus} needs CUDA, but this torch ({torch.__version__}, CUDA build "
            f"{torch.version.cuda}) sees no GPU; visible devices: none; use --cpu-workers N"
        )
    count = torch.cuda.device_count()
    if gpus.strip() == "all":
        ids = list(range(count))
    else:
        try:
            ids = [int(x) for x in gpus.split(",") if x.strip()]
        except ValueError:
            raise UserError(
                f"--gpus must be 'all' or indices such as 0,1, but got {gpus!r}"
            ) from None
        bad = [i for i in ids if not 0 <= i < count]
        if bad or not ids or len(set(ids)) != len(ids):
            raise UserError(f"--gpus {gpus}: GPU {bad or ids} is not available (each index once); "
                            f"visible devices: {', '.join(visible_gpus())}")
    # Indices are relative to this process's CUDA_VISIBLE_DEVICES; a worker needs the real one.
    parent_visible = [x for x in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if x]
    slots = []
    for i in ids:
        physical = parent_visible[i] if i < len(parent_visible) else str(i)
        for j in range(jobs_per_gpu):
            name = f"gpu{i}" if jobs_per_gpu == 1 else f"gpu{i}.{j}"
            slots.append(Slot(name, "cuda", max(1, cpu_cores() // len(ids) // jobs_per_gpu),
                              physical))
    return slots
