"""``genosae validate``: open every input the config names and report what was found."""

from __future__ import annotations

from pathlib import Path

from genosae.errors import InputError


def _produced(value: str | None, outdir: str) -> bool:
    return value is not None and str(value).startswith(outdir) and not Path(value).exists()


def validate_inputs(config_path: str | Path) -> str:
    """Validate the config and open each input (FASTA, annotation, motifs, gene sets, sample sheets
    and their VCF/FASTA files, region and sequence tables).

    Returns
    -------
    A short human-readable summary. Raises :class:`InputError` on the first problem.
    """
    from genosae.config import load_config
    from genosae.genome.annotation import read_annotation
    from genosae.genome.designs import (
        CohortDesign,
        RegionDesign,
        SequenceDesign,
        design_from_config,
        read_gene_set,
        read_region_design,
        read_samples,
        read_sequence_design,
    )
    from genosae.genome.genes import coding_genes, match_genes
    from genosae.genome.motifs import load_motifs
    from genosae.genome.reference import Reference, reference_files
    from genosae.genome.variants import read_vcf

    config = load_config(config_path)
    outdir = config.get("outdir", "results")
    lines = [f"config {config_path}: OK"]
    fasta, annot = reference_files(config).require()
    reference = Reference.open(fasta, config["reference"].get("chrom_aliases") or {})
    lines.append(f"reference {fasta}: {len(reference.chrom_sizes)} sequences, "
                 f"{sum(reference.chrom_sizes.values()):,} bp")
    annotation = read_annotation(annot, reference)
    genes = coding_genes(annotation)
    lines.append(f"annotation {annot}: {len(annotation):,} features, {len(genes):,} coding genes")
    motifs = load_motifs(config)
    lines.append(f"motifs ({config['motifs']['source']}): {len(motifs)} motifs")
    for name in config.get("designs", {}):
        d = design_from_config(config, name, source=config_path)
        what = [f"design {name} ({d.kind})"]
        if isinstance(d, RegionDesign) and d.gene_set:
            wanted = read_gene_set(d.gene_set)
            hit, unknown = match_genes(genes, wanted)
            if not hit.any():
                raise InputError("no gene of the gene set is in the annotation", path=d.gene_set)
            what.append(f"{int(hit.sum())} genes matched" + (f", {len(unknown)} unknown "
                                                             f"({', '.join(unknown[:5])})" if unknown else ""))
        regions = getattr(d, "regions", None)
        if regions and not _produced(str(regions), outdir):
            if isinstance(d, RegionDesign):
                r = read_region_design(regions, reference)
                what.append(f"{len(r)} regions in {r['group'].nunique()} groups")
            else:
                r = read_annotation(regions, reference, fmt="bed")
                what.append(f"{len(r)} regions")
        if isinstance(d, SequenceDesign) and (d.sequences or d.fasta_by_group):
            s = read_sequence_design(d.sequences, d.fasta_by_group)
            what.append(f"{len(s)} sequences in {s['group'].nunique()} groups")
        if isinstance(d, CohortDesign) and d.samples and not _produced(str(d.samples), outdir):
            samples = read_samples(d.samples)
            for rec in samples.to_dict("records"):
                if rec.get("vcf"):
                    vcf = read_vcf(rec["vcf"], reference)
                    if rec["sample_id"] not in vcf.samples:
                        raise InputError(f"sample '{rec['sample_id']}' is not a column of its VCF",
                                         path=rec["vcf"])
                elif rec.get("fasta"):
                    Reference.open(rec["fasta"])
            what.append(f"{len(samples)} samples, conditions "
                        f"{dict(samples['condition'].value_counts())}")
        elif isinstance(d, CohortDesign) and (d.samples or d.simulate):
            what.append("samples produced by `genosae simulate`")
        lines.append(": ".join([what[0], ", ".join(what[1:]) or "OK"]))
    return "\n".join(lines)
