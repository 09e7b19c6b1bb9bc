"""On the training device: the holdout split, pixels as floats, epochs of shuffled batches, the
crop-and-flip augmentation and text windows, each for a whole batch at once (no per-sample
Python)."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from bench.errors import UserError

__all__ = [
    "batch_bounds", "random_crop_flip", "random_windows", "shuffled_batches", "split_indices",
    "text_windows", "to_device_images",
]


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
