"""Method family ``towers``: hypergrad towers, plain ``torch.optim``, and the paper's reference.

Three spellings, one family:

- ``adam(lr=1e-3)/sgd(1e-5)``: a hypergrad tower (any spec ``hypergrad`` accepts; height 0, e.g.
  ``sgd(0.1)``, too). The name is the canonical spec, ``hypergrad.canonical(spec)``.
- ``torch.sgd(lr=0.1, momentum=0.9)``: a plain ``torch.optim`` optimizer with torch's own argument
  names (``torch.sgd``, ``torch.adam``, ``torch.adamw``, ``torch.adagrad``, ``torch.rmsprop``). The
  first positional argument is ``lr``. Canonical form: keywords in torch's signature order, ``lr``
  always, the others only where they differ from torch's default.
- ``gdtuo:adam/sgd(1e-5)``: the same tower built with the paper's own implementation (PyPI
  ``gradient-descent-the-ultimate-optimizer``, ``bench.methods.gdtuo``): the reference row of the
  overhead comparisons.
"""

from __future__ import annotations

import ast
import inspect
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from bench.errors import UserError, unknown_name
from bench.methods import Family, MethodMeta, OptimizerSetup, RunContext, SingleRunMethod, step_size
from bench.methods.gdtuo import GDTUO_PREFIX, GdtuoMethod
from hypergrad import grammar

TORCH_PREFIX = "torch."

TORCH_OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "adagrad": torch.optim.Adagrad,
    "rmsprop": torch.optim.RMSprop,
}

# The first word of a spec (a tower is recognised by its bottom optimizer's name).
_FIRST_WORD = re.compile(r"^\s*([A-Za-z_]\w*)")
FLOAT32_MAX = 3.4028234663852886e38


# ---------------------------------------------------------------------------------------------
# torch's spelling: a call of hypergrad.grammar whose values are Python literals


@dataclass(frozen=True)
class LiteralCall:
    """A ``torch.adam(1e-3, betas=(0.9, 0.99))`` call with its values read as Python literals."""

    name: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


def parse_call(text: str) -> LiteralCall:
    """Parse ``name(args)`` (``hypergrad.grammar``); values are Python literals, or bare names
    (``learn=lr``)."""
    try:
        call = grammar.parse_call(text)
    except grammar.GrammarError as e:
        raise UserError(f"malformed optimizer {text.strip()!r}: {e}") from None
    args = tuple(_literal(raw, text) for raw in call.args)
    kwargs = {key: _literal(raw, text) for key, raw in call.kwargs}
    return LiteralCall(call.head.lower(), args, kwargs)


def _literal(raw: str, text: str) -> Any:
    try:
        node = ast.parse(raw, mode="eval").body
    except SyntaxError as e:
        raise UserError(f"malformed arguments in {text.strip()!r}: {e.msg}") from None
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
    """A value as torch's spelling prints it: a Python literal, exponent unpadded (``1e-5``,
    ``1.0``, ``True``, ``(0.9, 0.999)``)."""
    return grammar.format_value(value, python=True)


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

    def build(self, params: Iterable[Tensor], run: RunContext) -> OptimizerSetup:
        import hypergrad

        optimizer = hypergrad.tower(self.name, params)
        return OptimizerSetup(optimizer=optimizer, hyperparameters=optimizer.hyperparameters)

    def meta(self) -> MethodMeta:
        import hypergrad

        return MethodMeta.of_tower("tower", hypergrad.parse(self.name))


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
        self.optimizer, self.cls = call.name, TORCH_OPTIMIZERS[call.name]
        self.kwargs = _torch_kwargs(self.cls, call)
        self.name = f"torch.{call.name}({_torch_arguments(self.cls, self.kwargs)})"
        _check_torch_arguments(self.cls, self.kwargs, self.name)

    def build(self, params: Iterable[Tensor], run: RunContext) -> OptimizerSetup:
        optimizer = self.cls(params, **self.kwargs)
        return OptimizerSetup(optimizer=optimizer, hyperparameters=_group_lrs(optimizer))

    def meta(self) -> MethodMeta:
        return MethodMeta("torch", self.optimizer, height=0, lr0=step_size(self.kwargs))


def _torch_parameters(cls: type[torch.optim.Optimizer]) -> dict[str, inspect.Parameter]:
    params = dict(inspect.signature(cls).parameters)
    params.pop("params", None)
    return params


def _torch_kwargs(cls: type[torch.optim.Optimizer], call: LiteralCall) -> dict[str, Any]:
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
