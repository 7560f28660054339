"""Genome subcommands ``prepare-reference`` and ``windows``: argument parsing only.

The work is :func:`genosae.genome.prepare_reference`, :func:`genosae.genome.config_atlas_windows`
and :func:`genosae.genome.design_windows`.
"""

from __future__ import annotations

import argparse


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prepare-reference", help="genome, annotation, concepts and motif hits")
    p.add_argument("--config", required=True, help="YAML config")
    p.add_argument("--outdir", required=True, help="output folder (e.g. results/reference)")
    p.set_defaults(func=_prepare_reference)

    p = sub.add_parser("windows", help="windows table for the atlas or a design")
    p.add_argument("--config", required=True, help="YAML config")
    p.add_argument("--reference-dir", required=True, help="output of prepare-reference")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--atlas", action="store_true", help="genome-wide random windows (atlas section)")
    what.add_argument("--design", help="name of a design under 'designs'")
    p.add_argument("--out", required=True, help="windows table (.windows.tsv)")
    p.set_defaults(func=_windows)


def _prepare_reference(args: argparse.Namespace) -> int:
    from genosae.config import load_config
    from genosae.genome.prepare import prepare_reference

    summary = prepare_reference(load_config(args.config, check_files=False), args.outdir)
    print(f"prepare-reference: {summary['n_chroms']} chromosomes, {summary['genome_bp']:,} bp, "
          f"{summary['n_motifs']} motifs, {summary['n_motif_hits']:,} hits -> {args.outdir}")
    return 0


def _windows(args: argparse.Namespace) -> int:
    from genosae._io import write_table
    from genosae.config import load_config
    from genosae.genome.designs import design_windows
    from genosae.genome.windows import config_atlas_windows

    config = load_config(args.config, check_files=False)
    if args.atlas:
        windows = config_atlas_windows(config, args.reference_dir)
    else:
        windows = design_windows(config, args.design, args.reference_dir)
    write_table(windows, args.out)
    print(f"windows: {len(windows):,} windows -> {args.out}")
    return 0
