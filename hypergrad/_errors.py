"""The exception root of ``hypergrad``.

Every error raised on purpose is a ``HypergradError``, itself a ``ValueError`` (what
``torch.optim`` raises for a bad argument), so ``except ValueError`` keeps working. Messages state
the rule, the value and how to fix it.
"""

from __future__ import annotations


class HypergradError(ValueError):
    """Root of every error ``hypergrad`` raises on purpose (a bad argument, mostly)."""


class SpecError(HypergradError):
    """A tower spec that cannot be parsed or names something unknown; the message names what is
    wrong, the grammar and the valid names."""


class UnsupportedError(HypergradError, RuntimeError):
    """A ``torch.optim`` switch at a value hypergrad cannot honour (``fused=True``,
    ``capturable=True``, ``differentiable=True``); a ``RuntimeError`` as torch raises for an
    unsupported ``fused``, and a ``ValueError`` as every ``HypergradError``. The message names
    what is supported."""
