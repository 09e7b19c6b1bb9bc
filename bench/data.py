"""Datasets: found on disk (or downloaded), checked once, decoded once, batched on the device.

Where the files come from, in order:

1. ``$BENCH_DATA_DIR``, with the layout of the shared data folder's README
   (``mnist/train-images-idx3-ubyte.gz``, ``fashion-mnist/...``,
   ``cifar10_subset/cifar10_first1017_per_batch.npz``, ``text/warpeace_input.txt``, and
   ``cifar-10-batches-py/`` for full CIFAR-10);
2. the user cache directory (``$XDG_CACHE_HOME/hypergrad-bench`` or
   ``~/.cache/hypergrad-bench``), in the layout torchvision downloads to;
3. a download into that cache (torchvision for MNIST, Fashion-MNIST and CIFAR-10, the char-rnn URL
   for *War and Peace*), unless ``$BENCH_NO_DOWNLOAD`` is set;
4. otherwise a ``DataError`` that names the missing files and both ways to provide them.

Every loader returns CPU tensors, cached per process (a worker runs many runs): the content is
checked and the files decoded once. Workloads move them to the training device per run; the
helpers at the end of this module batch, augment and cut windows there, without per-sample Python.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import math
import os
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from bench.errors import DataError, UserError

ENV_DATA_DIR = "BENCH_DATA_DIR"
ENV_NO_DOWNLOAD = "BENCH_NO_DOWNLOAD"

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

WARPEACE_FILE = "text/warpeace_input.txt"
WARPEACE_URL = "https://cs.stanford.edu/people/karpathy/char-rnn/warpeace_input.txt"
_WARPEACE_BYTES = 3_258_246
_WARPEACE_SHA256 = "fb66ba999dafe24017cdd59e04c56d385a9c8466993d374fd4c6f08b2142985e"
_WARPEACE_CHARS = 3_196_212  # after dropping the BOM and turning CRLF into LF
_WARPEACE_VOCAB = 82


@dataclass(frozen=True)
class Images:
    """An image classification dataset on the CPU: ``uint8`` images ``(N, C, H, W)``, ``int64``
    labels. Shared by every run of a process: never modify in place."""

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor


@dataclass(frozen=True)
class Text:
    """A text, its vocabulary (sorted characters) and its ``int64`` character codes on the CPU."""

    text: str
    vocab: str
    codes: Tensor

    def decode(self, codes: Tensor) -> str:
        return "".join(self.vocab[i] for i in codes.tolist())


# ---------------------------------------------------------------------------------------------
# Where the files are


def data_dir() -> Path | None:
    """``$BENCH_DATA_DIR`` as a path, or ``None`` when unset."""
    value = os.environ.get(ENV_DATA_DIR)
    return Path(value).expanduser() if value else None


def cache_dir() -> Path:
    """The user cache: ``$XDG_CACHE_HOME/hypergrad-bench``, else ``~/.cache/hypergrad-bench``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "hypergrad-bench"


def downloads_allowed() -> bool:
    return os.environ.get(ENV_NO_DOWNLOAD, "").strip().lower() in ("", "0", "false", "no")


@dataclass(frozen=True)
class _Source:
    """Where one dataset's files live: a folder under ``$BENCH_DATA_DIR``, one under the cache
    (torchvision's layout there, since that is what its download writes), and how to download."""

    name: str
    files: tuple[str, ...]
    data_subdir: str
    cache_subdir: str
    download: str | None  # a key of _DOWNLOADS
    gz_ok: bool = False  # a file may also be present as ``name.gz``


_MNIST = _Source("MNIST", _IDX_FILES, "mnist", "MNIST/raw", "mnist", gz_ok=True)
_FASHION = _Source(
    "Fashion-MNIST", _IDX_FILES, "fashion-mnist", "FashionMNIST/raw", "fashion-mnist", gz_ok=True
)
_CIFAR_SUBSET = _Source(
    "the CIFAR-10 subset", (Path(CIFAR_SUBSET_FILE).name,), "cifar10_subset", "cifar10_subset", None
)
_CIFAR = _Source("full CIFAR-10", _CIFAR_FILES, CIFAR_FOLDER, CIFAR_FOLDER, "cifar10")
_WARPEACE = _Source("War and Peace", (Path(WARPEACE_FILE).name,), "text", "text", "warpeace")


def _find(folder: Path, file: str, gz_ok: bool) -> Path | None:
    for candidate in (folder / file, folder / f"{file}.gz") if gz_ok else (folder / file,):
        if candidate.is_file():
            return candidate
    return None


def _candidates(source: _Source) -> list[Path]:
    root = data_dir()
    folders = [root / source.data_subdir] if root is not None else []
    return folders + [cache_dir() / source.cache_subdir]


def _lookup(source: _Source) -> tuple[Path, ...] | None:
    """The source's files from the first folder that holds all of them, or ``None``."""
    for folder in _candidates(source):
        found = [_find(folder, f, source.gz_ok) for f in source.files]
        if all(p is not None for p in found):
            return tuple(p for p in found if p is not None)
    return None


def _missing_error(source: _Source, reason: str) -> DataError:
    root = data_dir()
    where = (
        f"{ENV_DATA_DIR}={root} (looked in {root / source.data_subdir})"
        if root is not None
        else f"{ENV_DATA_DIR} is unset"
    )
    files = ", ".join(f"{source.data_subdir}/{f}" for f in source.files)
    download = (
        f"or allow the download into {cache_dir()} (needs internet; unset {ENV_NO_DOWNLOAD})"
        if source.download is not None
        else f"or put the files under {cache_dir() / source.cache_subdir}"
    )
    return DataError(
        f"{source.name} not found: missing {files}; {where}, and the cache "
        f"{cache_dir() / source.cache_subdir} lacks them too ({reason}). Fix: set {ENV_DATA_DIR} "
        f"to a folder holding these files (the layout of the data README), {download}"
    )


def _resolve(source: _Source) -> tuple[Path, ...]:
    """The source's files, downloading them into the cache when allowed and needed."""
    found = _lookup(source)
    if found is not None:
        return found
    if source.download is None:
        raise _missing_error(source, "this dataset is not downloadable")
    if not downloads_allowed():
        raise _missing_error(source, f"downloads disabled by {ENV_NO_DOWNLOAD}")
    try:
        _download(source.download, cache_dir())
    except Exception as exc:  # network, HTTP, a half-written archive: all mean "not available"
        reason = f"the download failed: {type(exc).__name__}: {str(exc).splitlines()[0]}"
        raise _missing_error(source, reason) from exc
    found = _lookup(source)
    if found is None:
        raise _missing_error(source, "the download did not produce them")
    return found


def _download(dataset: str, root: Path) -> None:
    """Fetch one dataset into ``root`` (the cache) in torchvision's layout."""
    import torchvision  # imported here: it is slow to import and only needed to download

    root.mkdir(parents=True, exist_ok=True)
    if dataset == "warpeace":
        torchvision.datasets.utils.download_url(WARPEACE_URL, str(root / "text"))
        return
    classes: dict[str, Callable[..., object]] = {
        "mnist": torchvision.datasets.MNIST,
        "fashion-mnist": torchvision.datasets.FashionMNIST,
        "cifar10": torchvision.datasets.CIFAR10,
    }
    # train=False: the download fetches every file, and then only the small test split is read.
    classes[dataset](str(root), train=False, download=True)


# ---------------------------------------------------------------------------------------------
# Decoding and checking (once per process: cached by file path)


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:  # truncated, or not gzip at all
        raise DataError(f"{path} is damaged ({type(e).__name__}: {e or 'ends too early'}); "
                        "replace it (see the data README) or delete it from the cache to "
                        "download it again") from None
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from None


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


def _check(ok: bool, what: str, folder: Path) -> None:
    if not ok:
        raise DataError(
            f"the data in {folder} is not the expected content ({what}); replace the files "
            f"(see the data README) or delete them from the cache to download them again"
        )


def _decode_idx_set(paths: tuple[Path, ...], md5s: tuple[str, ...] | None) -> Images:
    """The four idx files (train images, train labels, test images, test labels), checked."""
    folder = paths[0].parent
    arrays = []
    for path, expected in zip(paths, md5s or (None,) * len(paths), strict=True):
        raw = _read_bytes(path)
        if expected is not None:
            digest = hashlib.md5(raw).hexdigest()
            _check(digest == expected, f"{path.name}: md5 {digest}, expected {expected}", folder)
        arrays.append(_parse_idx(raw, path))
    x_train, y_train, x_test, y_test = arrays
    _check(
        x_train.shape == (60_000, 28, 28) and x_test.shape == (10_000, 28, 28),
        f"image shapes {tuple(x_train.shape)}, {tuple(x_test.shape)}",
        folder,
    )
    _check(
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
    return _decode_mnist(_resolve(_MNIST))


@functools.cache
def _decode_fashion(paths: tuple[Path, ...]) -> Images:
    images = _decode_idx_set(paths, None)
    folder = paths[0].parent
    counts = (torch.bincount(images.y_train).tolist(), torch.bincount(images.y_test).tolist())
    _check(counts == ([6000] * 10, [1000] * 10), f"label counts {counts}", folder)
    # From the histogram of pixel values: exact, and far faster than float statistics.
    hist = torch.bincount(images.x_train.flatten(), minlength=256).double()
    values = torch.arange(256, dtype=torch.float64) / 255
    mean = (hist @ values / hist.sum()).item()
    std = ((hist @ values.square() / hist.sum()).item() - mean**2) ** 0.5
    _check(
        abs(mean - FASHION_MEAN) < 1e-3 and abs(std - FASHION_STD) < 1e-3,
        f"pixel mean {mean:.4f} std {std:.4f}, expected {FASHION_MEAN} {FASHION_STD}",
        folder,
    )
    return images


def load_fashion_mnist() -> Images:
    """Fashion-MNIST, same shapes as MNIST; shapes, label counts and pixel statistics checked."""
    return _decode_fashion(_resolve(_FASHION))


@functools.cache
def _decode_cifar_subset(path: Path) -> Images:
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    _check(
        arrays["x_train"].shape == (5085, 3, 32, 32)
        and arrays["x_test"].shape == (1017, 3, 32, 32),
        f"shapes {arrays['x_train'].shape}, {arrays['x_test'].shape}",
        path.parent,
    )
    for split in ("train", "test"):
        counts = tuple(np.bincount(arrays[f"y_{split}"], minlength=10).tolist())
        expected = _CIFAR_SUBSET_COUNTS[split]
        _check(
            counts == expected, f"{split} label counts {counts}, expected {expected}", path.parent
        )
    t = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}
    return Images(t["x_train"], t["y_train"].long(), t["x_test"], t["y_test"].long())


def load_cifar10_subset() -> Images:
    """The real CIFAR-10 subset: 5,085 train / 1,017 test images ``(N, 3, 32, 32)``."""
    (path,) = _resolve(_CIFAR_SUBSET)
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
    _check(counts == ([5000] * 10, [1000] * 10), f"label counts {counts}", folder)
    return Images(x_train, y_train, x_test, y_test)


def load_cifar10() -> Images:
    """Full CIFAR-10, 50,000 train / 10,000 test images ``(N, 3, 32, 32)``, md5s checked."""
    paths = _resolve(_CIFAR)
    return _decode_cifar(paths[0].parent)


@functools.cache
def _decode_warpeace(path: Path) -> Text:
    raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    _check(
        len(raw) == _WARPEACE_BYTES and digest == _WARPEACE_SHA256,
        f"{len(raw)} bytes with sha256 {digest}, expected {_WARPEACE_BYTES} and {_WARPEACE_SHA256}",
        path.parent,
    )
    # utf-8-sig drops the BOM; newline="" keeps the CRLFs so that we normalise them explicitly.
    with open(path, encoding="utf-8-sig", newline="") as f:
        text = f.read().replace("\r\n", "\n")
    vocab = "".join(sorted(set(text)))
    _check(
        len(text) == _WARPEACE_CHARS and len(vocab) == _WARPEACE_VOCAB,
        f"{len(text)} characters, {len(vocab)} distinct",
        path.parent,
    )
    lookup = np.zeros(max(map(ord, vocab)) + 1, np.int64)
    lookup[[ord(c) for c in vocab]] = np.arange(len(vocab))
    codepoints = np.frombuffer(text.encode("utf-32-le"), np.uint32)
    return Text(text, vocab, torch.from_numpy(lookup[codepoints]))


def load_warpeace() -> Text:
    """*War and Peace* (the char-rnn file): about 3.196 million characters, 82 distinct."""
    (path,) = _resolve(_WARPEACE)
    return _decode_warpeace(path)


# ---------------------------------------------------------------------------------------------
# On the device


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """Train and validation indices into ``range(n)``: disjoint, together all of it, fixed by
    ``seed`` (drawn on the CPU, so every device gets the same split)."""
    if not 0 < val_fraction < 1:
        raise UserError(f"holdout must be in (0, 1), but got holdout={val_fraction!r}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = int(n * val_fraction)
    if n_val == 0:
        raise UserError(f"holdout={val_fraction!r} of {n} samples holds out none; give a larger "
                        "fraction (or 0 to hold out nothing)")
    return perm[n_val:], perm[:n_val]


def to_device_images(
    x: Tensor,
    mean: tuple[float, ...] | None,
    std: tuple[float, ...] | None,
    device: torch.device | str,
) -> Tensor:
    """``uint8`` images to ``float32`` pixels / 255 on ``device`` (moved as bytes: 4x less copy),
    normalised by ``mean`` and ``std`` per channel unless they are ``None``."""
    out = x.to(device).float().div_(255)
    if mean is None or std is None:
        return out
    stats = torch.tensor((mean, std), dtype=torch.float32, device=device)[..., None, None]
    return out.sub_(stats[0]).div_(stats[1])


def batch_bounds(n: int, batch_size: int) -> list[tuple[int, int]]:
    """``[start, end)`` of each batch of an epoch of ``n`` samples, the last one possibly smaller.

    A last batch of one sample is merged into the one before: BatchNorm cannot train on it.
    """
    if batch_size < 1:
        raise UserError(f"batch_size must be >= 1, but got {batch_size=}")
    starts = list(range(0, n, batch_size))
    if len(starts) > 1 and n - starts[-1] == 1:
        starts.pop()
    return list(zip(starts, starts[1:] + [n], strict=True))


def shuffled_batches(
    n: int, batch_size: int, generator: torch.Generator, device: torch.device | str
) -> Iterator[Tensor]:
    """One epoch of index batches on ``device``: a permutation drawn from ``generator``."""
    perm = torch.randperm(n, generator=generator, device=generator.device).to(device)
    for start, end in batch_bounds(n, batch_size):
        yield perm[start:end]


def random_crop_flip(x: Tensor, generator: torch.Generator, pad: int, fill: Tensor) -> Tensor:
    """Random crop after padding each side by ``pad``, then a horizontal flip with probability
    1/2, for a whole batch at once (one gather; random numbers from ``generator``).

    ``fill`` (per channel, shape ``(C,)``) is the padding value: for normalised images, the
    normalised value of a black pixel, as torchvision's ``RandomCrop(padding=4)`` pads before
    normalising.
    """
    b, c, h, w = x.shape
    padded = fill.to(x.dtype).view(1, c, 1, 1).expand(b, c, h + 2 * pad, w + 2 * pad).clone()
    padded[:, :, pad : pad + h, pad : pad + w] = x
    draw = torch.randint(0, 2 * pad + 1, (2, b), generator=generator, device=generator.device)
    flip = torch.randint(0, 2, (b,), generator=generator, device=generator.device).bool()
    dy, dx, flip = draw[0].to(x.device), draw[1].to(x.device), flip.to(x.device)
    rows = dy[:, None] + torch.arange(h, device=x.device)  # (b, h)
    cols = torch.arange(w, device=x.device).expand(b, w)
    cols = dx[:, None] + torch.where(flip[:, None], cols.flip(1), cols)  # (b, w)
    batch = torch.arange(b, device=x.device)[:, None, None, None]
    channel = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]


def random_windows(
    codes: Tensor, batch_size: int, length: int, generator: torch.Generator
) -> Tensor:
    """``batch_size`` windows of ``length`` consecutive codes at random starts: ``(B, length)``."""
    if len(codes) < length:
        raise UserError(f"text of {len(codes)} characters is shorter than a window of {length}")
    starts = torch.randint(
        0, len(codes) - length + 1, (batch_size,), generator=generator, device=generator.device
    ).to(codes.device)
    return codes[starts[:, None] + torch.arange(length, device=codes.device)]


def text_windows(codes: Tensor, length: int) -> tuple[Tensor, Tensor]:
    """Non-overlapping windows covering ``codes``: inputs and next-character targets, each
    ``(n, length)`` with ``n = (len(codes) - 1) // length`` (a tail shorter than that is left)."""
    n = (len(codes) - 1) // length
    if n < 1:
        raise UserError(f"text of {len(codes)} characters holds no window of {length} + 1")
    inputs = codes[: n * length].view(n, length)
    targets = codes[1 : n * length + 1].view(n, length)
    return inputs, targets
