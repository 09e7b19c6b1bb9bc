"""The workload interface: dataset + model + loss + metric + default batch size and epochs."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn


@dataclass
class Split:
    """One split of a dataset, already on the training device.

    For classification ``x`` holds inputs and ``y`` labels (same first dimension). For the
    language model ``x`` is one long tensor of character codes and ``y`` is ``None``.
    """

    x: Tensor
    y: Tensor | None

    def __len__(self) -> int:
        return len(self.x)


@dataclass
class Data:
    """train / val / test, fixed by the seed; val is carved from the training data."""

    train: Split
    val: Split
    test: Split


class Workload(ABC):
    """A benchmark problem. Implementations must be cheap to construct (no data loaded).

    Contract:
        - ``load_data`` returns the three splits on ``device``; the same seed gives the same split.
          Content is checked once per process (checksums or shapes and label counts).
        - ``build_model`` returns a fresh ``nn.Module``; the caller seeds ``torch`` beforehand.
        - ``train_batches`` yields one epoch of ``(inputs, targets)`` on the data's device, in an
          order drawn from ``generator`` (index permutation on the device; augmentation here);
          no per-sample Python.
        - ``evaluate`` returns ``{"loss": ..., metric: ...}`` for a whole split (``metric`` is
          ``"error"``, a fraction in [0, 1], or ``"bpc"``); the caller sets eval mode and no_grad.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    batch_size: ClassVar[int]
    epochs: ClassVar[int]
    metric: ClassVar[str] = "error"

    @abstractmethod
    def load_data(self, device: torch.device, seed: int) -> Data: ...

    @abstractmethod
    def build_model(self) -> nn.Module: ...

    @abstractmethod
    def train_batches(
        self, split: Split, batch_size: int, generator: torch.Generator
    ) -> Iterator[tuple[Tensor, Tensor]]: ...

    @abstractmethod
    def steps_per_epoch(self, split: Split, batch_size: int) -> int: ...

    @abstractmethod
    def evaluate(self, model: nn.Module, split: Split) -> dict[str, float]: ...

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        return nn.functional.cross_entropy(output, target)
