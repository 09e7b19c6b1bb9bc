"""The text dataset: *War and Peace* (the char-rnn file), its vocabulary and character codes."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from bench.data.files import Source, check_content, resolve

__all__ = ["Text", "load_warpeace"]

WARPEACE_FILE = "text/warpeace_input.txt"
_WARPEACE_BYTES = 3_258_246
_WARPEACE_SHA256 = "fb66ba999dafe24017cdd59e04c56d385a9c8466993d374fd4c6f08b2142985e"
_WARPEACE_CHARS = 3_196_212  # after dropping the BOM and turning CRLF into LF
_WARPEACE_VOCAB = 82


@dataclass(frozen=True)
class Text:
    """A text, its vocabulary (sorted characters) and its ``int64`` character codes on the CPU."""

    text: str
    vocab: str
    codes: Tensor

    def decode(self, codes: Tensor) -> str:
        return "".join(self.vocab[i] for i in codes.tolist())


_WARPEACE = Source("War and Peace", (Path(WARPEACE_FILE).name,), "text", "text", "warpeace")


@functools.cache
def _decode_warpeace(path: Path) -> Text:
    raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    check_content(
        len(raw) == _WARPEACE_BYTES and digest == _WARPEACE_SHA256,
        f"{len(raw)} bytes with sha256 {digest}, expected {_WARPEACE_BYTES} and {_WARPEACE_SHA256}",
        path.parent,
    )
    # utf-8-sig drops the BOM; newline="" keeps the CRLFs so that we normalise them explicitly.
    with open(path, encoding="utf-8-sig", newline="") as f:
        text = f.read().replace("\r\n", "\n")
    vocab = "".join(sorted(set(text)))
    check_content(
        len(text) == _WARPEACE_CHARS and len(vocab) == _WARPEACE_VOCAB,
        f"{len(text)} characters, {len(vocab)} distinct",
        path.parent,
    )
    lookup = np.zeros(max(map(ord, vocab)) + 1, np.int64)
    lookup[[ord(c) for c in vocab]] = np.arange(len(vocab))
    codepoints = np.frombuffer(text.encode("utf-32-le"), np.uint32)
    return Text(text, vocab, torch.from_numpy(lookup[codepoints]))


def load_warpeace() -> Text:
    """*War and Peace* (the char-rnn file): about 3.196 million characters, 82 distinct."""
    (path,) = resolve(_WARPEACE)
    return _decode_warpeace(path)
