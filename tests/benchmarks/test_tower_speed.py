"""Step time and memory of hypergrad towers against plain ``torch.optim`` and the paper's ``gdtuo``.

A *step* here is a whole training step (zero_grad, forward, backward, ``step()``; for ``gdtuo``
its loop: ``begin``, ``zero_grad``, ``backward(create_graph=True)``, ``step``), because that is
where the reference implementation pays (it differentiates through the update). Two models:

- the paper's MNIST MLP, 784-128-10 tanh, batch 256;
- ResNet-20 (``bench.models.ResNet20``), batch 128 of CIFAR-shaped random inputs.

SGD towers ``sgd(0.01)/sgd(1e-5)/...`` and Adam towers ``adam(1e-3, v0=1e-8)/adam(1e-5,
v0=1e-8)/...`` of heights 0 to 4 (``v0=1e-8``: gdtuo's Adam, so that both compute the same
numbers), the plain ``torch.optim`` optimizer, and ``gdtuo`` at heights 1 to 4 (its height 0 is
not an optimizer of its own). Targets (issue 2): on ResNet-20, height 1 at most 1.10x plain on the
CPU (1.05x on a GPU), each further level at most +3%, faster than gdtuo at every height.

Two uses:

1. **pytest-benchmark** (disabled by default; ``pytest tests/benchmarks --benchmark-enable``): one
   benchmark per (model, optimizer, height, implementation), grouped by (model, family), so that
   the table's relative column reads "over plain torch.optim" at a glance; ``extra_info`` holds
   the optimizer's memory in bytes and the parameters' bytes. With benchmarks disabled only the
   MLP cases run, once each, as a smoke test.
2. **The ratio table** (a shared machine changes absolute times from minute to minute, so the
   figures come from one process measuring everything, interleaved: each round times a block of
   steps of every case back to back, and each ratio is taken within a round, then the median over
   rounds)::

       python tests/benchmarks/test_tower_speed.py --model resnet20 --rounds 5 [--device cuda]

   Besides whole steps (``x plain``), the table times the optimizer's ``step()`` alone and gives
   the ratio from parts (``x plain*``: forward+backward, which a tower leaves untouched, plus each
   step), far steadier on a busy machine. ``test_targets`` (marked ``benchmark_gate``, runs with
   ``--benchmark-enable``) asserts the targets from the same measurement.
"""

from __future__ import annotations

import argparse
import gc
import math
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import hypergrad  # noqa: E402

HEIGHTS = (0, 1, 2, 3, 4)
KINDS = ("sgd", "adam")
MODELS = ("mlp", "resnet20")
TARGET_H1 = {"cpu": 1.10, "cuda": 1.05}
TARGET_PER_LEVEL = 1.03
MLP_TARGET_H1 = {"sgd": 1.04, "adam": 1.15}
"""Issue 19 on the CPU, the MNIST MLP: a whole step at height 1 over plain torch.optim."""
MLP_TARGET_ADDED = 0.3
"""Issue 19: at heights 1 to 3, the step time a tower adds over plain torch.optim, at most this
fraction of what gdtuo adds at the same height."""


@dataclass(frozen=True)
class Case:
    model: str
    kind: str
    height: int
    impl: str  # "torch" | "hypergrad" | "gdtuo"

    @property
    def id(self) -> str:
        return f"{self.model}-{self.kind}-h{self.height}-{self.impl}"

    @property
    def spec(self) -> str:
        if self.kind == "sgd":
            return "/".join(["sgd(0.01)"] + ["sgd(1e-5)"] * self.height)
        return "/".join(["adam(1e-3, v0=1e-8)"] + ["adam(1e-5, v0=1e-8)"] * self.height)


def cases(models: tuple[str, ...] = MODELS) -> list[Case]:
    out = []
    for model in models:
        for kind in KINDS:
            out.append(Case(model, kind, 0, "torch"))
            out += [Case(model, kind, h, "hypergrad") for h in HEIGHTS]
            out += [Case(model, kind, h, "gdtuo") for h in HEIGHTS if h > 0]
    return out


# ---------------------------------------------------------------------------------------------
# models, batches and one training step per case


def build_model(name: str, device: str) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """The model (seed 0) and a fixed batch of random inputs of the right shape."""
    torch.manual_seed(0)
    if name == "mlp":
        model = nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.Tanh(), nn.Linear(128, 10))
        x = torch.randn(256, 784)
        y = torch.randint(0, 10, (256,))
    elif name == "resnet20":
        from bench.models import ResNet20

        model = ResNet20()
        x = torch.randn(128, 3, 32, 32)
        y = torch.randint(0, 10, (128,))
    else:
        raise ValueError(f"unknown model {name!r}; valid: {', '.join(MODELS)}")
    return model.to(device), x.to(device), y.to(device)


def _gdtuo_level(kind: str, lr: float, above: Any) -> Any:
    from gradient_descent_the_ultimate_optimizer import gdtuo

    if kind == "sgd":
        return gdtuo.SGD(lr, optimizer=above)
    return gdtuo.Adam(lr, optimizer=above)


@dataclass
class Runner:
    """One case, built: ``step()`` runs one training step; ``memory()`` the optimizer's bytes;
    ``forward_backward()`` and ``optimizer_step()`` the two parts of a step (not for gdtuo, whose
    optimizer lives in its backward pass)."""

    case: Case
    step: Callable[[], None]
    memory: Callable[[], int]
    param_bytes: int
    forward_backward: Callable[[], None] | None = None
    optimizer_step: Callable[[], None] | None = None


def make_runner(case: Case, device: str = "cpu") -> Runner:
    model, x, y = build_model(case.model, device)
    params = list(model.parameters())
    param_bytes = sum(p.numel() * p.element_size() for p in params)
    if case.impl == "gdtuo":
        from gradient_descent_the_ultimate_optimizer import gdtuo

        default_device = torch.get_default_device()
        torch.set_default_device(device)  # gdtuo creates its hyperparameters there
        try:
            lrs = [0.01 if case.kind == "sgd" else 1e-3] + [1e-5 if case.kind == "sgd" else 1e-5]
            top: Any = gdtuo.NoOpOptimizer()
            for k in range(case.height, -1, -1):
                top = _gdtuo_level(case.kind, lrs[min(k, 1)], top)
            wrapper = gdtuo.ModuleWrapper(model, optimizer=top)
            wrapper.initialize()
        finally:
            torch.set_default_device(default_device)

        def step() -> None:
            wrapper.begin()
            wrapper.zero_grad()
            loss = F.cross_entropy(wrapper.forward(x), y)
            loss.backward(create_graph=True)
            wrapper.step()

        def memory() -> int:
            try:
                from bench.measure import optimizer_bytes
            except ImportError:  # the harness is not there: no figure
                return -1
            return optimizer_bytes(wrapper.optimizer, exclude=list(model.parameters()))

        return Runner(case, step, memory, param_bytes)

    if case.impl == "torch":
        cls = torch.optim.SGD if case.kind == "sgd" else torch.optim.Adam
        opt: torch.optim.Optimizer = cls(params, lr=0.01 if case.kind == "sgd" else 1e-3)

        def memory() -> int:
            return sum(t.numel() * t.element_size() for s in opt.state.values()
                       for t in s.values() if torch.is_tensor(t) and t.ndim > 0)
    else:
        opt = hypergrad.tower(case.spec, params)
        memory = opt.memory_bytes  # type: ignore[attr-defined]

    def forward_backward() -> None:
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()

    def step() -> None:
        forward_backward()
        opt.step()

    return Runner(case, step, memory, param_bytes, forward_backward, opt.step)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


# ---------------------------------------------------------------------------------------------
# the interleaved measurement and its table


def measure(models: tuple[str, ...], rounds: int, steps: int, device: str = "cpu",
            warmup: int = 2, heights: tuple[int, ...] = HEIGHTS,
            impls: tuple[str, ...] = ("torch", "hypergrad", "gdtuo"),
            kinds: tuple[str, ...] = KINDS, optimizer_steps: int = 20) -> list[dict[str, Any]]:
    """Per case: median seconds per training step, and median within-round ratios to plain
    torch.optim, to the tower one level lower, and of gdtuo over hypergrad at the same height.

    Also, for torch.optim and hypergrad, the optimizer's ``step()`` alone (``optimizer_steps``
    calls on the gradients of one batch, per round) and, since a tower leaves the model's forward
    and backward untouched, the ratio "from parts": (forward+backward + this step) over
    (forward+backward + the plain step), forward+backward timed on the plain optimizer's model.
    On a busy machine it is far steadier than the ratio of whole steps.
    """
    selected = [c for c in cases(models) if c.height in heights and c.impl in impls
                and c.kind in kinds]
    runners = {c: make_runner(c, device) for c in selected}
    for r in runners.values():
        for _ in range(warmup):
            r.step()
    _sync(device)
    times: dict[Case, list[float]] = {c: [] for c in selected}
    opt_times: dict[Case, list[float]] = {c: [] for c in selected}
    fb_times: dict[Case, list[float]] = {c: [] for c in selected}

    def clock(fn: Callable[[], None], n: int) -> float:
        gc.collect()
        _sync(device)
        start = time.perf_counter()
        for _ in range(n):
            fn()
        _sync(device)
        return (time.perf_counter() - start) / n

    for _ in range(rounds):
        for case, runner in runners.items():
            times[case].append(clock(runner.step, steps))
            if runner.optimizer_step is not None and runner.forward_backward is not None:
                fb_times[case].append(clock(runner.forward_backward, 1))
                opt_times[case].append(clock(runner.optimizer_step, optimizer_steps))

    def ratio(a: Case, b: Case) -> float | None:
        if a not in times or b not in times:
            return None
        return statistics.median(x / y for x, y in zip(times[a], times[b], strict=True))

    def added_fraction(case: Case, plain: Case) -> float | None:
        """The time this tower adds to a step over plain torch.optim, as a fraction of what gdtuo
        adds at the same height (median of the within-round fractions)."""
        ref = Case(case.model, case.kind, case.height, "gdtuo")
        if case.impl != "hypergrad" or not case.height or ref not in times or plain not in times:
            return None
        return statistics.median((a - p) / (r - p) for a, r, p in zip(
            times[case], times[ref], times[plain], strict=True))

    rows = []
    for case in selected:
        plain = Case(case.model, case.kind, 0, "torch")
        lower = Case(case.model, case.kind, case.height - 1, "hypergrad")
        ours = Case(case.model, case.kind, case.height, "hypergrad")
        runner = runners[case]
        parts = None
        if opt_times[case] and plain in opt_times:
            fb = statistics.median(fb_times[plain])
            parts = ((fb + statistics.median(opt_times[case]))
                     / (fb + statistics.median(opt_times[plain])))
        rows.append({
            "model": case.model, "kind": case.kind, "height": case.height, "impl": case.impl,
            "ms": 1e3 * statistics.median(times[case]),
            "opt_ms": 1e3 * statistics.median(opt_times[case]) if opt_times[case] else None,
            "over_plain": ratio(case, plain),
            "over_plain_parts": parts,
            "over_lower": ratio(case, lower) if case.impl == "hypergrad" and case.height else None,
            "gdtuo_over_ours": ratio(case, ours) if case.impl == "gdtuo" else None,
            "added_over_gdtuo": added_fraction(case, plain),
            "optimizer_bytes": runner.memory(),
            "param_bytes": runner.param_bytes,
        })
    by_case = {(r["model"], r["kind"], r["height"], r["impl"]): r for r in rows}
    for r in rows:  # the per-level ratio from parts, too
        below = by_case.get((r["model"], r["kind"], r["height"] - 1, "hypergrad"))
        r["over_lower_parts"] = (r["over_plain_parts"] / below["over_plain_parts"]
                                 if r["impl"] == "hypergrad" and below is not None
                                 and r["over_plain_parts"] and below["over_plain_parts"]
                                 else None)
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    def f(x: float | None, fmt: str = "{:.3f}") -> str:
        return "" if x is None else fmt.format(x)

    header = ("model", "optimizer", "h", "impl", "ms/step", "x plain", "x h-1", "gdtuo/ours",
              "added/gdtuo's", "step() ms", "x plain*", "x h-1*", "opt. MiB", "params MiB")
    lines = [header]
    for r in rows:
        lines.append((r["model"], r["kind"], str(r["height"]), r["impl"], f(r["ms"], "{:.2f}"),
                      f(r["over_plain"]), f(r["over_lower"]), f(r["gdtuo_over_ours"]),
                      f(r["added_over_gdtuo"]), f(r["opt_ms"], "{:.2f}"),
                      f(r["over_plain_parts"], "{:.4f}"), f(r["over_lower_parts"], "{:.4f}"),
                      f(r["optimizer_bytes"] / 2**20 if r["optimizer_bytes"] >= 0 else None),
                      f(r["param_bytes"] / 2**20)))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    table = "\n".join("  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True))
                      for line in lines)
    return table + ("\n(* from parts: forward+backward timed once for both, plus each optimizer's"
                    " step() alone; added/gdtuo's: the time a tower adds to a step over plain"
                    " torch.optim, as a fraction of what gdtuo adds at its height)")


def check_targets(rows: list[dict[str, Any]], device: str = "cpu") -> list[str]:
    """The targets the rows miss (empty when all are met). Tower over plain and level over level
    are read from parts (see :func:`measure`), gdtuo against hypergrad from whole steps."""
    misses = []
    for r in rows:
        name = f"{r['model']} {r['kind']} height {r['height']}"
        if r["impl"] == "gdtuo" and r["gdtuo_over_ours"] is not None \
                and r["gdtuo_over_ours"] <= 1.0:
            misses.append(f"{name}: not faster than gdtuo ({r['gdtuo_over_ours']:.3f})")
        if r["impl"] != "hypergrad" or r["model"] != "resnet20" or r["over_plain_parts"] is None:
            continue
        if r["height"] == 1 and r["over_plain_parts"] > TARGET_H1[device.split(":")[0]]:
            misses.append(f"{name}: {r['over_plain_parts']:.3f}x plain")
        if r["height"] > 1 and (r["over_lower_parts"] or 0.0) > TARGET_PER_LEVEL:
            misses.append(f"{name}: {r['over_lower_parts']:.3f}x the level below")
    return misses


def check_mlp_targets(rows: list[dict[str, Any]]) -> list[str]:
    """Issue 19's targets on the CPU's MNIST MLP that the rows miss, from whole steps (the
    measure the issue states them in). Reported by :func:`main`, not gated: one round's whole
    steps vary by a few percent on a shared machine."""
    misses = []
    for r in rows:
        if r["model"] != "mlp" or r["impl"] != "hypergrad" or not 1 <= r["height"] <= 3:
            continue
        name = f"mlp {r['kind']} height {r['height']}"
        target = MLP_TARGET_H1.get(r["kind"])
        if r["height"] == 1 and target and r["over_plain"] is not None \
                and r["over_plain"] > target:
            misses.append(f"{name}: {r['over_plain']:.3f}x plain (target {target})")
        added = r["added_over_gdtuo"]
        if added is not None and added > MLP_TARGET_ADDED:
            misses.append(f"{name}: adds {added:.2f} of what gdtuo adds (target "
                          f"{MLP_TARGET_ADDED})")
    return misses


# ---------------------------------------------------------------------------------------------
# pytest


@pytest.fixture
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("case", cases(), ids=lambda c: c.id)
def test_step_time(case, benchmark, one_thread, monkeypatch):
    """Times whole training steps of ``case`` (no timed assertion: a shared machine's times vary)
    and checks that they computed the numbers: each measured time positive and finite, and the
    weights after the timed steps those of the reference run as many steps (a hypergrad tower's
    reference is gdtuo at its height and the other way round; torch.optim is its own)."""
    if benchmark.disabled and case.model != "mlp":
        pytest.skip("ResNet-20 steps take seconds on a CPU: run with --benchmark-enable")
    models: list[nn.Module] = []  # what make_runner builds, to read the weights after the steps
    build = build_model

    def build_and_keep(name: str, device: str) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
        model, x, y = build(name, device)
        models.append(model)
        return model, x, y

    monkeypatch.setattr(sys.modules[__name__], "build_model", build_and_keep)
    runner = make_runner(case)
    steps = 0

    def step() -> None:
        nonlocal steps
        runner.step()
        steps += 1

    step()
    benchmark.group = f"{case.model} {case.kind}: step time over plain torch.optim"
    benchmark.extra_info.update(optimizer_bytes=runner.memory(), param_bytes=runner.param_bytes,
                                spec=case.spec if case.impl != "torch" else "torch.optim")
    benchmark.pedantic(step, rounds=3 if case.model == "resnet20" else 20, iterations=1,
                       warmup_rounds=1)
    if benchmark.stats is not None:  # None while benchmarks are disabled: nothing was timed
        times = benchmark.stats.stats
        assert 0 < times.min <= times.max < math.inf, (times.min, times.max)
    weights = [p.detach().clone() for p in models[0].parameters()]
    assert all(w.isfinite().all() for w in weights)
    if case.impl != "torch":
        other = "gdtuo" if case.impl == "hypergrad" else "hypergrad"
        reference = make_runner(Case(case.model, case.kind, case.height, other))
        for _ in range(steps):
            reference.step()
        torch.testing.assert_close(weights, [p.detach() for p in models[1].parameters()],
                                   rtol=1e-5, atol=1e-6)


def test_mlp_targets_name_each_miss():
    def row(kind, height, over_plain, added, model="mlp"):
        return {"model": model, "kind": kind, "height": height, "impl": "hypergrad",
                "over_plain": over_plain, "added_over_gdtuo": added}

    met = [row("sgd", 1, 1.04, 0.3), row("adam", 1, 1.15, 0.1), row("sgd", 3, 1.3, 0.29)]
    assert check_mlp_targets(met) == []
    missed = check_mlp_targets([row("sgd", 1, 1.05, 0.2), row("adam", 2, 1.5, 0.31),
                                row("sgd", 4, 2.0, 0.9), row("sgd", 1, 2.0, 0.9, "resnet20")])
    assert missed == ["mlp sgd height 1: 1.050x plain (target 1.04)",
                      "mlp adam height 2: adds 0.31 of what gdtuo adds (target 0.3)"]


@pytest.mark.slow
@pytest.mark.benchmark_gate
def test_targets(request, one_thread):
    """The issue's targets on the CPU, from one interleaved measurement (needs
    ``--benchmark-enable``: it takes minutes)."""
    if request.config.getoption("benchmark_disable", default=True):
        pytest.skip("a minutes-long measurement: run with --benchmark-enable")
    rows = measure(MODELS, rounds=3, steps=1, heights=(0, 1, 2, 3, 4))
    print("\n" + format_table(rows))
    assert not check_targets(rows), check_targets(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=[*MODELS, "all"], default="all")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=0, help="steps per block (default: 20 "
                        "for the MLP, 1 for ResNet-20 on a CPU)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    parser.add_argument("--heights", default="0,1,2,3,4")
    parser.add_argument("--impls", default="torch,hypergrad,gdtuo")
    parser.add_argument("--kinds", default=",".join(KINDS))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    models = MODELS if args.model == "all" else (args.model,)
    heights = tuple(int(h) for h in args.heights.split(","))
    for model in models:
        steps = args.steps or (20 if model == "mlp" or args.device != "cpu" else 1)
        rows = measure((model,), args.rounds, steps, device=args.device, heights=heights,
                       impls=tuple(args.impls.split(",")), kinds=tuple(args.kinds.split(",")))
        print(format_table(rows))
        misses = check_targets(rows, args.device)
        print("targets: " + ("all met" if not misses else "MISSED: " + "; ".join(misses)))
        if model == "mlp" and args.device == "cpu":
            misses = check_mlp_targets(rows)
            print("issue 19's MLP targets: " + ("all met" if not misses
                                                else "MISSED: " + "; ".join(misses)))
        print(flush=True)


if __name__ == "__main__":
    main()
