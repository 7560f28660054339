"""The numba row top-k selects the same latents as ``torch.topk``."""

from __future__ import annotations

import pytest
import torch

from genosae.sae.kernels import row_topk, uses_row_kernel
from genosae.sae.topk import TopKSAE, TopKSAEConfig


def _as_sets(idx: torch.Tensor) -> torch.Tensor:
    return idx.sort(dim=1).values


@pytest.mark.parametrize(("B", "F", "k", "threads"), [(1, 16, 1, 1), (7, 64, 8, 1), (600, 1536, 32, 2),
                                                      (513, 1000, 100, 3), (40, 97, 12, 2)])
def test_row_topk_matches_torch_topk(B, F, k, threads):
    x = torch.randn(B, F, generator=torch.Generator().manual_seed(B + F + k))
    assert uses_row_kernel(x, k)
    got = row_topk(x, k, n_threads=threads)
    assert got.shape == (B, k) and got.dtype == torch.int64
    assert torch.equal(_as_sets(got), _as_sets(x.topk(k, dim=1).indices))


def test_row_topk_with_ties_and_masked_entries_returns_k_distinct_largest():
    x = torch.full((300, 512), -torch.inf)
    x[:, 100:140] = 1.0  # 40 tied maxima, only 16 are taken
    x[::2, 7] = 5.0  # one clear maximum on even rows
    idx = row_topk(x, 16, n_threads=2)
    assert all(len(set(r.tolist())) == 16 for r in idx)
    assert bool((x.gather(1, idx) >= 1.0).all())
    assert bool((idx[::2] == 7).any(dim=1).all())


def test_row_topk_hands_other_tensors_to_torch():
    x = torch.randn(8, 64, requires_grad=True)
    assert not uses_row_kernel(x, 4)
    assert not uses_row_kernel(torch.randn(8, 64, dtype=torch.float64), 4)
    assert not uses_row_kernel(torch.randn(8, 64), 32)  # k / d_sae above MAX_K_FRACTION
    y = torch.randn(8, 64, dtype=torch.float64)
    assert torch.equal(_as_sets(row_topk(y, 4)), _as_sets(y.topk(4, dim=1).indices))


def test_topk_sae_codes_keep_the_k_largest_preactivations():
    sae = TopKSAE(TopKSAEConfig(d_in=24, d_sae=384, k=8), seed=0)
    acts = torch.randn(700, 24, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        codes = sae.encode(acts)
        pre = sae.pre_acts(sae.normalize(acts))
    top = pre.topk(8, dim=1)
    expected = torch.zeros_like(pre).scatter_(1, top.indices, torch.relu(top.values))
    torch.testing.assert_close(codes, expected, rtol=0, atol=0)
    rows, cols = sae.select(pre)
    assert torch.equal(rows, torch.arange(700).repeat_interleave(8))
    assert torch.equal(_as_sets(cols.reshape(700, 8)), _as_sets(top.indices))
