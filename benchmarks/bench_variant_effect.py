"""`genosae variant-effect` on a finished demo run: speed, and whether SNVs that create a motif's site rank
the SAE feature that captures that motif (``motif_capture.csv``) first.

For the motif with the best held-out SAE site F1 in ``<outdir>/features/motif_capture.csv``, it plants
``--n`` SNVs on the held-out chromosome (chrXVI), each turning a 1-mismatch neighbour of the motif's
consensus into the consensus inside 400 bp upstream of a gene, with no other consensus site within the
window; and as many random SNVs at other upstream positions. It prints, for both sets, how often the
capturing feature ranks first / in the top 5 by |effect| and its median effect, and the variants/s.

    python benchmarks/bench_variant_effect.py --config config/config.yaml --n 40
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from genosae.config import load_config
from genosae.genome.annotation import read_annotation
from genosae.genome.reference import Reference, reverse_complement
from genosae.tracks import variant_effect

CONSENSUS = {"SPT15": "TATAAAA", "RAP1": "ACACCCATACAT", "REB1": "TTACCCG", "CBF1": "CACGTG", "ABF1": "TCACTATACGA"}


def _upstream(annotation: pd.DataFrame, chrom: str) -> list[tuple[int, int, str]]:
    genes = annotation[(annotation["chrom"] == chrom) & (annotation["feature"] == "gene")]
    out = []
    for s, e, strand in genes[["start", "end", "strand"]].itertuples(index=False, name=None):
        out.append((s - 400, s, "+") if strand == "+" else (e, e + 400, "-"))
    return [(max(0, a), b, st) for a, b, st in out]


def _plant(ref: Reference, ups: list[tuple[int, int, str]], motif: str, n: int, flank: int, seed: int):
    rng = np.random.default_rng(seed)
    planted, rand = [], []
    for a, b, strand in rng.permutation(np.array(ups, dtype=object)):
        seq = ref.fetch("chrXVI", int(a), int(b)).upper()
        site = motif if strand == "+" else reverse_complement(motif)
        ctx = ref.fetch("chrXVI", max(0, int(a) - flank), int(b) + flank).upper()
        if site in ctx or reverse_complement(site) in ctx:
            continue
        for i in range(len(seq) - len(site)):
            diff = [k for k in range(len(site)) if seq[i + k] != site[k]]
            if len(diff) == 1:
                p = int(a) + i + diff[0]
                planted.append((p, seq[i + diff[0]], site[diff[0]]))
                q = int(rng.integers(a, b))
                base = ref.fetch("chrXVI", q, q + 1).upper()
                rand.append((q, base, "ACGT".replace(base, "")[int(rng.integers(3))]))
                break
        if len(planted) == n:
            break
    return planted, rand


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="config/config.yaml")
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--flank", type=int, default=256)
    args = ap.parse_args()
    cfg = load_config(args.config, check_files=False)
    root = Path(cfg["outdir"])
    cap = pd.read_csv(root / "features" / "motif_capture.csv")
    cap = cap[cap["motif_name"].isin(list(CONSENSUS))].sort_values("sae_f1", ascending=False)
    best = cap.iloc[0]
    motif, feature = str(best["motif_name"]), str(best["sae_unit"])
    ref = Reference.open(root / "reference" / "genome.fa")
    ann = read_annotation(root / "reference" / "annotation.gff3", ref)
    planted, rand = _plant(ref, _upstream(ann, "chrXVI"), CONSENSUS[motif], args.n, args.flank, seed=0)
    print(f"motif {motif} (consensus {CONSENSUS[motif]}): captured by {feature}, held-out site F1 "
          f"{best['sae_f1']:.3f} (neuron {best['neuron_f1']:.3f}, untrained control {best['control_f1']:.3f})")
    with tempfile.TemporaryDirectory() as tmp:
        for name, rows in (("motif-creating", planted), ("random", rand)):
            vcf = Path(tmp) / f"{name}.vcf"
            vcf.write_text(f"##fileformat=VCFv4.2\n##contig=<ID=chrXVI,length={ref.chrom_sizes['chrXVI']}>\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n" + "".join(
                f"chrXVI\t{p + 1}\t{name}{i}\t{r}\t{a}\t.\tPASS\t.\n" for i, (p, r, a) in enumerate(rows)))
            t0 = time.perf_counter()
            paths = variant_effect(cfg, vcf=vcf, outdir=Path(tmp) / name, flank=args.flank, top=5,
                                   track_features=feature, progress=False)
            dt = time.perf_counter() - t0
            top = pd.read_csv(paths["top"], keep_default_na=False)
            eff = pd.read_parquet(paths["effects"])
            mine = eff[eff["feature"] == feature]
            first = (top[top["rank"] == 1]["feature"] == feature).mean()
            top5 = top.groupby("variant_id")["feature"].apply(lambda f: feature in set(f)).mean()
            llr = pd.read_csv(paths["variants"])["llr"]
            print(f"{name:>15}: {len(rows)} SNVs in {dt:.1f} s ({len(rows) / dt:.2f} variants/s, one pass, "
                  f"both strands, LLR included): {feature} ranks first in {first:.0%}, top 5 in {top5:.0%}; "
                  f"its effect median {mine['effect'].median():+.3f} (IQR {mine['effect'].quantile(0.25):+.3f} to "
                  f"{mine['effect'].quantile(0.75):+.3f}); LLR median {llr.median():+.3f} nats")


if __name__ == "__main__":
    main()
