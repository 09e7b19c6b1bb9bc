"""The workloads: one contract table over every registered workload, then each one's specifics."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from bench import data
from bench.errors import DataError, UserError
from bench.models import count_parameters
from bench.workloads import WORKLOADS, Data, Split, Workload, get_workload

NAMES = sorted(WORKLOADS)


def load_or_skip(workload: Workload, seed: int = 0, holdout: float = 0.0) -> Data:
    """The workload's data on the CPU. Full CIFAR-10 is the one dataset that is not in the shared
    folder: offline it is skipped here (its error is tested in test_data.py)."""
    try:
        return workload.load_data(torch.device("cpu"), seed, holdout)
    except DataError as exc:
        if workload.name != "cifar10-resnet20":
            raise
        pytest.skip(f"full CIFAR-10 is not available offline: {str(exc)[:120]}...")


def head(split: Split, n: int) -> Split:
    """The first ``n`` samples (characters for text) of a split: CPU evaluation stays fast."""
    return Split(split.x[:n], None if split.y is None else split.y[:n])


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests never reach for the network: a missing dataset is an error, not a download.
    monkeypatch.setenv("BENCH_NO_DOWNLOAD", "1")


# --- the registry ---------------------------------------------------------------------------------


def test_registry_holds_the_seven_workloads() -> None:
    assert NAMES == sorted(
        [
            "mnist-mlp",
            "mnist-logreg",
            "mnist-mlp1000",
            "fashion-mlp",
            "cifar10-resnet20",
            "cifar10s-resnet20",
            "warpeace-lstm",
        ]
    )
    assert all(WORKLOADS[name].name == name for name in NAMES)
    assert isinstance(get_workload("mnist-mlp"), WORKLOADS["mnist-mlp"])


def test_unknown_workload_lists_the_valid_names() -> None:
    with pytest.raises(UserError, match="unknown workload 'mnist'") as info:
        get_workload("mnist")
    assert all(name in str(info.value) for name in NAMES)


# --- the contract, for every workload -----------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_declares_defaults(name: str) -> None:
    cls = WORKLOADS[name]
    assert cls.description and cls.batch_size > 0 and cls.epochs > 0
    assert cls.metric in ("error", "bpc")
    assert 0 < cls.search_holdout < 1 and cls.l2 >= 0
    # Where its setup comes from: a paper's section, or this project's own choice said so.
    assert "section" in cls.source or cls.source.startswith("this project")


@pytest.mark.parametrize("name", NAMES)
def test_whole_training_split_without_holdout(bench_data_dir: Path, name: str) -> None:
    """A single run trains on everything a search would split into train and validation."""
    workload = get_workload(name)
    whole = load_or_skip(workload)
    held = load_or_skip(workload, holdout=workload.search_holdout)
    assert whole.val is None and held.val is not None
    assert len(whole.train) == len(held.train) + len(held.val)
    assert torch.equal(whole.test.x, held.test.x)


@pytest.mark.parametrize("name", NAMES)
def test_contract(bench_data_dir: Path, name: str) -> None:
    """Splits on the device, fixed by seed; a model; one batch forward with a finite loss that
    backpropagates; evaluate's keys; the epoch has ``steps_per_epoch`` batches."""
    workload = get_workload(name)
    splits = load_or_skip(workload, holdout=workload.search_holdout)
    assert splits.val is not None
    for split in (splits.train, splits.val, splits.test):
        assert len(split) > 0 and split.x.device.type == "cpu"
        assert split.y is None or len(split.y) == len(split.x)
    assert len(splits.val) < len(splits.train)
    again = workload.load_data(torch.device("cpu"), 0, workload.search_holdout)
    assert again.val is not None and torch.equal(again.val.x, splits.val.x)

    torch.manual_seed(0)
    model = workload.build_model()
    gen = torch.Generator().manual_seed(0)
    inputs, targets = next(iter(workload.train_batches(splits.train, 4, gen)))
    loss = workload.loss(model(inputs), targets)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())

    model.eval()
    metrics = workload.evaluate(model, head(splits.val, 301))
    assert set(metrics) == {"loss", workload.metric}
    assert all(math.isfinite(v) for v in metrics.values())
    if workload.metric == "error":
        assert 0 <= metrics["error"] <= 1

    batches = list(workload.train_batches(splits.train, workload.batch_size, gen))
    assert len(batches) == workload.steps_per_epoch(splits.train, workload.batch_size)
    assert all(len(x) == len(y) for x, y in batches)


# --- image classification -----------------------------------------------------------------------


def test_mnist_splits_normalised_disjoint_and_fixed_by_seed(bench_data_dir: Path) -> None:
    workload = get_workload("mnist-logreg")  # Baydin et al.'s Normalize((0.1307,), (0.3081,))
    a, b = workload.load_data("cpu", 0, 0.1), workload.load_data("cpu", 1, 0.1)
    assert (len(a.train), len(a.val), len(a.test)) == (54_000, 6_000, 10_000)
    assert a.train.x.dtype == torch.float32 and a.train.x.shape[1:] == (1, 28, 28)
    assert abs(a.train.x.mean().item()) < 0.01 and abs(a.train.x.std().item() - 1) < 0.01
    # val is carved from the training images: no val image is also a train image.
    train_rows = {bytes(row.numpy()) for row in (a.train.x.flatten(1) * 255).round().byte()}
    val_rows = [bytes(row.numpy()) for row in (a.val.x.flatten(1) * 255).round().byte()]
    assert sum(row in train_rows for row in val_rows) < 10  # MNIST holds a few exact duplicates
    assert not torch.equal(a.val.y, b.val.y)
    assert torch.equal(a.test.y, b.test.y)  # the test split never depends on the seed


def test_mnist_epoch_covers_every_training_image_once(bench_data_dir: Path) -> None:
    workload = get_workload("mnist-logreg")
    splits = workload.load_data("cpu", 0)
    gen = torch.Generator().manual_seed(0)
    labels = torch.cat([y for _, y in workload.train_batches(splits.train, 128, gen)])
    assert torch.equal(torch.bincount(labels), torch.bincount(splits.train.y))
    assert workload.steps_per_epoch(splits.train, 128) == math.ceil(60_000 / 128)


class _ReferenceMnistMLP(torch.nn.Module):
    """The network of the reference package's README (gradient-descent-the-ultimate-optimizer
    1.0, 'Example'), written out as it is there."""

    def __init__(self) -> None:
        super().__init__()
        self.layer1 = torch.nn.Linear(28 * 28, 128)
        self.layer2 = torch.nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.tanh(self.layer1(x))
        x = torch.tanh(self.layer2(x))
        return torch.nn.functional.log_softmax(x, dim=1)


def test_mnist_mlp_is_the_reference_readme_network(bench_data_dir: Path) -> None:
    """Same weights, same raw images: the same outputs and the same nll_loss; inputs are pixels
    / 255 (transforms.ToTensor()), not normalised; all 60,000 training images."""
    workload = get_workload("mnist-mlp")
    splits = workload.load_data("cpu", 0)
    images = data.load_mnist()
    assert len(splits.train) == 60_000 and splits.val is None
    assert torch.equal(splits.train.x, images.x_train.float() / 255)
    assert torch.equal(splits.train.y, images.y_train)
    torch.manual_seed(0)
    ours, ref = workload.build_model(), _ReferenceMnistMLP()
    linears = [m for m in ours.modules() if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        for mine, theirs in zip(linears, (ref.layer1, ref.layer2), strict=True):
            theirs.weight.copy_(mine.weight)
            theirs.bias.copy_(mine.bias)
    x, y = splits.test.x[:512], splits.test.y[:512]
    out, expected = ours(x), ref(x.reshape(-1, 28 * 28))
    assert torch.equal(out, expected)
    assert torch.equal(workload.loss(out, y), torch.nn.functional.nll_loss(expected, y))
    # Evaluation reports the loss it trains with.
    metrics = workload.evaluate(ours.eval(), Split(x, y))
    assert metrics["loss"] == pytest.approx(
        torch.nn.functional.nll_loss(expected, y).item(), rel=1e-6
    )


def test_l2_is_the_gradient_of_coupled_weight_decay(bench_data_dir: Path) -> None:
    """Baydin et al.'s workloads add (l2 / 2) ||w||^2 to the loss: one SGD step then equals
    torch.optim.SGD(weight_decay=l2) on the plain loss, to rounding."""
    from bench.train import _batch_loss

    workload = get_workload("mnist-logreg")
    assert workload.l2 == 1e-4
    splits = workload.load_data("cpu", 0)
    x, y = splits.train.x[:128], splits.train.y[:128]
    torch.manual_seed(0)
    a = workload.build_model()
    b = workload.build_model()
    b.load_state_dict(a.state_dict())
    with torch.no_grad():
        for p in a.parameters():
            p.add_(1.0)  # weights far from 0: the decay term is not negligible
        for p in b.parameters():
            p.add_(1.0)
    opt_a = torch.optim.SGD(a.parameters(), lr=0.5)
    opt_b = torch.optim.SGD(b.parameters(), lr=0.5, weight_decay=workload.l2)
    _batch_loss(workload, a, x, y, list(a.parameters())).backward()
    workload.loss(b(x), y).backward()
    opt_a.step()
    opt_b.step()
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=1e-6, atol=1e-7)


def test_cifar_subset_batches_are_augmented(bench_data_dir: Path) -> None:
    workload = get_workload("cifar10s-resnet20")
    splits = workload.load_data("cpu", 0, 0.1)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (4577, 508, 1017)
    black = -torch.tensor(data.CIFAR_SUBSET_MEAN) / torch.tensor(data.CIFAR_SUBSET_STD)
    gen = torch.Generator().manual_seed(0)
    x, y = next(iter(workload.train_batches(splits.train, 64, gen)))
    assert x.shape == (64, 3, 32, 32) and y.shape == (64,)
    # Shifted crops bring in padding: whole rows or columns of black pixels.
    padded = (x == black.view(1, 3, 1, 1)).all(dim=1)
    edge_rows = padded.all(dim=2).any(dim=1) | padded.all(dim=1).any(dim=1)
    assert edge_rows.sum() > 32


def test_resnet20_size_and_a_step_on_the_subset(bench_data_dir: Path) -> None:
    workload = get_workload("cifar10s-resnet20")
    splits = workload.load_data("cpu", 0)
    torch.manual_seed(0)
    model = workload.build_model()
    assert 0.26e6 < count_parameters(model) < 0.28e6  # He et al.: 0.27 M
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    batches = workload.train_batches(splits.train, 32, torch.Generator().manual_seed(0))
    x, y = next(iter(batches))
    before = [p.detach().clone() for p in model.parameters()]
    loss = workload.loss(model(x), y)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert all(not torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))
    with torch.no_grad():
        assert workload.loss(model(x), y) < loss  # the step went downhill on its own batch


# --- the language model -------------------------------------------------------------------------


def test_warpeace_splits_are_contiguous(bench_data_dir: Path) -> None:
    workload = get_workload("warpeace-lstm")
    splits = workload.load_data("cpu", 0, workload.search_holdout)
    codes = data.load_warpeace().codes
    assert torch.equal(torch.cat([splits.train.x, splits.val.x, splits.test.x]), codes)
    assert len(splits.test) == pytest.approx(0.10 * len(codes), abs=1)
    assert len(splits.val) == pytest.approx(0.05 * 0.9 * len(codes), abs=1)
    assert workload.steps_per_epoch(splits.train, 128) == len(splits.train) // 12_800
    x, y = next(iter(workload.train_batches(splits.train, 8, torch.Generator().manual_seed(0))))
    assert x.shape == y.shape == (8, 100) and torch.equal(x[:, 1:], y[:, :-1])


@pytest.mark.slow
def test_lstm_bpc_falls_with_adam(bench_data_dir: Path) -> None:
    workload = get_workload("warpeace-lstm")
    splits = workload.load_data("cpu", 0, workload.search_holdout)
    val = head(splits.val, 20_001)
    torch.manual_seed(0)
    model = workload.build_model()
    before = workload.evaluate(model.eval(), val)["bpc"]
    assert before == pytest.approx(math.log2(82), abs=0.3)  # an untrained model is near uniform
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    batches = workload.train_batches(splits.train, 32, torch.Generator().manual_seed(0))
    for _, (x, y) in zip(range(40), batches, strict=False):
        opt.zero_grad()
        workload.loss(model(x), y).backward()
        opt.step()
    after = workload.evaluate(model.eval(), val)["bpc"]
    assert after < before - 1.5, (before, after)  # 6.35 -> 4.46 bits at seed 0


# --- speed ----------------------------------------------------------------------------------------


def test_mnist_test_evaluation_speed(bench_data_dir: Path, benchmark) -> None:
    """Evaluating the 10,000 MNIST test images with mnist-mlp takes at most 0.2 s on the CPU.

    A benchmark: ``pytest tests/bench/test_workloads.py -k speed --benchmark-enable``.
    """
    if benchmark.disabled:
        pytest.skip("a benchmark: run with --benchmark-enable")
    workload = get_workload("mnist-mlp")
    splits = workload.load_data("cpu", 0)
    model = workload.build_model().eval()
    result = benchmark.pedantic(workload.evaluate, (model, splits.test), rounds=10, warmup_rounds=1)
    assert set(result) == {"loss", "error"}
    assert benchmark.stats.stats.median <= 0.2


# --- on a GPU -----------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", ["mnist-mlp", "cifar10s-resnet20", "warpeace-lstm"])
def test_on_the_gpu(bench_data_dir: Path, name: str) -> None:
    """Data, batches (CUDA generator), augmentation and evaluation all stay on the device; the
    split is the CPU's."""
    workload = get_workload(name)
    splits = workload.load_data(torch.device("cuda"), 0, workload.search_holdout)
    assert all(s.x.is_cuda for s in (splits.train, splits.val, splits.test))
    on_cpu = workload.load_data("cpu", 0, workload.search_holdout)
    # The same split (labels exactly); pixels normalised on the GPU may differ by rounding.
    if on_cpu.val.y is not None:  # text splits hold codes only
        assert torch.equal(splits.val.y.cpu(), on_cpu.val.y)
    assert torch.allclose(splits.val.x.cpu().float(), on_cpu.val.x.float(), rtol=0, atol=1e-5)
    torch.manual_seed(0)
    model = workload.build_model().cuda()
    gen = torch.Generator(device="cuda").manual_seed(0)
    x, y = next(iter(workload.train_batches(splits.train, 32, gen)))
    assert x.is_cuda and y.is_cuda
    assert torch.isfinite(workload.loss(model(x), y))
    metrics = workload.evaluate(model.eval(), splits.test)
    assert set(metrics) == {"loss", workload.metric}
