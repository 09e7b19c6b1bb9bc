"""The base class of every optimizer family: :class:`Tower`, a ``torch.optim.Optimizer`` whose
learned hyperparameters may be trained by another ``Tower`` above it (``hyper``), itself trained
by the next one, and so on; the top level's hyperparameters are fixed.

Here: construction (arguments, the binding of the levels above), the family interface, the step
of the whole tower, and the canonical spec a tower prints. The rest of the mechanism is in the
classes a ``Tower`` is made of, one concept each: :mod:`hypergrad._learned` (the raw vector of
the learned hyperparameters and the values in use), :mod:`hypergrad._takeup` (level 0's schedule
and values written from outside), :mod:`hypergrad._stepping` (one level's update and
hypergradient, and how hypergradients are computed), :mod:`hypergrad._checkpoints` (state dicts
and copies), :mod:`hypergrad._readout` (the learned values read out).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import torch
from torch import Tensor
from torch.optim.optimizer import _global_optimizer_post_hooks, _global_optimizer_pre_hooks

from hypergrad._arguments import LR_PER, SWITCHES, check_switches
from hypergrad._arithmetic import Inner
from hypergrad._checkpoints import Checkpoints
from hypergrad._errors import HypergradError
from hypergrad._flat import Flat, FlatStore
from hypergrad._graph import UpperGraph, step_upper
from hypergrad._learned import LearnedValues, Slot
from hypergrad._parametrisations import Parametrisation
from hypergrad._readout import Readout
from hypergrad._spec import unbound
from hypergrad._stepping import LevelStep
from hypergrad._takeup import TakeUp
from hypergrad.grammar import format_value


class Tower(LearnedValues, TakeUp, LevelStep, Checkpoints, Readout, torch.optim.Optimizer):
    """A ``torch.optim.Optimizer`` whose learned hyperparameters another optimizer trains.

    Subclasses (one per optimizer family) give ``name``, ``learnable``, argument validation, the
    update of a param group (``_step_group``) and the Jacobian columns of that update with respect
    to the learned hyperparameters, applied to the new gradient (``_vjp``). Everything else is
    the tower's: the raw hyperparameter vector, the stacking of levels, ``step()``,
    ``state_dict()``, ``hyperparameters()`` (this class and the parts it is made of).

    Constructed without ``params``, an optimizer is *unbound*: a description of a level, to be
    passed as ``hyper=`` (``hypergrad.SGD(lr=1e-5)``). Bound levels above level 0 are built from
    it and train the raw hyperparameters of the level below; only level 0's ``step()`` is called.

    Attributes:
        hyper: the bound optimizer one level up, or ``None`` at the top.
    """

    name: ClassVar[str] = ""
    learnable: ClassVar[dict[str, Parametrisation]] = {}
    """The hyperparameters this family can learn, in canonical order, with their parametrisation."""
    _ctor_aliases: ClassVar[tuple[str, ...]] = ()
    """Constructor arguments that are another name of one in the spec (RMSprop's ``gamma``)."""
    spec_aliases: ClassVar[dict[str, str]] = {}
    """Other names a spec accepts for an argument: ``{alias: name}`` (RMSprop's ``alpha``)."""
    cpu_floats: ClassVar[bool] = True
    """On the CPU, hand the kernels Python floats (faster); ``False`` takes the accelerator's
    tensor path everywhere (the tests use it to check that path on machines without one)."""
    fused_kernels: ClassVar[bool] = True
    """On the CPU's float path, a hypergradient's elementwise passes over a tensor as one
    compiled loop where one exists (:mod:`hypergrad._fused`: Adam's); ``False`` runs them
    eagerly, one ``torch._foreach_*`` call per operation."""
    cuda_graphs: ClassVar[bool] = True
    """On CUDA, replay the levels above 0 as one CUDA graph once they are warm
    (:mod:`hypergrad._graph`); ``False`` runs them eagerly, kernel by kernel."""

    # -- construction ------------------------------------------------------------------------

    def __init__(
        self,
        params: Iterable[Any] | None,
        defaults: dict[str, Any],
        *,
        learn: str | Iterable[str] | None = None,
        lr_per: str | None = None,
        hyper: Tower | str | None = None,
    ) -> None:
        self._level: int = self.__dict__.get("_level", 0)
        if isinstance(params, (int, float)) and not isinstance(params, bool):
            raise HypergradError(
                f"{self.name}: the first argument is params, but got the number {params!r}; "
                f"write lr={params!r} (unbound: {type(self).__name__}(lr={params!r}))"
            )
        if lr_per is not None and lr_per not in LR_PER:
            raise HypergradError(
                f"{self.name}: lr_per must be one of {', '.join(LR_PER)}, but got lr_per={lr_per!r}"
            )
        self._learn_arg = learn
        self._learn = self._resolve_learn(learn, defaults)
        self._lr_per = lr_per
        self._hyper_spec = _as_unbound(hyper)
        self._config = self._validated(dict(defaults), self._learned())
        self.hyper: Tower | None = None
        self._raw: Tensor | None = None
        self._flat_stores: dict[int, FlatStore] = {}
        self._flats: dict[int, Flat] = {}  # this step's, per group: gradients flattened once
        self._gathered: dict[tuple[int, Any], Any] = {}  # this step's, per group (_with_grads)
        self._grad_numbers: tuple[Any, Tensor] | None = None  # see _numbers_as_grad
        self._state_lists: dict[int, tuple[Any, list[Tensor], list[dict[str, Any]]]] = {}
        self._slots: dict[str, Slot] = {}
        self._upper: UpperGraph | None = None  # level 0 on CUDA: the levels above, as a graph
        self._lr_scaled = False  # level 0 learns lr: group["lr"] is the schedule (see _scale_of)
        self._scales: list[Any] = []  # per group, the schedule's scale at the last update
        self._streaks: dict[tuple[int, str], tuple[int, int]] = {}  # outside writes, step after
        self._syncs = 0  # step
        self._warned_overwrite = False
        self._bound = params is not None
        if params is None:
            return
        self._constructing = True
        super().__init__(params, dict(self._config))
        self._constructing = False
        if self._hyper_spec is not None:
            self._attach_hyper()

    def _bind(self, params: list[Tensor], level: int) -> Tower:
        """A bound copy of this (unbound) level over ``params``, at tower level ``level``."""
        cls = type(self)
        obj = cls.__new__(cls)
        obj._level = level
        obj.__init__(params, **self._config, learn=self._learn_arg, lr_per=self._lr_per,
                     hyper=self._hyper_spec)
        return obj

    @classmethod
    def _default_learn(cls, config: dict[str, Any]) -> tuple[str, ...]:
        """What is learned when ``learn`` is not given (the paper's choice)."""
        return tuple(cls.learnable)

    @classmethod
    def _resolve_learn(cls, learn: Any, config: dict[str, Any]) -> tuple[str, ...]:
        if learn is None:
            return cls._default_learn(config)
        names = [learn] if isinstance(learn, str) else list(learn)
        valid = ", ".join(cls.learnable)
        for n in names:
            if n not in cls.learnable:
                raise HypergradError(
                    f"{cls.name}: cannot learn {n!r}; learnable hyperparameters: {valid}"
                )
        if not names:
            raise HypergradError(
                f"{cls.name}: learn is empty; name at least one of {valid} (learn=lr)"
            )
        return tuple(n for n in cls.learnable if n in names)

    def _validate(self, config: dict[str, Any], learned: frozenset[str]) -> dict[str, Any]:
        """Check the arguments and return them normalised (floats); subclasses extend."""
        raise NotImplementedError

    def _validated(self, config: dict[str, Any], learned: frozenset[str]) -> dict[str, Any]:
        """The family's arguments (:meth:`_validate`) and torch's switches, checked."""
        out = self._validate(config, learned)
        out.update(check_switches(self.name, config))
        return out

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """``torch.optim``'s, at every height: after construction, the new group's learned
        hyperparameters are its own (they start from its values, ``lr`` and the others missing
        from it taken from the constructor's, as in torch), and the level above learns them
        from a state of zeros beside the others' (its step count is the one it has).

        Raises:
            HypergradError: a level above learns one value per hyperparameter of the level
                below (``lr_per="tensor"`` above level 0), whose layout cannot grow.
        """
        grow = self._raw is not None and not getattr(self, "_constructing", False)
        if grow:
            for level in self.levels[1:]:
                if any(s.per == "tensor" for s in level._slots.values()):
                    raise HypergradError(
                        f"{self.name}: add_param_group after construction under a level that "
                        "learns one value per hyperparameter (lr_per='tensor' above level 0) "
                        "is not supported; pass every param group to the constructor, or use "
                        "lr_per='group' there")
            self._sync_external()  # writes since the last step, before the layout changes
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        given = {k: group[k] for k in self._config}
        group.update(self._validated(given, self._learned()))
        if grow:
            self._grow()

    # -- family interface --------------------------------------------------------------------

    def _step_group(self, hp: dict[str, Any], params: list[Tensor], grads: list[Tensor],
                    states: list[dict[str, Any]], lrs: list[Any], record: frozenset[str], *,
                    flat: Flat | None = None) -> None:
        """Update one group's tensors in place; when ``record`` names learned hyperparameters,
        also save in each state what ``_vjp`` will need. ``flat``: the group as flat vectors,
        when the tower offers that path (a family may ignore it)."""
        raise NotImplementedError

    def _vjp(self, hp: dict[str, Any], params: list[Tensor], grads: list[Tensor],
             states: list[dict[str, Any]], lrs: list[Any], names: frozenset[str],
             inner: Inner, *, flat: Flat | None = None) -> dict[str, tuple[list[Tensor], float]]:
        r"""The hypergradient contributions of one group: per learned value ``h`` in ``names``,
        per tensor, ``inner(g, J)`` with ``g`` the tensor's new gradient and
        :math:`J = \partial\Delta/\partial h` the Jacobian column of its last update (with
        respect to the value, not the raw number), returned as ``(values, scale)``: the
        contributions are ``scale * values[i]`` (``scale`` a Python number, applied once)."""
        raise NotImplementedError

    def _get(self, group: dict[str, Any], name: str) -> Any:
        """The value of hyperparameter ``name`` as the group holds it (families may remap)."""
        return group[name]

    def _put(self, group: dict[str, Any], name: str, value: Any) -> None:
        group[name] = value

    def _hp_names(self) -> tuple[str, ...]:
        """The names the family's kernels read from ``hp`` (``_get`` maps them to the group)."""
        return tuple(self._config)

    # -- one step of the whole tower ---------------------------------------------------------

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One step of the whole tower.

        1. Bottom-up: each learning level's hypergradient, from the gradients of the level below
           and what it saved at the last step.
        2. Top-down: each level updates the raw hyperparameters below it with the hypergradient,
           the level below reads the new values; level 0 updates the weights in place.

        Step hooks (``register_step_pre_hook``, torch's global ones) and the profiler's
        ``Optimizer.step#SGD.step`` range are ``torch.optim``'s, through its own wrapper
        (:meth:`_step_as_torch`). Without any of them, the step skips that wrapper: an inactive
        ``record_function`` alone took 48 µs of a CPU training step (torch.optim.SGD's whole
        step there: 86 µs).

        Args:
            closure: re-evaluates the model and returns the loss (``torch.optim``'s convention).
        """
        if (torch.compiler.is_compiling() or self._optimizer_step_pre_hooks
                or self._optimizer_step_post_hooks or _global_optimizer_pre_hooks
                or _global_optimizer_post_hooks or torch._C._autograd._profiler_enabled()):
            # (the hooks see the arguments as given: (self,) for step())
            return self._step_as_torch() if closure is None else self._step_as_torch(closure)
        enabled = torch.is_grad_enabled()  # torch.no_grad(), without its two objects per call
        torch._C._set_grad_enabled(False)
        try:
            return self._step_tower(closure, eager=True)
        finally:
            torch._C._set_grad_enabled(enabled)

    step.hooked = True  # type: ignore[attr-defined]  # torch.optim must not wrap it: see step

    def zero_grad(self, set_to_none: bool = True) -> None:
        """``torch.optim``'s; setting the gradients to ``None`` without its profiler range when
        no profiler is on (22 µs of 31 on the MNIST MLP's four tensors)."""
        if (not set_to_none or torch.compiler.is_compiling()
                or torch._C._autograd._profiler_enabled()):
            super().zero_grad(set_to_none)
            return
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.grad = None

    def _step_tower(self, closure: Callable[[], Any] | None = None, eager: bool = False) -> Any:
        """:meth:`step`'s work, under ``no_grad``. ``eager``: not traced by ``torch.compile``,
        so the parts Dynamo must skip are called without their guard (5 µs each)."""
        if self._level:
            raise RuntimeError(
                f"{self.name} is level {self._level} of a tower: call step() on level 0"
            )
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        levels = self.levels
        try:
            if len(levels) > 1:  # 1. bottom-up, from the weights
                hypergradient = (self._hypergradient() if eager or self._tensor_path
                                 else self._eager_hypergradient())
                (self._take_up_and_step_upper if eager else self._step_upper)(
                    levels, hypergradient)
            self._update()  # 2. ends top-down: the weights, in place
        finally:
            for level in levels:  # nothing of this step's survives a failed one
                level._flats.clear()
                level._gathered.clear()
        return loss

    _step_as_torch = torch.optim.Optimizer.profile_hook_step(torch.no_grad()(_step_tower))
    """:meth:`step` as torch.optim runs it: its hooks, and the profiler's range around it."""

    @torch._disable_dynamo
    def _eager_hypergradient(self) -> Tensor:
        """Level 0's hypergradient on the float path, never traced by ``torch.compile``: it
        reads every inner product as a Python number, a graph break each, so Dynamo would
        compile only fragments, and across those breaks torch 2.14's Dynamo reuses a float it
        has made dynamic at its value of an earlier step (Adam's bias corrections: wrong
        hypergradients from the third compiled step on, ``tests/hypergrad/test_compile.py``)."""
        return self._hypergradient()

    def _take_up_and_step_upper(self, levels: list[Tower], hypergradient: Tensor) -> None:
        """The values written into param_groups since the last step taken up (level 0's
        hypergradient, computed before, reads none of them), then the levels above 0 for one
        step (``step_upper``), replayed as a CUDA graph where one is kept."""
        written = False
        for level in levels[:-1]:
            written = level._sync_external() or written
        upper = self._upper_graph()
        if upper is not None:  # the same, replayed
            upper.step(levels, hypergradient, changed=written)
        else:
            step_upper(levels, hypergradient)

    # torch.compiler.disable, applied at the first call as torch.optim.Optimizer does for its own
    # zero_grad and state_dict: importing Dynamo at class definition would add ~1.5 s to every
    # ``import hypergrad`` (a report never compiles; a training process imports it anyway).
    @torch._disable_dynamo
    def _step_upper(self, levels: list[Tower], hypergradient: Tensor) -> None:
        """:meth:`_take_up_and_step_upper`, never traced by ``torch.compile``: Dynamo drops the
        values these levels hand down (``_refresh`` writes new tensors into the tower's
        attributes), so a compiled step would train with a frozen learned value, and it would
        fix as constants the identities and version counters the take-up compares. They are a
        few numbers per level."""
        self._take_up_and_step_upper(levels, hypergradient)

    def _upper_graph(self) -> UpperGraph | None:
        """What replays the levels above 0 on CUDA (``None``: they run eagerly here)."""
        raw = self._raw
        if (raw is None or not raw.is_cuda or not self.cuda_graphs
                or torch.cuda.is_current_stream_capturing() or torch.compiler.is_compiling()):
            return None
        if self._upper is None:
            self._upper = UpperGraph()
        return self._upper

    # -- the levels, and the spec they print -------------------------------------------------

    @property
    def levels(self) -> list[Tower]:
        """This level and the ones above it, bottom first."""
        out: list[Tower] = [self]
        while out[-1].hyper is not None:
            out.append(out[-1].hyper)  # type: ignore[arg-type]
        return out

    @property
    def height(self) -> int:
        """How many hyperoptimizers sit above this optimizer (0 for a plain optimizer)."""
        n, spec = 0, self._hyper_spec
        while spec is not None:
            n, spec = n + 1, spec._hyper_spec
        return n

    @classmethod
    def _spec_defaults(cls) -> dict[str, Any]:
        sig = inspect.signature(cls.__init__)
        config = {n: p.default for n, p in sig.parameters.items()
                  if n not in ("self", "params", "learn", "lr_per", "hyper", *SWITCHES,
                               *cls._ctor_aliases)}
        return cls._config_to_spec(config)

    @classmethod
    def _config_to_spec(cls, config: dict[str, Any]) -> dict[str, Any]:
        return dict(config)

    @classmethod
    def _spec_to_config(cls, args: dict[str, Any]) -> dict[str, Any]:
        return dict(args)

    def _spec_text(self, top: bool) -> str:
        args = self._config_to_spec({k: v for k, v in self._config.items()
                                     if k not in SWITCHES})
        defaults = self._spec_defaults()
        parts = [format_value(args.pop("lr"))]
        for key, value in args.items():
            if value != defaults.get(key):
                parts.append(f"{key}={format_value(value)}")
        if not top:
            if set(self._learn) != set(self._default_learn(self._config)):
                names = self._learn
                parts.append("learn=" + (names[0] if len(names) == 1
                                         else "(" + ", ".join(names) + ")"))
            if self._lr_per not in (None, "optimizer"):
                parts.append(f"lr_per={self._lr_per}")
        return f"{self.name}({', '.join(parts)})"

    def __str__(self) -> str:
        """The canonical spec of the tower from this level up: ``adam(0.001)/sgd(1e-5)``."""
        chain: list[Tower] = [self]
        while chain[-1]._hyper_spec is not None:
            chain.append(chain[-1]._hyper_spec)  # type: ignore[arg-type]
        return "/".join(t._spec_text(top=i == len(chain) - 1) for i, t in enumerate(chain))

    def __repr__(self) -> str:
        if not self._bound:
            return f"{type(self).__name__}(unbound: {self})"
        return super().__repr__()


def _as_unbound(hyper: Tower | str | None) -> Tower | None:
    if hyper is None:
        return None
    if isinstance(hyper, str):
        return unbound(hyper)
    if not isinstance(hyper, Tower):
        raise HypergradError(
            f"hyper must be a hypergrad optimizer built without params (hypergrad.SGD(lr=1e-5)) "
            f"or a spec string ('sgd(1e-5)'), but got {type(hyper).__name__}"
        )
    if hyper._bound:
        raise HypergradError(
            "hyper must be built without params (hypergrad.SGD(lr=1e-5)): the tower binds it to "
            "the hyperparameters of the level below"
        )
    return hyper
