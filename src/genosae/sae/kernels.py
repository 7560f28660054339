"""Row-wise top-k for the TopK SAEs: a numba heap kernel on CPU, ``torch.topk`` elsewhere.

``torch.topk`` on a ``[2048, 1536]`` float32 matrix takes ~30 ms on one CPU core, more than the encoder
GEMM that produces it. Here each row first takes the maxima of ``2k`` column chunks (vectorised
reductions); at least ``k`` entries reach the ``k``-th largest of them, and only those (a few times ``k``)
go through a min-heap of size ``k``. Row blocks run on as many Python threads as torch may use (the kernel
releases the GIL; a numba ``parallel`` pool beside torch's OpenMP pool was measured to slow both).
"""

from __future__ import annotations

import functools
import itertools
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
import torch


@numba.njit(inline="always", nogil=True)
def _worse(v1: float, i1: int, v2: float, i2: int) -> bool:
    """Heap order: a lower value, or the same value at a higher column, ranks lower."""
    return v1 < v2 or (v1 == v2 and i1 > i2)


@numba.njit(inline="always", nogil=True)
def _sift_down(vals: np.ndarray, idx: np.ndarray, pos: int, size: int) -> None:
    """Restore the min-heap below ``pos`` (values ``vals``, carried indices ``idx``)."""
    v, i = vals[pos], idx[pos]
    while True:
        child = 2 * pos + 1
        if child >= size:
            break
        if child + 1 < size and _worse(vals[child + 1], idx[child + 1], vals[child], idx[child]):
            child += 1
        if not _worse(vals[child], idx[child], v, i):
            break
        vals[pos], idx[pos] = vals[child], idx[child]
        pos = child
    vals[pos], idx[pos] = v, i


@numba.njit(inline="always", nogil=True)
def _heap_topk(row: np.ndarray, k: int, thr: float, vals: np.ndarray, idx: np.ndarray) -> None:
    """The ``k`` largest entries of ``row`` into the min-heap ``vals`` / ``idx``, reading only those
    ``>= thr`` (at least ``k`` must reach it)."""
    size = 0
    for j in range(row.shape[0]):
        v = row[j]
        if v < thr:
            continue
        if size < k:
            vals[size] = v
            idx[size] = j
            size += 1
            if size == k:
                for pos in range(k // 2 - 1, -1, -1):
                    _sift_down(vals, idx, pos, k)
        elif v > vals[0]:  # strict: a tie at a higher column ranks lower
            vals[0] = v
            idx[0] = j
            _sift_down(vals, idx, 0, k)


@numba.njit(nogil=True, cache=True, fastmath=True)
def _topk_rows(x: np.ndarray, k: int, chunk_max: np.ndarray, out_vals: np.ndarray, out_idx: np.ndarray) -> None:
    n_rows, n_cols = x.shape
    n_chunks = chunk_max.shape[1]
    size = n_cols // n_chunks
    for r in range(n_rows):
        row, cm, vals, idx = x[r], chunk_max[r], out_vals[r], out_idx[r]
        # the k-th largest of the maxima of n_chunks >= k column chunks: at least k entries reach it
        for c in range(n_chunks):
            m = row[c * size]
            for j in range(c * size + 1, (c + 1) * size):
                m = max(m, row[j])
            cm[c] = m
        for j in range(n_chunks * size, n_cols):  # the remainder joins the last chunk
            cm[n_chunks - 1] = max(cm[n_chunks - 1], row[j])
        _heap_topk(cm, k, -np.inf, vals, idx)
        _heap_topk(row, k, vals[0], vals, idx)


def row_topk(x_BF: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(values, indices)`` of the ``k`` largest entries of each row of a 2-D tensor, in no order.

    Same sets as ``x.topk(k, dim=1, sorted=False)`` (ties broken towards the lower column). CPU float
    tensors without autograd and with ``k <= F / 8`` use the numba kernel; anything else (CUDA, a graph,
    a large ``k`` such as AuxK's) uses ``torch.topk``. Rows must not contain NaN.
    """
    if x_BF.ndim != 2 or not 1 <= k <= x_BF.shape[1]:
        msg = f"row_topk needs a 2-D tensor and 1 <= k <= {x_BF.shape[-1]}; got shape {tuple(x_BF.shape)}, k {k}"
        raise ValueError(msg)
    if (x_BF.device.type != "cpu" or x_BF.requires_grad or x_BF.dtype not in (torch.float32, torch.float64)
            or 8 * k > x_BF.shape[1]):
        top = x_BF.topk(k, dim=1, sorted=False)
        return top.values, top.indices
    x = x_BF.contiguous().numpy()
    vals = np.empty((x.shape[0], k), dtype=x.dtype)
    idx = np.empty((x.shape[0], k), dtype=np.int64)
    chunk_max = np.empty((x.shape[0], min(2 * k, x.shape[1])), dtype=x.dtype)
    n_threads = min(torch.get_num_threads(), max(1, x.shape[0] // 256))
    if n_threads == 1:
        _topk_rows(x, k, chunk_max, vals, idx)
    else:  # the kernel releases the GIL: row blocks on Python threads, no second OpenMP runtime
        bounds = np.linspace(0, x.shape[0], n_threads + 1).astype(int)
        blocks = [slice(a, b) for a, b in itertools.pairwise(bounds)]
        list(_pool(n_threads).map(lambda b: _topk_rows(x[b], k, chunk_max[b], vals[b], idx[b]), blocks))
    return torch.from_numpy(vals), torch.from_numpy(idx)


@functools.cache
def _pool(n_threads: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(n_threads, thread_name_prefix="genosae-topk")
