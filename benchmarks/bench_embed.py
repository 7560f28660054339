"""Embedding throughput: batched ``embed_windows`` vs a naive one-window-at-a-time loop.

Reports bp/s and tokens/s of both, the batched run's achieved fraction of this machine's measured
fp32 matmul FLOP/s, and the peak RSS of fresh processes embedding two window counts (it should not
grow with the number of windows). Uses ``models/genosae-yeast-cnn`` when it holds a ``config.json``,
else a randomly initialised model of the same configuration.

    python benchmarks/bench_embed.py [--windows 48] [--rss-windows 32 128] [--threads 2]
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
import torch

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "genosae-yeast-cnn"
FASTA = ROOT / "resources" / "yeast" / "genome.fa"


def model_dir(tmp: Path) -> tuple[Path, str]:
    if (MODEL / "config.json").exists():
        return MODEL, "trained"
    from genosae.model.lm import GenosaeCNNConfig, GenosaeCNNForMaskedLM, build_tokenizer

    torch.manual_seed(0)
    out = tmp / "random-cnn"
    GenosaeCNNForMaskedLM(GenosaeCNNConfig(hidden_size=192, num_hidden_layers=8, kernel_size=9)).save_pretrained(out)
    build_tokenizer().save_pretrained(out)
    return out, "random (same config)"


def windows_and_seqs(n: int, size: int = 512, seed: int = 0) -> tuple[pd.DataFrame, list[str]]:
    rng = np.random.default_rng(seed)
    if FASTA.exists():
        import pyfaidx

        fa = pyfaidx.Fasta(str(FASTA), as_raw=True, sequence_always_upper=True)
        chroms = [c for c in fa.keys() if len(fa[c]) > size]
        chrom = rng.choice(chroms, size=n)
        start = np.array([rng.integers(0, len(fa[c]) - size) for c in chrom])
        seqs = [fa[c][int(s):int(s) + size] for c, s in zip(chrom, start)]
    else:
        chrom, start = np.array(["chrR"] * n), np.arange(n) * size
        seqs = ["".join(rng.choice(list("ACGT"), size)) for _ in range(n)]
    w = pd.DataFrame({"window_id": [f"w{i}" for i in range(n)], "chrom": chrom, "start": start,
                      "end": start + size, "strand": "+", "region_id": "bench"})
    return w, seqs


def matmul_flops(seconds: float = 1.0, n: int = 1024) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        reps += 1
    return 2 * n**3 * reps / (time.perf_counter() - t0)


def forward_flops(adapter, seqs: list[str]) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    batch = adapter.tokenize(seqs)
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        adapter._layer_acts(batch)
    return float(counter.get_total_flops())


def child(n: int, path: str, layer: int) -> None:
    """Embed ``n`` windows in this fresh process and print its peak RSS (MiB)."""
    from genosae.model.adapter import load_model
    from genosae.model.embed import embed_windows

    ad = load_model(path, layer=layer)
    w, seqs = windows_and_seqs(n, seed=1)
    with tempfile.TemporaryDirectory() as tmp:
        embed_windows(ad, w, seqs, Path(tmp) / "store", progress=False)
    print(json.dumps({"rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--windows", type=int, default=48)
    ap.add_argument("--rss-windows", type=int, nargs=2, default=[32, 128])
    ap.add_argument("--layer", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--model", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.child is not None:
        child(args.child, args.model, args.layer)
        return

    from genosae.model.adapter import load_model
    from genosae.model.embed import embed_windows

    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        path, which = model_dir(tmp)
        ad = load_model(path, layer=args.layer)
        w, seqs = windows_and_seqs(args.windows)
        total_bp = sum(map(len, seqs))
        embed_windows(ad, w.iloc[:4], seqs[:4], tmp / "warm", progress=False)  # warm-up

        t0 = time.perf_counter()
        store = embed_windows(ad, w, seqs, tmp / "batched", batch_size=32, progress=False)
        t_batched = time.perf_counter() - t0
        n_tok = store.n_tokens

        t0 = time.perf_counter()  # naive: one window per full forward pass, all hidden states, no store
        with torch.inference_mode():
            for s in seqs:
                enc = ad.tokenizer(s, return_tensors="pt")
                out = ad.model(**enc, output_hidden_states=True)
                _ = out.hidden_states[ad.layer][0].to(torch.float16).numpy()
        t_naive = time.perf_counter() - t0

        flops = forward_flops(ad, seqs[:32]) * len(seqs) / min(32, len(seqs))
        peak = matmul_flops()
        rss = []
        for n in args.rss_windows:
            res = subprocess.run([sys.executable, __file__, "--child", str(n), "--model", str(path),
                                  "--layer", str(args.layer), "--threads", str(args.threads)],
                                 capture_output=True, text=True, check=True)
            rss.append(json.loads(res.stdout.strip().splitlines()[-1])["rss_mib"])

    print(f"model: {which} genosae-cnn, layer {ad.layer}, d_model {ad.d_model}, {args.threads} threads, "
          f"{len(seqs)} windows x 512 bp")
    print(f"{'run':<28}{'seconds':>10}{'bp/s':>12}{'tokens/s':>12}")
    for name, t in (("batched embed_windows", t_batched), ("naive one-window loop", t_naive)):
        print(f"{name:<28}{t:>10.2f}{total_bp / t:>12.0f}{n_tok / t:>12.0f}")
    print(f"speed-up batched / naive: {t_naive / t_batched:.2f}x")
    print(f"forward FLOP/s (batched, to layer {ad.layer}): {flops / t_batched / 1e9:.2f} GFLOP/s; "
          f"machine fp32 matmul: {peak / 1e9:.2f} GFLOP/s; fraction {flops / t_batched / peak:.1%}")
    for n, r in zip(args.rss_windows, rss):
        print(f"peak RSS embedding {n:>5} windows: {r:8.1f} MiB")


if __name__ == "__main__":
    main()
