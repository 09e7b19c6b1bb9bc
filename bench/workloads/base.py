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
    """train / val / test. ``val`` is carved from the training data (``holdout`` of it, drawn by
    the seed) and is ``None`` when nothing is held out: a single run trains on the whole training
    split, as both papers did; a search holds some out to choose on."""

    train: Split
    val: Split | None
    test: Split


class Workload(ABC):
    """A benchmark problem. Implementations must be cheap to construct (no data loaded).

    Contract:
        - ``load_data`` returns the splits on ``device``: ``holdout`` (a fraction in [0, 1)) of
          the training split becomes validation, none when it is 0; the same seed gives the same
          split. Content is checked once per process (checksums or shapes and label counts).
        - ``build_model`` returns a fresh ``nn.Module``; the caller seeds ``torch`` beforehand.
        - ``train_batches`` yields one epoch of ``(inputs, targets)`` on the data's device, in an
          order drawn from ``generator`` (index permutation on the device; augmentation here);
          no per-sample Python.
        - ``evaluate`` returns ``{"loss": ..., metric: ...}`` for a whole split (``metric`` is
          ``"error"``, a fraction in [0, 1], or ``"bpc"``); the caller sets eval mode and no_grad.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    # Where the setup comes from (paper section, or file and line of the authors' code), and the
    # choices the sources leave open: shown by ``bench list``.
    source: ClassVar[str]
    batch_size: ClassVar[int]
    epochs: ClassVar[int]
    metric: ClassVar[str] = "error"
    # The fraction of the training split a search holds out to choose on.
    search_holdout: ClassVar[float] = 0.1
    # L2 regularisation, (l2 / 2) * sum of every parameter's squared norm added to the training
    # loss: the gradient gains l2 * w, as torch.optim's (coupled) ``weight_decay=l2`` does, but
    # for every method alike, hypergradients included (Baydin et al.'s code passes it to every
    # optimizer).
    l2: ClassVar[float] = 0.0

    @abstractmethod
    def load_data(self, device: torch.device, seed: int, holdout: float = 0.0) -> Data: ...

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
        """The mean training loss of a batch (without ``l2``: the loop adds it)."""
        return nn.functional.cross_entropy(output, target)
