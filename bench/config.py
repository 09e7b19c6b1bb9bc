"""A run's configuration, and its stable id.

A run is one (workload, method, seed, budget, device). Its id is a hash of the normalised config
and ``CODE_VERSION``, so re-running a suite skips what is already stored, whatever the order of
lists in the suite file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

from bench import CODE_VERSION
from bench.errors import UserError

# Intra-op threads of every run on the CPU, wherever it runs (``bench run``, any suite worker): a
# reduction split over more threads rounds differently, and a run's numbers must not depend on
# the slot that trained it. Parallelism on the CPU is across runs (``--cpu-workers``).
CPU_THREADS = 1
MAX_STEPS = 10**9  # a billion optimizer steps: far beyond any run, below every counter's range
MAX_SEED = 2**63 - 1  # seeds are stored as SQLite INTEGERs (signed 64-bit)


@dataclass(frozen=True)
class Budget:
    """What a run may spend. ``steps`` wins over ``epochs``; ``seconds`` caps measured step time.

    With neither steps nor epochs, the workload's default number of epochs applies.
    """

    steps: int | None = None
    epochs: float | None = None
    seconds: float | None = None

    def __post_init__(self) -> None:
        steps = self.steps
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int)
                                  or not 0 < steps <= MAX_STEPS):
            raise UserError(f"budget steps must be a whole number in 1..{MAX_STEPS:.0e}, but got "
                            f"steps={steps!r}")
        for name in ("epochs", "seconds"):
            value = getattr(self, name)
            if value is None:
                continue
            if (isinstance(value, bool) or not isinstance(value, (int, float))
                    or not math.isfinite(value) or not value > 0):
                raise UserError(f"budget {name} must be a finite number > 0, but got "
                                f"{name}={value!r}")

    def label(self) -> str:
        parts = []
        if self.steps is not None:
            parts.append(f"{self.steps} steps")
        if self.epochs is not None:
            parts.append(f"{self.epochs:g} epochs")
        if self.seconds is not None:
            parts.append(f"{self.seconds:g} s")
        return ", ".join(parts) or "workload default"


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a run's result.

    ``method`` is the canonical method name (``bench.methods.parse_method(m).name``).
    ``options`` holds rarely used knobs (``batch_size``, ``eval_every`` in epochs, ``warmup_steps``,
    ``hyper_every`` in steps, ``jobs_per_gpu``, ``parent``); every key in it is part of the id.
    """

    workload: str
    method: str
    seed: int = 0
    budget: Budget = field(default_factory=Budget)
    device: str = "cpu"
    options: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        seed = self.seed
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
            raise UserError(f"seed must be a whole number in 0..2**63-1, but got seed={seed!r}")

    def option(self, key: str, default: Any = None) -> Any:
        return dict(self.options).get(key, default)

    def with_options(self, **kw: Any) -> RunConfig:
        merged = dict(self.options) | kw
        return dataclasses.replace(self, options=tuple(sorted(merged.items())))

    def to_dict(self) -> dict[str, Any]:
        return {
            "workload": self.workload,
            "method": self.method,
            "seed": self.seed,
            "budget": dataclasses.asdict(self.budget),
            "device": self.device,
            "options": dict(sorted(self.options)),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        return cls(
            workload=d["workload"],
            method=d["method"],
            seed=int(d.get("seed", 0)),
            budget=Budget(**d.get("budget", {})),
            device=d.get("device", "cpu"),
            options=tuple(sorted(d.get("options", {}).items())),
        )

    @property
    def run_id(self) -> str:
        return run_id(self)


def device_kind(device: str) -> str:
    """``cuda:1`` and ``cuda`` are the same kind of device: results must not depend on the index."""
    return device.split(":")[0]


def run_id(config: RunConfig) -> str:
    """A stable 16-hex-digit id: the same config (and code version) always gives the same id.

    The device index is left out (a run on ``cuda:1`` is the same run as on ``cuda:0``).
    """
    d = config.to_dict()
    d["device"] = device_kind(config.device)
    payload = json.dumps({"config": d, "code": CODE_VERSION}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
