"""Features subcommands: ``features`` (align an SAE's features to concepts and motifs, write the
catalogue), ``encode-features`` and ``window-acts`` (SAE activations of a store)."""

from __future__ import annotations

import argparse
from pathlib import Path

from genosae.errors import InputError


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("features", help="align SAE features to genomic concepts/motifs; catalogue + dashboards")
    p.add_argument("--config", required=True, help="YAML config (its `features` section)")
    p.add_argument("--store", required=True, help="activation store folder (genosae embed)")
    p.add_argument("--sae", required=True,
                   help="SAE: genosae or SAELens folder, or Goodfire .pt (checked against the store)")
    p.add_argument("--reference-dir", default="results/reference",
                   help="folder with concepts.tsv.gz, motifs.meme and genome.fa")
    p.add_argument("--out", default="results/features", help="output folder")
    p.add_argument("--codes", default=None,
                   help="the SAE's code store of --store (genosae encode-codes): every pass reads it shard by "
                        "shard; without it the SAE re-encodes the store on each pass")
    p.add_argument("--sae-replicate", default=None, help="second SAE (other seed) for the replicates column")
    p.add_argument("--seed", type=int, default=None, help="calibration split seed (default: config seed or 0)")
    p.add_argument("--baseline-tokens", type=int, default=None,
                   help="deprecated, ignored: the neuron/random-direction baselines stream over every token")
    p.add_argument("--max-tokens", type=int, default=None, help="use only the first N tokens (quick runs)")
    p.add_argument("--control-store", default=None,
                   help="activation store of the control model (same windows; genosae embed --model <control>)")
    p.add_argument("--control-sae", default=None, help="SAE trained on the control store")
    p.add_argument("--control-codes", default=None, help="the control SAE's code store of --control-store")
    p.add_argument("--control-out", default=None, help="folder for the control's catalogue (with --control-store)")
    p.add_argument("--no-logos", action="store_true", help="skip logo PNGs (faster)")
    p.add_argument("--max-logos", type=int, default=256,
                   help="logo PNGs for at most this many features (best concept F1 first; ~0.5 s each)")
    p.set_defaults(func=_features)

    p = sub.add_parser("encode-features", help="SAE feature activations of every token of a store (sparse)")
    p.add_argument("--store", required=True, help="activation store folder (genosae embed)")
    p.add_argument("--sae", required=True,
                   help="SAE: genosae or SAELens folder, or Goodfire .pt (checked against the store)")
    p.add_argument("--out", required=True, help="output folder (codes.npz, tokens.parquet, meta.json)")
    p.set_defaults(func=_encode_features)

    p = sub.add_parser("window-acts", help="SAE feature sums/maxima/active counts per window of a store "
                       "(streamed; what profiles and biomarkers need)")
    p.add_argument("--store", required=True, help="activation store folder (genosae embed)")
    p.add_argument("--sae", required=True,
                   help="SAE: genosae or SAELens folder, or Goodfire .pt (checked against the store)")
    p.add_argument("--threshold", type=float, default=0.0, help="activation counted as active above this")
    p.add_argument("--out", required=True, help="output folder (window_acts.npz, meta.json)")
    p.set_defaults(func=_window_acts)


def _need(path: Path, what: str) -> Path:
    if not path.exists():
        raise InputError(f"{what} not found; run `genosae prepare-reference` (or pass --reference-dir)", path=path)
    return path


def _features(args: argparse.Namespace) -> int:
    import pandas as pd

    from genosae.config import load_config
    from genosae.features.motifs import naming_params
    from genosae.features.pipeline import run_features
    from genosae.genome.motifs import read_motif_file
    from genosae.genome.reference import Reference
    from genosae.genome.windows import window_sequences
    from genosae.model.store import ActivationStore
    from genosae.sae.external import expectations_from_store
    from genosae.sae.io import load_sae

    config = load_config(args.config, check_files=False)
    fcfg = config.get("features", {})
    ref_dir = Path(args.reference_dir)
    concepts_path = _need(ref_dir / "concepts.tsv.gz", "concepts table")
    concepts = pd.read_csv(concepts_path, sep="\t")
    missing = {"chrom", "start", "end", "strand", "concept", "name"} - set(concepts.columns)
    if missing:
        raise InputError(f"missing column(s) {sorted(missing)}; rebuild with `genosae prepare-reference`",
                         path=concepts_path, record=1)
    motif_path = ref_dir / "motifs.meme"
    motifs = read_motif_file(motif_path) if motif_path.exists() else None
    reference = Reference.open(_need(ref_dir / "genome.fa", "reference FASTA"))
    store = ActivationStore(args.store)
    sae = load_sae(args.sae, **expectations_from_store(store))
    replicate = load_sae(args.sae_replicate, **expectations_from_store(store)) if args.sae_replicate else None
    if bool(args.control_store) != bool(args.control_sae):
        raise InputError("--control-store and --control-sae go together", record="--control-store")
    control_store = ActivationStore(args.control_store) if args.control_store else None
    control_sae = load_sae(args.control_sae, **expectations_from_store(control_store)) if args.control_sae else None
    gene_rows = concepts[concepts["concept"] == "gene"]
    if gene_rows.empty:
        gene_rows = concepts[concepts["concept"] == "CDS"]
    seed = args.seed if args.seed is not None else int(config.get("seed", 0))
    paths = run_features(
        store, sae, args.out, concepts=concepts, motifs=motifs,
        window_sequences=lambda w: window_sequences(w, reference), sae_replicate=replicate,
        genes=gene_rows[["chrom", "start", "end", "name"]] if len(gene_rows) else None,
        thresholds=fcfg.get("thresholds", (0.0, 0.15, 0.5, 0.6, 0.8)),
        min_f1=fcfg.get("min_f1_captured", 0.5), fdr=fcfg.get("fdr", 0.05),
        top_examples=fcfg.get("top_examples", 10), seed=seed, baseline_tokens=args.baseline_tokens,
        holdout_chroms=config.get("atlas", {}).get("holdout_chroms", []),
        max_tokens=args.max_tokens, make_logos=not args.no_logos, max_logos=args.max_logos,
        n_jobs=max(1, int(config.get("threads", 1))), config=config, naming=naming_params(fcfg),
        n_null=fcfg.get("motif_null_pseudofeatures", 1000), capture_min_sites=fcfg.get("motif_capture_min_sites", 10),
        control_store=control_store, control_sae=control_sae, control_out=args.control_out, codes=args.codes,
        control_codes=args.control_codes,
    )
    for name, path in paths.items():
        print(f"{name}\t{path}")
    return 0


def _encode_features(args: argparse.Namespace) -> int:
    from genosae.features.activations import feature_activations
    from genosae.model.store import ActivationStore
    from genosae.sae.external import expectations_from_store
    from genosae.sae.io import load_sae

    store = ActivationStore(args.store)
    acts = feature_activations(load_sae(args.sae, **expectations_from_store(store)), store)
    acts.save(args.out)
    print(f"{acts.n_tokens} tokens x {acts.n_features} features, {acts.codes.nnz} nonzero -> {args.out}")
    return 0


def _window_acts(args: argparse.Namespace) -> int:
    from genosae.features.activations import window_activations
    from genosae.model.store import ActivationStore
    from genosae.sae.external import expectations_from_store
    from genosae.sae.io import load_sae

    store = ActivationStore(args.store)
    wa = window_activations(load_sae(args.sae, **expectations_from_store(store)), store, threshold=args.threshold)
    wa.meta.update(sae=str(args.sae), store=str(args.store))
    wa.save(args.out)
    print(f"{wa.n_windows} windows x {len(wa.feature_names)} features "
          f"({int(wa.n_tokens.sum())} tokens) -> {args.out}")
    return 0
