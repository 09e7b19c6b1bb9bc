"""The image datasets (MNIST and Fashion-MNIST from idx files, the CIFAR-10 subset from its npz,
full CIFAR-10 from its python batches): decoded once per process and checked against what the
content must be."""

from __future__ import annotations

import functools
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from bench.data.files import Source, check_content, read_bytes, resolve
from bench.errors import DataError

__all__ = [
    "CIFAR_MEAN", "CIFAR_STD", "CIFAR_SUBSET_MEAN", "CIFAR_SUBSET_STD", "FASHION_MEAN",
    "FASHION_STD", "MNIST_MEAN", "MNIST_STD", "Images", "load_cifar10", "load_cifar10_subset",
    "load_fashion_mnist", "load_mnist",
]

_IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
# Canonical md5 of the *uncompressed* MNIST files (the .gz wrappers differ between copies).
_MNIST_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
# Fashion-MNIST's published pixel statistics (train split, pixels / 255); checked with its shapes
# and its perfectly balanced labels.
FASHION_MEAN, FASHION_STD = 0.2860, 0.3530
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081

CIFAR_SUBSET_FILE = "cifar10_subset/cifar10_first1017_per_batch.npz"
# The subset's label counts (the first 1,017 images of each batch) and per-channel statistics.
_CIFAR_SUBSET_COUNTS = {
    "train": (517, 524, 490, 493, 537, 475, 503, 516, 529, 501),
    "test": (105, 93, 100, 104, 92, 87, 114, 102, 110, 110),
}
CIFAR_SUBSET_MEAN = (0.4936, 0.4846, 0.4483)
CIFAR_SUBSET_STD = (0.2481, 0.2446, 0.2621)
CIFAR_FOLDER = "cifar-10-batches-py"
_CIFAR_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta")
# Full CIFAR-10 training set statistics (the often-copied std 0.2023/0.1994/0.2010 is wrong).
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


@dataclass(frozen=True)
class Images:
    """An image classification dataset on the CPU: ``uint8`` images ``(N, C, H, W)``, ``int64``
    labels. Shared by every run of a process: never modify in place."""

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor


_MNIST = Source("MNIST", _IDX_FILES, "mnist", "MNIST/raw", "mnist", gz_ok=True)
_FASHION = Source(
    "Fashion-MNIST", _IDX_FILES, "fashion-mnist", "FashionMNIST/raw", "fashion-mnist", gz_ok=True
)
_CIFAR_SUBSET = Source(
    "the CIFAR-10 subset", (Path(CIFAR_SUBSET_FILE).name,), "cifar10_subset", "cifar10_subset", None
)
_CIFAR = Source("full CIFAR-10", _CIFAR_FILES, CIFAR_FOLDER, CIFAR_FOLDER, "cifar10")


def _parse_idx(raw: bytes, path: Path) -> Tensor:
    """An idx file: a magic number (``0 0 0x08 ndim``, 0x08 = uint8) then big-endian dims."""
    if len(raw) < 4 or raw[:3] != b"\x00\x00\x08":
        raise DataError(f"{path} is not a uint8 idx file (magic {raw[:4].hex()}); replace the file")
    ndim = raw[3]
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    payload = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
    if payload.size != math.prod(dims):
        raise DataError(f"{path}: header says {dims} but holds {payload.size} bytes; replace it")
    return torch.from_numpy(payload.reshape(dims).copy())


def _decode_idx_set(paths: tuple[Path, ...], md5s: tuple[str, ...] | None) -> Images:
    """The four idx files (train images, train labels, test images, test labels), checked."""
    folder = paths[0].parent
    arrays = []
    for path, expected in zip(paths, md5s or (None,) * len(paths), strict=True):
        raw = read_bytes(path)
        if expected is not None:
            digest = hashlib.md5(raw).hexdigest()
            check_content(digest == expected, f"{path.name}: md5 {digest}, expected {expected}",
                          folder)
        arrays.append(_parse_idx(raw, path))
    x_train, y_train, x_test, y_test = arrays
    check_content(
        x_train.shape == (60_000, 28, 28) and x_test.shape == (10_000, 28, 28),
        f"image shapes {tuple(x_train.shape)}, {tuple(x_test.shape)}",
        folder,
    )
    check_content(
        y_train.shape == (60_000,) and y_test.shape == (10_000,),
        f"label shapes {tuple(y_train.shape)}, {tuple(y_test.shape)}",
        folder,
    )
    return Images(x_train[:, None], y_train.long(), x_test[:, None], y_test.long())


@functools.cache
def _decode_mnist(paths: tuple[Path, ...]) -> Images:
    return _decode_idx_set(paths, tuple(_MNIST_MD5[f] for f in _IDX_FILES))


def load_mnist() -> Images:
    """MNIST, 60,000 train / 10,000 test images ``(N, 1, 28, 28)``; md5 of the content checked."""
    return _decode_mnist(resolve(_MNIST))


@functools.cache
def _decode_fashion(paths: tuple[Path, ...]) -> Images:
    images = _decode_idx_set(paths, None)
    folder = paths[0].parent
    counts = (torch.bincount(images.y_train).tolist(), torch.bincount(images.y_test).tolist())
    check_content(counts == ([6000] * 10, [1000] * 10), f"label counts {counts}", folder)
    # From the histogram of pixel values: exact, and far faster than float statistics.
    hist = torch.bincount(images.x_train.flatten(), minlength=256).double()
    values = torch.arange(256, dtype=torch.float64) / 255
    mean = (hist @ values / hist.sum()).item()
    std = ((hist @ values.square() / hist.sum()).item() - mean**2) ** 0.5
    check_content(
        abs(mean - FASHION_MEAN) < 1e-3 and abs(std - FASHION_STD) < 1e-3,
        f"pixel mean {mean:.4f} std {std:.4f}, expected {FASHION_MEAN} {FASHION_STD}",
        folder,
    )
    return images


def load_fashion_mnist() -> Images:
    """Fashion-MNIST, same shapes as MNIST; shapes, label counts and pixel statistics checked."""
    return _decode_fashion(resolve(_FASHION))


@functools.cache
def _decode_cifar_subset(path: Path) -> Images:
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    check_content(
        arrays["x_train"].shape == (5085, 3, 32, 32)
        and arrays["x_test"].shape == (1017, 3, 32, 32),
        f"shapes {arrays['x_train'].shape}, {arrays['x_test'].shape}",
        path.parent,
    )
    for split in ("train", "test"):
        counts = tuple(np.bincount(arrays[f"y_{split}"], minlength=10).tolist())
        expected = _CIFAR_SUBSET_COUNTS[split]
        check_content(
            counts == expected, f"{split} label counts {counts}, expected {expected}", path.parent
        )
    t = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}
    return Images(t["x_train"], t["y_train"].long(), t["x_test"], t["y_test"].long())


def load_cifar10_subset() -> Images:
    """The real CIFAR-10 subset: 5,085 train / 1,017 test images ``(N, 3, 32, 32)``."""
    (path,) = resolve(_CIFAR_SUBSET)
    return _decode_cifar_subset(path)


@functools.cache
def _decode_cifar(folder: Path) -> Images:
    import torchvision

    # torchvision checks every batch's md5 before unpickling it (the official python batches).
    try:
        train = torchvision.datasets.CIFAR10(str(folder.parent), train=True)
        test = torchvision.datasets.CIFAR10(str(folder.parent), train=False)
    except RuntimeError as exc:  # "Dataset not found or corrupted": an md5 did not match
        raise DataError(
            f"the data in {folder} is not the expected content (torchvision: {exc}); replace the "
            f"files or delete them from the cache to download them again"
        ) from exc

    def tensors(ds: torchvision.datasets.CIFAR10) -> tuple[Tensor, Tensor]:
        x = torch.from_numpy(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)))
        return x, torch.tensor(ds.targets, dtype=torch.long)

    (x_train, y_train), (x_test, y_test) = tensors(train), tensors(test)
    counts = (torch.bincount(y_train).tolist(), torch.bincount(y_test).tolist())
    check_content(counts == ([5000] * 10, [1000] * 10), f"label counts {counts}", folder)
    return Images(x_train, y_train, x_test, y_test)


def load_cifar10() -> Images:
    """Full CIFAR-10, 50,000 train / 10,000 test images ``(N, 3, 32, 32)``, md5s checked."""
    paths = resolve(_CIFAR)
    return _decode_cifar(paths[0].parent)
