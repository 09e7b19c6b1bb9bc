"""ResNet-20 on CIFAR-10 (Chandra et al.'s CNN experiment): the full set, and the real subset
that is available offline."""

from __future__ import annotations

from torch import nn

from bench import data
from bench.models import ResNet20
from bench.workloads.classification import ImageClassification


class _CifarResNet20(ImageClassification):
    batch_size = 128
    augment = True
    eval_batch_size = 1000  # ResNet activations: keep an evaluation batch within GPU memory

    def build_model(self) -> nn.Module:
        return ResNet20()


class Cifar10ResNet20(_CifarResNet20):
    name = "cifar10-resnet20"
    description = "full CIFAR-10 (downloaded), ResNet-20, crop + flip, batch 128, 200 epochs"
    epochs = 200
    mean = data.CIFAR_MEAN
    std = data.CIFAR_STD

    def images(self) -> data.Images:
        return data.load_cifar10()


class Cifar10SubsetResNet20(_CifarResNet20):
    name = "cifar10s-resnet20"
    description = "CIFAR-10 subset (5,085 images), ResNet-20, crop + flip, batch 128, 30 epochs"
    epochs = 30
    mean = data.CIFAR_SUBSET_MEAN
    std = data.CIFAR_SUBSET_STD

    def images(self) -> data.Images:
        return data.load_cifar10_subset()
