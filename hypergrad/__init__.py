"""hypergrad: hyperoptimizer towers (Chandra et al., NeurIPS 2022) as ``torch.optim`` optimizers.

>>> import torch, hypergrad
>>> model = torch.nn.Linear(4, 2)
>>> opt = hypergrad.tower("adam(1e-3)/sgd(1e-5)", model.parameters())
>>> str(opt), opt.height
('adam(0.001)/sgd(1e-5)', 1)
>>> sorted(opt.hyperparameters())
['0.beta1', '0.beta2', '0.lr']

The same tower spelled out: ``hypergrad.Adam(model.parameters(), lr=1e-3,
hyper=hypergrad.SGD(lr=1e-5))``. The training loop is the ordinary one: ``opt.zero_grad();
loss.backward(); opt.step()``. See ``hypergrad._stepping`` for how hypergradients are computed.
``hypergrad.hyperparameters(opt)`` reads the learned values through a framework's wrapper.
"""

from __future__ import annotations

from hypergrad._base import Tower
from hypergrad._errors import HypergradError, SpecError, UnsupportedError
from hypergrad._spec import GRAMMAR, OPTIMIZERS, canonical, parse, unbound
from hypergrad.adagrad import Adagrad
from hypergrad.adam import Adam, AdamW
from hypergrad.rmsprop import RMSprop
from hypergrad.sgd import SGD
from hypergrad.tower import hyperparameters, tower, unwrap

__all__ = [
    "GRAMMAR",
    "OPTIMIZERS",
    "Adagrad",
    "Adam",
    "AdamW",
    "HypergradError",
    "RMSprop",
    "SGD",
    "SpecError",
    "Tower",
    "canonical",
    "hyperparameters",
    "parse",
    "tower",
    "unbound",
    "unwrap",
    "UnsupportedError",
]
