"""``genosae annotate``: per-base feature tracks, elements and a browser session for any sequence."""

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


def _annotate(args: argparse.Namespace) -> int:
    from genosae.tracks.annotate import annotate

    paths = annotate(args.config, outdir=args.outdir, region=args.region, bed=args.bed, fasta=args.fasta,
                     features=args.features, named=args.named, model=args.model, sae=args.sae,
                     catalog=args.catalog, device=args.device, window=args.window, stride=args.stride,
                     batch_size=args.batch_size, bedgraph=not args.no_bedgraph, progress=not args.no_progress)
    for name, path in paths.items():
        print(f"{name}\t{path}")
    return 0
