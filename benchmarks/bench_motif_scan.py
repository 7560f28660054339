"""Whole-genome motif scan: genosae.genome.motifs.scan_motifs vs a bare memelite.fimo call.

Usage: python benchmarks/bench_motif_scan.py [--threshold 1e-4] [--cache resources/yeast]
Both scan the JASPAR fungal CORE motifs over the yeast genome in the same process (numba compiled
once by a warm-up call first), so the ratio is the overhead of the genosae wrapper.
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threshold", type=float, default=1e-4)
    parser.add_argument("--cache", default="resources/yeast")
    args = parser.parse_args()

    from memelite.fimo import fimo

    from genosae.genome.motifs import load_jaspar, scan_motifs
    from genosae.genome.reference import Reference
    from genosae.genome.yeast import build_yeast_reference

    built = build_yeast_reference(args.cache)
    reference = Reference.open(built.fasta)
    motifs = load_jaspar()
    table = {m.label: m.pwm.T.copy() for m in motifs}
    fimo(dict(list(table.items())[:2]), str(built.fasta), threshold=args.threshold)  # numba warm-up

    t = time.perf_counter()
    raw = fimo(table, str(built.fasta), threshold=args.threshold)
    bare_s = time.perf_counter() - t
    t = time.perf_counter()
    hits = scan_motifs(motifs, reference, threshold=args.threshold)
    ours_s = time.perf_counter() - t
    n_raw = sum(len(h) for h in raw)
    print(f"genome: {sum(reference.chrom_sizes.values()):,} bp, {len(motifs)} motifs, p < {args.threshold}")
    print(f"memelite.fimo (bare):    {bare_s:7.2f} s  {n_raw:,} hits")
    print(f"genosae scan_motifs:     {ours_s:7.2f} s  {len(hits):,} hits  ratio {ours_s / bare_s:.2f}x")
    if n_raw != len(hits):
        raise SystemExit("hit counts differ")


if __name__ == "__main__":
    main()
