"""The levels above 0 replayed as a CUDA graph (``hypergrad._graph``): the same numbers as eager
steps, and dropped whenever what it captured changes. The step counters it needs on the device
are also checked on the CPU's tensor path, and across checkpoints between the two paths."""

from __future__ import annotations

import io
import math

import pytest
import torch

import hypergrad
from tests.hypergrad import helpers

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

GRAPH_SPECS = [
    "adam(1e-3)/adam(1e-5)/adam(1e-7)",
    "sgd(0.05, momentum=0.9)/sgd(1e-4, momentum=0.5)/sgd(1e-7)",  # momentum learned above 0
    "rmsprop(1e-3)/adagrad(1e-4, lr_decay=0.01)/sgd(1e-7)",
    "adamw(1e-3)/adam(1e-4, lr_per=tensor)/sgd(1e-8)",
    "sgd(0.1, lr_per=tensor)/rmsprop(1e-4, centered=true, momentum=0.5)/adam(1e-6)",
    "sgd(0.1, nesterov=true, momentum=0.9)/sgd(1e-3)",
]


def _batches(n: int, device: str, dtype: torch.dtype = torch.float32) -> list:
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(32, 784, generator=g, dtype=dtype).to(device),
             torch.randint(0, 10, (32,), generator=g).to(device)) for _ in range(n)]


def _twins(spec: str, dtype: torch.dtype = torch.float32):
    """A tower that replays its upper levels as a graph, and an eager twin of it."""
    model = helpers.mlp(dtype=dtype, device="cuda")
    twin = helpers.clone_model(model)
    opt = hypergrad.tower(spec, model.parameters())
    eager = hypergrad.tower(spec, twin.parameters())
    eager.cuda_graphs = False
    return model, opt, twin, eager


def _assert_same(model, opt, twin, eager) -> None:
    assert opt.hyperparameters() == eager.hyperparameters()
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.equal(p, q)


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("spec", GRAPH_SPECS)
def test_replays_equal_eager_steps(spec):
    model, opt, twin, eager = _twins(spec)
    batches = _batches(6, "cuda")
    ran = helpers.run_tower(opt, model, batches, 12)
    assert opt._upper is not None and opt._upper.graph is not None, "never captured"
    assert eager._upper is None
    assert ran == helpers.run_tower(eager, twin, batches, 12)  # losses, every learned value
    _assert_same(model, opt, twin, eager)
    assert ran[1][-1] != ran[1][0], "the learned values never moved"


@pytest.mark.gpu
@needs_cuda
def test_changes_from_outside_drop_the_graph():
    """A value written into param_groups in place (as a scheduler does), a hyperparameter of the
    top level replaced, a state dict loaded: each is taken up at the next step, as eagerly."""
    spec = "adam(1e-3)/adam(1e-5)/sgd(1e-7)"
    model, opt, twin, eager = _twins(spec)
    batches = _batches(4, "cuda")

    def both(steps: int) -> None:
        ran = helpers.run_tower(opt, model, batches, steps)
        assert ran == helpers.run_tower(eager, twin, batches, steps)
        assert all(math.isfinite(loss) for loss in ran[0])

    both(5)
    assert opt._upper.graph is not None
    for o in (opt, eager):
        torch.optim.lr_scheduler.LambdaLR(o, lambda epoch: 0.5)  # the schedule: no value moved
    both(1)
    assert opt._upper.graph is not None
    for o in (opt, eager):
        o.param_groups[0]["betas"][0].fill_(0.8)  # a learned value, filled in place
    both(1)
    assert opt._upper.graph is None  # taken up eagerly...
    assert opt.hyperparameters()["0.beta1"] == pytest.approx(0.8, rel=0.05)
    both(4)
    assert opt._upper.graph is not None  # ...and captured again once warm
    for o in (opt, eager):
        o.levels[-1].param_groups[0]["lr"] = 3e-7  # the top level's fixed step size
    both(4)
    _assert_same(model, opt, twin, eager)
    for o in (opt, eager):
        o.load_state_dict(o.state_dict())
    both(4)
    _assert_same(model, opt, twin, eager)


@pytest.mark.gpu
@needs_cuda
def test_kept_value_tensors_do_not_change_under_replays():
    model, opt, _, _ = _twins("adam(1e-3)/adam(1e-5)")
    batches = _batches(4, "cuda")
    kept, read = [], []
    for s in range(8):
        helpers.run_tower(opt, model, batches[s % 4:s % 4 + 1], 1)
        kept.append(opt.hyperparameter_tensors())
        read.append(opt.hyperparameters())
    assert opt._upper.graph is not None
    assert [{k: t.item() for k, t in d.items()} for d in kept] == read
    assert read[-1] != read[-2]


@pytest.mark.gpu
@needs_cuda
def test_a_graph_holds_no_parameter_sized_memory():
    batches = _batches(4, "cuda")
    grown = []
    for graphs in (False, True):
        before = torch.cuda.memory_allocated()
        model = helpers.mlp(dtype=torch.float32, device="cuda")
        opt = hypergrad.tower("adam(1e-3)/adam(1e-5)/adam(1e-7)", model.parameters())
        opt.cuda_graphs = graphs
        helpers.run_tower(opt, model, batches, 6)
        assert (opt._upper is not None and opt._upper.graph is not None) == graphs
        grown.append(torch.cuda.memory_allocated() - before)
    eager_bytes, graph_bytes = grown
    assert graph_bytes - eager_bytes < 64 * 1024  # model: 25,450 parameters, 100 KiB


@pytest.fixture
def tensor_path():
    hypergrad.Tower.cpu_floats = False
    yield
    hypergrad.Tower.cpu_floats = True


def test_step_counters_above_level_0_live_on_the_device(tensor_path):
    model = helpers.mlp()
    opt = hypergrad.tower("adam(1e-3)/adam(1e-5)/adam(1e-7)", model.parameters())
    helpers.run_tower(opt, model, _batches(2, "cpu", torch.float64), 3)
    assert isinstance(opt.state[model[0].weight]["step"], int)
    for level in opt.levels[1:]:
        step = level.state[level.param_groups[0]["params"][0]]["step"]
        assert isinstance(step, torch.Tensor) and step.item() == 3


@pytest.mark.parametrize("direction", ["tensor-to-float", "float-to-tensor"])
def test_checkpoints_move_between_the_paths(direction):
    """A checkpoint saved on one path (step counters as device tensors above level 0, or Python
    numbers) resumes on the other with the same numbers, to float64 rounding."""
    spec = "adam(1e-3)/adam(1e-5)/adam(1e-7)"
    batches = _batches(6, "cpu", torch.float64)
    save_on_tensors = direction == "tensor-to-float"
    hypergrad.Tower.cpu_floats = not save_on_tensors
    try:
        model = helpers.mlp()
        opt = hypergrad.tower(spec, model.parameters())
        helpers.run_tower(opt, model, batches, 3)
        buffer = io.BytesIO()
        torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buffer)
        straight = helpers.run_tower(opt, model, batches, 5)
        hypergrad.Tower.cpu_floats = save_on_tensors
        buffer.seek(0)
        saved = torch.load(buffer, weights_only=True)
        model2 = helpers.mlp(seed=3)
        opt2 = hypergrad.tower(spec, model2.parameters())
        model2.load_state_dict(saved["model"])
        opt2.load_state_dict(saved["opt"])
        resumed = helpers.run_tower(opt2, model2, batches, 5)
    finally:
        hypergrad.Tower.cpu_floats = True
    torch.testing.assert_close(torch.tensor(resumed[0]), torch.tensor(straight[0]), rtol=1e-12,
                               atol=0)
    helpers.assert_trajectories_equal(resumed[1], straight[1], rtol=1e-10)


@pytest.mark.gpu
@needs_cuda
def test_another_thread_using_cuda_during_a_capture():
    """A DataLoader's pin-memory thread calls CUDA while a tower captures its upper levels: the
    capture is thread-local, so neither breaks the other."""
    import threading

    stop, errors = threading.Event(), []

    def pin() -> None:
        while not stop.is_set():
            try:
                torch.empty(1 << 16).pin_memory()
            except Exception as e:  # noqa: BLE001 - reported by the assertion below
                errors.append(repr(e))
                return

    thread = threading.Thread(target=pin)
    thread.start()
    try:
        model, opt, twin, eager = _twins("adam(1e-3)/adam(1e-5)/adam(1e-7)")
        batches = _batches(4, "cuda")
        assert helpers.run_tower(opt, model, batches, 8) == helpers.run_tower(
            eager, twin, batches, 8)
    finally:
        stop.set()
        thread.join()
    assert opt._upper.graph is not None and not errors
