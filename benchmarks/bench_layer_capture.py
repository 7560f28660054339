"""Concept capture by layer: which layer should a run read? SAE vs neurons vs random vs the untrained control.

For every layer of a model, on random genome-wide windows (the atlas rule, ``atlas_windows``; calibration off
the config's held-out chromosomes, scoring on them): the layer's activation store, a TopK SAE trained on the
calibration windows, and the pipeline's concept alignment (unit and threshold chosen on calibration, F1
held-out) of the SAE, the neurons, random directions and the SAE of the same architecture untrained
(``genosae.features.layer_capture.layer_concept_capture``). Prints per layer the concepts each set captures
(held-out F1 ≥ 0.5 and > trivial F1 + 0.1), those where the SAE beats the control by > 0.1, the mean codon-phase
F1, and, given ``--motifs`` (the CSV of ``bench_motif_capture.py``), the motifs captured at that layer, so one
table shows both curves.

    python benchmarks/bench_layer_capture.py --out results/benchmarks/concept_capture_by_layer.csv \
        [--motifs results/benchmarks/motif_capture_by_layer.csv] [--model models/genosae-yeast-cnn]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from bench_motif_capture import markdown  # this folder (sys.path[0] when run as a script)

from genosae.config import load_config
from genosae.features.activations import calibration_windows
from genosae.features.catalog import clearly_captured
from genosae.features.layer_capture import layer_concept_capture
from genosae.genome.annotation import read_annotation
from genosae.genome.concepts import build_concepts, read_concepts
from genosae.genome.reference import Reference, reference_files
from genosae.genome.windows import atlas_windows, window_sequences
from genosae.model.adapter import load_model
from genosae.model.control import random_init_model
from genosae.sae.train import SAETrainConfig

SETS = ("sae", "neuron", "random", "control")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def layer_row(summary: pd.DataFrame, layer: int, fvu: dict[str, float]) -> dict[str, object]:
    """Counts of one layer's :func:`layer_concept_capture` summary."""
    row: dict[str, object] = {"layer": layer, "SAE FVU": round(fvu["model"], 3)}
    for s in SETS:
        row[f"{s} captured"] = int(clearly_captured(summary, f"best_{s}_f1", 0.5).sum())
    row["SAE > control + 0.1"] = int((summary["best_sae_f1"] > summary["best_control_f1"] + 0.1).sum())
    codon = [c for c in summary.index if str(c).startswith("codon_pos")]
    row["codon phase: SAE / neuron / control mean F1"] = " / ".join(
        f"{summary.loc[codon, f'best_{s}_f1'].mean():.2f}" for s in ("sae", "neuron", "control"))
    return row


def motif_counts(path: str) -> pd.DataFrame:
    """Per layer, non-AT-rich motifs with SAE F1 ≥ 0.5 and captured, from ``bench_motif_capture.py``'s CSV
    (F1 the mean over its SAE seeds, captured with every seed)."""
    t = pd.read_csv(path)
    keys = ["layer", "motif_id", "at_rich"]
    g = t.groupby(keys, sort=False)
    m = g["sae_f1"].mean().to_frame().join(g["captured"].all()).reset_index()
    m = m[~m["at_rich"].astype(bool)]
    return m.groupby("layer").agg(**{"motifs SAE ≥ 0.5 (non-AT)": ("sae_f1", lambda f: int((f >= 0.5).sum())),
                                     "motifs captured (non-AT)": ("captured", "sum")})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="config/config.yaml")
    ap.add_argument("--model", default=None, help="default: the config's model.path")
    ap.add_argument("--layers", type=int, nargs="+", default=None, help="default: every block, 1..n")
    ap.add_argument("--concepts", default=None, help="a prepared concepts.tsv.gz (default: built from the annotation)")
    ap.add_argument("--n-windows", type=int, default=600, help="atlas windows (the held-out share on the "
                    "config's holdout_chroms)")
    ap.add_argument("--d-sae", type=int, default=1536)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=2048)
    ap.add_argument("--training-tokens", type=int, default=300_000)
    ap.add_argument("--n-random", type=int, default=384, help="random directions (as many as neuron units)")
    ap.add_argument("--seed", type=int, default=0, help="windows, SAE and random directions")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--motifs", default=None, help="bench_motif_capture.py's CSV, for the motif columns")
    ap.add_argument("--out", default="results/benchmarks/concept_capture_by_layer.csv")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    config = load_config(args.config, check_files=False)
    model = args.model or config["model"]["path"]
    files = reference_files(config).require()
    reference = Reference.open(files.fasta)
    concepts = read_concepts(args.concepts) if args.concepts else \
        build_concepts(read_annotation(files.annotation, reference), reference)
    holdout = config["atlas"]["holdout_chroms"]
    windows = atlas_windows(reference.chrom_sizes, n_windows=args.n_windows, size=config["windows"]["size"],
                            seed=args.seed)
    seqs = window_sequences(windows, reference)
    cal, rule = calibration_windows(windows, holdout_chroms=holdout)
    cfg = SAETrainConfig(architecture="topk", d_sae=args.d_sae, k=args.k, batch_size=args.batch_size,
                         training_tokens=args.training_tokens, seed=args.seed, checkpoint_every=10**9)
    tables, rows = [], []
    with tempfile.TemporaryDirectory(prefix="bench_layer_") as tmp:
        root = Path(tmp)
        models = {"model": model, "control": str(random_init_model(model, root / "control_model",
                                                                     seed=config["control_model"]["seed"]))}
        layers = args.layers or list(range(1, load_model(model, layer=-1, device="cpu").n_hidden))
        log(f"{len(windows)} atlas windows ({cal.sum()} calibration, {(~cal).sum()} held-out, split {rule}), "
            f"layers {layers}; setup {time.perf_counter() - t0:.0f} s")
        for layer in layers:
            t = time.perf_counter()
            summary, fvu = layer_concept_capture(models, layer, windows, seqs, concepts, cal, root / f"L{layer}",
                                                 sae_cfg=cfg, n_random=args.n_random,
                                                 thresholds=config["features"]["thresholds"],
                                                 batch_size=config["model"]["batch_size"],
                                                 storage_dtype=config["embed"]["storage_dtype"], seed=args.seed)
            rows.append(layer_row(summary, layer, fvu))
            tables.append(summary.reset_index().assign(layer=layer))
            log(f"[layer {layer}] {rows[-1]}, {time.perf_counter() - t:.0f} s")
    full = pd.concat(tables, ignore_index=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    full.to_csv(out, index=False)
    table = pd.DataFrame(rows).set_index("layer")
    if args.motifs:
        table = table.join(motif_counts(args.motifs), how="left")
    n_concepts = full["concept"].nunique()
    print(f"## Concept capture by layer: {model}\n\n{cal.sum()} calibration / {(~cal).sum()} held-out atlas windows "
          f"(held out: {', '.join(holdout)}), {n_concepts} annotation concepts; TopK SAE {args.d_sae} latents, "
          f"k {args.k}, {args.training_tokens:,} tokens per model and layer; candidates: SAE {args.d_sae}, neurons "
          f"{int(full['n_neuron_candidates'].max())}, random {args.n_random}, control SAE {args.d_sae}. "
          f"captured = held-out F1 ≥ 0.5 and > trivial F1 + 0.1.\n")
    print(markdown(table.reset_index()))
    print(f"\nfull table: {out}; {time.perf_counter() - t0:.0f} s in all")


if __name__ == "__main__":
    main()
