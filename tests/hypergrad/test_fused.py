"""The fused CPU loop of Adam's hypergradient (``hypergrad._fused``) against the eager passes it
replaces: the same sums to rounding, non-finite values kept, the same training, and the eager
passes wherever the loop cannot read the tensors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import hypergrad
from hypergrad import _adam_vjp, _fused

ALL = frozenset({"lr", "beta1", "beta2"})
needs_numba = pytest.mark.skipif(not _fused._compiled(), reason="numba is not installed")


def _state(n: int, dtype: torch.dtype, seed: int = 0) -> tuple[torch.Tensor, dict]:
    g = torch.Generator().manual_seed(seed)
    new, m, saved = (torch.randn(n, generator=g, dtype=dtype) for _ in range(3))
    v = torch.rand(n, generator=g, dtype=dtype) ** 2
    v[::7] = m[::7] = saved[::7] = 0  # never a gradient there: square roots of zero, clamped
    return new, {"exp_avg": m, "exp_avg_sq": v, "hg_grad": saved}


@needs_numba
@pytest.mark.parametrize("dtype,rel", [(torch.float32, 2e-5), (torch.float64, 1e-12)])
@pytest.mark.parametrize("n", [1, 10, 5000, 100_352])
def test_the_loop_gives_the_eager_sums(dtype, rel, n):
    new, st = _state(n, dtype)
    eager = [s[0] for s in _adam_vjp._eager_sums([new], [st], c=0.3, eps=1e-8, names=ALL)]
    fused = _fused.adam_products(new, st["exp_avg"], st["exp_avg_sq"], st["hg_grad"], 0.3e-8)
    # against the float64 truth: the loop's float64 sums are closer to it than float32 dots
    if dtype == torch.float64:
        truth_sums = eager
    else:
        truth_sums = [s[0] for s in _adam_vjp._eager_sums(
            [new.double()], [{k: t.double() for k, t in st.items()}], c=0.3, eps=1e-8,
            names=ALL)]
    for e, f, t in zip(eager, fused, truth_sums, strict=True):
        scale = max(abs(t), 1e-30)
        assert abs(f - t) / scale <= rel and abs(e - t) / scale <= 10 * rel


@needs_numba
@pytest.mark.parametrize("where", ["exp_avg_sq", "exp_avg", "grad"])
@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_a_non_finite_value_stays_non_finite(where, bad):
    new, st = _state(4096, torch.float32)
    (new if where == "grad" else st[where])[123] = bad
    sums = _fused.adam_products(new, st["exp_avg"], st["exp_avg_sq"], st["hg_grad"], 1e-9)
    eager = [s[0] for s in _adam_vjp._eager_sums([new], [st], c=0.1, eps=1e-8, names=ALL)]
    assert [math.isfinite(s) for s in sums] == [math.isfinite(s) for s in eager]
    assert not all(map(math.isfinite, sums))


@needs_numba
def test_only_tensors_the_loop_can_read_are_fused():
    x = torch.zeros(64, 64)
    assert _fused.fusable(x, x, x, x)
    assert not _fused.fusable(x.t(), x, x, x)  # not contiguous
    assert not _fused.fusable(x.half(), x.half(), x.half(), x.half())
    assert not _fused.fusable(x, x.double(), x, x)  # mixed dtypes
    assert not _fused.fusable(x.to_sparse(), x, x, x)


def _train(spec: str, fused: bool, dtype: torch.dtype, monkeypatch) -> list[torch.Tensor]:
    monkeypatch.setattr(hypergrad.Tower, "fused_kernels", fused)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(40, 64), torch.nn.Tanh(),
                                torch.nn.Linear(64, 5)).to(dtype)
    opt = hypergrad.tower(spec, model.parameters())
    g = torch.Generator().manual_seed(1)
    for _ in range(15):
        x = torch.randn(32, 40, generator=g, dtype=dtype)
        y = torch.randint(0, 5, (32,), generator=g)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return [p.detach().clone() for p in model.parameters()] + [
        torch.tensor(list(hypergrad.hyperparameters(opt).values()), dtype=torch.float64)]


@needs_numba
@pytest.mark.parametrize("spec", ["adam(0.01)/sgd(1e-5)", "adam(0.01)/adam(1e-4)",
                                  "adamw(0.01, weight_decay=0.1)/sgd(1e-5)",
                                  "adam(0.01, learn=lr)/sgd(1e-5)"])
def test_a_tower_trains_the_same_with_the_loop(spec, monkeypatch):
    fused = _train(spec, True, torch.float64, monkeypatch)
    eager = _train(spec, False, torch.float64, monkeypatch)
    for a, b in zip(fused, eager, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_without_numba_the_eager_passes_serve(monkeypatch):
    monkeypatch.setattr(_fused, "_kernels", False)  # as when numba cannot be imported
    x = torch.zeros(64, 64)
    assert not _fused.fusable(x, x, x, x)
    trained = _train("adam(0.01)/sgd(1e-5)", True, torch.float64, monkeypatch)
    monkeypatch.setattr(_fused, "_kernels", None)
    eager = _train("adam(0.01)/sgd(1e-5)", False, torch.float64, monkeypatch)
    for a, b in zip(trained, eager, strict=True):
        assert torch.equal(a, b)
