"""The reference step: genome, annotation, concepts and motif hits of a config, in one folder.

:func:`prepare_reference` writes what every later step reads (docs/architecture.md):
``genome.fa`` (+ ``.fai``/``.gzi``, linked to the source), ``annotation.gff3`` (normalised),
``chrom_sizes.tsv``, ``concepts.tsv.gz`` (annotation + sequence concepts + FIMO motif sites),
``motifs.meme``, ``motif_hits.tsv.gz`` and ``summary.json``.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import pandas as pd

from genosae._io import write_json, write_table
from genosae.genome.annotation import read_annotation, write_gff3
from genosae.genome.concepts import build_concepts
from genosae.genome.motifs import load_motifs, motif_concepts, scan_motifs, write_meme
from genosae.genome.reference import Reference, reference_files


def _link(src: Path, dst: Path) -> None:
    """``dst`` → ``src`` as a symlink (a copy where links are refused), replaced atomically."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.symlink(src.resolve(), tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def prepare_reference(config: dict[str, Any], outdir: str | Path) -> dict[str, Any]:
    """Build the reference folder of ``config`` (its ``reference``, ``concepts`` and ``motifs``).

    Returns
    -------
    The summary written to ``summary.json``: ``fasta``, ``annotation``, ``n_chroms``,
    ``genome_bp``, ``n_features``, ``n_motifs``, ``n_motif_hits``, ``motif_scan_s``,
    ``concept_counts``, ``params``, ``elapsed_s``.
    """
    outdir = Path(outdir)
    t0 = time.time()
    fasta, annot_path = reference_files(config).require()
    reference = Reference.open(fasta, config["reference"].get("chrom_aliases") or {})
    annotation = read_annotation(annot_path, reference)
    _link(fasta, outdir / "genome.fa")
    for extra in (".fai", ".gzi"):
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
