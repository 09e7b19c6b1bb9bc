"""The MNIST and Fashion-MNIST workloads: the MLPs of Chandra et al. and of Baydin et al."""

from __future__ import annotations

from torch import nn

from bench import data
from bench.models import mlp
from bench.workloads.classification import ImageClassification


class _Mnist(ImageClassification):
    mean = (data.MNIST_MEAN,)
    std = (data.MNIST_STD,)

    def images(self) -> data.Images:
        return data.load_mnist()


class MnistMLP(_Mnist):
    name = "mnist-mlp"
    description = "MNIST, MLP 784-128-10 tanh (Chandra et al. Table 1), batch 256, 30 epochs"
    batch_size = 256
    epochs = 30

    def build_model(self) -> nn.Module:
        return mlp((784, 128, 10), nn.Tanh)


class MnistLogReg(_Mnist):
    name = "mnist-logreg"
    description = "MNIST, logistic regression 784-10 (Baydin et al.), batch 128, 10 epochs"
    batch_size = 128
    epochs = 10

    def build_model(self) -> nn.Module:
        return mlp((784, 10))


class MnistMLP1000(_Mnist):
    name = "mnist-mlp1000"
    description = "MNIST, MLP 784-1000-1000-10 ReLU (Baydin et al.), batch 128, 100 epochs"
    batch_size = 128
    epochs = 100

    def build_model(self) -> nn.Module:
        return mlp((784, 1000, 1000, 10), nn.ReLU)


class FashionMLP(ImageClassification):
    name = "fashion-mlp"
    description = "Fashion-MNIST, MLP 784-128-10 tanh, batch 256, 30 epochs"
    batch_size = 256
    epochs = 30
    mean = (data.FASHION_MEAN,)
    std = (data.FASHION_STD,)

    def images(self) -> data.Images:
        return data.load_fashion_mnist()

    def build_model(self) -> nn.Module:
        return mlp((784, 128, 10), nn.Tanh)
