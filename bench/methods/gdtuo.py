"""The paper's reference implementation of a tower, ``gdtuo:adam/sgd(1e-5)`` (towers family).

PyPI ``gradient-descent-the-ultimate-optimizer`` wraps the model (``ModuleWrapper``) and
backpropagates with ``create_graph=True``: the reference row of the overhead comparisons. Its name
is ``gdtuo:`` + the canonical hypergrad spec; here the parsed levels become gdtuo's optimizers,
and its learned values are read back under hypergrad's keys (``0.lr``, ``0.beta1``, ...).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from bench.errors import UserError, unknown_name
from bench.methods import MethodMeta, OptimizerSetup, RunContext, SingleRunMethod

GDTUO_PREFIX = "gdtuo:"




class GdtuoMethod(SingleRunMethod):
    """The tower built with ``gdtuo`` (the paper's code), wrapping the model.

    Its name is ``gdtuo:`` + the canonical hypergrad spec, so that it pairs with the hypergrad row
    of the same tower in reports. Only what gdtuo implements is accepted: SGD (``lr``,
    ``momentum``), Adam (``lr``, ``beta1``, ``beta2``, ``eps``; ``learn=lr`` is its
    ``AdamBaydin``), AdaGrad (``lr``) and RMSProp (``lr``, ``gamma``; ``learn=lr`` is its
    ``RMSPropAlpha``). gdtuo's own choices hold whatever the spec says: Adam's v starts at ε,
    AdaGrad's sum at 0.1 with ε inside the root, RMSProp's ε inside the root.
    """

    def __init__(self, spec: str) -> None:
        import hypergrad

        body = spec[len(GDTUO_PREFIX) :]
        try:
            canonical = hypergrad.canonical(body)
            levels = hypergrad.parse(canonical)
        except ValueError as e:
            raise UserError(f"invalid tower in {spec!r}: {e}") from e
        self.levels = [_gdtuo_level(cls, kwargs, spec) for cls, kwargs in levels]
        self.name = GDTUO_PREFIX + canonical
        self._meta = MethodMeta.of_tower("gdtuo", levels)

    def meta(self) -> MethodMeta:
        return self._meta

    def build(self, params: Iterable[Tensor], run: RunContext) -> OptimizerSetup:
        model = run.model
        if model is None:
            raise ValueError("gdtuo towers wrap the model: setup() needs model=")
        from gradient_descent_the_ultimate_optimizer import gdtuo

        top: Any = gdtuo.NoOpOptimizer()
        for make in reversed(self.levels):  # build from the top level down
            top = make(top)
        parameter = next(model.parameters())
        _to_device(top, parameter.device, parameter.dtype)
        # gdtuo's design: backward(create_graph=True) into non-leaf parameters; its begin()
        # resets the gradients each step, which breaks the cycle torch warns about.
        warnings.filterwarnings("ignore", message="Using backward\\(\\) with create_graph=True")
        wrapper = gdtuo.ModuleWrapper(model, optimizer=top)
        wrapper.initialize()
        return GdtuoSetup(optimizer=wrapper, wrapper=wrapper, hyperparameters=_gdtuo_hypers(top))


@dataclass
class GdtuoSetup(OptimizerSetup):
    """``OptimizerSetup`` for a gdtuo tower: its step is the paper's loop.

    ``optimizer`` holds the ``gdtuo.ModuleWrapper`` (not a ``torch.optim.Optimizer``: the
    reference implementation has none); the harness uses it only to measure memory.
    """

    wrapper: Any = None

    def step(self, compute_loss: Callable[[], Tensor]) -> Tensor:
        mw = self.wrapper
        mw.begin()
        mw.zero_grad()
        loss = compute_loss()
        loss.backward(create_graph=True)  # the reference differentiates through the update
        mw.step()
        return loss


# What gdtuo cannot express must keep hypergrad's default (or gdtuo's own fixed value).
_GDTUO_FIXED: dict[str, dict[str, tuple[Any, ...]]] = {
    "sgd": {"dampening": (0.0,), "weight_decay": (0.0,), "nesterov": (False,)},
    "adam": {"weight_decay": (0.0,)},  # v0: gdtuo's v starts at eps (checked below)
    "adagrad": {
        "lr_decay": (0.0,),
        "weight_decay": (0.0,),
        "initial_accumulator_value": (0.0, 0.1),
        "eps": (1e-10,),
        "eps_inside": (False, True),
    },
    "rmsprop": {
        "eps": (1e-8,),
        "weight_decay": (0.0,),
        "momentum": (0.0,),
        "centered": (False,),
        "eps_inside": (False, True),
    },
}


def _gdtuo_level(cls: type, kwargs: dict[str, Any], spec: str) -> Callable[[Any], Any]:
    """A constructor ``make(optimizer_above) -> gdtuo optimizer`` for one parsed level."""
    from gradient_descent_the_ultimate_optimizer import gdtuo

    name = cls.name
    if name not in _GDTUO_FIXED:
        raise unknown_name("gdtuo optimizer", name, list(_GDTUO_FIXED))
    args = dict(kwargs)
    learn = args.pop("learn", None)
    learn = (learn,) if isinstance(learn, str) else learn
    if args.pop("lr_per", "optimizer") != "optimizer":
        raise UserError(f"gdtuo learns one step size per optimizer: drop lr_per in {spec!r}")
    for key, allowed in _GDTUO_FIXED[name].items():
        if key in args and args.pop(key) not in allowed:
            raise UserError(
                f"gdtuo's {name} has no {key} other than {allowed[0]!r}: "
                f"drop it from {spec!r} or use the hypergrad tower"
            )
    lr = args.pop("lr")
    if name == "sgd":
        make, out = gdtuo.SGD, {"alpha": lr, "mu": args.pop("momentum", 0.0)}
    elif name == "adam":
        beta1, beta2 = args.pop("betas", (0.9, 0.999))
        out = {"alpha": lr, "beta1": beta1, "beta2": beta2}
        eps = args.pop("eps", 1e-8)
        if args.pop("v0", 0.0) not in (0.0, eps):
            raise UserError(f"gdtuo's adam starts v at eps ({eps:g}); drop v0 from {spec!r}")
        out["log_eps"] = math.log10(eps)
        make = gdtuo.AdamBaydin if learn == ("lr",) else gdtuo.Adam
    elif name == "adagrad":
        make, out = gdtuo.AdaGrad, {"alpha": lr}
    else:
        out = {"alpha": lr, "gamma": args.pop("gamma", 0.99)}
        make = gdtuo.RMSPropAlpha if learn == ("lr",) else gdtuo.RMSProp
    if args:
        raise UserError(f"gdtuo's {name} cannot take {', '.join(args)} (in {spec!r})")
    # The canonical spec names ``learn`` only when it is not the default: then only adam's and
    # rmsprop's "lr alone" have a gdtuo twin.
    if learn is not None and not (learn == ("lr",) and name in ("adam", "rmsprop")):
        raise UserError(
            f"gdtuo's {name} learns its default hyperparameters or, for adam and rmsprop, lr "
            f"alone; learn={learn!r} in {spec!r} has no reference implementation"
        )
    return lambda above: make(**out, optimizer=above)


def _gdtuo_chain(top: Any) -> list[Any]:
    """The gdtuo optimizers of a tower, level 0 first (the NoOp top left out)."""
    from gradient_descent_the_ultimate_optimizer import gdtuo

    levels = []
    while not isinstance(top, gdtuo.NoOpOptimizer):
        levels.append(top)
        top = top.optimizer
    return levels


def _to_device(top: Any, device: torch.device, dtype: torch.dtype) -> None:
    """gdtuo creates its hyperparameters on the default device; move them to the model's."""
    for level in _gdtuo_chain(top):
        level.parameters = {k: v.to(device, dtype) for k, v in level.parameters.items()}


def _gdtuo_hypers(level0: Any) -> Callable[[], dict[str, float]]:
    """Read the learned hyperparameters from the gdtuo objects, in the paper's values."""
    from gradient_descent_the_ultimate_optimizer import gdtuo

    chain = _gdtuo_chain(level0)

    def read() -> dict[str, float]:
        out: dict[str, Tensor] = {}
        for k, level in enumerate(chain[:-1]):  # the top level is fixed: nothing learned
            p = level.parameters
            if isinstance(level, gdtuo.SGD):
                out[f"{k}.lr"] = p["alpha"]
                if level.mu != 0.0:
                    out[f"{k}.momentum"] = p["mu"]
            elif isinstance(level, (gdtuo.Adam, gdtuo.AdamBaydin)):
                out[f"{k}.lr"] = p["alpha"]
                if isinstance(level, gdtuo.Adam):
                    out[f"{k}.beta1"] = gdtuo.Adam.clamp(p["beta1"])
                    out[f"{k}.beta2"] = gdtuo.Adam.clamp(p["beta2"])
            elif isinstance(level, gdtuo.AdaGrad):
                out[f"{k}.lr"] = p["alpha"]
            elif isinstance(level, (gdtuo.RMSProp, gdtuo.RMSPropAlpha)):
                out[f"{k}.lr"] = p["alpha"].square()  # stored as its square root
                if isinstance(level, gdtuo.RMSProp):
                    out[f"{k}.gamma"] = gdtuo.RMSProp.clamp(p["gamma"])
        if not out:
            return {}
        values = torch.stack([v.detach().reshape(()) for v in out.values()]).tolist()
        return dict(zip(out, values, strict=True))  # one transfer for all of them

    return read
