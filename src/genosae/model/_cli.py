"""Model subcommands: ``embed`` (windows -> activation store), ``merge-store``, ``control-model``,
``fetch-model`` and the default model's ``train-lm`` / ``evaluate-lm``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from genosae.errors import InputError


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("embed", help="write a window set's hidden states to an activation store")
    p.add_argument("--config", required=True, help="YAML config (model and embed sections)")
    p.add_argument("--windows", required=True, help="windows table (*.windows.tsv)")
    p.add_argument("--reference-dir", required=True, help="prepared reference folder (holds genome.fa)")
    p.add_argument("--out", required=True, help="activation store folder (resumed if present)")
    p.add_argument("--part", default=None, help="i/n: write only part i (0-based) of n, for parallel jobs")
    p.add_argument("--model", default=None,
                   help="model folder to embed with instead of the config's model.path (e.g. the control model)")
    p.add_argument("--windows-per-shard", type=int, default=64)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_embed)

    p = sub.add_parser("merge-store", help="merge the activation stores of parallel `embed --part` jobs")
    p.add_argument("--parts", nargs="+", required=True, help="part store folders")
    p.add_argument("--out", required=True)
    p.set_defaults(func=_merge)

    p = sub.add_parser("control-model", help="save a randomly initialised copy of the config's model (the "
                                             "untrained-architecture control)")
    p.add_argument("--config", required=True, help="YAML config (model section)")
    p.add_argument("--out", required=True, help="folder for the control model")
    p.add_argument("--seed", type=int, default=None, help="initialisation seed (default: control_model.seed)")
    p.set_defaults(func=_control_model)

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
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (default 0.002)")
    p.add_argument("--kernel-size", type=int, default=9, help="convolution width of the blocks (odd; default 9)")
    p.add_argument("--first-kernel-size", type=int, default=None,
                   help="convolution width of the first block only (odd; e.g. 15, motif-long)")
    p.add_argument("--mask-rate", type=float, default=0.15, help="fraction of bases masked (default 0.15)")
    p.add_argument("--mask-span", type=int, nargs=2, default=(1, 1), metavar=("LO", "HI"),
                   help="mask contiguous spans of LO..HI bases (uniform lengths; default 1 1 = BERT masking)")
    p.add_argument("--regulatory-fraction", type=float, default=0.0,
                   help="share of each batch drawn around the coding genes' regulatory flanks (0..1)")
    p.add_argument("--regulatory-upstream", type=int, default=1000,
                   help="bp upstream of each coding gene's start in its regulatory flanks")
    p.add_argument("--regulatory-downstream", type=int, default=300,
                   help="bp downstream of each coding gene's end in its regulatory flanks")
    p.add_argument("--annotation", default=None,
                   help="GFF3/GTF for the regulatory flanks and the promoter evaluation (default: the one "
                        "beside the FASTA; the bundled yeast annotation for the bundled genome)")
    p.set_defaults(func=_train_lm)

    p = sub.add_parser("evaluate-lm", help="held-out masked-base accuracy and bits/base vs the k-mer baseline")
    p.add_argument("--model", required=True)
    p.add_argument("--fasta", default=None)
    p.add_argument("--holdout-chrom", default="chrXVI")
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--end", type=int, default=204_800)
    p.add_argument("--annotation", default=None,
                   help="GFF3/GTF for the held-out promoter evaluation (default: the one beside the FASTA)")
    p.add_argument("--output", default=None)
    p.set_defaults(func=_evaluate_lm)

    p = sub.add_parser("fetch-model", help="download a hub model on a login node (compute nodes run offline)")
    p.add_argument("model", help="hub id, e.g. InstaDeepAI/nucleotide-transformer-v2-50m-multi-species")
    p.add_argument("--revision", default=None, help="commit, tag or branch to pin")
    p.add_argument("--local-dir", default=None, help="copy into this folder (set model.path to it)")
    p.set_defaults(func=_fetch_model)


def parse_part(text: str | None) -> tuple[int, int] | None:
    """``"1/4"`` -> ``(1, 4)``."""
    if text is None:
        return None
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise InputError(f"--part must look like i/n (e.g. 0/2), got {text!r}", record="--part") from None
    if not (n >= 1 and 0 <= i < n):
        raise InputError(f"--part {text}: need 0 <= i < n", record="--part")
    return i, n


def _sequence_source(reference_dir: Path, config: dict):
    fasta = reference_dir / "genome.fa"
    if not fasta.exists():
        raise InputError("no genome.fa in the reference folder; run `genosae prepare-reference` first",
                         path=reference_dir)
    try:
        from genosae.genome.reference import Reference
        from genosae.genome.windows import window_sequences
    except ImportError:
        from genosae.model.embed import fasta_sequences

        return fasta_sequences(fasta)
    ref = Reference.open(fasta, (config.get("reference") or {}).get("chrom_aliases") or {})
    return lambda win: window_sequences(win, ref)


def _embed(args: argparse.Namespace) -> int:
    from genosae.config import load_config
    from genosae.model.adapter import load_model_from_config
    from genosae.model.embed import embed_windows
    from genosae.model.store import read_windows_table

    config = load_config(args.config, check_files=False)
    m, e = config["model"], config["embed"]
    if not Path(args.windows).is_file():
        raise InputError("windows table not found", path=args.windows)
    windows = read_windows_table(args.windows)
    if args.model and not Path(args.model).is_dir():
        raise InputError("--model must be a model folder", path=args.model)
    adapter = load_model_from_config(m, path=args.model or None)
    try:
        store = embed_windows(adapter, windows, _sequence_source(Path(args.reference_dir), config), args.out,
                              batch_size=m["batch_size"], windows_per_shard=args.windows_per_shard,
                              part=parse_part(args.part), storage_dtype=e["storage_dtype"],
                              progress=not args.no_progress, reverse_complement=m["reverse_complement"])
    except InputError as err:
        if err.path is None and str(err.record).startswith(("window", "header")):
            raise InputError(err.message, path=args.windows, record=err.record) from None
        raise
    print(f"{store.path}: {store.n_tokens} tokens x {store.d_model} (layer {store.layer}), "
          f"{len(store.shards)} shards")
    return 0


def _merge(args: argparse.Namespace) -> int:
    from genosae.model.store import merge_stores

    store = merge_stores(args.parts, args.out)
    print(f"{store.path}: {store.n_tokens} tokens from {len(args.parts)} parts")
    return 0


def _control_model(args: argparse.Namespace) -> int:
    from genosae.config import load_config
    from genosae.model.control import random_init_model

    config = load_config(args.config, check_files=False)
    m = config["model"]
    seed = config["control_model"]["seed"] if args.seed is None else args.seed
    out = random_init_model(m["path"], args.out, seed=seed, revision=m["revision"],
                            local_files_only=m["local_files_only"], trust_remote_code=m["trust_remote_code"])
    print(f"{out}: randomly initialised {m['path']} (seed {seed})")
    return 0


def _fetch_model(args: argparse.Namespace) -> int:
    from genosae.model.adapter import fetch_model

    print(fetch_model(args.model, revision=args.revision, local_dir=args.local_dir))
    return 0


def _fasta(fasta: str | None) -> str:
    from genosae.genome.reference import reference_files

    return str(reference_files(fasta=fasta).require(annotation=False).fasta)


def _train_lm(args: argparse.Namespace) -> int:
    from genosae.model.train_lm import main_train

    model = {"hidden_size": args.hidden_size, "num_hidden_layers": args.layers, "kernel_size": args.kernel_size}
    if args.first_kernel_size is not None:
        model["first_kernel_size"] = args.first_kernel_size
    if args.annotation is not None and not Path(args.annotation).is_file():
        raise InputError("annotation file not found; fix --annotation", path=args.annotation)
    main_train(dict(fasta=_fasta(args.fasta), output_dir=args.output_dir, holdout_chrom=args.holdout_chrom,
                    steps=args.steps, max_minutes=args.max_minutes, batch_size=args.batch_size,
                    threads=args.threads, seed=args.seed, lr=args.lr, mask_rate=args.mask_rate,
                    mask_span=tuple(args.mask_span), regulatory_fraction=args.regulatory_fraction,
                    regulatory_upstream=args.regulatory_upstream,
                    regulatory_downstream=args.regulatory_downstream, annotation=args.annotation,
                    model=model))
    return 0


def _evaluate_lm(args: argparse.Namespace) -> int:
    from genosae.model.train_lm import evaluate_lm

    res = evaluate_lm(args.model, _fasta(args.fasta), holdout_chrom=args.holdout_chrom,
                      start=args.start, end=args.end, output=args.output, annotation=args.annotation)
    print(json.dumps(res, indent=2))
    return 0
