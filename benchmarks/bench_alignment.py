"""Time `align_concepts` for features × concepts × tokens on synthetic sparse activations.

    python benchmarks/bench_alignment.py [--features 1536] [--concepts 60] [--nnz 32]
        [--tokens 250000 500000 1000000 2000000]

Activations: ``--nnz`` random nonzeros per token (exponential values). Concepts: prevalences from
0.1% to 30%, laid out as runs of 20 tokens (instances) so domain-level recall has work to do.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.sparse as sp

from genosae.features.alignment import align_concepts


def synthetic(n_tok: int, n_feat: int, n_conc: int, nnz: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    cols = rng.integers(0, n_feat, size=n_tok * nnz).astype(np.int32)
    data = rng.exponential(1.0, size=n_tok * nnz).astype(np.float32)
    codes = sp.csr_matrix((data, cols, np.arange(0, n_tok * nnz + 1, nnz)), shape=(n_tok, n_feat))
    codes.sum_duplicates()
    run = 20
    n_runs = -(-n_tok // run)
    prev = np.geomspace(0.001, 0.3, n_conc)
    on_RC = rng.random((n_runs, n_conc)) < prev[None, :]
    r, c = np.nonzero(on_RC)
    rows = (r[:, None] * run + np.arange(run)[None, :]).ravel()
    cc = np.repeat(c, run)
    inst_id = np.repeat(r * n_conc + c + 1, run)
    keep = rows < n_tok
    memb = sp.csr_matrix((np.ones(keep.sum(), bool), (rows[keep], cc[keep])), shape=(n_tok, n_conc))
    inst = sp.csr_matrix((inst_id[keep], (rows[keep], cc[keep])), shape=(n_tok, n_conc))
    window = np.arange(n_tok) // 1000
    cal = (np.random.default_rng(seed + 1).random(window.max() + 1) < 0.5)[window]
    return codes, memb, inst, cal


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--features", type=int, default=1536)
    ap.add_argument("--concepts", type=int, default=60)
    ap.add_argument("--nnz", type=int, default=32)
    ap.add_argument("--tokens", type=int, nargs="+", default=[250_000, 500_000, 1_000_000, 2_000_000])
    args = ap.parse_args()
    names = [f"c{i}" for i in range(args.concepts)]
    print(f"{'tokens':>10} {'nnz':>12} {'seconds':>8} {'s/M tokens':>10}")
    for n_tok in args.tokens:
        codes, memb, inst, cal = synthetic(n_tok, args.features, args.concepts, args.nnz)
        t0 = time.perf_counter()
        df = align_concepts(codes, memb, inst, calibration_mask=cal, concept_names=names)
        dt = time.perf_counter() - t0
        assert len(df) == args.features * args.concepts
        print(f"{n_tok:>10} {codes.nnz:>12} {dt:>8.2f} {dt / n_tok * 1e6:>10.2f}", flush=True)


if __name__ == "__main__":
    main()
