"""CPU kernels of the SAE hot path: the row top-k of TopK selection.

``torch.topk`` on CPU sorts a heap per row over all ``d_sae`` entries. :func:`row_topk` instead takes,
per row, the ``k``-th largest of ``n_chunks >= k`` chunk maxima as a threshold (at least ``k`` entries
reach it, so no top-``k`` entry lies below it), then keeps a size-``k`` min-heap over the few entries
at or above it. Rows are split in blocks run on Python threads by a ``nogil`` numba function (numba's
own parallel pool is not used: it competes with torch's OpenMP threads). The result is the same set of
indices as ``torch.topk`` up to ties; GPU tensors, tensors in autograd graphs, dtypes other than
float32 and large ``k`` go to ``torch.topk``.
"""

from __future__ import annotations

import itertools
import math
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
import torch

__all__ = ["ENABLED", "row_topk", "uses_row_kernel"]

#: Above this ``k / d_sae`` the threshold prunes too little to beat ``torch.topk``.
MAX_K_FRACTION = 1 / 8
#: Rows per thread block below which threads are not worth starting.
MIN_ROWS_PER_THREAD = 256
#: ``False`` sends every call to ``torch.topk`` (``benchmarks/bench_sae_vs_saelens.py`` measures both).
ENABLED = True

_POOL: ThreadPoolExecutor | None = None
_POOL_SIZE = 0


@numba.njit(nogil=True, cache=True)
def _sift_down(vals: np.ndarray, idx: np.ndarray, i: int, k: int) -> None:
    """Move entry ``i`` of the min-heap ``vals[:k]`` (``idx`` alongside) down to its place."""
    v, j0 = vals[i], idx[i]
    while True:
        child = 2 * i + 1
        if child >= k:
            break
        if child + 1 < k and vals[child + 1] < vals[child]:
            child += 1
        if vals[child] >= v:
            break
        vals[i], idx[i] = vals[child], idx[child]
        i = child
    vals[i], idx[i] = v, j0


@numba.njit(nogil=True, cache=True)
def _heapify(vals: np.ndarray, idx: np.ndarray, k: int) -> None:
    for i in range(k // 2 - 1, -1, -1):
        _sift_down(vals, idx, i, k)


@numba.njit(nogil=True, cache=True)
def _topk_rows(x: np.ndarray, k: int, chunk: int, out: np.ndarray, r0: int, r1: int) -> None:
    """Indices of the ``k`` largest entries of rows ``r0:r1`` of ``x`` into ``out`` (any order)."""
    F = x.shape[1]
    n_chunks = (F + chunk - 1) // chunk
    cmax = np.empty(n_chunks, np.float32)
    hv = np.empty(k, np.float32)
    hi = np.empty(k, np.int64)
    for r in range(r0, r1):
        row = x[r]
        for c in range(n_chunks):
            a = c * chunk
            b = min(a + chunk, F)
            m = row[a]
            for j in range(a + 1, b):
                if row[j] > m:
                    m = row[j]
            cmax[c] = m
        # threshold: the k-th largest chunk maximum (a size-k min-heap over the chunk maxima)
        for c in range(k):
            hv[c] = cmax[c]
            hi[c] = c
        _heapify(hv, hi, k)
        for c in range(k, n_chunks):
            if cmax[c] > hv[0]:
                hv[0], hi[0] = cmax[c], c
                _sift_down(hv, hi, 0, k)
        t = hv[0]
        # the top k among the entries >= t (only chunks whose maximum reaches t hold any)
        n = 0
        for c in range(n_chunks):
            if cmax[c] < t:
                continue
            a = c * chunk
            b = min(a + chunk, F)
            for j in range(a, b):
                v = row[j]
                if v < t:
                    continue
                if n < k:
                    hv[n], hi[n] = v, j
                    n += 1
                    if n == k:
                        _heapify(hv, hi, k)
                elif v > hv[0]:
                    hv[0], hi[0] = v, j
                    _sift_down(hv, hi, 0, k)
        for c in range(k):
            out[r, c] = hi[c]


def uses_row_kernel(x: torch.Tensor, k: int) -> bool:
    """Whether :func:`row_topk` runs the numba kernel on ``x`` (else it calls ``torch.topk``)."""
    return (ENABLED and x.device.type == "cpu" and x.dtype == torch.float32 and x.dim() == 2 and not x.requires_grad
            and 1 <= k <= x.shape[1] * MAX_K_FRACTION and x.shape[0] > 0)


def _pool(n: int) -> ThreadPoolExecutor:
    """The module's worker threads, at least ``n`` of them (grown, never shrunk)."""
    global _POOL, _POOL_SIZE
    if _POOL is None or _POOL_SIZE < n:
        if _POOL is not None:
            _POOL.shutdown(wait=False)
        _POOL, _POOL_SIZE = ThreadPoolExecutor(max_workers=n, thread_name_prefix="genosae-topk"), n
    return _POOL


def row_topk(x: torch.Tensor, k: int, *, n_threads: int | None = None) -> torch.Tensor:
    """Indices ``[B, k]`` (int64, unsorted) of the ``k`` largest entries of each row of ``x [B, F]``.

    ``n_threads`` defaults to ``torch.get_num_threads()``.
    """
    if not uses_row_kernel(x, k):
        return x.topk(k, dim=-1, sorted=False).indices
    arr = x.contiguous().numpy()
    B, F = arr.shape
    # about 2k chunks: the threshold stays close to the k-th value while the chunk scan stays short
    chunk = max(1, math.ceil(F / (2 * k)))
    if math.ceil(F / chunk) < k:  # too few chunks to hold k maxima: one entry per chunk
        chunk = 1
    out = np.empty((B, k), np.int64)
    n = max(1, min(n_threads or torch.get_num_threads(), B // MIN_ROWS_PER_THREAD))
    if n == 1:
        _topk_rows(arr, k, chunk, out, 0, B)
    else:
        bounds = np.linspace(0, B, n + 1).astype(np.int64)
        pool = _pool(n)
        futures = [pool.submit(_topk_rows, arr, k, chunk, out, int(a), int(b)) for a, b in itertools.pairwise(bounds)]
        for f in futures:
            f.result()
    return torch.from_numpy(out)
