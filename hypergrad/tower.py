"""Towers from spec strings (:func:`tower`), and a tower read through the wrappers frameworks put
around it (:func:`unwrap`, :func:`hyperparameters`). The spec grammar is :mod:`hypergrad._spec`;
this module registers the optimizer families it names.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from hypergrad._base import Tower
from hypergrad._errors import HypergradError
from hypergrad._spec import OPTIMIZERS, build
from hypergrad.adagrad import Adagrad
from hypergrad.adam import Adam, AdamW
from hypergrad.rmsprop import RMSprop
from hypergrad.sgd import SGD

OPTIMIZERS.update({cls.name: cls for cls in (SGD, Adam, AdamW, Adagrad, RMSprop)})


def tower(spec: str, params: Iterable[Tensor] | Iterable[dict[str, Any]]) -> Tower:
    """A tower of optimizers from a spec in the paper's notation, over ``params``.

    ``tower("adam(lr=1e-3)/sgd(1e-5)", model.parameters())`` is Adam training the model while SGD
    with step size 1e-5 trains Adam's step size and betas; it is a ``torch.optim.Optimizer``
    (use it with ``loss.backward(); opt.step()``).

    Args:
        spec: the levels, bottom first, joined by ``/`` (see the module docstring).
        params: the model's parameters, or param groups, as for any ``torch.optim`` optimizer.

    Raises:
        SpecError: (a ``ValueError``) for a malformed spec, an unknown optimizer or argument, or a
            bad value; the message names the problem, the valid names and the grammar.
    """
    if params is None:
        raise HypergradError("tower() needs params; for a spec alone use hypergrad.canonical()")
    return build(spec, params)


def unwrap(opt: Any) -> torch.optim.Optimizer:
    """The optimizer inside the wrappers frameworks put around it: Lightning's
    ``LightningOptimizer`` (``._optimizer``), accelerate's ``AcceleratedOptimizer`` and
    Hugging Face's wrappers (``.optimizer``), nested or not.

    Raises:
        HypergradError: ``opt`` is not an optimizer, nor wraps one.
    """
    for _ in range(8):  # (a wrapper may itself be a torch.optim.Optimizer: accelerate's)
        if isinstance(opt, Tower):
            return opt
        inner = getattr(opt, "_optimizer", None) or getattr(opt, "optimizer", None)
        if inner is None or inner is opt:
            break
        opt = inner
    if not isinstance(opt, torch.optim.Optimizer):
        raise HypergradError(
            f"hyperparameters: {type(opt).__name__} is not an optimizer, nor a wrapper of one "
            "(.optimizer, ._optimizer); pass the tower or the wrapper a framework gave you")
    return opt


def hyperparameters(opt: Any) -> dict[str, float]:
    """The learned hyperparameters of a tower (:meth:`Tower.hyperparameters`), through the
    wrappers of Lightning (``trainer.optimizers[0]``, ``self.optimizers()``), accelerate and
    Hugging Face (``trainer.optimizer``); ``{}`` for an optimizer that learns nothing (a
    ``torch.optim`` one included)."""
    inner = unwrap(opt)
    return inner.hyperparameters() if isinstance(inner, Tower) else {}
