"""bench.data: finding, checking and decoding the real datasets; batching on the device."""

from __future__ import annotations

import gzip
import shutil
import urllib.error
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from bench import data
from bench.data import files
from bench.errors import DataError, UserError

LOADERS: dict[str, Callable[[], object]] = {
    "mnist": data.load_mnist,
    "fashion-mnist": data.load_fashion_mnist,
    "cifar10_subset": data.load_cifar10_subset,
    "cifar10": data.load_cifar10,
    "warpeace": data.load_warpeace,
}


@pytest.fixture
def no_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty BENCH_DATA_DIR and an empty cache, downloads disabled."""
    (tmp_path / "data").mkdir()
    monkeypatch.setenv("BENCH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("BENCH_NO_DOWNLOAD", "1")
    return tmp_path


# --- the real content --------------------------------------------------------------------------


def test_mnist_content(bench_data_dir: Path) -> None:
    images = data.load_mnist()
    assert images.x_train.shape == (60_000, 1, 28, 28) and images.x_train.dtype == torch.uint8
    assert images.x_test.shape == (10_000, 1, 28, 28)
    assert images.y_train[:5].tolist() == [5, 0, 4, 1, 9]
    pixels = images.x_train.float() / 255
    assert pixels.mean().item() == pytest.approx(0.1307, abs=1e-4)
    assert pixels.std().item() == pytest.approx(0.3081, abs=1e-4)


def test_loaders_decode_once_per_process(bench_data_dir: Path) -> None:
    assert data.load_mnist() is data.load_mnist()
    assert data.load_warpeace() is data.load_warpeace()


def test_fashion_mnist_content(bench_data_dir: Path) -> None:
    images = data.load_fashion_mnist()
    assert images.x_train.shape == (60_000, 1, 28, 28) and images.x_test.shape == (
        10_000,
        1,
        28,
        28,
    )
    assert torch.bincount(images.y_test).tolist() == [1000] * 10
    # Not MNIST under another name.
    assert not torch.equal(images.y_train[:100], data.load_mnist().y_train[:100])


def test_cifar_subset_content(bench_data_dir: Path) -> None:
    images = data.load_cifar10_subset()
    assert images.x_train.shape == (5085, 3, 32, 32) and images.x_test.shape == (1017, 3, 32, 32)
    assert images.y_test[:5].tolist() == [3, 8, 8, 0, 6]
    mean = (images.x_train.double() / 255).mean(dim=(0, 2, 3))
    torch.testing.assert_close(
        mean, torch.tensor(data.CIFAR_SUBSET_MEAN).double(), atol=1e-4, rtol=0
    )


def test_warpeace_content(bench_data_dir: Path) -> None:
    text = data.load_warpeace()
    assert len(text.text) == len(text.codes) == 3_196_212
    assert "\r" not in text.text and not text.text.startswith("\ufeff")
    assert text.vocab == "".join(sorted(set(text.text))) and len(text.vocab) == 82
    assert text.text.startswith('"Well, Prince, so Genoa and Lucca')
    assert text.decode(text.codes[:1000]) == text.text[:1000]


# --- where the files come from, and the errors when they are missing ----------------------------


@pytest.mark.parametrize("name", sorted(LOADERS))
def test_missing_data_names_files_and_both_fixes(no_data: Path, name: str) -> None:
    with pytest.raises(DataError) as info:
        LOADERS[name]()
    message = str(info.value)
    assert "BENCH_DATA_DIR" in message and str(no_data / "data") in message
    assert str(no_data / "cache" / "hypergrad-bench") in message
    if name != "cifar10_subset":  # the subset is not downloadable: nothing to allow
        assert "allow the download" in message and "BENCH_NO_DOWNLOAD" in message


def test_full_cifar_error_names_its_files(no_data: Path) -> None:
    with pytest.raises(DataError) as info:
        data.load_cifar10()
    message = str(info.value)
    for f in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        assert f"cifar-10-batches-py/{f}" in message


def test_mnist_error_names_its_files(no_data: Path) -> None:
    with pytest.raises(DataError, match="mnist/train-images-idx3-ubyte") as info:
        data.load_mnist()
    assert "mnist/t10k-labels-idx1-ubyte" in str(info.value)


def test_failed_download_is_a_data_error(no_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BENCH_NO_DOWNLOAD")
    calls = []

    def offline(dataset: str, root: Path) -> None:  # what urllib raises without a network
        calls.append((dataset, root))
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(files, "download", offline)
    with pytest.raises(DataError, match="download failed: URLError"):
        data.load_mnist()
    assert calls == [("mnist", no_data / "cache" / "hypergrad-bench")]


def test_download_lands_in_the_cache(
    bench_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With BENCH_DATA_DIR unset the loader downloads into the cache, in torchvision's layout
    (``MNIST/raw/``), and reads it from there. The network is replaced by a copy of the files."""
    monkeypatch.delenv("BENCH_DATA_DIR")
    monkeypatch.delenv("BENCH_NO_DOWNLOAD", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))

    def fetch(dataset: str, root: Path) -> None:
        assert dataset == "mnist"
        shutil.copytree(bench_data_dir / "mnist", root / "MNIST" / "raw")

    monkeypatch.setattr(files, "download", fetch)
    images = data.load_mnist()
    assert images.y_train[:5].tolist() == [5, 0, 4, 1, 9]
    assert (tmp_path / "hypergrad-bench" / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz").is_file()


def test_uncompressed_files_are_read_too(
    bench_data_dir: Path, no_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = no_data / "data" / "mnist"
    folder.mkdir()
    for name in ("train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        shutil.copy(bench_data_dir / "mnist" / f"{name}.gz", folder)
    with gzip.open(bench_data_dir / "mnist" / "train-images-idx3-ubyte.gz") as f:
        (folder / "train-images-idx3-ubyte").write_bytes(f.read())
    assert data.load_mnist().x_train.shape == (60_000, 1, 28, 28)


def test_corrupt_content_is_rejected(bench_data_dir: Path, no_data: Path) -> None:
    folder = no_data / "data" / "mnist"
    shutil.copytree(bench_data_dir / "mnist", folder)
    with gzip.open(folder / "train-labels-idx1-ubyte.gz") as f:
        raw = bytearray(f.read())
    raw[8] = (raw[8] + 1) % 10  # the first label, 5, becomes 6
    with gzip.open(folder / "train-labels-idx1-ubyte.gz", "wb") as f:
        f.write(bytes(raw))
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte(\.gz)?: md5"):
        data.load_mnist()


def test_truncated_text_is_rejected(bench_data_dir: Path, no_data: Path) -> None:
    (no_data / "data" / "text").mkdir()
    raw = (bench_data_dir / "text" / "warpeace_input.txt").read_bytes()
    (no_data / "data" / "text" / "warpeace_input.txt").write_bytes(raw[:-1000])
    with pytest.raises(DataError, match="not the expected content"):
        data.load_warpeace()


# --- splits, batches, augmentation -------------------------------------------------------------


def test_split_indices_disjoint_complete_and_fixed_by_seed() -> None:
    train, val = data.split_indices(1000, 0.1, seed=3)
    assert len(val) == 100 and len(train) == 900
    assert torch.equal(torch.cat([train, val]).sort().values, torch.arange(1000))
    again = data.split_indices(1000, 0.1, seed=3)
    assert torch.equal(train, again[0]) and torch.equal(val, again[1])
    other = data.split_indices(1000, 0.1, seed=4)
    assert not torch.equal(val.sort().values, other[1].sort().values)
    with pytest.raises(UserError, match="holdout"):
        data.split_indices(1000, 1.5, seed=0)


def test_shuffled_batches_cover_the_epoch_in_a_seeded_order() -> None:
    def epoch(seed: int) -> list[torch.Tensor]:
        gen = torch.Generator().manual_seed(seed)
        return list(data.shuffled_batches(1000, 128, gen, "cpu"))

    batches = epoch(0)
    assert [len(b) for b in batches] == [128] * 7 + [104]
    assert torch.equal(torch.cat(batches).sort().values, torch.arange(1000))
    assert all(torch.equal(a, b) for a, b in zip(batches, epoch(0), strict=True))
    assert not torch.equal(batches[0], epoch(1)[0])


def test_batch_bounds() -> None:
    assert data.batch_bounds(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert data.batch_bounds(9, 4) == [(0, 4), (4, 9)]  # a batch of one would break BatchNorm
    assert data.batch_bounds(3, 10) == [(0, 3)]
    with pytest.raises(UserError, match="batch_size must be >= 1"):
        data.batch_bounds(10, 0)


def test_random_crop_flip_is_a_crop_of_the_padded_image() -> None:
    torch.manual_seed(0)
    x = torch.randn(64, 3, 8, 8)
    fill = torch.tensor([-1.0, -2.0, -3.0])
    out = data.random_crop_flip(x, torch.Generator().manual_seed(0), pad=2, fill=fill)
    assert out.shape == x.shape
    padded = fill.view(1, 3, 1, 1).repeat(64, 1, 12, 12)
    padded[:, :, 2:10, 2:10] = x
    flips, shifts = 0, set()
    for i in range(64):
        matches = [
            (dy, dx, flip)
            for dy in range(5)
            for dx in range(5)
            for flip in (False, True)
            if torch.equal(
                out[i],
                padded[i, :, dy : dy + 8, dx : dx + 8].flip(-1)
                if flip
                else padded[i, :, dy : dy + 8, dx : dx + 8],
            )
        ]
        assert matches, f"image {i} is not a crop (or flipped crop) of its padded original"
        flips += matches[0][2]
        shifts.add(matches[0][:2])
    assert 10 < flips < 54 and len(shifts) > 10  # both flips and many offsets occur


def test_text_windows_and_random_windows() -> None:
    codes = torch.arange(1005)
    inputs, targets = data.text_windows(codes, 100)
    assert inputs.shape == targets.shape == (10, 100)
    assert torch.equal(inputs.flatten(), codes[:1000]) and torch.equal(targets, inputs + 1)
    windows = data.random_windows(codes, 32, 101, torch.Generator().manual_seed(0))
    assert windows.shape == (32, 101)
    assert torch.equal(windows - windows[:, :1], torch.arange(101).expand(32, 101))
    assert windows.max() < 1005
