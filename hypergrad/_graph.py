"""The levels above 0 of a tower, replayed on CUDA as one graph.

Above level 0 a tower works on a few numbers per level (Adam's three raw hyperparameters, their
moments and traces), yet each of its operations is a kernel launch: about 60 per Adam level, at
10-13 microseconds of host time each, while the GPU finishes each in a microsecond or two. On a
model whose step is itself bound by launches (ResNet-20), that is +5-6% per level.

So once the levels are warm (their states, traces and flat buffers exist and keep their storage
from step to step), their share of a step (the hypergradients above level 0's, the updates from
the top down, and the refresh of the values each level hands to the one below) is captured once
into a CUDA graph and replayed at each step: one launch, whatever the height. The graph's
temporaries are those few numbers, so it costs no memory worth counting.

A graph reads and writes fixed addresses, and runs none of the Python around the kernels, so:
level 0's new hypergradient is copied into the buffer the graph reads; the step counters above
level 0 are device tensors counted up in place (``_stepping.steps_on_device``); SGD keeps its
momentum buffers in place above level 0 (``fixed_buffers``); the values the graph writes into
``param_groups`` are overwritten in place. Whatever would change what was captured drops the
graph, and the levels run eagerly until they are warm again: ``load_state_dict``, a learned
value written into ``param_groups`` from outside, any other hyperparameter of a level above 0
changed or replaced. Eager steps and replays run the same kernels: their numbers are equal.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import Tensor


def step_upper(levels: list[Any], hypergradient: Tensor) -> None:
    """The part of ``Tower.step`` above level 0, eagerly, given level 0's hypergradient: the
    other hypergradients bottom-up, then the updates top-down, each level refreshing the values
    of the one below."""
    levels[0]._raw.grad = hypergradient
    for lower in levels[1:-1]:
        lower._raw.grad = lower._hypergradient()
    for k in range(len(levels) - 1, 0, -1):
        levels[k]._update()
        levels[k]._flats.clear()  # frees this level's flat gradients
        levels[k]._gathered.clear()
        levels[k - 1]._refresh()


class UpperGraph:
    """Runs :func:`step_upper` for one tower on CUDA: eagerly for ``WARMUP`` steps, then as a
    captured graph, replayed until something it captured changes.

    Attributes:
        graph: the captured graph, or ``None`` while the levels run eagerly.
    """

    WARMUP = 2
    """Eager steps before a capture: the first creates the states, the second the flat buffers
    of a step with valid traces; from the third on nothing is allocated or rebound."""

    def __init__(self) -> None:
        self.graph: torch.cuda.CUDAGraph | None = None
        self._input: Tensor | None = None  # level 0's hypergradient, as the graph reads it
        self._key: tuple[Any, ...] = ()
        self._warm = 0
        self._failed = False

    def drop(self) -> None:
        """Forget the graph: the next steps run eagerly, and capture again once warm."""
        self.graph, self._input, self._key, self._warm = None, None, (), 0

    def step(self, levels: list[Any], hypergradient: Tensor, *, changed: bool) -> None:
        """The levels above 0 for one step, given level 0's new hypergradient. ``changed``: a
        learned value was written from outside since the last step (already taken up)."""
        if changed:
            self.drop()
        if self.graph is not None:
            if _fingerprint(levels) == self._key:
                assert self._input is not None
                self._input.copy_(hypergradient)
                self.graph.replay()
                return
            self.drop()
        if self._warm >= self.WARMUP and not self._failed and self._capture(levels,
                                                                            hypergradient):
            return
        step_upper(levels, hypergradient)
        self._warm += 1

    def _capture(self, levels: list[Any], hypergradient: Tensor) -> bool:
        """Capture :func:`step_upper` and replay it once (this step); ``False`` if the capture
        failed (warned once; the levels then stay eager for this tower)."""
        device = hypergradient.device
        self._input = hypergradient
        graph = torch.cuda.CUDAGraph()
        current = torch.cuda.current_stream(device)
        side = _side_stream(device)
        side.wait_stream(current)
        try:
            with torch.cuda.device(device), torch.cuda.stream(side):
                # thread_local: other threads (a DataLoader pinning memory) may call CUDA freely
                graph.capture_begin(capture_error_mode="thread_local")
                try:
                    step_upper(levels, hypergradient)
                finally:
                    graph.capture_end()
        except Exception as error:  # noqa: BLE001 (whatever failed, eager steps still work)
            # Nothing captured ran, so the states are as before: run the step eagerly.
            self._failed = True
            self._input = None
            warnings.warn(f"hypergrad: the levels above 0 could not be captured as a CUDA graph "
                          f"and run eagerly ({error})", RuntimeWarning, stacklevel=4)
            return False
        current.wait_stream(side)
        graph.replay()
        self.graph, self._key = graph, _fingerprint(levels)
        return True


_SIDE_STREAMS: dict[torch.device, torch.cuda.Stream] = {}


def _side_stream(device: torch.device) -> torch.cuda.Stream:
    """The stream captures run on (a capture cannot run on the default stream): one per device
    for every tower, since a library may keep per-stream resources for good."""
    stream = _SIDE_STREAMS.get(device)
    if stream is None:
        stream = _SIDE_STREAMS[device] = torch.cuda.Stream(device)
    return stream


def _fingerprint(levels: list[Any]) -> tuple[Any, ...]:
    """What a graph of the levels above 0 took as given: every hyperparameter of those levels
    (tensors by identity: the learned ones are the graph's own outputs) and their state dicts."""
    out: list[Any] = []
    for level in levels[1:]:
        out.append(id(level.state))
        for group in level.param_groups:
            out.extend(_identity(v) for k, v in group.items() if k != "params")
    return tuple(out)


def _identity(value: Any) -> Any:
    if isinstance(value, Tensor):
        return id(value)
    if isinstance(value, (tuple, list)):
        return tuple(_identity(v) for v in value)
    return value
