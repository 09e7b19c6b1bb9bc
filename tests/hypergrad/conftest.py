"""Fixtures of the hypergrad tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

import hypergrad


@pytest.fixture(autouse=True)
def _one_thread_float64_safe() -> Iterator[None]:
    """One intra-op thread (the models are tiny: threads only contend on a busy machine), and
    the default dtype restored after each test (the gdtuo comparisons switch to float64)."""
    threads, dtype = torch.get_num_threads(), torch.get_default_dtype()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    torch.set_default_dtype(dtype)


@pytest.fixture(params=[True, False], ids=["float-path", "tensor-path"])
def path(request: pytest.FixtureRequest) -> Iterator[bool]:
    """Both of a tower's paths on the CPU: learned values as Python floats (``cpu_floats``, the
    default) and as 0-d tensors with flat state (the accelerator's path)."""
    hypergrad.Tower.cpu_floats = request.param
    yield request.param
    hypergrad.Tower.cpu_floats = True
