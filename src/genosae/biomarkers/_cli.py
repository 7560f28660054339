"""Subcommands ``simulate``, ``profiles`` and ``biomarkers`` (thin wrappers over the API)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import pandas as pd

from genosae.errors import InputError

log = logging.getLogger(__name__)


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
            p.add_argument("--out", required=True, help="output folder, e.g. results/biomarkers/NAME")
            p.set_defaults(func=_biomarkers)
        else:
            p.add_argument("--out", required=True, help="output .h5ad")
            p.set_defaults(func=_profiles)


def _config(path: str) -> dict[str, Any]:
    from genosae.config import load_config

    return load_config(path, check_files=False)


def _design(config: dict[str, Any], name: str, path: str) -> dict[str, Any]:
    designs = config.get("designs", {})
    if name not in designs:
        raise InputError(f"no design {name!r}; defined: {sorted(designs)}", path=path,
                         record=f"key 'designs.{name}'")
    return {**designs[name], "name": name}


def _simulate(args: argparse.Namespace) -> int:
    from genosae.biomarkers.simulate import simulate_cohort

    config = _config(args.config)
    design = _design(config, args.design, args.config)
    sim = design.get("simulate")
    if not sim:
        raise InputError("design has no 'simulate' section", path=args.config,
                         record=f"key 'designs.{args.design}.simulate'")
    from genosae.genome.reference import reference_files

    fasta, ann = reference_files(config, fasta=args.fasta, annotation=args.annotation,
                                 reference_dir=args.reference_dir).require()
    res = simulate_cohort(
        fasta, ann, args.out, n_cases=sim["n_cases"], n_controls=sim["n_controls"],
        n_genes=sim["n_genes"], motif=sim["motif"], fraction_cases=sim["fraction_cases"],
        background_snv_rate=sim["background_snv_rate"], seed=config.get("seed", 0),
        promoter_upstream=config["concepts"]["promoter_upstream"], mode=args.mode,
        case_label=design.get("case_label", "case"), control_label=design.get("control_label", "control"),
    )
    print(f"simulated {len(res.samples)} samples, {len(res.regions)} regions, "
          f"{len(res.truth)} planted ({res.motif}) -> {res.out_dir}")
    return 0


def _load_inputs(args: argparse.Namespace) -> dict[str, Any]:
    import scipy.sparse as sp

    from genosae._io import read_json
    from genosae.features.activations import WINDOW_FORMAT, FeatureActs, WindowActs

    config = _config(args.config)
    design = _design(config, args.design, args.config)
    for folder in args.acts:
        if not (Path(folder) / "meta.json").is_file():
            raise InputError("not an activations folder (no meta.json); make one with `genosae "
                             "window-acts` (or `genosae encode-features`)", path=folder)
    fmt = read_json(Path(args.acts[0]) / "meta.json").get("format")
    if fmt == WINDOW_FORMAT:
        if len(args.acts) > 1:
            raise InputError("give one window-activations folder (one per design)", path=args.acts[1])
        wa = WindowActs.load(args.acts[0])
        codes, tokens, names = wa, None, wa.feature_names
    else:
        parts = [FeatureActs.load(p) for p in args.acts]
        names = parts[0].feature_names
        for p, fa in zip(args.acts[1:], parts[1:]):
            if fa.feature_names != names:
                raise InputError("feature names differ from the first --acts folder", path=p)
        codes = sp.vstack([fa.codes for fa in parts]).tocsr()
        tokens = pd.concat([fa.tokens for fa in parts], ignore_index=True)
    wpath = Path(args.windows)
    if not wpath.exists():
        raise InputError("windows table not found", path=wpath)
    windows = pd.read_csv(wpath, sep="\t", dtype={"window_id": str, "region_id": str, "sample_id": str})
    sequences = None
    if "sequence" not in windows.columns and args.reference:
        from genosae.genome.reference import Reference

        ref = Reference.open(args.reference)
        sequences = [ref.fetch(r.chrom, int(r.start), int(r.end), getattr(r, "strand", "+"))
                     for r in windows.itertuples()]
    catalog = None
    if args.catalog:
        if not Path(args.catalog).exists():
            raise InputError("feature catalogue not found", path=args.catalog)
        catalog = pd.read_csv(args.catalog)
    obs = None
    samples = args.samples or design.get("samples")
    if design.get("kind") == "cohort" and samples:
        if not Path(samples).exists():
            raise InputError("sample sheet not found", path=samples)
        obs = pd.read_csv(samples, sep="\t", dtype={"sample_id": str})
        if "sample_id" not in obs.columns:
            raise InputError("sample sheet lacks 'sample_id'", path=samples, record=1)
        obs = obs.set_index("sample_id")
        if "condition" in obs.columns and not ({"condition", "group"} & set(windows.columns)):
            windows = windows.assign(condition=windows["sample_id"].map(obs["condition"]))
    variants = None
    if obs is not None and "vcf" in obs.columns and args.reference:  # indels too, straight from the VCFs
        from genosae.biomarkers.loci import vcf_locus_variants
        from genosae.genome.reference import Reference

        regions = (windows.assign(region_id=windows["region_id"].astype(str))
                   .groupby("region_id", sort=False).agg(chrom=("chrom", "first"), start=("start", "min"),
                                                         end=("end", "max")).reset_index())
        from genosae.genome.designs import read_samples

        sheet = read_samples(samples)  # VCF paths resolved as the windows step resolved them
        sheet = sheet[sheet["sample_id"].astype(str).isin(set(windows["sample_id"].astype(str)))]
        variants = vcf_locus_variants(sheet, regions, Reference.open(args.reference),
                                      case=design.get("case_label", "case"),
                                      control=design.get("control_label", "control"))
    return dict(config=config, design=design, codes=codes, tokens=tokens, windows=windows,
                names=names, catalog=catalog, obs=obs, sequences=sequences, variants=variants)


def _profiles(args: argparse.Namespace) -> int:
    from genosae.biomarkers.profiles import region_profiles, write_profiles

    d = _load_inputs(args)
    unit = "sample_id" if d["design"].get("kind") == "cohort" else "region_id"
    adata = region_profiles(d["codes"], d["tokens"], d["windows"], unit=unit, obs=d["obs"],
                            catalog=d["catalog"], sequences=d["sequences"], config=d["config"],
                            feature_names=d["names"])
    write_profiles(adata, args.out)
    print(f"profiles: {adata.n_obs} {unit} × {adata.n_vars} features -> {args.out}")
    return 0


def _biomarkers(args: argparse.Namespace) -> int:
    from genosae.biomarkers.baselines import mean_embeddings
    from genosae.biomarkers.pipeline import run_biomarkers, write_run

    d = _load_inputs(args)
    unit = "sample_id" if d["design"].get("kind") == "cohort" else "region_id"
    emb = mean_embeddings(args.store, unit) if args.store else None
    sae = store = None
    if args.sae and args.store and d["design"].get("kind") == "cohort":
        from genosae.model.store import ActivationStore
        from genosae.sae.io import load_sae

        sae, store = load_sae(args.sae), ActivationStore(args.store)
    run = run_biomarkers(d["codes"], d["tokens"], d["windows"], design=d["design"],
                         params=d["config"]["biomarkers"], feature_names=d["names"],
                         catalog=d["catalog"], obs=d["obs"], sequences=d["sequences"],
                         embeddings=emb, variants=d["variants"], sae=sae, store=store,
                         config=d["config"],
                         seed=d["config"].get("seed", 0))
    paths = write_run(run, args.out)
    s = run.design_summary
    print(f"biomarkers: {s['n_case']} case vs {s['n_control']} control {unit}s, "
          f"{s['n_significant']} features with q ≤ {s['alpha']} -> {paths['biomarkers']}")
    return 0
