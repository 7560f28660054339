"""Helpers for tests/tracks: the tiny models of tests/model/tiny_lms.py, a TopK SAE fitted to their
activations and a feature catalogue, laid out as a workflow run (``<outdir>/sae/seed0``, ...)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "model"))
from tiny_lms import MAKERS, random_dna

D_SAE = 24
REGION = ("chrXVI", 20_000, 21_000)
WINDOW, STRIDE, BATCH = 128, 64, 3  # 15 windows in 5 batches: stitching and streaming both exercised


@dataclass
class Run:
    """A configured run: config file, model folder, the loaded adapter and SAE, the catalogue."""

    config: Path
    outdir: Path
    model_dir: Path
    adapter: object
    sae: object
    catalog: pd.DataFrame
    reference: object


def make_run(root: Path, family: str, yeast_reference) -> Run:
    from genosae.genome.reference import Reference
    from genosae.model.adapter import load_model
    from genosae.sae.io import save_sae
    from genosae.sae.topk import TopKSAE, TopKSAEConfig

    model_dir = MAKERS[family](root / family)
    adapter = load_model(model_dir, layer=-1, device="cpu", dtype="float32")
    acts = torch.cat([a for a, _ in adapter.hidden_states([random_dna(200, s) for s in range(8)])])
    sae = TopKSAE(TopKSAEConfig(d_in=adapter.d_model, d_sae=D_SAE, k=4), seed=1)
    sae.set_normalization(acts)
    outdir = root / "results"
    save_sae(sae, outdir / "sae" / "seed0", metadata={"model_name": str(model_dir), "layer": adapter.layer},
             reference_inputs=acts[:64])
    with torch.no_grad():
        codes = sae.encode(acts).numpy()
    n_active = (codes > 0).sum(0)
    named = np.argsort(-n_active, kind="stable")[[0, 2, 5]]  # often-active features carry the names
    labels = np.array(["unassigned"] * D_SAE, dtype=object)
    labels[named] = ["tRNA (F1 0.82)", "motif REB1 (Tomtom q 1e-04, sites F1 0.71)", "GC-rich (composition)"]
    catalog = pd.DataFrame({"feature": [f"f{i}" for i in range(D_SAE)], "index": np.arange(D_SAE),
                            "max_activation": codes.max(0), "best_concept": "tRNA",
                            "threshold": np.r_[0.15, 0.5, 0.0, 0.6][np.arange(D_SAE) % 4], "label": labels})
    (outdir / "features").mkdir(parents=True)
    catalog.to_csv(outdir / "features" / "feature_catalog.csv", index=False)
    cfg = {"outdir": str(outdir),
           "reference": {"source": "files", "fasta": str(yeast_reference.fasta),
                         "annotation": str(yeast_reference.gff3)},
           "windows": {"size": WINDOW, "stride": STRIDE},
           "model": {"path": str(model_dir), "layer": -1, "device": "cpu", "dtype": "float32", "batch_size": BATCH}}
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    return Run(config, outdir, model_dir, adapter, sae, catalog.set_index("feature"),
               Reference.open(yeast_reference.fasta))
