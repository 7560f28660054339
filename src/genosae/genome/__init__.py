"""Reference genomes, annotations as concepts, TF motifs, designs and windows.

The public API of the genome step (implementations in the submodules):

``reference``
    :class:`Reference`, :func:`reference_files` (the one resolver of FASTA + annotation),
    :func:`encode_bases` (the one sequence encoder), :func:`reverse_complement`.
``annotation``, ``genes``, ``concepts``, ``motifs``
    :func:`read_annotation`; :func:`coding_genes`, :func:`promoters` (the one TSS/promoter rule);
    :func:`build_concepts`, :func:`read_concepts`, :func:`label_positions`; :func:`load_motifs`,
    :func:`scan_motifs`.
``prepare``
    :func:`prepare_reference` (the ``prepare-reference`` step).
``designs``, ``windows``, ``variants``
    typed designs (:class:`RegionDesign`, :class:`SequenceDesign`, :class:`CohortDesign`, built
    once by :func:`design_from_config`); readers (:func:`read_region_design`, :func:`read_sequence_design`,
    :func:`read_samples`, :func:`region_design_from_genes`), :func:`design_windows`,
    :func:`make_windows`, :func:`atlas_windows`, :func:`config_atlas_windows`,
    :func:`cohort_windows`, :func:`sequence_windows`, :func:`window_sequences`, :func:`read_vcf`.
"""

from genosae.genome.annotation import read_annotation, write_gff3
from genosae.genome.concepts import build_concepts, concept_mask, label_positions, read_concepts
from genosae.genome.designs import (
    CohortDesign,
    Design,
    RegionDesign,
    SequenceDesign,
    as_design,
    design_from_config,
    design_from_section,
    design_windows,
    read_gene_set,
    read_region_design,
    read_samples,
    read_sequence_design,
    region_design_from_genes,
)
from genosae.genome.genes import coding_genes, match_genes, promoter_intervals, promoters
from genosae.genome.motifs import Motif, load_jaspar, load_motifs, read_motif_file, scan_motifs
from genosae.genome.prepare import prepare_reference
from genosae.genome.reference import (
    Reference,
    ReferenceFiles,
    decode_bases,
    encode_bases,
    reference_files,
    reverse_complement,
)
from genosae.genome.variants import read_vcf, sample_haplotype_sequences
from genosae.genome.windows import (
    REFERENCE_SAMPLE,
    atlas_windows,
    cohort_windows,
    config_atlas_windows,
    make_windows,
    read_chrom_sizes,
    sequence_windows,
    window_sequences,
)

__all__ = [
    "REFERENCE_SAMPLE",
    "CohortDesign",
    "Design",
    "Motif",
    "Reference",
    "ReferenceFiles",
    "RegionDesign",
    "SequenceDesign",
    "as_design",
    "atlas_windows",
    "build_concepts",
    "coding_genes",
    "cohort_windows",
    "concept_mask",
    "config_atlas_windows",
    "decode_bases",
    "design_from_config",
    "design_from_section",
    "design_windows",
    "encode_bases",
    "label_positions",
    "load_jaspar",
    "load_motifs",
    "make_windows",
    "match_genes",
    "prepare_reference",
    "promoter_intervals",
    "promoters",
    "read_annotation",
    "read_chrom_sizes",
    "read_concepts",
    "read_gene_set",
    "read_motif_file",
    "read_region_design",
    "read_samples",
    "read_sequence_design",
    "read_vcf",
    "reference_files",
    "region_design_from_genes",
    "reverse_complement",
    "sample_haplotype_sequences",
    "scan_motifs",
    "sequence_windows",
    "window_sequences",
    "write_gff3",
]
