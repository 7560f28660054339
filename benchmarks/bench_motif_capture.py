"""Motif capture by layer: SAE features vs neurons vs random directions vs the untrained control's SAE.

For every layer (default 1..8 of the shipped ``models/genosae-yeast-cnn``): promoter windows
(``genosae.genome.genes.promoters`` of the config's ``concepts.promoter_upstream``, tiled by
``make_windows`` at ``windows.size``), ``--n-train`` of them drawn from the chromosomes outside
``atlas.holdout_chroms`` (calibration: SAE training, unit and threshold choice) and all of those on
the held-out chromosome (scoring), embedded with the model at that layer (``embed_windows``) and with
the same architecture randomly initialised (``genosae.model.control``); a TopK SAE per model and layer
(``train_sae`` on the calibration windows); then the pipeline's site F1
(``genosae.features.motif_capture.motif_capture``) of the SAE's features, the neurons (both signs),
``--n-random`` random directions and the control's SAE for every JASPAR motif of the config with
≥ ``--min-sites`` FIMO sites (p < ``motifs.pvalue``) in both halves. A motif whose JASPAR consensus is
≥ 80 % A/T is *AT-rich* and counted apart (issue 17's goal counts only the others). ``captured`` =
SAE held-out F1 ≥ 0.5 and > every null set (random, neuron, control) + ``--margin``.

Prints one markdown table (one row per layer) and the best non-AT-rich motifs of each layer; writes the
full layer × motif table to ``--out``. One progress line per layer on stderr.

Run: python benchmarks/bench_motif_capture.py [--layers 1 2 ... 8] [--sae-seeds 0 1 2] [--quick] [--out CSV]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from genosae.config import load_config
from genosae.features.activations import calibration_windows
from genosae.features.layer_capture import layer_motif_capture, promoter_windows
from genosae.features.motif_capture import motif_sites
from genosae.genome.annotation import read_annotation
from genosae.genome.concepts import read_concepts
from genosae.genome.motifs import load_motifs, motif_concepts, scan_motifs
from genosae.genome.reference import Reference, reference_files
from genosae.genome.windows import window_sequences
from genosae.model.adapter import load_model
from genosae.model.control import random_init_model
from genosae.sae.train import SAETrainConfig

SETS = ("sae", "neuron", "random", "control")
AT_RICH = 0.8


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def fimo_sites(config: dict, reference: Reference, concepts: str | None) -> pd.DataFrame:
    """Motif sites as the pipeline has them: a prepared ``concepts.tsv.gz`` or a FIMO scan of the reference."""
    if concepts:
        return motif_sites(read_concepts(concepts))
    hits = scan_motifs(load_motifs(config), reference, threshold=config["motifs"]["pvalue"])
    return motif_sites(motif_concepts(hits))


def at_share(config: dict) -> pd.Series:
    """A/T share of each motif's JASPAR consensus, by motif id."""
    return pd.Series({m.id: sum(b in "AT" for b in m.consensus) / len(m.consensus) for m in load_motifs(config)})


def run_layer(layer: int, models: dict[str, str], windows: pd.DataFrame, seqs: list[str], sites: pd.DataFrame,
              cal_w: np.ndarray, root: Path, args: argparse.Namespace, config: dict) -> pd.DataFrame:
    """Motif-capture table of one layer (``motif_capture`` columns + ``layer``), with a progress line."""
    t0 = time.perf_counter()
    cfg = SAETrainConfig(architecture="topk", d_sae=args.d_sae, k=args.k, batch_size=args.batch_size,
                         training_tokens=args.training_tokens, seed=args.seed, checkpoint_every=10**9)
    table, fvu = layer_motif_capture(models, layer, windows, seqs, sites, cal_w, root / f"L{layer}", sae_cfg=cfg,
                                     n_random=args.n_random, thresholds=config["features"]["thresholds"],
                                     min_sites=args.min_sites, margin=args.margin,
                                     batch_size=config["model"]["batch_size"],
                                     storage_dtype=config["embed"]["storage_dtype"], seed=args.seed,
                                     sae_seeds=args.sae_seeds)
    log(f"[layer {layer}] {table['motif_id'].nunique()} motifs scored ({len(args.sae_seeds)} SAE seeds), SAE FVU {fvu['model']:.3f} (control {fvu['control']:.3f}), "
        f"best SAE F1 {table['sae_f1'].max():.2f}, {time.perf_counter() - t0:.0f} s")
    return table.assign(layer=layer)


def over_seeds(t: pd.DataFrame) -> pd.DataFrame:
    """One row per layer × motif: each set's held-out F1 as the mean over the SAE seeds (``sae_f1_sd`` the
    SAE's standard deviation), ``captured`` only when captured with every seed."""
    keys = ["layer", "motif_id", "motif_name", "at_rich"]
    f1 = [f"{s}_f1" for s in SETS]
    g = t.groupby(keys, sort=False)
    out = g[f1].mean().join(g["captured"].all()).join(g["sae_f1"].std(ddof=1).fillna(0.0).rename("sae_f1_sd"))
    return out.reset_index()


def summary_row(t: pd.DataFrame) -> dict[str, object]:
    """Counts of one layer: per set, motifs with held-out F1 ≥ 0.5 and ≥ 0.3 as ``non-AT (+AT)`` (F1 the
    mean over the SAE seeds, :func:`over_seeds`)."""
    t = over_seeds(t)
    row: dict[str, object] = {"layer": int(t["layer"].iloc[0])}
    at = t["at_rich"].to_numpy(bool)
    row["motifs (non-AT + AT)"] = f"{(~at).sum()} + {at.sum()}"
    for s in SETS:
        for cut in (0.5, 0.3):
            hit = t[f"{s}_f1"].to_numpy() >= cut
            row[f"{s} ≥{cut}"] = f"{(hit & ~at).sum()} (+{(hit & at).sum()})"
    cap = t["captured"].to_numpy(bool)
    row["captured non-AT (+AT)"] = f"{(cap & ~at).sum()} (+{(cap & at).sum()})"
    best = t[~at].nlargest(3, "sae_f1")
    row["best non-AT: SAE (± sd over seeds) / neuron / control F1"] = ", ".join(
        f"{r.motif_name} {r.sae_f1:.2f} ± {r.sae_f1_sd:.2f} / {r.neuron_f1:.2f} / {r.control_f1:.2f}"
        for r in best.itertuples())
    return row


def markdown(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(v) for v in r) + " |" for r in df.itertuples(index=False)]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="config/config.yaml")
    ap.add_argument("--model", default=None, help="default: the config's model.path")
    ap.add_argument("--layers", type=int, nargs="+", default=None, help="default: every block, 1..n")
    ap.add_argument("--concepts", default=None, help="a prepared concepts.tsv.gz (default: scan with FIMO)")
    ap.add_argument("--n-train", type=int, default=500, help="calibration promoter windows")
    ap.add_argument("--n-heldout", type=int, default=None, help="held-out windows (default: all)")
    ap.add_argument("--d-sae", type=int, default=1536)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=2048)
    ap.add_argument("--training-tokens", type=int, default=300_000)
    ap.add_argument("--n-random", type=int, default=384, help="random directions (as many as neuron units)")
    ap.add_argument("--min-sites", type=int, default=20)
    ap.add_argument("--margin", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0, help="windows and random directions")
    ap.add_argument("--sae-seeds", type=int, nargs="+", default=None,
                    help="replicate SAEs per model and layer (default: --seed); F1 is their mean")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="smoke run: layers 2 and 6, 300 + 200 windows")
    ap.add_argument("--out", default="results/benchmarks/motif_capture_by_layer.csv")
    ap.add_argument("--card", default=None, help="also write the table as markdown here (e.g. the model "
                    "folder's motif_capture.md, which write_model_card puts in the card)")
    args = ap.parse_args()
    if args.quick:
        args.layers = args.layers or [2, 6]
        args.n_train, args.n_heldout, args.training_tokens = 300, 200, 150_000
    args.sae_seeds = args.sae_seeds or [args.seed]
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    config = load_config(args.config, check_files=False)
    model = args.model or config["model"]["path"]
    reference = Reference.open(reference_files(config).require().fasta)
    c, w = config["concepts"], config["windows"]
    windows = promoter_windows(read_annotation(reference_files(config).require().annotation, reference), reference,
                               holdout_chroms=config["atlas"]["holdout_chroms"], n_calibration=args.n_train,
                               n_heldout=args.n_heldout, upstream=c["promoter_upstream"],
                               downstream=c["promoter_downstream"], size=w["size"], stride=w["stride"],
                               seed=args.seed)
    seqs = window_sequences(windows, reference)
    cal_w, rule = calibration_windows(windows, holdout_chroms=config["atlas"]["holdout_chroms"])
    sites = fimo_sites(config, reference, args.concepts)
    at = at_share(config)
    with tempfile.TemporaryDirectory(prefix="bench_motif_") as tmp:
        root = Path(tmp)
        models = {"model": model, "control": str(random_init_model(model, root / "control_model",
                                                                     seed=config["control_model"]["seed"]))}
        n_layers = load_model(model, layer=-1, device="cpu").n_hidden - 1
        layers = args.layers or list(range(1, n_layers + 1))
        log(f"{len(windows)} promoter windows ({cal_w.sum()} calibration, {(~cal_w).sum()} held-out, split "
            f"{rule}), {sites['motif_id'].nunique()} motifs with FIMO sites, layers {layers}; "
            f"setup {time.perf_counter() - t0:.0f} s")
        tables = [run_layer(layer, models, windows, seqs, sites, cal_w, root, args, config) for layer in layers]
    full = pd.concat(tables, ignore_index=True)
    full["at_share"] = full["motif_id"].map(at).to_numpy()
    full["at_rich"] = full["at_share"] >= AT_RICH
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    full.to_csv(out, index=False)
    text = (f"{cal_w.sum()} calibration promoter windows (chromosomes outside {config['atlas']['holdout_chroms']}), "
            f"{(~cal_w).sum()} held-out; TopK SAE {args.d_sae} latents, k {args.k}, {args.training_tokens:,} "
            f"training tokens per model and layer, SAE seeds {args.sae_seeds} (F1 their mean, `captured` with "
            f"every seed); candidates: SAE {args.d_sae}, neurons "
            f"{int(full['neuron_n_units'].iloc[0])}, random {args.n_random}, control SAE {args.d_sae}. "
            f"Motifs with ≥ {args.min_sites} FIMO sites in both halves; counts are non-AT-rich (+ AT-rich, "
            f"consensus ≥ {AT_RICH:.0%} A/T); F1 held-out, unit and threshold chosen on calibration; `captured` = "
            f"SAE F1 ≥ 0.5 and > random, neuron and control F1 + {args.margin}.\n\n"
            + markdown(pd.DataFrame([summary_row(t) for _, t in full.groupby("layer", sort=True)])))
    print(f"## Motif capture by layer: {model}\n\n{text}")
    if args.card:
        Path(args.card).write_text(text + "\n")
    print(f"\nfull table: {out}; {time.perf_counter() - t0:.0f} s in all")


if __name__ == "__main__":
    main()
