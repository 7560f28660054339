"""Peak memory of writing ``feature_acts.h5ad`` (windows × features): streamed vs built in memory.

A synthetic feature source streams whole-window batches (``--tokens-per-window`` tokens, ``--k`` active of
``--d-sae`` features per token, Zipf-like feature use, as SAE codes are), so the source itself holds one batch.
Each run is a fresh child process that writes the file either with ``write_feature_anndata`` (rows appended
block by block) or by building the matrices with ``window_feature_matrix`` and writing one ``AnnData``; it
reports its wall time and peak RSS (``ru_maxrss``) above the same process's RSS before the write.

    python benchmarks/bench_feature_h5ad.py --windows 2000 20000
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from genosae.features.activations import FeatureBatch
from genosae.features.catalog import window_feature_matrix, write_feature_anndata


class SyntheticSource:
    """A :class:`~genosae.features.activations.FeatureSource` made batch by batch from a seed (flat memory)."""

    def __init__(self, n_windows: int, tokens_per_window: int, d_sae: int, k: int, seed: int = 0) -> None:
        self.n_windows, self.tpw, self.d_sae, self.k, self.seed = n_windows, tokens_per_window, d_sae, k, seed
        self.feature_names = [f"f{i}" for i in range(d_sae)]
        w = 1.0 / np.arange(1, d_sae + 1) ** 0.8
        self.p = w / w.sum()

    def iter_batches(self, batch_size: int = 65_536):
        per = max(1, batch_size // self.tpw)
        for b, w0 in enumerate(range(0, self.n_windows, per)):
            rng = np.random.default_rng([self.seed, b])
            n_w = min(per, self.n_windows - w0)
            n = n_w * self.tpw
            cols = rng.choice(self.d_sae, size=(n, self.k), p=self.p)
            cols.sort(axis=1)
            vals = rng.exponential(1.0, size=(n, self.k)).astype(np.float32)
            codes = sp.csr_matrix((vals.ravel(), cols.ravel(), np.arange(0, n * self.k + 1, self.k)),
                                  shape=(n, self.d_sae))
            codes.sum_duplicates()
            tokens = pd.DataFrame({"window_index": np.repeat(np.arange(w0, w0 + n_w), self.tpw)})
            yield FeatureBatch(codes, tokens, np.arange(w0 * self.tpw, w0 * self.tpw + n))

    def window_counts(self, n_windows: int) -> np.ndarray:
        return np.full(n_windows, self.tpw, np.int64)


def child(mode: str, n_windows: int, args: argparse.Namespace) -> dict:
    import anndata as ad

    source = SyntheticSource(n_windows, args.tokens_per_window, args.d_sae, args.k)
    windows = pd.DataFrame({"window_id": [f"w{i}" for i in range(n_windows)], "chrom": "chrI",
                            "start": np.arange(n_windows) * 512, "end": np.arange(n_windows) * 512 + 512})
    catalog = pd.DataFrame(index=pd.Index(source.feature_names, name="feature"))
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "feature_acts.h5ad"
        if mode == "streamed":
            write_feature_anndata(source, windows, catalog, path)
        else:
            mx, mean = window_feature_matrix(source, n_windows)
            obs = windows.set_index(windows["window_id"].rename("window"))
            ad.AnnData(X=mx, obs=obs, var=catalog, layers={"max": mx.copy(), "mean": mean}).write_h5ad(path)
        size = path.stat().st_size / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"mode": mode, "windows": n_windows, "seconds": round(time.perf_counter() - t, 1),
            "peak_above_start_mb": round(peak - base, 1), "file_mb": round(size, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--windows", type=int, nargs="+", default=[2000, 20000])
    ap.add_argument("--tokens-per-window", type=int, default=512)
    ap.add_argument("--d-sae", type=int, default=1536)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--child", nargs=2, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]), args)))
        return
    rows = []
    for n in args.windows:
        for mode in ("in_memory", "streamed"):
            cmd = [sys.executable, __file__, "--child", mode, str(n), "--tokens-per-window",
                   str(args.tokens_per_window), "--d-sae", str(args.d_sae), "--k", str(args.k)]
            rows.append(json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout))
            print(rows[-1], file=sys.stderr, flush=True)
    df = pd.DataFrame(rows)
    print(df.to_string(index=False))
    first = df[df["windows"] == args.windows[0]].set_index("mode")["peak_above_start_mb"]
    last = df[df["windows"] == args.windows[-1]].set_index("mode")["peak_above_start_mb"]
    print(f"\npeak above start, {args.windows[-1]} vs {args.windows[0]} windows: in memory "
          f"{last['in_memory'] / first['in_memory']:.2f}x, streamed {last['streamed'] / first['streamed']:.2f}x")


if __name__ == "__main__":
    main()
