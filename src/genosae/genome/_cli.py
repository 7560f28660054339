"""Genome subcommands: ``prepare-reference`` and ``windows`` (thin wrappers over the API)."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd

from genosae._io import write_json, write_table
from genosae.errors import InputError

log = logging.getLogger(__name__)


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


def read_concepts(path: str | Path) -> pd.DataFrame:
    """Read ``concepts.tsv.gz`` written by ``prepare-reference``."""
    return pd.read_csv(path, sep="\t", dtype={"chrom": str, "concept": str, "name": str},
                       keep_default_na=False)


def load_motifs(config: dict):
    from genosae.genome.motifs import load_jaspar, read_motif_file

    m = config["motifs"]
    if m["source"] == "file":
        return read_motif_file(m["file"])
    return load_jaspar(m["jaspar_release"], m["collection"], m["tax_group"])


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.symlink(src.resolve(), tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def prepare_reference(config: dict, outdir: str | Path) -> dict:
    """Write genome.fa(+.fai), annotation.gff3, chrom_sizes.tsv, concepts.tsv.gz, motifs.meme,
    motif_hits.tsv.gz and summary.json into ``outdir``; return the summary."""
    from genosae.genome.annotation import read_annotation, write_gff3
    from genosae.genome.concepts import build_concepts
    from genosae.genome.motifs import motif_concepts, scan_motifs, write_meme
    from genosae.genome.reference import Reference, reference_files

    outdir = Path(outdir)
    t0 = time.time()
    fasta, annot_path = reference_files(config).require()
    reference = Reference.open(fasta, config["reference"].get("chrom_aliases") or {})
    annotation = read_annotation(annot_path, reference)
    _link(fasta, outdir / "genome.fa")
    fai = Path(f"{fasta}.fai")
    if fai.exists():
        _link(fai, outdir / "genome.fa.fai")
    for extra in (".gzi",):
        if Path(f"{fasta}{extra}").exists():
            _link(Path(f"{fasta}{extra}"), outdir / f"genome.fa{extra}")
    write_gff3(annotation, outdir / "annotation.gff3", reference.chrom_sizes)
    write_table(reference.chrom_sizes_frame(), outdir / "chrom_sizes.tsv", header=False)
    concepts = build_concepts(annotation, reference, **config["concepts"])
    motifs = load_motifs(config)
    write_meme(motifs, outdir / "motifs.meme")
    t1 = time.time()
    hits = scan_motifs(motifs, reference, threshold=config["motifs"]["pvalue"])
    scan_s = time.time() - t1
    write_table(hits, outdir / "motif_hits.tsv.gz")
    all_concepts = pd.concat([concepts, motif_concepts(hits)], ignore_index=True)
    order = {c: i for i, c in enumerate(reference.chroms)}
    all_concepts = (all_concepts.assign(_o=all_concepts["chrom"].map(order))
                    .sort_values(["_o", "start", "end", "concept"], kind="stable")
                    .drop(columns="_o").reset_index(drop=True))
    write_table(all_concepts, outdir / "concepts.tsv.gz")
    summary = {
        "fasta": str(fasta), "annotation": str(annot_path), "n_chroms": len(reference.chrom_sizes),
        "genome_bp": int(sum(reference.chrom_sizes.values())), "n_features": len(annotation),
        "n_motifs": len(motifs), "n_motif_hits": len(hits), "motif_scan_s": round(scan_s, 2),
        "concept_counts": all_concepts["concept"].value_counts().sort_index().astype(int).to_dict(),
        "params": {"concepts": config["concepts"], "motifs": config["motifs"]},
        "elapsed_s": round(time.time() - t0, 2),
    }
    write_json(summary, outdir / "summary.json")
    return summary


def design_windows(config: dict, name: str, reference_dir: str | Path) -> pd.DataFrame:
    """Windows of the design ``name`` (region, sequence or cohort) with group/sample columns."""
    from genosae.genome.annotation import read_annotation
    from genosae.genome.designs import (
        read_region_design,
        read_samples,
        read_sequence_design,
        region_design_from_genes,
    )
    from genosae.genome.reference import Reference
    from genosae.genome.windows import cohort_windows, make_windows

    designs = config.get("designs", {})
    if name not in designs:
        raise InputError(f"no design '{name}' in the config (designs: {', '.join(designs) or 'none'})",
                         record="designs")
    d = designs[name]
    size, stride = config["windows"]["size"], config["windows"]["stride"]
    reference_dir = Path(reference_dir)
    reference = Reference.open(reference_dir / "genome.fa", config["reference"].get("chrom_aliases") or {})
    if d["kind"] == "region":
        if d.get("regions"):
            regions = read_region_design(d["regions"], reference)
        else:
            annotation = read_annotation(reference_dir / "annotation.gff3", reference)
            c = config["concepts"]
            regions = region_design_from_genes(
                annotation, d["gene_set"], region_type=d["region_type"], case_label=d["case_label"],
                control_label=d["control_label"], max_controls=d["max_controls"], seed=config["seed"],
                upstream=c["promoter_upstream"], downstream=c["promoter_downstream"],
                chrom_sizes=reference.chrom_sizes)
        return make_windows(regions, size=size, stride=stride, chrom_sizes=reference.chrom_sizes)
    if d["kind"] == "sequence":
        seqs = read_sequence_design(d.get("sequences"), d.get("fasta_by_group"))
        return sequence_windows(seqs, size=size, stride=stride)
    if not d.get("samples") or not d.get("regions"):
        raise InputError("a cohort design needs 'samples' and 'regions' (run `genosae simulate` first "
                         "when they are simulated)", record=f"designs.{name}")
    samples = read_samples(d["samples"])
    bed = read_annotation(d["regions"], reference, fmt="bed")
    regions = pd.DataFrame({"region_id": np.where(bed["name"] != "", bed["name"],
                                                  bed["chrom"] + ":" + bed["start"].astype(str) + "-" +
                                                  bed["end"].astype(str)),
                            "chrom": bed["chrom"], "start": bed["start"], "end": bed["end"],
                            "strand": bed["strand"].replace(".", "+")})
    gff = reference_dir / "annotation.gff3"
    if gff.exists():  # gene names for the reports when region ids are gene ids (genosae simulate)
        genes = read_annotation(gff, reference)
        genes = genes[genes["feature"] == "gene"].drop_duplicates("gene_id")
        names = genes.set_index(genes["gene_id"].astype(str))["name"].astype(str)
        regions["name"] = regions["region_id"].map(names).replace("", np.nan).fillna(regions["region_id"])
    return cohort_windows(reference, samples, regions, size, stride)


def sequence_windows(seqs: pd.DataFrame, *, size: int, stride: int) -> pd.DataFrame:
    """Tile the sequences of a sequence design; each window keeps its substring in ``sequence``."""
    from genosae.genome.windows import make_windows

    lengths = seqs["sequence"].str.len()
    regions = pd.DataFrame({"region_id": seqs["region_id"], "chrom": seqs["region_id"], "start": 0,
                            "end": lengths, "strand": "+", "group": seqs["group"]})
    w = make_windows(regions, size=size, stride=stride,
                     chrom_sizes=dict(zip(seqs["region_id"], lengths)))
    full = dict(zip(seqs["region_id"], seqs["sequence"]))
    w["sequence"] = [full[r][s:e] for r, s, e in zip(w["region_id"], w["start"], w["end"])]
    known = seqs.set_index("region_id")
    off = known.loc[w["region_id"], "start"].to_numpy()
    has = pd.notna(off)
    if has.any():
        chrom = known.loc[w["region_id"], "chrom"].to_numpy()
        base = np.where(has, off, 0).astype(np.int64)
        w.loc[has, "chrom"] = chrom[has]
        w["start"] = np.where(has, w["start"] + base, w["start"])
        w["end"] = np.where(has, w["end"] + base, w["end"])
    return w


def _prepare_reference(args: argparse.Namespace) -> int:
    from genosae.config import load_config

    config = load_config(args.config, check_files=False)
    summary = prepare_reference(config, args.outdir)
    print(f"prepare-reference: {summary['n_chroms']} chromosomes, {summary['genome_bp']:,} bp, "
          f"{summary['n_motifs']} motifs, {summary['n_motif_hits']:,} hits -> {args.outdir}")
    return 0


def _windows(args: argparse.Namespace) -> int:
    from genosae.config import load_config
    from genosae.genome.windows import atlas_windows

    config = load_config(args.config, check_files=False)
    if args.atlas:
        sizes = pd.read_csv(Path(args.reference_dir) / "chrom_sizes.tsv", sep="\t", header=None,
                            names=["chrom", "length"], dtype={"chrom": str})
        a = config["atlas"]
        windows = atlas_windows(dict(zip(sizes["chrom"], sizes["length"])), n_windows=a["n_windows"],
                                size=config["windows"]["size"], seed=a["seed"])
        windows["split"] = np.where(windows["chrom"].isin(a["holdout_chroms"]), "holdout", "train")
    else:
        windows = design_windows(config, args.design, args.reference_dir)
    write_table(windows, args.out)
    print(f"windows: {len(windows):,} windows -> {args.out}")
    return 0
