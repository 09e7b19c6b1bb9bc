"""Character-level language model on *War and Peace* (Chandra et al.'s RNN experiment)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench import data
from bench.models import CharLSTM
from bench.workloads.base import Data, Split, Workload


class WarPeaceLSTM(Workload):
    """A 2 x 128 LSTM predicting the next character of *War and Peace*.

    Splits are contiguous (the same for every seed): the last 10% of the text is the test text,
    the rest training; a search holds out the last 5% of the training text to choose on. A
    training batch is ``batch_size`` windows of ``seq_len + 1`` characters at random starts
    (inputs and next-character targets); an epoch is
    ``len(train) / (batch_size * seq_len)`` batches. Evaluation runs the model on the split's
    non-overlapping windows of ``seq_len`` characters, each from a zero state, and reports nats
    (``loss``) and bits (``bpc``) per character.
    """

    name = "warpeace-lstm"
    description = "War and Peace, char LSTM 2x128, seq 100, batch 128, 10 epochs, bits per char"
    batch_size = 128
    epochs = 10
    source = (
        "Chandra et al. 2022, section 4.3 (RNN): a character-level LSTM, 2 layers of 128, "
        "sequence 100, on War and Peace (Karpathy's char-rnn text and shape). Open choices the "
        "paper leaves: batch 128, 10 epochs of len(train) / (batch x 100) random windows, one-hot "
        "input, the last 10% of the text as the test text, bits per character"
    )
    metric = "bpc"
    seq_len: ClassVar[int] = 100
    search_holdout: ClassVar[float] = 0.05
    test_fraction: ClassVar[float] = 0.10
    eval_batch_size: ClassVar[int] = 1024  # windows per forward pass

    def load_data(self, device: torch.device | str, seed: int, holdout: float = 0.0) -> Data:
        """The test text is the tail; validation, when ``holdout`` > 0, is that fraction of the
        training text just before it (contiguous, the same for every seed)."""
        codes = data.load_warpeace().codes
        n = len(codes)
        test_start = int(n * (1 - self.test_fraction))
        val_start = test_start - int(test_start * holdout)
        codes = codes.to(device)
        val = Split(codes[val_start:test_start], None) if val_start < test_start else None
        return Data(
            train=Split(codes[:val_start], None),
            val=val,
            test=Split(codes[test_start:], None),
        )

    def build_model(self) -> nn.Module:
        return CharLSTM(len(data.load_warpeace().vocab))

    def steps_per_epoch(self, split: Split, batch_size: int) -> int:
        return max(1, len(split) // (batch_size * self.seq_len))

    def train_batches(
        self, split: Split, batch_size: int, generator: torch.Generator
    ) -> Iterator[tuple[Tensor, Tensor]]:
        for _ in range(self.steps_per_epoch(split, batch_size)):
            windows = data.random_windows(split.x, batch_size, self.seq_len + 1, generator)
            yield windows[:, :-1], windows[:, 1:]

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(output.flatten(0, 1), target.flatten())

    def evaluate(self, model: nn.Module, split: Split) -> dict[str, float]:
        inputs, targets = data.text_windows(split.x, self.seq_len)
        loss_sum = torch.zeros((), dtype=torch.float64, device=split.x.device)
        bs = self.eval_batch_size
        with torch.inference_mode():  # no autograd bookkeeping at all: the fastest forward
            for x, y in zip(inputs.split(bs), targets.split(bs), strict=True):
                out = model(x)
                loss_sum += F.cross_entropy(out.flatten(0, 1), y.flatten(), reduction="sum")
        nats = loss_sum.item() / targets.numel()
        return {"loss": nats, "bpc": nats / math.log(2)}
