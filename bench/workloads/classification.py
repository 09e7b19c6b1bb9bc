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

    Subclasses name the dataset (``images``), its normalisation (``mean``/``std`` per channel)
    and the model. Validation is ``val_fraction`` of the training split, drawn by the seed; the
    test split is the dataset's own and is never used to select anything.
    """

    mean: ClassVar[tuple[float, ...]]
    std: ClassVar[tuple[float, ...]]
    val_fraction: ClassVar[float] = 0.1
    augment: ClassVar[bool] = False  # random crop (pad 4) + horizontal flip when training
    eval_batch_size: ClassVar[int] = 10_000

    @abstractmethod
    def images(self) -> data.Images:
        """The dataset on the CPU (cached per process by ``bench.data``)."""

    def load_data(self, device: torch.device | str, seed: int) -> Data:
        images = self.images()
        train_idx, val_idx = data.split_indices(len(images.y_train), self.val_fraction, seed)

        def split(x: Tensor, y: Tensor) -> Split:
            x = data.to_device_images(x, self.mean, self.std, device)
            return Split(x, y.to(device))

        return Data(
            train=split(images.x_train[train_idx], images.y_train[train_idx]),
            val=split(images.x_train[val_idx], images.y_train[val_idx]),
            test=split(images.x_test, images.y_test),
        )

    def train_batches(
        self, split: Split, batch_size: int, generator: torch.Generator
    ) -> Iterator[tuple[Tensor, Tensor]]:
        assert split.y is not None
        fill = None
        if self.augment:  # a black pixel once normalised: torchvision pads before normalising
            mean, std = torch.tensor(self.mean), torch.tensor(self.std)
            fill = (-mean / std).to(split.x.device)
        for idx in data.shuffled_batches(len(split), batch_size, generator, split.x.device):
            x = split.x[idx]
            if fill is not None:
                x = data.random_crop_flip(x, generator, pad=4, fill=fill)
            yield x, split.y[idx]

    def steps_per_epoch(self, split: Split, batch_size: int) -> int:
        return len(data.batch_bounds(len(split), batch_size))

    def evaluate(self, model: nn.Module, split: Split) -> dict[str, float]:
        """Mean cross-entropy and error rate over the whole split, in large batches, with a
        single device sync at the end."""
        assert split.y is not None
        loss_sum = torch.zeros((), dtype=torch.float64, device=split.x.device)
        wrong = torch.zeros((), dtype=torch.int64, device=split.x.device)
        bs = self.eval_batch_size
        with torch.inference_mode():  # no autograd bookkeeping at all: the fastest forward
            for x, y in zip(split.x.split(bs), split.y.split(bs), strict=True):
                out = model(x)
                loss_sum += F.cross_entropy(out, y, reduction="sum")
                wrong += (out.argmax(dim=1) != y).sum()
        loss, n_wrong = loss_sum.item(), wrong.item()
        return {"loss": loss / len(split), "error": n_wrong / len(split)}
