"""What every image classification workload shares: splits, batches, augmentation, evaluation."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench import data
from bench.workloads.base import Data, Split, Workload


class ImageClassification(Workload):
    """A classification workload on a small image dataset held on the device.

    Subclasses name the dataset (``images``), its normalisation (``mean``/``std`` per channel,
    or ``None``: pixels / 255 only, as ``transforms.ToTensor()`` gives) and the model. Validation
    is ``holdout`` of the training split, drawn by the seed; the test split is the dataset's own
    and is never used to select anything.

    A model whose output is log-probabilities (``log_probs = True``, the reference package's
    ``log_softmax``) is trained with ``nll_loss``; otherwise the output is logits and the loss is
    cross-entropy. Both are evaluated with the same loss they train with.
    """

    mean: ClassVar[tuple[float, ...] | None]
    std: ClassVar[tuple[float, ...] | None]
    log_probs: ClassVar[bool] = False
    augment: ClassVar[bool] = False  # random crop (pad 4) + horizontal flip when training
    eval_batch_size: ClassVar[int] = 10_000

    @abstractmethod
    def images(self) -> data.Images:
        """The dataset on the CPU (cached per process by ``bench.data``)."""

    def load_data(self, device: torch.device | str, seed: int, holdout: float = 0.0) -> Data:
        images = self.images()

        def split(x: Tensor, y: Tensor) -> Split:
            x = data.to_device_images(x, self.mean, self.std, device)
            return Split(x, y.to(device))

        test = split(images.x_test, images.y_test)
        if not holdout:  # the whole training split, in its own order
            return Data(train=split(images.x_train, images.y_train), val=None, test=test)
        train_idx, val_idx = data.split_indices(len(images.y_train), holdout, seed)
        return Data(
            train=split(images.x_train[train_idx], images.y_train[train_idx]),
            val=split(images.x_train[val_idx], images.y_train[val_idx]),
            test=test,
        )

    def train_batches(
        self, split: Split, batch_size: int, generator: torch.Generator
    ) -> Iterator[tuple[Tensor, Tensor]]:
        assert split.y is not None
        fill = None
        if self.augment:  # a black pixel once normalised: torchvision pads before normalising
            fill = torch.zeros(split.x.shape[1])
            if self.mean is not None and self.std is not None:
                fill = -torch.tensor(self.mean) / torch.tensor(self.std)
            fill = fill.to(split.x.device)
        for idx in data.shuffled_batches(len(split), batch_size, generator, split.x.device):
            x = split.x[idx]
            if fill is not None:
                x = data.random_crop_flip(x, generator, pad=4, fill=fill)
            yield x, split.y[idx]

    def steps_per_epoch(self, split: Split, batch_size: int) -> int:
        return len(data.batch_bounds(len(split), batch_size))

    def loss(self, output: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
        if self.log_probs:
            return F.nll_loss(output, target, reduction=reduction)
        return F.cross_entropy(output, target, reduction=reduction)

    def evaluate(self, model: nn.Module, split: Split) -> dict[str, float]:
        """Mean loss (the training loss, ``l2`` left out) and error rate over the whole split, in
        large batches, with a single device sync at the end."""
        assert split.y is not None
        loss_sum = torch.zeros((), dtype=torch.float64, device=split.x.device)
        wrong = torch.zeros((), dtype=torch.int64, device=split.x.device)
        bs = self.eval_batch_size
        with torch.inference_mode():  # no autograd bookkeeping at all: the fastest forward
            for x, y in zip(split.x.split(bs), split.y.split(bs), strict=True):
                out = model(x)
                loss_sum += self.loss(out, y, reduction="sum")
                wrong += (out.argmax(dim=1) != y).sum()
        loss, n_wrong = loss_sum.item(), wrong.item()
        return {"loss": loss / len(split), "error": n_wrong / len(split)}
