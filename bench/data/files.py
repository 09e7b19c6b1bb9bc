"""A dataset's files: where they are looked for, the download into the cache, reading them, and
the errors that say what is missing or wrong and both ways to fix it (see ``bench.data``)."""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.errors import DataError

__all__ = ["ENV_DATA_DIR", "ENV_NO_DOWNLOAD", "cache_dir", "data_dir", "downloads_allowed"]

ENV_DATA_DIR = "BENCH_DATA_DIR"
ENV_NO_DOWNLOAD = "BENCH_NO_DOWNLOAD"
WARPEACE_URL = "https://cs.stanford.edu/people/karpathy/char-rnn/warpeace_input.txt"


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
class Source:
    """Where one dataset's files live: a folder under ``$BENCH_DATA_DIR``, one under the cache
    (torchvision's layout there, since that is what its download writes), and how to download."""

    name: str
    files: tuple[str, ...]
    data_subdir: str
    cache_subdir: str
    download: str | None  # the dataset's name for ``download``; None: not downloadable
    gz_ok: bool = False  # a file may also be present as ``name.gz``


def _find(folder: Path, file: str, gz_ok: bool) -> Path | None:
    for candidate in (folder / file, folder / f"{file}.gz") if gz_ok else (folder / file,):
        if candidate.is_file():
            return candidate
    return None


def _candidates(source: Source) -> list[Path]:
    root = data_dir()
    folders = [root / source.data_subdir] if root is not None else []
    return folders + [cache_dir() / source.cache_subdir]


def _lookup(source: Source) -> tuple[Path, ...] | None:
    """The source's files from the first folder that holds all of them, or ``None``."""
    for folder in _candidates(source):
        found = [_find(folder, f, source.gz_ok) for f in source.files]
        if all(p is not None for p in found):
            return tuple(p for p in found if p is not None)
    return None


def missing_error(source: Source, reason: str) -> DataError:
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


def resolve(source: Source) -> tuple[Path, ...]:
    """The source's files, downloading them into the cache when allowed and needed."""
    found = _lookup(source)
    if found is not None:
        return found
    if source.download is None:
        raise missing_error(source, "this dataset is not downloadable")
    if not downloads_allowed():
        raise missing_error(source, f"downloads disabled by {ENV_NO_DOWNLOAD}")
    try:
        download(source.download, cache_dir())
    except Exception as exc:  # network, HTTP, a half-written archive: all mean "not available"
        reason = f"the download failed: {type(exc).__name__}: {str(exc).splitlines()[0]}"
        raise missing_error(source, reason) from exc
    found = _lookup(source)
    if found is None:
        raise missing_error(source, "the download did not produce them")
    return found


def download(dataset: str, root: Path) -> None:
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


def read_bytes(path: Path) -> bytes:
    """A file's bytes (a ``.gz`` one uncompressed); damaged or unreadable: a ``DataError``."""
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


def check_content(ok: bool, what: str, folder: Path) -> None:
    """Refuse the data in ``folder`` unless ``ok``: ``what`` says what was found instead."""
    if not ok:
        raise DataError(
            f"the data in {folder} is not the expected content ({what}); replace the files "
            f"(see the data README) or delete them from the cache to download them again"
        )
