r"""Fused CPU loops: one pass over memory where eager PyTorch takes one per operation.

Adam's hypergradient reduces the new gradient, the moments and the saved gradient to four inner
products (:func:`hypergrad._adam_vjp._inner_products`). Eagerly that is eight elementwise passes
and four dot products, each reading and writing the whole tensor: about 29 tensor-sized reads and
writes, bound by memory bandwidth (on the MNIST MLP, 0.43 ms of a 2.4 ms training step). One
loop reads the four tensors once: 0.07 ms. The loop is compiled by numba (a dependency of the
project), lazily at the first hypergradient, and cached on disk; without numba, or with
``Tower.fused_kernels = False``, the eager passes run instead.

The loop computes what the eager passes compute, in the tensors' dtype, with the sums carried in
float64 (more accurate than a float32 dot product; the two agree to float32 rounding, which the
tests check). Only ``reassoc`` of numba's fast-math flags is on, for the sums to vectorise: no
finite-math assumption, so a NaN or an infinity still propagates (a diverging run stays visible).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

_kernels: Any = None  # the compiled module's functions, False when numba is missing


def _compiled() -> Any:
    global _kernels
    if _kernels is None:
        try:
            import numba
            import numpy as np
        except ImportError:  # the eager passes serve
            _kernels = False
            return _kernels
        jit = numba.njit(fastmath={"reassoc"}, error_model="numpy", nogil=True, cache=True)

        @jit
        def adam_products(g: Any, m: Any, v: Any, gt: Any, ceps: Any, tiny: Any) -> Any:
            wm = wg = qs = qgg = 0.0
            for i in range(g.size):
                s = np.sqrt(v[i])
                d = s + ceps
                w = g[i] / d
                wm += w * m[i]
                wg += w * gt[i]
                q = w * m[i] / d
                qs += q * s
                qgg += q / (s if s > tiny else tiny) * gt[i] * gt[i]
            return wm, wg, qs, qgg

        _kernels = {"adam_products": adam_products,
                    torch.float32: np.float32, torch.float64: np.float64}
    return _kernels


def fusable(*tensors: Tensor) -> bool:
    """Whether the fused loop may read these tensors: on the CPU, float32 or float64, dense,
    contiguous. (Small tensors too: one call costs less than the eager passes' calls, whose
    foreach form serves a whole group: a ResNet-20's step, 3.50 ms eagerly, took 2.42 ms
    fusing its tensors of 2048 elements or more, 2.28 ms fusing all.)"""
    first = tensors[0]
    return (first.dtype in (torch.float32, torch.float64)
            and all(t.is_cpu and t.dtype == first.dtype and t.is_contiguous()
                    and t.layout is torch.strided for t in tensors)
            and bool(_compiled()))


def adam_products(g: Tensor, m: Tensor, v: Tensor, g_saved: Tensor, ceps: float,
                  ) -> tuple[float, float, float, float]:
    r"""With :math:`s = \sqrt{v}`, :math:`D = s + \text{ceps}`, :math:`w = g / D`,
    :math:`q = w\,m / D`: the four sums :math:`\langle w, m\rangle`, :math:`\langle w,
    g_t\rangle`, :math:`\langle q, s\rangle` and :math:`\langle q g_t / \max(s, \text{tiny}),
    g_t\rangle` of :func:`hypergrad._adam_vjp._inner_products`, in one pass (:func:`fusable`
    tensors only)."""
    kernels = _compiled()
    number = kernels[g.dtype]  # ceps rounded to the dtype, as torch rounds a scalar operand
    return kernels["adam_products"](
        g.detach().view(-1).numpy(), m.view(-1).numpy(), v.view(-1).numpy(),
        g_saved.view(-1).numpy(), number(ceps), number(torch.finfo(g.dtype).tiny))
