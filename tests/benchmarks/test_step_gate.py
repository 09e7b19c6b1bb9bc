"""Optimizer-step micro-benchmarks and the CPU performance gate (issue 7).

What is timed: ``optimizer.step()`` alone, the part of a training step that differs between
methods. Before each step the gradients of a real batch are copied into ``.grad`` (untimed) from a
small pool computed once per model: the MNIST MLP 784-128-10 at batch 256 and ResNet-20 on the
CIFAR-10 subset at batch 128, both at their seed-0 initialisation. Forward and backward are left
out on purpose: they are the same for every optimizer and would dilute an optimizer regression
(on this CPU a ResNet-20 forward and backward at batch 128 takes about 2 s; its SGD step 0.5 ms).
Every measurement runs on one thread (``torch.set_num_threads(1)``, restored after).

Two uses of the same machinery:

1. **Micro-benchmarks** (pytest-benchmark; disabled by default, ``tox -e bench`` enables them):
   one ``step()`` of SGD and Adam towers of height 0 to 3, Baydin's HD and the plain
   ``torch.optim`` optimizer, per model. Each (model, family) is one ``benchmark.group``, so the
   table's relative column reads as tower over plain; ``extra_info`` holds the optimizer's memory.
2. **The gate** (the normal test suite): for each check of ``gate.toml``, the median of many
   ratios ``step time of the method / step time of the plain optimizer``, each ratio from two
   blocks of steps timed back to back in this process, in alternating order, on the thread's CPU
   clock. A ratio measured this way cancels what a shared machine changes for both sides (load,
   clock speed, another machine) and the clock leaves out the time other processes take the
   core; an absolute time read against a file would do neither. A test plants a realistic
   slowdown (an optimizer that keeps a copy of its parameters at every step) and shows the gate
   fails it while the unchanged code passes.

Run as a script to print every check's ratio (to calibrate ``gate.toml``)::

    BENCH_DATA_DIR=../shared/data python tests/benchmarks/test_step_gate.py --rounds 5
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import hypergrad
from bench.errors import UserError, unknown_name
from bench.measure import optimizer_bytes

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

GATE_FILE = Path(__file__).with_name("gate.toml")
OptimizerFactory = Callable[[list[Tensor]], torch.optim.Optimizer]


# ---------------------------------------------------------------------------------------------
# models and their gradient pools


@dataclass(frozen=True)
class ModelCase:
    """A model whose optimizer steps are timed, with the real batches its gradients come from."""

    name: str
    build: Callable[[], nn.Module]
    batch_size: int
    pool_batches: int  # distinct real gradients the steps cycle through

    def batches(self) -> list[tuple[Tensor, Tensor]]:
        """The first ``pool_batches`` real training batches, normalised as the workloads do."""
        from bench import data

        n = self.batch_size * self.pool_batches
        if self.name == "mlp":
            images = data.load_mnist()
            x = data.to_device_images(images.x_train[:n], (data.MNIST_MEAN,), (data.MNIST_STD,),
                                      "cpu").reshape(n, -1)
        else:
            images = data.load_cifar10_subset()
            x = data.to_device_images(images.x_train[:n], data.CIFAR_SUBSET_MEAN,
                                      data.CIFAR_SUBSET_STD, "cpu")
        y = images.y_train[:n]
        return [(x[i:i + self.batch_size], y[i:i + self.batch_size])
                for i in range(0, n, self.batch_size)]


def _mlp() -> nn.Module:
    from bench.models import mlp

    return mlp((784, 128, 10))


def _resnet20() -> nn.Module:
    from bench.models import ResNet20

    return ResNet20()


MODELS: dict[str, ModelCase] = {
    "mlp": ModelCase("mlp", _mlp, batch_size=256, pool_batches=4),
    # Two batches: each costs seconds of forward and backward here, and two already make
    # successive steps see different gradients, as in training.
    "resnet20": ModelCase("resnet20", _resnet20, batch_size=128, pool_batches=2),
}


@dataclass(frozen=True)
class GradientPool:
    """A model's initial parameters and the real gradients of a few batches at those weights."""

    model: str
    initial: tuple[Tensor, ...]
    grads: tuple[tuple[Tensor, ...], ...]


@functools.cache
def gradient_pool(model: str) -> GradientPool:
    """The pool of ``model`` (built once per process; needs ``BENCH_DATA_DIR``)."""
    if model not in MODELS:
        raise unknown_name("model", model, list(MODELS))
    case = MODELS[model]
    torch.manual_seed(0)
    net = case.build()
    initial = tuple(p.detach().clone() for p in net.parameters())
    grads = []
    for x, y in case.batches():
        net.zero_grad(set_to_none=True)
        F.cross_entropy(net(x), y).backward()
        grads.append(tuple(p.grad.detach().clone() for p in net.parameters()))
    return GradientPool(model, initial, tuple(grads))


@contextlib.contextmanager
def threads(n: int) -> Iterator[None]:
    """Run the block on ``n`` intra-op threads, then restore the previous count."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ---------------------------------------------------------------------------------------------
# one optimizer over one model: stepped with pooled gradients


def method_factory(method: str) -> OptimizerFactory:
    """A factory of the optimizer a bench method name builds (``torch.sgd(lr=0.01)``, a tower,
    ``sgd-hd(...)``): the same names as suites, the CLI and the store."""
    from bench.methods import SingleRunMethod, parse_method

    parsed = parse_method(method)
    if not isinstance(parsed, SingleRunMethod):
        raise UserError(f"the gate times one optimizer's step; {method!r} is a {parsed.kind} "
                        "method: name a tower, a torch.* or a *-hd method")

    def build(params: list[Tensor]) -> torch.optim.Optimizer:
        return parsed.setup(params, total_steps=10**6, steps_per_epoch=10**3).optimizer

    return build


class Stepper:
    """An optimizer over a fresh copy of a pool's initial parameters, fed the pooled gradients.

    The pooled gradients were taken at the initial weights, so they stay close to the true ones
    only for the first steps of training: a stepper is therefore ``reset()`` (new parameters, new
    optimizer) every ``life`` steps, before a hyperoptimizer fed stale gradients drives its step
    sizes to absurd values (and an Adam tower's beta1 to 1). Every life starts with untimed
    warm-up steps (state allocation, the first hypergradient), as a measured block does.

    Args:
        pool: the model's initial parameters and gradients.
        factory: builds the optimizer over a list of parameters.
        life: steps taken before ``prepare()`` resets.
        warmup: untimed steps after each reset.
    """

    def __init__(self, pool: GradientPool, factory: OptimizerFactory, *, life: int = 16,
                 warmup: int = 3) -> None:
        self.pool, self.factory = pool, factory
        self.life, self.warmup = life, warmup
        self.reset()

    def reset(self) -> None:
        """New parameters (the initial values, as leaves with zero gradients), new optimizer."""
        self.params = [p.clone().requires_grad_(True) for p in self.pool.initial]
        for p in self.params:
            p.grad = torch.zeros_like(p)
        self.optimizer = self.factory(self.params)
        self.steps = 0

    def load(self) -> None:
        """Put the next pooled gradient in ``.grad``: the step's input, as after a backward."""
        grads = self.pool.grads[self.steps % len(self.pool.grads)]
        for p, g in zip(self.params, grads, strict=True):
            p.grad.copy_(g)

    def step(self) -> None:
        self.optimizer.step()
        self.steps += 1

    def prepare(self) -> None:
        """Before a timed step: reset and warm up when this life is spent, then ``load()``."""
        if self.steps >= self.life:
            self.reset()
            for _ in range(self.warmup):
                self.load()
                self.step()
        self.load()

    def timed_step(self, clock: Callable[[], float] = time.perf_counter) -> float:
        """Seconds of one ``step()`` on ``clock`` (the preparation before it is not timed)."""
        self.prepare()
        start = clock()
        self.step()
        return clock() - start

    def block(self, steps: int, clock: Callable[[], float] = time.perf_counter) -> float:
        """The median duration of ``steps`` steps, from a fresh life."""
        self.steps = self.life  # start the block with a reset and its warm-up
        return statistics.median(self.timed_step(clock) for _ in range(steps))

    def memory_bytes(self) -> int:
        """Bytes the optimizer holds (state, traces, hyperparameters), the parameters excluded."""
        return optimizer_bytes(self.optimizer, exclude=self.params)

    def finite(self) -> bool:
        return all(bool(torch.isfinite(p).all()) for p in self.params)


# ---------------------------------------------------------------------------------------------
# the gate: configuration and measurement


# The gate's clocks. The thread's CPU time leaves out the time the thread waits while other
# processes run: on a loaded 2-core machine a 10 ms step is preempted almost every time and a
# 0.1 ms one almost never, so wall-clock ratios between them grow with the load (measured here:
# Adam/Adam over torch.optim.Adam went from 9x to 25-40x with the smoke suite running beside).
# With one intra-op thread the whole step runs on the calling thread, so nothing is left out.
CLOCKS: dict[str, Callable[[], float]] = {"thread": time.thread_time, "wall": time.perf_counter}


@dataclass(frozen=True)
class Measure:
    """How a ratio is measured (``[measure]`` of ``gate.toml``)."""

    threads: int = 1  # intra-op threads while timing
    clock: str = "thread"  # "thread": CPU time of the stepping thread; "wall": perf_counter
    warmup: int = 3  # untimed steps at the start of each block (a fresh optimizer)
    reps: int = 21  # interleaved repetitions: ratios whose median the gate reads
    steps: int = 8  # timed steps per block; a block's time is their median


@dataclass(frozen=True)
class Check:
    """``method``'s step over ``over``'s step on ``model`` must stay at most ``max``."""

    model: str
    method: str
    over: str
    max: float

    @property
    def id(self) -> str:
        return f"{self.model}:{self.method}"


@dataclass(frozen=True)
class Gate:
    measure: Measure
    checks: tuple[Check, ...]


def load_gate(path: Path = GATE_FILE) -> Gate:
    """Read ``gate.toml``: a ``[measure]`` table and ``[[check]]`` entries.

    Raises:
        UserError: an unknown key, a missing one, a model that is not in ``MODELS``, an unknown
            clock, or a bound that is not a positive ratio.
    """
    doc = tomllib.loads(path.read_text())
    # [smoke] holds the smoke comparison's thresholds (tests/bench/test_smoke_regression.py).
    unknown = set(doc) - {"measure", "check", "smoke"}
    if unknown:
        raise UserError(f"{path.name}: unknown tables {sorted(unknown)}; valid: measure, check, "
                        "smoke")
    measure = Measure(**_fields(path, "measure", doc.get("measure", {}), Measure))
    checks = tuple(_canonical(Check(**_fields(path, "check", c, Check, required=True)))
                   for c in doc.get("check", []))
    if measure.clock not in CLOCKS:
        raise unknown_name("clock", measure.clock, list(CLOCKS))
    for c in checks:
        if c.model not in MODELS:
            raise unknown_name("model", c.model, list(MODELS))
        if not (isinstance(c.max, (int, float)) and c.max > 0):
            raise UserError(f"{path.name}: check {c.id}: max must be a ratio > 0 (the most "
                            f"{c.method} may take, in steps of {c.over}), but got {c.max!r}")
    return Gate(measure, checks)


def _canonical(check: Check) -> Check:
    """The check with its method names as the store and the reports print them."""
    from bench.methods import parse_method

    return dataclasses.replace(check, method=parse_method(check.method).name,
                               over=parse_method(check.over).name)


def _fields(path: Path, table: str, values: dict[str, Any], cls: type,
            required: bool = False) -> dict[str, Any]:
    names = list(cls.__dataclass_fields__)
    unknown = set(values) - set(names)
    missing = set(names) - set(values) if required else set()
    if unknown or missing:
        raise UserError(f"{path.name}: [{table}] {dict(values)} has unknown keys "
                        f"{sorted(unknown)} / lacks {sorted(missing)}; its keys are "
                        f"{', '.join(names)}")
    return values


@dataclass(frozen=True)
class Ratio:
    """The ratios of one measurement, one per repetition; the gate reads their median."""

    ratios: tuple[float, ...]
    numerator_s: float  # median block time of the method
    denominator_s: float  # median block time of the plain optimizer

    @property
    def median(self) -> float:
        return statistics.median(self.ratios)

    def __str__(self) -> str:
        q = statistics.quantiles(self.ratios, n=4) if len(self.ratios) > 1 else [self.median] * 3
        return (f"ratio {self.median:.3f} (quartiles {q[0]:.3f}-{q[2]:.3f}, {len(self.ratios)} "
                f"reps; {self.numerator_s * 1e3:.3f} ms over {self.denominator_s * 1e3:.3f} ms)")


def measure_ratio(numerator: Stepper, denominator: Stepper, measure: Measure) -> Ratio:
    """Median-of-blocks step time of ``numerator`` over ``denominator``, interleaved.

    Each repetition times a block of ``measure.steps`` steps of each side back to back, the side
    that goes first alternating, and keeps their ratio: both blocks of a repetition see nearly
    the same machine. One untimed block per side first (first-call costs of the process).
    """
    clock = CLOCKS[measure.clock]
    num, den, ratios = [], [], []
    with threads(measure.threads), torch.no_grad():
        numerator.block(measure.steps, clock)
        denominator.block(measure.steps, clock)
        for rep in range(measure.reps):
            if rep % 2:
                d = denominator.block(measure.steps, clock)
                n = numerator.block(measure.steps, clock)
            else:
                n = numerator.block(measure.steps, clock)
                d = denominator.block(measure.steps, clock)
            num.append(n)
            den.append(d)
            ratios.append(n / d)
    return Ratio(tuple(ratios), statistics.median(num), statistics.median(den))


def check_ratio(check: Check, measure: Measure,
                factory: OptimizerFactory | None = None) -> Ratio:
    """Measure ``check`` (with ``factory`` standing in for its method, when given)."""
    pool = gradient_pool(check.model)
    life = dict(life=measure.steps, warmup=measure.warmup)
    numerator = Stepper(pool, factory or method_factory(check.method), **life)
    denominator = Stepper(pool, method_factory(check.over), **life)
    ratio = measure_ratio(numerator, denominator, measure)
    if not (numerator.finite() and denominator.finite()):
        raise AssertionError(f"{check.id}: non-finite parameters after the timed steps; a timing "
                             "of NaN arithmetic means nothing: lower the method's step sizes")
    return ratio


# ---------------------------------------------------------------------------------------------
# the planted slowdown


class SnapshottingSGD(hypergrad.SGD):
    """hypergrad's SGD with a realistic mistake: at every step it keeps a fresh copy of each
    parameter in its state (as code that wanted to roll a step back might), one extra allocation
    and copy of the whole model per step. The update itself is unchanged."""

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p]["snapshot"] = p.detach().clone()
        return super().step(closure)


def planted_factory(lr: float = 0.01, hyper: str | None = None) -> OptimizerFactory:
    """The slowed-down twin of the tower ``sgd(lr)[/hyper]``."""

    def build(params: list[Tensor]) -> torch.optim.Optimizer:
        return SnapshottingSGD(params, lr=lr, hyper=hyper)

    return build


# ---------------------------------------------------------------------------------------------
# tests: the gate

GATE = load_gate()


def test_gate_file_names_single_run_methods():
    """Every check names two optimizers the gate can build, and the planted check is gated."""
    assert GATE.checks, "gate.toml has no [[check]]"
    for check in GATE.checks:
        method_factory(check.method)
        method_factory(check.over)
    assert PLANTED_CHECK in {c.id for c in GATE.checks}
    with pytest.raises(UserError, match="is a search method"):
        method_factory("tpe(base=sgd, budget=2)")


def test_gate_rejects_malformed_files(tmp_path):
    bad = tmp_path / "gate.toml"
    bad.write_text('[[check]]\nmodel = "mlp"\nmethod = "sgd(lr=0.01)"\nover = "torch.sgd(lr=0.01)"'
                   '\nmax = 2\nmaximum = 3\n')
    with pytest.raises(UserError, match=r"unknown keys \['maximum'\]"):
        load_gate(bad)
    bad.write_text('[[check]]\nmodel = "vgg"\nmethod = "sgd"\nover = "torch.sgd"\nmax = 2\n')
    with pytest.raises(UserError, match="valid models: mlp, resnet20"):
        load_gate(bad)
    bad.write_text('[[check]]\nmodel = "mlp"\nmethod = "sgd"\nover = "torch.sgd"\nmax = -1\n')
    with pytest.raises(UserError, match="max must be a ratio > 0"):
        load_gate(bad)
    bad.write_text('[measure]\nclock = "cpu"\n')
    with pytest.raises(UserError, match="valid clocks: thread, wall"):
        load_gate(bad)


@pytest.mark.slow
@pytest.mark.benchmark_gate
@pytest.mark.parametrize("check", GATE.checks, ids=lambda c: c.id)
def test_gate(check: Check, bench_data_dir: Path) -> None:
    ratio = check_ratio(check, GATE.measure)
    if ratio.median > check.max:
        # Measured once more before failing: a slowdown in the code reproduces, a burst of load
        # from a neighbour on a shared CI machine does not (seen once: 5.6x here, 4.2x after).
        print(f"\n{check.id} over {check.over}: {ratio} (max {check.max}); measuring again")
        ratio = min(ratio, check_ratio(check, GATE.measure), key=lambda r: r.median)
    print(f"\n{check.id} over {check.over}: {ratio} (max {check.max})")
    assert ratio.median <= check.max, (
        f"{check.method} on {check.model} now takes {ratio.median:.2f}x the step of "
        f"{check.over} (gate.toml allows {check.max}x): {ratio}. If the slowdown is intended, "
        f"re-measure with `python {Path(__file__).name}` and raise max in gate.toml with a "
        "comment saying why")


# The check the planted slowdown is tested against: hypergrad's plain SGD (height 0) over
# torch.optim.SGD on the MLP, where the optimizer's own work is a copy-sized amount of memory
# traffic, so one extra copy of the parameters is a large, unambiguous change.
PLANTED_CHECK = _canonical(Check("mlp", "sgd(0.01)", "torch.sgd(lr=0.01)", 0.0)).id


@pytest.mark.slow
@pytest.mark.benchmark_gate
def test_gate_catches_a_planted_slowdown(bench_data_dir: Path) -> None:
    """The unchanged height-0 tower passes its check; the same tower copying its parameters at
    every step fails it, measured the same way right after."""
    check = next(c for c in GATE.checks if c.id == PLANTED_CHECK)
    unchanged = check_ratio(check, GATE.measure)
    planted = check_ratio(check, GATE.measure, planted_factory(lr=0.01))
    print(f"\nunchanged: {unchanged}\nplanted:   {planted}\nmax {check.max}")
    assert unchanged.median <= check.max, f"the unchanged code fails the gate: {unchanged}"
    assert planted.median > check.max, f"the gate missed the planted copy: {planted}"


def test_planted_slowdown_computes_the_same_update():
    """The planted optimizer is slower, not different: same parameters after the same steps."""
    torch.manual_seed(0)
    a = nn.Linear(6, 3)
    b = nn.Linear(6, 3)
    b.load_state_dict(a.state_dict())
    plain = hypergrad.tower("sgd(0.1)/sgd(0.01)", a.parameters())
    slowed = planted_factory(lr=0.1, hyper="sgd(0.01)")(list(b.parameters()))
    x = torch.randn(16, 6)
    for _ in range(3):
        for net, opt in ((a, plain), (b, slowed)):
            opt.zero_grad()
            net(x).square().mean().backward()
            opt.step()
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    assert slowed.memory_bytes() > plain.memory_bytes()  # and it holds the copies


def test_ratio_is_the_median_of_interleaved_blocks():
    """``measure_ratio`` on two stand-ins that burn known CPU times: the ratio is theirs."""

    class Burner:
        def __init__(self, seconds: float) -> None:
            self.seconds, self.calls = seconds, 0

        def timed_step(self, clock: Callable[[], float]) -> float:
            self.calls += 1
            start = clock()
            while time.thread_time() - start < self.seconds:
                pass
            return clock() - start

        def block(self, steps: int, clock: Callable[[], float]) -> float:
            return statistics.median(self.timed_step(clock) for _ in range(steps))

    slow, fast = Burner(0.003), Burner(0.001)
    ratio = measure_ratio(slow, fast, Measure(reps=5, steps=3))  # type: ignore[arg-type]
    assert len(ratio.ratios) == 5 and slow.calls == fast.calls == (1 + 5) * 3
    assert 2.5 < ratio.median < 3.5


# ---------------------------------------------------------------------------------------------
# tests: the micro-benchmarks (pytest-benchmark)

HEIGHT_SPECS = {  # the towers of the overhead suite (and of gate.toml), heights 0 to 3
    "sgd": ["sgd(0.01)" + "/sgd(1e-5)" * h for h in range(4)],
    "adam": ["adam(0.001)" + "/adam(1e-5)" * h for h in range(4)],
}
PLAIN = {"sgd": "torch.sgd(lr=0.01)", "adam": "torch.adam(lr=0.001)"}
HD = {"sgd": "sgd-hd(lr=0.01, beta=0.001)", "adam": "adam-hd(lr=0.001, beta=1e-7)"}


def _benchmark_rows() -> list[Any]:
    rows = []
    for model in MODELS:
        for family, towers in HEIGHT_SPECS.items():
            named = [("plain", PLAIN[family]), *((f"h{h}", s) for h, s in enumerate(towers)),
                     ("hd", HD[family])]
            rows += [pytest.param(model, family, method, id=f"{model}-{family}-{label}")
                     for label, method in named]
    return rows


@pytest.mark.parametrize(("model", "family", "method"), _benchmark_rows())
def test_optimizer_step(benchmark: Any, bench_data_dir: Path, model: str, family: str,
                        method: str) -> None:
    """One ``step()``; the group (model and family) puts each tower beside its plain optimizer.

    With benchmarks disabled (the default test run) each MLP row steps once, as a check that the
    benchmark runs; the ResNet-20 rows wait for ``--benchmark-enable`` (their gradients cost a
    few seconds to make).
    """
    if benchmark.disabled and model != "mlp":
        pytest.skip("ResNet-20 rows run with --benchmark-enable (tox -e bench)")
    stepper = Stepper(gradient_pool(model), method_factory(method))
    with threads(1), torch.no_grad():
        for _ in range(stepper.warmup):  # state allocated, and its memory measurable
            stepper.load()
            stepper.step()
        benchmark.group = f"{model} {family}: optimizer.step() (1 thread)"
        benchmark.extra_info.update(
            method=method,
            height=getattr(stepper.optimizer, "height", 0),
            optimizer_bytes=stepper.memory_bytes(),
            parameters=sum(p.numel() for p in stepper.params),
            threads=1,
        )
        # prepare(): the untimed gradient copy, and a fresh optimizer every `life` steps.
        benchmark.pedantic(stepper.step, setup=stepper.prepare, rounds=_rounds(model),
                           warmup_rounds=2)
    assert stepper.finite()


def _rounds(model: str) -> int:
    return 50 if model == "resnet20" else 200


# ---------------------------------------------------------------------------------------------
# script: every check's ratio, for calibrating gate.toml


def main() -> None:
    parser = argparse.ArgumentParser(description="print each gate check's ratio, several times")
    parser.add_argument("--rounds", type=int, default=3, help="measurements per check")
    parser.add_argument("--planted", action="store_true", help="also the planted slowdown")
    args = parser.parse_args()
    checks = list(GATE.checks)
    for check in checks:
        for _ in range(args.rounds):
            ratio = check_ratio(check, GATE.measure)
            print(f"{check.id:70s} {ratio}  max {check.max}", flush=True)
    if args.planted:
        check = next(c for c in checks if c.id == PLANTED_CHECK)
        for _ in range(args.rounds):
            ratio = check_ratio(check, GATE.measure, planted_factory(lr=0.01))
            print(f"{'planted ' + check.id:70s} {ratio}  max {check.max}", flush=True)


if __name__ == "__main__":
    main()
