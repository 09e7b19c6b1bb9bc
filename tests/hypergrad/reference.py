"""The simple reference twin of a tower: every update written out with autograd.

Nothing is clever here. Each level keeps the autograd graph of its last update as a function of
its raw hyperparameters (one 0-d leaf per learned value), and the next step pulls the new
gradient through it with ``torch.autograd.grad``. The updates are written from the formulas of
``torch.optim``'s documentation, not from ``hypergrad``'s kernels, so that a mistake in a
closed-form tangent shows as a difference. Learned values are kept valid as in the paper:
identity for step sizes and momentum, the square for RMSProp's step size, ``(tanh + 1)/2`` for
betas and gamma.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

import hypergrad

PARAMETRISATION = {
    ("sgd", "lr"): "identity", ("sgd", "momentum"): "identity",
    ("adam", "lr"): "identity", ("adam", "beta1"): "unit", ("adam", "beta2"): "unit",
    ("adamw", "lr"): "identity", ("adamw", "beta1"): "unit", ("adamw", "beta2"): "unit",
    ("adagrad", "lr"): "identity",
    ("rmsprop", "lr"): "square", ("rmsprop", "gamma"): "unit",
}


def forward(kind: str, raw: Tensor) -> Tensor:
    if kind == "identity":
        return raw
    if kind == "square":
        return raw * raw
    return (torch.tanh(raw) + 1) / 2


def inverse(kind: str, value: float) -> float:
    import math

    if kind == "identity":
        return value
    if kind == "square":
        return math.sqrt(value)
    return math.atanh(2 * value - 1)


def safe_sqrt(x: Tensor) -> Tensor:
    """sqrt with a zero (not NaN) derivative where x == 0."""
    positive = x > 0
    return torch.where(positive, torch.where(positive, x, torch.ones_like(x)).sqrt(),
                       torch.zeros_like(x))


def update(kind: str, c: dict[str, Any], hp: dict[str, Any], p: Tensor, g: Tensor,
           st: dict[str, Tensor]) -> Tensor:
    """The change of ``p`` (a function of the hyperparameters in ``hp``); ``st`` is updated with
    detached tensors."""
    st["step"] = t = st.get("step", 0) + 1
    lr = hp["lr"]
    if kind == "sgd":
        d = g + c["weight_decay"] * p
        if c["momentum"] != 0:
            mu = hp["momentum"]
            buf = d if "buf" not in st else mu * st["buf"] + (1 - c["dampening"]) * d
            st["buf"] = buf.detach()
            u = d + mu * buf if c["nesterov"] else buf
        else:
            u = d
        return -lr * u
    if kind in ("adam", "adamw"):
        b1, b2 = hp["beta1"], hp["beta2"]
        decoupled = kind == "adamw"
        if not decoupled:
            g = g + c["weight_decay"] * p
        m = b1 * st.get("m", torch.zeros_like(p)) + (1 - b1) * g
        v = b2 * st.get("v", torch.full_like(p, c["v0"])) + (1 - b2) * g * g
        st["m"], st["v"] = m.detach(), v.detach()
        u = (m / (1 - b1**t)) / (safe_sqrt(v / (1 - b2**t)) + c["eps"])
        delta = -lr * u
        if decoupled:
            delta = delta - lr * c["weight_decay"] * p
        return delta
    if kind == "adagrad":
        g = g + c["weight_decay"] * p
        total = st.get("sum", torch.full_like(p, c["initial_accumulator_value"])) + g * g
        st["sum"] = total.detach()
        std = (total + c["eps"]).sqrt() if c["eps_inside"] else total.sqrt() + c["eps"]
        return -lr / (1 + (t - 1) * c["lr_decay"]) * g / std
    if kind == "rmsprop":
        gamma = hp["gamma"]
        g = g + c["weight_decay"] * p
        s = gamma * st.get("s", torch.zeros_like(p)) + (1 - gamma) * g * g
        st["s"] = s.detach()
        w = s
        if c["centered"]:
            a = gamma * st.get("a", torch.zeros_like(p)) + (1 - gamma) * g
            st["a"] = a.detach()
            w = s - a * a
        avg = (w + c["eps"]).sqrt() if c["eps_inside"] else safe_sqrt(w) + c["eps"]
        q = g / avg
        if c["momentum"] > 0:
            b = c["momentum"] * st.get("b", torch.zeros_like(p)) + q
            st["b"] = b.detach()
            return -lr * b
        return -lr * q
    raise ValueError(kind)


class Level:
    """One level: its kind, fixed config, learned values (raw leaves) and per-tensor state."""

    def __init__(self, kind: str, config: dict[str, Any], learned: tuple[str, ...],
                 lr_per: str, n_params: int, group_of: Sequence[int], learns: bool,
                 dtype: torch.dtype) -> None:
        self.kind, self.learned, self.lr_per = kind, learned, lr_per
        self.config = dict(config)
        if "betas" in self.config:
            self.config["beta1"], self.config["beta2"] = self.config.pop("betas")
        if kind == "rmsprop" and "alpha" in self.config:  # torch's name of the paper's gamma
            self.config["gamma"] = self.config.pop("alpha")
        self.group_of = list(group_of)
        self.learns = learns
        self.state: list[dict[str, Any]] = [{} for _ in range(n_params)]
        self.slots: list[tuple[str, Any]] = []  # (name, index) in hypergrad's raw order
        if learns:
            n_groups = max(self.group_of) + 1
            for name in learned:
                per = lr_per if name == "lr" else ("optimizer" if lr_per == "optimizer"
                                                   else "group")
                count = {"optimizer": 1, "group": n_groups, "tensor": n_params}[per]
                self.slots += [(name, (per, j)) for j in range(count)]
            self.raw = [torch.tensor(inverse(PARAMETRISATION[kind, n], self.config[n]),
                                     dtype=dtype).requires_grad_() for n, _ in self.slots]
        self.last: list[Tensor | None] = [None] * n_params

    def values_for(self, i: int) -> dict[str, Any]:
        """The hyperparameters of tensor ``i``: learned ones from the raw leaves (graph)."""
        hp = dict(self.config)
        if self.learns:
            for (name, (per, j)), raw in zip(self.slots, self.raw, strict=True):
                mine = {"optimizer": 0, "group": self.group_of[i], "tensor": i}[per]
                if j == mine:
                    hp[name] = forward(PARAMETRISATION[self.kind, name], raw)
        return hp


class ReferenceTower:
    """A tower from a hypergrad spec, stepped with autograd; level 0 trains ``params`` (a list
    of tensors, ``group_of[i]`` the param group of tensor ``i``)."""

    def __init__(self, spec: str, params: list[Tensor], group_of: Sequence[int]) -> None:
        self.params = params
        self.levels: list[Level] = []
        parsed = hypergrad.parse(spec)
        n, groups = len(params), list(group_of)
        for k, (cls, kwargs) in enumerate(parsed):
            kwargs = dict(kwargs)
            learn, lr_per = kwargs.pop("learn", None), kwargs.pop("lr_per", "optimizer")
            unbound = cls(None, **kwargs, learn=learn)
            learned = unbound._learn
            level = Level(cls.name, unbound._config, learned, lr_per, n, groups,
                          learns=k < len(parsed) - 1, dtype=params[0].dtype)
            self.levels.append(level)
            if level.learns:
                n, groups = len(level.raw), [0] * len(level.raw)

    def step(self) -> None:
        # 1. bottom-up: the gradient of this loss w.r.t. each level's raw values
        grads: list[Tensor] = [p.grad.detach() for p in self.params]
        all_grads = [grads]
        for level in self.levels[:-1]:
            pairs = [(d, g) for d, g in zip(level.last, grads, strict=True) if d is not None]
            if pairs:
                out = torch.autograd.grad([d for d, _ in pairs], level.raw,
                                          grad_outputs=[g for _, g in pairs], allow_unused=True)
                grads = [torch.zeros_like(r) if o is None else o.detach()
                         for o, r in zip(out, level.raw, strict=True)]
            else:
                grads = [torch.zeros_like(r) for r in level.raw]
            all_grads.append(grads)
        # 2. top-down: each level moves what it trains, with its freshly updated values
        for k in range(len(self.levels) - 1, -1, -1):
            level = self.levels[k]
            targets = self.params if k == 0 else self.levels[k - 1].raw
            with torch.enable_grad():
                deltas = [update(level.kind, level.config, level.values_for(i), p.detach().clone(),
                                 all_grads[k][i], level.state[i])
                          for i, p in enumerate(targets)]
            if level.learns:
                level.last = deltas
            if k == 0:
                with torch.no_grad():
                    for p, d in zip(self.params, deltas, strict=True):
                        p.add_(d.detach())
            else:
                below = self.levels[k - 1]
                below.raw = [(r.detach() + d.detach()).requires_grad_()
                             for r, d in zip(below.raw, deltas, strict=True)]

    def hyperparameters(self) -> dict[str, float]:
        """hypergrad's keys: ``{level}.{name}`` and ``[i]`` per group / per tensor."""
        out = {}
        for k, level in enumerate(self.levels[:-1]):
            for (name, (per, j)), raw in zip(level.slots, level.raw, strict=True):
                key = f"{k}.{name}" if per == "optimizer" else f"{k}.{name}[{j}]"
                out[key] = float(forward(PARAMETRISATION[level.kind, name], raw.detach()))
        return out
