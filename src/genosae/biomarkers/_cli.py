"""Subcommands ``simulate``, ``profiles`` and ``biomarkers``: argument parsing only.

The work is :func:`genosae.biomarkers.simulate_design`, :func:`genosae.biomarkers.load_biomarker_inputs`,
:func:`genosae.biomarkers.design_profiles`, :func:`genosae.biomarkers.run_design` and
:func:`genosae.biomarkers.write_run`.
"""

from __future__ import annotations

import argparse


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("simulate", help="simulate a case/control cohort with a planted promoter motif")
    p.add_argument("--config", required=True, help="YAML config")
    p.add_argument("--design", required=True, help="cohort design name (its 'simulate' section)")
    p.add_argument("--reference-dir", default=None,
                   help="folder with the reference FASTA + GFF3 (default: the config's reference)")
    p.add_argument("--fasta", default=None, help="reference FASTA (overrides --reference-dir)")
    p.add_argument("--annotation", default=None, help="GFF3/GTF/BED (overrides --reference-dir)")
    p.add_argument("--mode", choices=["vcf", "fasta"], default="vcf", help="per-sample VCFs or FASTAs")
    p.add_argument("--out", required=True, help="output folder (samples.tsv, regions.bed, truth.tsv)")
    p.set_defaults(func=_simulate)

    for name, help_ in (("profiles", "per-region/sample feature profiles (profiles.h5ad)"),
                        ("biomarkers", "profiles + statistics + calibration + baselines + CSVs")):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--config", required=True, help="YAML config")
        p.add_argument("--design", required=True, help="design name under 'designs'")
        p.add_argument("--acts", required=True, nargs="+",
                       help="window activations (genosae window-acts) or token-level FeatureActs "
                       "folder(s) (genosae encode-features; several are concatenated in order)")
        p.add_argument("--windows", required=True, help="windows table the activations index (*.windows.tsv)")
        p.add_argument("--catalog", default=None, help="feature_catalog.csv")
        p.add_argument("--samples", default=None, help="cohort sample sheet (default: the design's)")
        p.add_argument("--reference", default=None,
                       help="FASTA for window sequences when the windows table has no 'sequence'")
        if name == "biomarkers":
            p.add_argument("--store", default=None, help="activation store (linear-probe baseline)")
            p.add_argument("--sae", default=None, help="SAE folder; with --store, cohort loci get "
                           "base-pair peaks (where cases and controls differ most)")
            p.add_argument("--motifs", default=None, help="MEME/JASPAR motif file (the prepared motifs.meme): "
                           "known-motif enrichment baseline (Fisher + logistic) beside the SAE features")
            p.add_argument("--out", required=True, help="output folder, e.g. results/biomarkers/NAME")
            p.set_defaults(func=_biomarkers)
        else:
            p.add_argument("--out", required=True, help="output .h5ad")
            p.set_defaults(func=_profiles)


def _simulate(args: argparse.Namespace) -> int:
    from genosae.biomarkers.simulate import simulate_design
    from genosae.config import load_config

    res = simulate_design(load_config(args.config, check_files=False), args.design, args.out,
                          fasta=args.fasta, annotation=args.annotation, reference_dir=args.reference_dir,
                          mode=args.mode)
    print(f"simulated {len(res.samples)} samples, {len(res.regions)} regions, "
          f"{len(res.truth)} planted ({res.motif}) -> {res.out_dir}")
    return 0


def _inputs(args: argparse.Namespace):
    from genosae.biomarkers.inputs import load_biomarker_inputs
    from genosae.config import load_config

    return load_biomarker_inputs(load_config(args.config, check_files=False), args.design, acts=args.acts,
                                 windows=args.windows, catalog=args.catalog, samples=args.samples,
                                 reference=args.reference, motifs=getattr(args, "motifs", None))


def _profiles(args: argparse.Namespace) -> int:
    from genosae.biomarkers.pipeline import design_profiles
    from genosae.biomarkers.profiles import write_profiles

    inputs = _inputs(args)
    adata = design_profiles(inputs)
    write_profiles(adata, args.out)
    print(f"profiles: {adata.n_obs} {inputs.design.unit} × {adata.n_vars} features -> {args.out}")
    return 0


def _biomarkers(args: argparse.Namespace) -> int:
    from genosae.biomarkers.pipeline import run_design, write_run

    inputs = _inputs(args)
    run = run_design(inputs, store=args.store, sae=args.sae)
    paths = write_run(run, args.out)
    s = run.design_summary
    print(f"biomarkers: {s['n_case']} case vs {s['n_control']} control {inputs.design.unit}s, "
          f"{s['n_significant']} features with q ≤ {s['alpha']} -> {paths['biomarkers']}")
    return 0
