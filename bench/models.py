"""The models of the two papers, as plain ``nn.Module``s (no data, no training)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def mlp(
    sizes: tuple[int, ...],
    activation: type[nn.Module] = nn.Tanh,
    *,
    activate_output: bool = False,
    log_softmax: bool = False,
) -> nn.Sequential:
    """A flattening MLP with ``activation`` between layers (and after the last one when
    ``activate_output``), ending in ``log_softmax`` over classes when asked.

    ``mlp((784, 128, 10), nn.Tanh, activate_output=True, log_softmax=True)`` is the network of
    the reference package's README (Chandra et al.'s Table 1); ``mlp((784, 10))`` logistic
    regression.
    """
    layers: list[nn.Module] = [nn.Flatten()]
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2 or activate_output:
            layers.append(activation())
    if log_softmax:
        layers.append(nn.LogSoftmax(dim=1))
    return nn.Sequential(*layers)


class _BasicBlock(nn.Module):
    """ResNet-20's block; the shortcut pads channels with zeros (He et al.'s option A)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.stride, self.pad = stride, c_out - c_in

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x
        if self.stride != 1 or self.pad:
            shortcut = x[:, :, :: self.stride, :: self.stride]
            shortcut = F.pad(shortcut, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return F.relu(out + shortcut)


class ResNet20(nn.Module):
    """ResNet-20 for 32x32 images (He et al. 2016, section 4.2): 3 stages of 3 blocks, 0.27 M
    parameters."""

    def __init__(self, num_classes: int = 10, blocks_per_stage: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        layers, c_in = [], 16
        for c_out, stride in ((16, 1), (32, 2), (64, 2)):
            for i in range(blocks_per_stage):
                layers.append(_BasicBlock(c_in, c_out, stride if i == 0 else 1))
                c_in = c_out
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn(self.conv(x)))
        x = self.layers(x)
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)


class CharLSTM(nn.Module):
    """Character-level LSTM (Karpathy's char-rnn shape): one-hot input, ``layers`` x ``hidden``.

    ``forward`` takes ``(batch, seq)`` character codes and returns ``(batch, seq, vocab)`` logits.
    """

    def __init__(self, vocab_size: int, hidden: int = 128, layers: int = 2) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.lstm = nn.LSTM(vocab_size, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, vocab_size)

    def forward(self, codes: Tensor) -> Tensor:
        x = F.one_hot(codes, self.vocab_size).to(self.head.weight.dtype)
        out, _ = self.lstm(x)
        return self.head(out)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


if __name__ == "__main__":  # a quick look at the sizes
    print("resnet20", count_parameters(ResNet20()))
    print("mlp", count_parameters(mlp((784, 128, 10))))
    print("lstm", count_parameters(CharLSTM(83)))
    print(ResNet20()(torch.zeros(2, 3, 32, 32)).shape)
