"""Method family ``towers``: hypergrad towers, plain ``torch.optim``, and the paper's reference.

Three spellings, one family:

- ``adam(lr=1e-3)/sgd(1e-5)``: a hypergrad tower (any spec ``hypergrad`` accepts; height 0, e.g.
  ``sgd(0.1)``, too). The name is the canonical spec, ``hypergrad.canonical(spec)``.
- ``torch.sgd(lr=0.1, momentum=0.9)``: a plain ``torch.optim`` optimizer with torch's own argument
  names (``torch.sgd``, ``torch.adam``, ``torch.adamw``, ``torch.adagrad``, ``torch.rmsprop``). The
  first positional argument is ``lr``. Canonical form: keywords in torch's signature order, ``lr``
  always, the others only where they differ from torch's default.
- ``gdtuo:adam/sgd(1e-5)``: the same tower built with the paper's own implementation (PyPI
  ``gradient-descent-the-ultimate-optimizer``), which wraps the model (``ModuleWrapper``) and
  backpropagates with ``create_graph=True``: the reference row of the overhead comparisons.
"""

from __future__ import annotations

import ast
import inspect
import math
import re
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from bench.errors import UserError, unknown_name
from bench.methods import Family, OptimizerSetup, SingleRunMethod

TORCH_PREFIX = "torch."
GDTUO_PREFIX = "gdtuo:"

TORCH_OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "adagrad": torch.optim.Adagrad,
    "rmsprop": torch.optim.RMSprop,
}

# A torch spelling: a name and an optional argument list.
_LEVEL = re.compile(r"^\s*([A-Za-z_]\w*)\s*(?:\((.*)\))?\s*$", re.DOTALL)
# The first word of a spec (a tower is recognised by its bottom optimizer's name).
_FIRST_WORD = re.compile(r"^\s*([A-Za-z_]\w*)")


# ---------------------------------------------------------------------------------------------
# Spec parsing shared by the torch and gdtuo spellings


@dataclass(frozen=True)
class Call:
    """One level of a spec: ``adam(1e-3, beta1=0.9)`` -> name, positional and keyword args."""

    name: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


FLOAT32_MAX = 3.4028234663852886e38


def parse_call(text: str) -> Call:
    """Parse ``name(args)``; values are Python literals, or bare names (``learn=lr``)."""
    match = _LEVEL.match(text)
    if not match:
        raise UserError(f"malformed optimizer {text.strip()!r}; write name(arg, key=value, ...)")
    name, arglist = match.group(1).lower(), match.group(2)
    if not arglist or not arglist.strip():
        return Call(name)
    try:
        node = ast.parse(f"f({arglist})", mode="eval").body
    except SyntaxError as e:
        raise UserError(f"malformed arguments in {text.strip()!r}: {e.msg}") from e
    if not isinstance(node, ast.Call) or any(k.arg is None for k in node.keywords):
        raise UserError(f"malformed arguments in {text.strip()!r}")
    args = tuple(_literal(a, text) for a in node.args)
    kwargs = {k.arg: _literal(k.value, text) for k in node.keywords if k.arg is not None}
    return Call(name, args, kwargs)


def _literal(node: ast.expr, text: str) -> Any:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Tuple) and all(isinstance(e, ast.Name) for e in node.elts):
        return tuple(e.id for e in node.elts if isinstance(e, ast.Name))
    try:
        value = ast.literal_eval(node)
    except ValueError as e:
        raise UserError(
            f"argument {ast.unparse(node)!r} in {text.strip()!r} is not a number, bool or tuple"
        ) from e
    for number in value if isinstance(value, tuple) else (value,):
        if isinstance(number, (int, float)) and not isinstance(number, bool):
            check_representable(number, f"argument {ast.unparse(node)!r} in {text.strip()!r}")
    return value


def check_representable(number: float, what: str) -> None:
    """Hyperparameters live in float32 tensors: a value beyond its range would train as inf."""
    if not math.isfinite(number) or abs(number) > FLOAT32_MAX:
        raise UserError(f"{what} must be finite and at most {FLOAT32_MAX:.3g} in magnitude (the "
                        f"training dtype, float32), but got {number!r}")


def format_value(value: Any) -> str:
    """Shortest exact spelling: ``1e-05`` -> ``1e-5``, ``(0.9, 0.999)`` stays a tuple."""
    if isinstance(value, float):
        text = repr(value)
        return re.sub(
            r"e([+-])0*(\d)", lambda m: "e" + m.group(1).replace("+", "") + m.group(2), text
        )
    if isinstance(value, tuple):
        return "(" + ", ".join(format_value(v) for v in value) + ")"
    return repr(value)


def _as_float(value: Any) -> Any:
    """Integers given for numeric hyperparameters become floats, so ``lr=1`` is ``lr=1.0``."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return float(value)
    if isinstance(value, tuple):
        return tuple(_as_float(v) for v in value)
    return value


# ---------------------------------------------------------------------------------------------
# hypergrad towers


class TowerMethod(SingleRunMethod):
    """A hypergrad tower; ``name`` is the canonical spec."""

    def __init__(self, spec: str) -> None:
        import hypergrad

        try:
            self.name = hypergrad.canonical(spec)
        except ValueError as e:
            raise UserError(f"{e} (other methods: `python -m bench list methods`)") from e
        for level, (cls, args) in enumerate(hypergrad.parse(self.name)):
            for key, value in args.items():
                for number in value if isinstance(value, tuple) else (value,):
                    if isinstance(number, (int, float)) and not isinstance(number, bool):
                        check_representable(number, f"level {level} ({cls.name}) {key}={number!r}"
                                            f" in {self.name!r}")

    def setup(
        self,
        params: Iterable[Tensor],
        *,
        total_steps: int,
        steps_per_epoch: int,
        model: torch.nn.Module | None = None,
    ) -> OptimizerSetup:
        import hypergrad

        optimizer = hypergrad.tower(self.name, params)
        return OptimizerSetup(optimizer=optimizer, hyperparameters=optimizer.hyperparameters)


# ---------------------------------------------------------------------------------------------
# plain torch.optim


_EMPTY = "optimizer got an empty parameter list"


def _check_torch_arguments(cls: type, kwargs: dict[str, Any], name: str) -> None:
    """torch checks values at construction: let it speak now, not in the run. With no
    parameters, construction stops right after those checks (before ``add_param_group``, whose
    first call imports ``torch._dynamo``: seconds that checking a suite should not cost)."""
    try:
        cls([], **kwargs)
    except (ValueError, TypeError) as e:
        if str(e) != _EMPTY:
            raise UserError(f"invalid arguments in {name!r}: {e}") from e


class TorchMethod(SingleRunMethod):
    """A plain ``torch.optim`` optimizer, named ``torch.<name>(<torch's arguments>)``."""

    def __init__(self, spec: str) -> None:
        call = parse_call(spec[len(TORCH_PREFIX) :])
        if call.name not in TORCH_OPTIMIZERS:
            raise unknown_name(
                "torch optimizer", f"torch.{call.name}", [f"torch.{n}" for n in TORCH_OPTIMIZERS]
            )
        self.cls = TORCH_OPTIMIZERS[call.name]
        self.kwargs = _torch_kwargs(self.cls, call)
        self.name = f"torch.{call.name}({_torch_arguments(self.cls, self.kwargs)})"
        _check_torch_arguments(self.cls, self.kwargs, self.name)

    def setup(
        self,
        params: Iterable[Tensor],
        *,
        total_steps: int,
        steps_per_epoch: int,
        model: torch.nn.Module | None = None,
    ) -> OptimizerSetup:
        optimizer = self.cls(params, **self.kwargs)
        return OptimizerSetup(optimizer=optimizer, hyperparameters=_group_lrs(optimizer))


def _torch_parameters(cls: type[torch.optim.Optimizer]) -> dict[str, inspect.Parameter]:
    params = dict(inspect.signature(cls).parameters)
    params.pop("params", None)
    return params


def _torch_kwargs(cls: type[torch.optim.Optimizer], call: Call) -> dict[str, Any]:
    signature = _torch_parameters(cls)
    positional = [n for n, p in signature.items() if p.kind is p.POSITIONAL_OR_KEYWORD]
    if len(call.args) > len(positional):
        raise UserError(
            f"torch.{call.name} takes at most {len(positional)} positional arguments "
            f"({', '.join(positional)}), but got {len(call.args)}"
        )
    kwargs = dict(zip(positional, call.args, strict=False))
    for key, value in call.kwargs.items():
        if key not in signature:
            raise UserError(
                f"unknown argument {key!r} for torch.{call.name}; valid arguments: "
                f"{', '.join(signature)}"
            )
        if key in kwargs:
            raise UserError(f"argument {key!r} given twice to torch.{call.name}")
        kwargs[key] = value
    return {k: _as_float(v) for k, v in kwargs.items()}


def _torch_arguments(cls: type[torch.optim.Optimizer], kwargs: dict[str, Any]) -> str:
    """Canonical argument list: signature order, ``lr`` always, others when not default."""
    parts = []
    for key, param in _torch_parameters(cls).items():
        if key == "lr":
            value = kwargs.get("lr", _as_float(param.default))
        elif key in kwargs and _as_float(kwargs[key]) != _as_float(param.default):
            value = kwargs[key]
        else:
            continue
        parts.append(f"{key}={format_value(value)}")
    return ", ".join(parts)


def _group_lrs(optimizer: torch.optim.Optimizer) -> Callable[[], dict[str, float]]:
    """The step size of each param group, under hypergrad's key names (``0.lr``, ``0.lr[i]``)."""

    def read() -> dict[str, float]:
        groups = optimizer.param_groups
        if len(groups) == 1:
            return {"0.lr": float(groups[0]["lr"])}
        return {f"0.lr[{i}]": float(g["lr"]) for i, g in enumerate(groups)}

    return read


# ---------------------------------------------------------------------------------------------
# the paper's reference implementation (gdtuo)


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

    def setup(
        self,
        params: Iterable[Tensor],
        *,
        total_steps: int,
        steps_per_epoch: int,
        model: torch.nn.Module | None = None,
    ) -> OptimizerSetup:
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


# ---------------------------------------------------------------------------------------------
# the family


def _matches(name: str) -> bool:
    if name.startswith((TORCH_PREFIX, GDTUO_PREFIX)):
        return True
    import hypergrad

    first = _FIRST_WORD.match(name)
    return first is not None and first.group(1).lower() in hypergrad.OPTIMIZERS


def _parse(name: str) -> SingleRunMethod:
    if name.startswith(TORCH_PREFIX):
        return TorchMethod(name)
    if name.startswith(GDTUO_PREFIX):
        return GdtuoMethod(name)
    return TowerMethod(name)


FAMILY = Family(
    name="towers",
    description="hypergrad towers (any height), plain torch.optim, the paper's gdtuo reference",
    examples=(
        "sgd(0.1)",
        "adam(lr=1e-3)/sgd(1e-5)",
        "torch.sgd(lr=0.1, momentum=0.9)",
        "gdtuo:adam/sgd(1e-5)",
    ),
    matches=_matches,
    parse=_parse,
)
