"""Core subcommands: ``validate`` and ``train-lm``."""

from __future__ import annotations

import argparse
import json


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("validate", help="check the config and every input it names")
    p.add_argument("--config", required=True, help="YAML config (e.g. config/config.yaml)")
    p.set_defaults(func=_validate)

    p = sub.add_parser("train-lm", help="train the default DNA language model on the bundled yeast genome")
    p.add_argument("--fasta", default=None, help="training FASTA (default: bundled yeast genome)")
    p.add_argument("--output-dir", required=True)
    p.add_argument("--holdout-chrom", default="chrXVI")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--max-minutes", type=float, default=85.0)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--hidden-size", type=int, default=192)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_train_lm)

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

    p = sub.add_parser("fetch-model", help="download a hub model on a login node (compute nodes run offline)")
    p.add_argument("model", help="hub id, e.g. InstaDeepAI/nucleotide-transformer-v2-50m-multi-species")
    p.add_argument("--revision", default=None, help="commit, tag or branch to pin")
    p.add_argument("--local-dir", default=None, help="copy into this folder (set model.path to it)")
    p.set_defaults(func=_fetch_model)

    p = sub.add_parser("summarize", help="headline numbers of a finished run as Markdown")
    p.add_argument("--results", default="results", help="the workflow's outdir")
    p.set_defaults(func=_summarize)

    p = sub.add_parser("evaluate-lm", help="held-out masked-base accuracy and bits/base vs the k-mer baseline")
    p.add_argument("--model", required=True)
    p.add_argument("--fasta", default=None)
    p.add_argument("--holdout-chrom", default="chrXVI")
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--end", type=int, default=204_800)
    p.add_argument("--output", default=None)
    p.set_defaults(func=_evaluate_lm)


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


def _fetch_model(args: argparse.Namespace) -> int:
    from genosae.model.adapter import fetch_model

    print(fetch_model(args.model, revision=args.revision, local_dir=args.local_dir))
    return 0


def _summarize(args: argparse.Namespace) -> int:
    from genosae.summary import summarize_run

    print(summarize_run(args.results))
    return 0


def _validate(args: argparse.Namespace) -> int:
    from genosae.validate import validate_inputs

    summary = validate_inputs(args.config)
    print(summary)
    return 0


def _fasta(fasta: str | None) -> str:
    from genosae.genome.reference import reference_files

    return str(reference_files(fasta=fasta).require(annotation=False).fasta)


def _train_lm(args: argparse.Namespace) -> int:
    from genosae.model.train_lm import main_train

    main_train(dict(fasta=_fasta(args.fasta), output_dir=args.output_dir, holdout_chrom=args.holdout_chrom,
                    steps=args.steps, max_minutes=args.max_minutes, batch_size=args.batch_size,
                    threads=args.threads, seed=args.seed,
                    model={"hidden_size": args.hidden_size, "num_hidden_layers": args.layers, "kernel_size": 9}))
    return 0


def _evaluate_lm(args: argparse.Namespace) -> int:
    from genosae.model.train_lm import evaluate_lm

    res = evaluate_lm(args.model, _fasta(args.fasta), holdout_chrom=args.holdout_chrom,
                      start=args.start, end=args.end, output=args.output)
    print(json.dumps(res, indent=2))
    return 0
