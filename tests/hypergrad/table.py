"""The one table of optimizer rows that drives the hypergrad tests (and the error inputs).

``KINDS``: every optimizer kind of the paper, as a level of a tower, in its ``gdtuo``-compatible
spelling, with the ``gdtuo`` constructor that is its reference and the step sizes of the SGD
levels stacked above it for heights 1 to 4 (chosen so that every level's hyperparameters move,
and the run stays finite, over 200 steps of the MNIST MLP). ``hyper=True`` rows are tested as
hyperoptimizers: ``sgd(0.01)/<row>/sgd(...)...``.

``TORCH_ROWS``: height-0 configurations and the ``torch.optim`` optimizer each must equal.
``SPECS``: specs and their canonical forms (the round-trip table).
``ERRORS``: bad specs and the pattern their ``ValueError`` message must match.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from gradient_descent_the_ultimate_optimizer import gdtuo


@dataclass(frozen=True)
class Kind:
    """One optimizer kind as a tower level."""

    id: str
    level: str
    """Its hypergrad spec (with the options that make it ``gdtuo``'s)."""
    reference: Callable[[Any], Any]
    """``reference(optimizer_above) -> gdtuo optimizer``."""
    ladder: tuple[float, ...]
    """Step sizes of the SGD levels above (heights 1-4), the row's own level excluded."""
    hyper: bool = False
    learned: tuple[str, ...] = field(default=())
    """What the row's level learns (the keys it adds to ``hyperparameters()``)."""


G = gdtuo
_ADAM = "v0=1e-8"  # gdtuo starts Adam's second moment at eps
_ADAGRAD = "initial_accumulator_value=0.1, eps_inside=true"  # gdtuo's AdaGrad
_RMSPROP = "eps_inside=true"  # gdtuo's RMSProp

KINDS: tuple[Kind, ...] = (
    Kind("sgd", "sgd(0.01)", lambda o: G.SGD(0.01, optimizer=o),
         (0.01, 1e-4, 1e-5, 1e-8), learned=("lr",)),
    Kind("sgd+momentum", "sgd(0.01, momentum=0.9)", lambda o: G.SGD(0.01, 0.9, optimizer=o),
         (1e-3, 1e-4, 1e-6, 1e-10), learned=("lr", "momentum")),
    Kind("adam", f"adam(0.001, {_ADAM})", lambda o: G.Adam(0.001, optimizer=o),
         (1e-5, 1e-13, 1e-22, 1e-32), learned=("lr", "beta1", "beta2")),
    Kind("adam^alpha", f"adam(0.001, {_ADAM}, learn=lr)",
         lambda o: G.AdamBaydin(0.001, optimizer=o), (1e-5, 1e-13, 1e-22, 1e-32),
         learned=("lr",)),
    Kind("adagrad", f"adagrad(0.01, {_ADAGRAD})", lambda o: G.AdaGrad(0.01, optimizer=o),
         (1e-3, 1e-5, 1e-8, 1e-12), learned=("lr",)),
    Kind("rmsprop", f"rmsprop(0.001, {_RMSPROP})", lambda o: G.RMSProp(0.001, optimizer=o),
         (1e-4, 1e-9, 1e-13, 1e-18), learned=("lr", "gamma")),
    Kind("rmsprop^alpha", f"rmsprop(0.001, {_RMSPROP}, learn=lr)",
         lambda o: G.RMSPropAlpha(0.001, optimizer=o), (1e-4, 1e-9, 1e-13, 1e-18),
         learned=("lr",)),
    Kind("adam-hyper", f"adam(0.01, {_ADAM})", lambda o: G.Adam(0.01, optimizer=o),
         (1e-2, 1e-5, 1e-8), hyper=True, learned=("lr", "beta1", "beta2")),
    Kind("adagrad-hyper", f"adagrad(0.01, {_ADAGRAD})", lambda o: G.AdaGrad(0.01, optimizer=o),
         (1e-4, 1e-6, 1e-10), hyper=True, learned=("lr",)),
    Kind("rmsprop-hyper", f"rmsprop(0.001, {_RMSPROP})", lambda o: G.RMSProp(0.001, optimizer=o),
         (1e-4, 1e-6, 1e-10), hyper=True, learned=("lr", "gamma")),
)

BASE = ("sgd(0.01)", lambda o: G.SGD(0.01, optimizer=o))
"""The level 0 under a ``hyper=True`` row."""


def tower_of(kind: Kind, height: int) -> tuple[str, list[Callable[[Any], Any]]]:
    """The spec of ``kind`` at ``height`` and its gdtuo levels (bottom first)."""
    levels = [(kind.level, kind.reference)]
    if kind.hyper:
        levels.insert(0, BASE)
    for kappa in kind.ladder:
        if len(levels) > height:
            break
        levels.append((f"sgd({kappa!r})", lambda o, k=kappa: G.SGD(k, optimizer=o)))
    assert len(levels) == height + 1, (kind.id, height)
    return "/".join(s for s, _ in levels), [make for _, make in levels]


# ---------------------------------------------------------------------------------------------
# Height 0 against torch.optim (default settings and the options torch has)

TORCH_ROWS: tuple[tuple[str, Callable[[Any], torch.optim.Optimizer]], ...] = (
    ("sgd(0.1)", lambda p: torch.optim.SGD(p, lr=0.1)),
    ("sgd(0.1, momentum=0.9)", lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)),
    ("sgd(0.1, momentum=0.9, nesterov=true)",
     lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True)),
    ("sgd(0.1, momentum=0.9, dampening=0.1, weight_decay=1e-4)",
     lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, dampening=0.1, weight_decay=1e-4)),
    ("adam(0.001)", lambda p: torch.optim.Adam(p, lr=1e-3)),
    ("adam(0.01, beta1=0.8, beta2=0.99, eps=1e-6, weight_decay=0.01)",
     lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.01)),
    ("adamw(0.001)", lambda p: torch.optim.AdamW(p, lr=1e-3)),
    ("adamw(0.01, weight_decay=0.1)", lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1)),
    ("adagrad(0.01)", lambda p: torch.optim.Adagrad(p, lr=0.01)),
    ("adagrad(0.01, lr_decay=0.01, weight_decay=1e-3, initial_accumulator_value=0.1)",
     lambda p: torch.optim.Adagrad(p, lr=0.01, lr_decay=0.01, weight_decay=1e-3,
                                   initial_accumulator_value=0.1)),
    ("rmsprop(0.01)", lambda p: torch.optim.RMSprop(p, lr=0.01)),
    ("rmsprop(0.001, gamma=0.9, momentum=0.9, centered=true, weight_decay=1e-3)",
     lambda p: torch.optim.RMSprop(p, lr=0.001, alpha=0.9, momentum=0.9, centered=True,
                                   weight_decay=1e-3)),
)


# ---------------------------------------------------------------------------------------------
# Specs and their canonical forms (every one must parse back to itself)

SPECS: tuple[tuple[str, str], ...] = (
    ("sgd", "sgd(0.001)"),
    ("sgd(0.1)", "sgd(0.1)"),
    ("SGD( lr = 1e-1 )", "sgd(0.1)"),
    ("adam/sgd(1e-5)", "adam(0.001)/sgd(1e-5)"),
    ("adam(lr=1e-3)/sgd(1e-5)", "adam(0.001)/sgd(1e-5)"),
    ("adam(lr=1e-3, learn=lr)/sgd(1e-5)/sgd(1e-5)",
     "adam(0.001, learn=lr)/sgd(1e-5)/sgd(1e-5)"),
    ("adam(1e-3, learn=(beta1, lr))/adam(1e-2, beta2=0.99)",
     "adam(0.001, learn=(lr, beta1))/adam(0.01, beta2=0.99)"),
    ("adam(0.001, learn=(lr, beta1, beta2))/sgd(1e-5)", "adam(0.001)/sgd(1e-5)"),
    ("sgd(0.01, momentum=0.9)/sgd(1e-5)", "sgd(0.01, momentum=0.9)/sgd(1e-5)"),
    ("sgd(0.01, momentum=0.9, learn=lr)/sgd(1e-5)", "sgd(0.01, momentum=0.9, learn=lr)/sgd(1e-5)"),
    ("sgd(0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)",
     "sgd(0.01, momentum=0.9, weight_decay=0.0005, nesterov=true)"),
    ("sgd(0.1, lr_per=tensor)/sgd(0.001, lr_per=group)/adam(0.0001)",
     "sgd(0.1, lr_per=tensor)/sgd(0.001, lr_per=group)/adam(0.0001)"),
    ("sgd(0.1, learn=lr, lr_per=optimizer)", "sgd(0.1)"),
    ("adamw(3e-4, weight_decay=0.05)/sgd(1e-6)", "adamw(0.0003, weight_decay=0.05)/sgd(1e-6)"),
    ("adam(1e-3, v0=1e-8)/sgd(1e-5)", "adam(0.001, v0=1e-8)/sgd(1e-5)"),
    ("adam(0.001, beta1=0, learn=lr)/sgd(1e-5)", "adam(0.001, beta1=0, learn=lr)/sgd(1e-5)"),
    ("adagrad(0.01, initial_accumulator_value=0.1, eps_inside=true)/adagrad(0.01)",
     "adagrad(0.01, initial_accumulator_value=0.1, eps_inside=true)/adagrad(0.01)"),
    ("rmsprop/sgd(1e-4)", "rmsprop(0.01)/sgd(0.0001)"),
    ("rmsprop(1e-2, gamma=0.99, learn=lr)/rmsprop(1e-4)",
     "rmsprop(0.01, learn=lr)/rmsprop(0.0001)"),
    ("rmsprop(0.01, momentum=0.9, centered=true, eps_inside=true)/sgd(1e-4)",
     "rmsprop(0.01, momentum=0.9, centered=true, eps_inside=true)/sgd(0.0001)"),
    ("sgd(2.5e-4)/sgd(1e-20)/sgd(123456789)", "sgd(0.00025)/sgd(1e-20)/sgd(123456789)"),
    ("sgd(0.30000000000000004)", "sgd(0.30000000000000004)"),
    ("sgd(0.0005)/sgd(1000)/sgd(1234.5)/sgd(5e-3)", "sgd(0.0005)/sgd(1000)/sgd(1234.5)/sgd(0.005)"),
    ("sgd(1)/sgd(.5)/sgd(100.0)/sgd(1e2)/sgd(1E-2)/sgd(1e-300)",
     "sgd(1)/sgd(0.5)/sgd(100)/sgd(100)/sgd(0.01)/sgd(1e-300)"),
    ("sgd(0.1)/sgd(0.1)/sgd(0.1)/sgd(0.1)/sgd(0.1)/sgd(0.1)",
     "sgd(0.1)/sgd(0.1)/sgd(0.1)/sgd(0.1)/sgd(0.1)/sgd(0.1)"),
)


# ---------------------------------------------------------------------------------------------
# Error inputs: (spec, regular expression the message must match). Every message also names
# the grammar and valid names (checked for all rows).

ERRORS: tuple[tuple[str, str], ...] = (
    ("", r"empty spec"),
    ("   ", r"empty spec"),
    ("adma/sgd(1e-5)", r"unknown optimizer 'adma'.*valid optimizers: adagrad, adam, adamw, "
                       r"rmsprop, sgd"),
    ("sgd(1e-5)/lbfgs", r"unknown optimizer 'lbfgs'"),
    ("adam(lr=1e-3, beta=0.9)", r"unknown argument 'beta' for adam.*arguments of adam: lr, "
                                r"beta1, beta2, eps, weight_decay, v0, amsgrad, maximize, "
                                r"decoupled_weight_decay, learn, lr_per"),
    ("sgd(0.1, betas=0.9)", r"unknown argument 'betas' for sgd"),
    ("sgd(-1)", r"lr must be > 0, but got lr=-1.0"),
    ("sgd(0)", r"lr must be > 0, but got lr=0.0"),
    ("adam(1e-3)/sgd(lr=-1e-5)", r"level 1 \(sgd\): lr must be > 0"),
    ("adam(1e-3, beta1=1.5)", r"beta1 must be in \[0, 1\), but got beta1=1.5"),
    ("adam(1e-3, beta1=1.5)/sgd(1e-5)", r"beta1 must be in \(0, 1\) to be learned, but got "
                                        r"beta1=1.5"),
    ("adam(1e-3, beta2=1)/sgd(1e-5)", r"beta2 must be in \(0, 1\) to be learned"),
    ("adam(1e-3, beta1=-0.1, learn=lr)", r"beta1 must be in \[0, 1\), but got beta1=-0.1"),
    ("rmsprop(1e-2, gamma=1.0)", r"gamma must be in \[0, 1\)"),
    ("rmsprop(1e-2, gamma=0)/sgd(1e-3)", r"gamma must be in \(0, 1\) to be learned"),
    ("sgd(0.1, momentum=-0.9)", r"momentum must be >= 0"),
    ("sgd(0.1, nesterov=true)", r"nesterov must be false unless momentum > 0"),
    ("sgd(0.1, learn=momentum)/sgd(1e-5)", r"momentum must be > 0 to be learned"),
    ("sgd(0.1, learn=beta1)", r"cannot learn 'beta1'; learnable hyperparameters: lr, momentum"),
    ("adam(0.1, learn=())", r"expected a value for 'learn'"),
    ("sgd(0.1, lr_per=layer)", r"lr_per must be one of optimizer, group, tensor"),
    ("sgd(0.1, nesterov=1)", r"nesterov must be true or false"),
    ("sgd(0.1, momentum=true)", r"momentum must be a number"),
    ("sgd(0.1, momentum=fast)", r"momentum must be a number"),
    ("sgd(0.1, weight_decay=nan)", r"weight_decay must be a number"),
    ("adam(1e-3", r"expected ',' or '\)' at position 9, found the end"),
    ("adam(1e-3))", r"expected '/' or the end of the spec at position 10"),
    ("adam(1e-3)/", r"expected an optimizer name at position 11, found the end"),
    ("/sgd", r"expected an optimizer name at position 0"),
    ("adam(1e-3)//sgd", r"expected an optimizer name at position 11"),
    ("adam 1e-3", r"expected '/' or the end of the spec at position 5"),
    ("adam(1e-3, 1e-4)", r"positional argument at position 11"),
    ("adam(lr=1e-3, 1e-4)", r"positional argument at position 14"),
    ("adam(1e-3, lr=1e-4)", r"argument 'lr' given twice"),
    ("sgd(momentum=0.9, momentum=0.8)", r"argument 'momentum' given twice"),
    ("sgd(0.1; momentum=0.9)", r"unexpected character ';' at position 7"),
    ("sgd(lr=)", r"expected a value for 'lr' at position 7"),
    ("sgd(0.1)*sgd(0.2)", r"unexpected character '\*'"),
)


# ---------------------------------------------------------------------------------------------
# torch.optim's switches (maximize, amsgrad, decoupled_weight_decay) at height 0 against
# torch.optim, on both paths; FAMILIES: each family as (spec, the step size of an SGD level
# above it, torch's class), for the tests of the other switches and of checkpoints.

SWITCH_ROWS: tuple[tuple[str, Callable[[Any], torch.optim.Optimizer]], ...] = (
    ("sgd(0.05, maximize=true)", lambda p: torch.optim.SGD(p, lr=0.05, maximize=True)),
    ("sgd(0.05, momentum=0.9, nesterov=true, maximize=true)",
     lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, maximize=True)),
    ("adam(0.001, maximize=true)", lambda p: torch.optim.Adam(p, lr=1e-3, maximize=True)),
    ("adam(0.001, amsgrad=true)", lambda p: torch.optim.Adam(p, lr=1e-3, amsgrad=True)),
    ("adam(0.001, weight_decay=0.01, amsgrad=true, maximize=true)",
     lambda p: torch.optim.Adam(p, lr=1e-3, weight_decay=0.01, amsgrad=True, maximize=True)),
    ("adam(0.001, weight_decay=0.01, decoupled_weight_decay=true)",
     lambda p: torch.optim.Adam(p, lr=1e-3, weight_decay=0.01, decoupled_weight_decay=True)),
    ("adamw(0.001, amsgrad=true, maximize=true)",
     lambda p: torch.optim.AdamW(p, lr=1e-3, amsgrad=True, maximize=True)),
    ("adagrad(0.01, lr_decay=0.01, maximize=true)",
     lambda p: torch.optim.Adagrad(p, lr=0.01, lr_decay=0.01, maximize=True)),
    ("rmsprop(0.01, maximize=true)", lambda p: torch.optim.RMSprop(p, lr=0.01, maximize=True)),
    ("rmsprop(0.001, alpha=0.9, momentum=0.9, centered=true, maximize=true)",
     lambda p: torch.optim.RMSprop(p, lr=0.001, alpha=0.9, momentum=0.9, centered=True,
                                   maximize=True)),
)

FAMILIES: tuple[tuple[str, float, Callable[[Any], torch.optim.Optimizer]], ...] = (
    ("sgd(0.05, momentum=0.9)", 1e-3, lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9)),
    ("adam(0.001)", 1e-5, lambda p: torch.optim.Adam(p, lr=1e-3)),
    ("adamw(0.001)", 1e-5, lambda p: torch.optim.AdamW(p, lr=1e-3)),
    ("adagrad(0.01)", 1e-3, lambda p: torch.optim.Adagrad(p, lr=0.01)),
    ("rmsprop(0.001)", 1e-4, lambda p: torch.optim.RMSprop(p, lr=1e-3)),
    ("rmsprop(0.001, momentum=0.9, centered=true)", 1e-4,
     lambda p: torch.optim.RMSprop(p, lr=1e-3, momentum=0.9, centered=True)),
)
