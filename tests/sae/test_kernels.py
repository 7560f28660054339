"""The numba row top-k against ``torch.topk``."""

from __future__ import annotations

import pytest
import torch

from genosae.sae.kernels import row_topk


def _sets(idx: torch.Tensor) -> torch.Tensor:
    return idx.sort(dim=1).values


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("n_rows", "n_cols", "k"), [(7, 1536, 32), (600, 1536, 32), (300, 100, 3), (50, 64, 8),
                                                     (40, 1537, 1)])
def test_row_topk_matches_torch(n_rows: int, n_cols: int, k: int, dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(n_rows + n_cols + k)
    x = torch.randn(n_rows, n_cols, generator=gen, dtype=dtype)
    x[0] = torch.arange(n_cols, dtype=dtype)  # ascending: every entry beats the heap
    x[1] = -torch.arange(n_cols, dtype=dtype)  # descending
    vals, idx = row_topk(x, k)
    ref = x.topk(k, dim=1)
    assert vals.dtype == dtype and idx.dtype == torch.long
    assert torch.equal(_sets(idx), _sets(ref.indices))
    assert torch.equal(torch.gather(x, 1, idx), vals)


def test_row_topk_on_two_threads_equals_one() -> None:
    x = torch.randn(2048, 768, generator=torch.Generator().manual_seed(1))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = row_topk(x, 16)[1]
        torch.set_num_threads(2)
        two = row_topk(x, 16)[1]
    finally:
        torch.set_num_threads(before)
    assert torch.equal(_sets(one), _sets(two))
    assert torch.equal(_sets(two), _sets(x.topk(16, dim=1).indices))


def test_row_topk_ties_keep_lower_columns() -> None:
    x = torch.zeros(3, 256)
    x[:, 200] = 1.0
    idx = row_topk(x, 4)[1]
    assert idx.sort(dim=1).values.tolist() == [[0, 1, 2, 200]] * 3


def test_row_topk_falls_back_for_graphs_and_large_k() -> None:
    x = torch.randn(5, 64, requires_grad=True)
    vals, idx = row_topk(x, 4)
    vals.sum().backward()  # torch.topk keeps the graph
    assert int((x.grad != 0).sum()) == 20
    big = row_topk(x.detach(), 40)[1]  # k > F / 8
    assert torch.equal(_sets(big), _sets(x.detach().topk(40, dim=1).indices))


@pytest.mark.parametrize("k", [0, 65])
def test_row_topk_rejects_bad_k(k: int) -> None:
    with pytest.raises(ValueError, match="1 <= k <= 64"):
        row_topk(torch.randn(3, 64), k)
