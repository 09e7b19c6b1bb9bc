"""ResNet-20 on CIFAR-10 (Chandra et al.'s CNN experiment): the full set, and the real subset
that is available offline."""

from __future__ import annotations

from torch import nn

from bench import data
from bench.models import ResNet20
from bench.workloads.classification import ImageClassification

_RESNET = (
    "He et al. 2016, section 4.2: ResNet-20 (n = 3, option A shortcuts), pad 4 + random crop + "
    "flip, batch 128; Chandra et al. 2022, section 4.3: {epochs} epochs, SGD with momentum, "
    "3x3 grid of starting alpha and mu, against He et al.'s step schedule. Open choices: "
    "per-channel mean/std normalisation (He et al. subtract the per-pixel mean), the whole "
    "training split (He et al.'s 45k/5k split was for tuning only), weight decay only where a "
    "method names it (He et al.'s step baseline: 1e-4){extra}"
)


class _CifarResNet20(ImageClassification):
    batch_size = 128
    augment = True
    eval_batch_size = 1000  # ResNet activations: keep an evaluation batch within GPU memory

    def build_model(self) -> nn.Module:
        return ResNet20()


class Cifar10ResNet20(_CifarResNet20):
    name = "cifar10-resnet20"
    description = "full CIFAR-10 (downloaded), ResNet-20, crop + flip, batch 128, 200 epochs"
    source = _RESNET.format(epochs=200, extra="")
    epochs = 200
    mean = data.CIFAR_MEAN
    std = data.CIFAR_STD

    def images(self) -> data.Images:
        return data.load_cifar10()


class Cifar10SubsetResNet20(_CifarResNet20):
    name = "cifar10s-resnet20"
    description = "CIFAR-10 subset (5,085 images), ResNet-20, crop + flip, batch 128, 30 epochs"
    source = _RESNET.format(
        epochs=200,
        extra=". Not the paper's data: the real 5,085-image subset available offline, 30 epochs "
        "(this project's choice, a stand-in that fits a CPU), tested on its 1,017 test images",
    )
    epochs = 30
    mean = data.CIFAR_SUBSET_MEAN
    std = data.CIFAR_SUBSET_STD

    def images(self) -> data.Images:
        return data.load_cifar10_subset()
