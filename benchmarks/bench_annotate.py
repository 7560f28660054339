"""``genosae annotate`` throughput and memory on chrXVI of the yeast reference.

Runs the default model (``models/genosae-yeast-cnn``) with a TopK SAE (8 x 192 latents, k = 32, fitted
normalisation, random directions) over chrXVI regions of two lengths, each in a fresh process, and
reports bp/s (both strands run) and peak RSS: the RSS should not grow with the region length.

    python benchmarks/bench_annotate.py [--lengths 50000 200000] [--features 10] [--threads 2]
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

import torch

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "genosae-yeast-cnn"


def _setup(tmp: Path, n_features: int) -> Path:
    import numpy as np
    import pandas as pd
    import yaml

    from genosae.genome.yeast import build_yeast_reference
    from genosae.model.adapter import load_model
    from genosae.sae.io import save_sae
    from genosae.sae.topk import TopKSAE, TopKSAEConfig

    cache = Path(tempfile.gettempdir()) / "genosae-test-cache" / "yeast"
    ref = build_yeast_reference(cache if cache.exists() else ROOT / "resources" / "yeast")
    adapter = load_model(MODEL, layer=6, device="cpu", dtype="float32")
    rng = np.random.default_rng(0)
    acts = torch.cat([a for a, _ in adapter.hidden_states(["".join(rng.choice(list("ACGT"), 512))
                                                            for _ in range(8)])])
    sae = TopKSAE(TopKSAEConfig(d_in=adapter.d_model, d_sae=8 * adapter.d_model, k=32), seed=0)
    sae.set_normalization(acts)
    out = tmp / "results"
    save_sae(sae, out / "sae" / "seed0", metadata={"model_name": str(MODEL), "layer": adapter.layer})
    labels = ["unassigned"] * sae.d_sae
    labels[:n_features] = [f"concept {i} (F1 0.90)" for i in range(n_features)]
    (out / "features").mkdir(parents=True)
    pd.DataFrame({"feature": [f"f{i}" for i in range(sae.d_sae)], "label": labels, "threshold": 0.5,
                  "max_activation": 1.0}).to_csv(out / "features" / "feature_catalog.csv", index=False)
    cfg = {"outdir": str(out), "reference": {"source": "files", "fasta": str(ref.fasta), "annotation": str(ref.gff3)},
           "model": {"path": str(MODEL), "layer": 6, "device": "cpu", "dtype": "float32", "batch_size": 32}}
    (tmp / "config.yaml").write_text(yaml.safe_dump(cfg))
    return tmp / "config.yaml"


def child(config: Path, length: int, threads: int) -> dict:
    from genosae.tracks import annotate

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    paths = annotate(config, outdir=config.parent / f"annot{length}", region=f"chrXVI:100000-{100000 + length}",
                     progress=False)
    wall = time.perf_counter() - t0
    meta = json.loads(paths["params"].read_text())
    return {"length_bp": length, "features": len(meta["features"]), "annotate_s": meta["elapsed_s"],
            "bp_per_s": meta["bp_per_s"], "wall_s_incl_model_load": round(wall, 2),
            "n_elements": meta["n_elements"], "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--lengths", type=int, nargs="+", default=[50_000, 200_000])
    ap.add_argument("--features", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--child", nargs=2, metavar=("CONFIG", "LENGTH"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(Path(args.child[0]), int(args.child[1]), args.threads)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        config = _setup(Path(tmp), args.features)
        for length in args.lengths:
            res = subprocess.run([sys.executable, __file__, "--threads", str(args.threads), "--child", str(config),
                                  str(length)], check=True, capture_output=True, text=True)
            print(res.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
