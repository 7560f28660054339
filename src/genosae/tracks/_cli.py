"""``genosae annotate`` (feature tracks, elements, a browser session for any sequence) and
``genosae variant-effect`` (variants scored by SAE features and by the LM)."""

from __future__ import annotations

import argparse


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("annotate", help="feature tracks (bigWig/bedGraph), elements (BED) and an IGV "
                                        "session for a region, a BED or a FASTA")
    p.add_argument("--config", required=True, help="YAML config (model, windows, outdir, reference)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--region", help="chrom:start-end on the reference (0-based, half-open)")
    what.add_argument("--bed", help="BED of reference regions (overlapping ones are merged)")
    what.add_argument("--fasta", help="FASTA; records named chrom:start-end keep those coordinates")
    p.add_argument("--outdir", required=True, help="output folder")
    pick = p.add_mutually_exclusive_group()
    pick.add_argument("--features", help="comma-separated features, e.g. f12,f80")
    pick.add_argument("--named", action="store_true",
                      help="every feature the catalogue labels (the default without --features)")
    p.add_argument("--model", default=None, help="model folder or hub id (default: config model.path)")
    p.add_argument("--sae", default=None, help="SAE folder or Goodfire .pt (default: <outdir>/sae/seed0)")
    p.add_argument("--catalog", default=None,
                   help="feature catalogue (default: <outdir>/features/feature_catalog.csv)")
    p.add_argument("--device", default=None, help="torch device (default: config model.device)")
    p.add_argument("--window", type=int, default=None, help="window length in bp (default: windows.size)")
    p.add_argument("--stride", type=int, default=None, help="step between windows (default: windows.stride)")
    p.add_argument("--batch-size", type=int, default=None, help="windows per forward pass (default: model.batch_size)")
    p.add_argument("--no-bedgraph", action="store_true", help="bigWig only")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_annotate)

    v = sub.add_parser("variant-effect", help="score a VCF's SNVs and small indels by the change of every SAE "
                                              "feature (ref vs alt, both strands) and by the LM's log-likelihood ratio")
    v.add_argument("--config", required=True, help="YAML config (model, outdir, reference)")
    v.add_argument("--vcf", required=True, help="VCF/BCF on the config's reference")
    v.add_argument("--outdir", required=True, help="output folder")
    v.add_argument("--model", default=None, help="model folder or hub id (default: config model.path)")
    v.add_argument("--sae", default=None, help="SAE folder or Goodfire .pt (default: <outdir>/sae/seed0)")
    v.add_argument("--catalog", default=None,
                   help="feature catalogue (default: <outdir>/features/feature_catalog.csv)")
    v.add_argument("--flank", type=int, default=256, help="bases each side of the allele in the window (256)")
    v.add_argument("--llr-flank", type=int, default=0,
                   help="bases each side of the allele scored in a masked LM's pseudo-likelihood (0)")
    v.add_argument("--top", type=int, default=5, help="ranked features per variant in top_features.csv (5)")
    v.add_argument("--track-features", default=None,
                   help="features with delta tracks, e.g. f12,f80 (default: the --n-track most changed)")
    v.add_argument("--n-track", type=int, default=10, help="delta tracks of this many most-changed features (10)")
    v.add_argument("--device", default=None, help="torch device (default: config model.device)")
    v.add_argument("--batch-size", type=int, default=8, help="variants per forward pass (8)")
    v.add_argument("--no-progress", action="store_true")
    v.set_defaults(func=_variant_effect)


def _annotate(args: argparse.Namespace) -> int:
    from genosae.tracks.annotate import annotate

    paths = annotate(args.config, outdir=args.outdir, region=args.region, bed=args.bed, fasta=args.fasta,
                     features=args.features, named=args.named, model=args.model, sae=args.sae,
                     catalog=args.catalog, device=args.device, window=args.window, stride=args.stride,
                     batch_size=args.batch_size, bedgraph=not args.no_bedgraph, progress=not args.no_progress)
    for name, path in paths.items():
        print(f"{name}\t{path}")
    return 0


def _variant_effect(args: argparse.Namespace) -> int:
    from genosae.tracks.variant_effect import variant_effect

    paths = variant_effect(args.config, vcf=args.vcf, outdir=args.outdir, model=args.model, sae=args.sae,
                           catalog=args.catalog, flank=args.flank, llr_flank=args.llr_flank, top=args.top,
                           track_features=args.track_features, n_track=args.n_track, device=args.device,
                           batch_size=args.batch_size, progress=not args.no_progress)
    for name, path in paths.items():
        print(f"{name}\t{path}")
    return 0
