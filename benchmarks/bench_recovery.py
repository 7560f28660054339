"""Recovery of a planted case/control signal: SAE features vs the k-mer and linear-probe baselines.

Two modes.

``--mode pipeline`` (default): the real path. For each seed × carrier fraction, ``genosae simulate``
plants the REB1 motif (SNVs) in the promoters of ``--n-genes`` genes in that fraction of the cases
(background SNVs in everyone), the cohort windows are built from the VCFs, embedded with the model
(default: the shipped ``models/genosae-yeast-cnn``, layer 6), encoded with a trained SAE (default:
the demo's ``results/sae/seed0``; run ``make demo`` first) and analysed by ``run_biomarkers``.
Fraction 0 plants nothing in anyone (a null cohort: every hit there is a false positive).

``--mode synthetic``: SAE-like activations without a model (``synthetic_activations``), for a
quick check of the statistics alone.

Printed per carrier fraction (mean over seeds):
  recall5_sae        a top-5 feature (q ≤ 0.05) whose 3 top loci are all planted promoters
  recall5_kmer       a top-5 k-mer (q ≤ 0.05, up in cases) that is a k-mer of the motif (either strand)
  motif5_sae         a top-5 feature whose catalogue best motif is the planted one (motif q ≤ 0.05)
  loci_prec5         fraction of the 5 top-ranked loci (locus_summary: most features changed) planted
  probe_loci_prec5   the same for the linear probe: loci ranked by how well the sample-level L2
                     probe, applied to each locus's mean embedding, separates cases from controls
  loci_recall        fraction of planted promoters with ≥ 1 feature at locus q ≤ 0.05
  locus_fdp          fraction of the significant feature × locus tests at non-planted loci (the
                     realised false discovery proportion; BH targets 0.05)
  n_sig_sae/kmer     features / k-mers with q ≤ 0.05 (sample level)
  auroc_*            cross-validated AUROC: L1 logistic on SAE profiles and on k-mers, L2 probe on
                     the mean raw embeddings

Run: python benchmarks/bench_recovery.py [--seeds 3] [--fractions 0 0.3 0.6 0.9] [--out CSV]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from genosae.biomarkers import (
    cv_classifier,
    kmer_baseline,
    linear_probe,
    rank_features,
    region_profiles,
    run_biomarkers,
    synthetic_activations,
    test_features,
)
from genosae.biomarkers.baselines import mean_embeddings, unit_sequences
from genosae.biomarkers.simulate import resolve_motif, reverse_complement

ALPHA = 0.05
METRICS = ["recall5_sae", "recall5_kmer", "motif5_sae", "loci_prec5", "probe_loci_prec5",
           "loci_recall", "locus_fdp",
           "n_sig_sae",
           "n_sig_kmer", "auroc_sae_l1", "auroc_kmer_l1", "auroc_probe_l2"]


def motif_kmers(motif: str, k: int) -> set[str]:
    """Every k-mer of the motif on either strand."""
    both = (motif, reverse_complement(motif))
    return {s[i:i + k] for s in both for i in range(len(s) - k + 1)}


def synthetic_one(seed: int, fraction: float, k: int, effect: float = 1.0) -> dict:
    motif = "TTACCCG"
    c = synthetic_activations(n_case=12, n_control=12, n_regions=20, n_planted=3, n_features=64,
                              tokens_per_window=40, effect=effect, planted_tokens=3,
                              fraction_cases=fraction, density=0.05, seed=seed, reference=False,
                              motif=motif)
    ad = region_profiles(c.codes, c.tokens, c.windows, unit="sample_id", feature_names=c.feature_names)
    y = (ad.obs["condition"] == "case").to_numpy()
    sae = rank_features(test_features(ad))
    seqs = unit_sequences(c.windows, c.windows["sequence"].tolist(), ad.obs_names, "sample_id")
    kb = kmer_baseline(seqs, ad.obs, k=k, folds=5, seed=seed)
    km = kb["table"]
    rng = np.random.default_rng(1000 + seed)
    w = rng.normal(size=(c.codes.shape[1], 32))
    emb_tok = c.codes @ w + rng.normal(scale=1.0, size=(c.codes.shape[0], 32))
    emb = pd.DataFrame(emb_tok).groupby(c.windows["sample_id"].to_numpy()[c.tokens["window_index"]]).mean()
    top_k = km.head(5)
    top_k = top_k[(top_k["q"] <= ALPHA) & (top_k["direction"] == "up")]
    return {
        "seed": seed, "fraction_cases": fraction,
        "recall5_sae": float(c.planted_feature in set(sae.loc[sae["q"] <= ALPHA, "feature"].head(5))),
        "recall5_kmer": float(bool(motif_kmers(motif, k) & set(top_k["feature"]))),
        "n_sig_sae": int((sae["q"] <= ALPHA).sum()), "n_sig_kmer": int((km["q"] <= ALPHA).sum()),
        "auroc_sae_l1": cv_classifier(ad.layers["mean"], y, 5, seed=seed).auroc,
        "auroc_kmer_l1": kb["classifier"].auroc,
        "auroc_probe_l2": linear_probe(emb.reindex(ad.obs_names).to_numpy(), y, folds=5, seed=seed).auroc,
    }


def probe_locus_ranking(store_dir: Path, windows: pd.DataFrame, obs: pd.DataFrame, seed: int) -> list[str]:
    """Loci ranked by how well the sample-level L2 probe separates the groups *at each locus*.

    The probe (standardised L2 logistic on mean embeddings per sample) is applied to each sample's
    mean embedding over one locus; loci are ranked by the Mann-Whitney p of that score between case
    and control samples: the probe's own way to say where the signal is.
    """
    import scipy.sparse as sp
    from scipy import stats as sst
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from genosae.model.store import ActivationStore

    store = ActivationStore(store_dir)
    key = windows["sample_id"].astype(str) + "\t" + windows["region_id"].astype(str)
    codes, keys = pd.factorize(key)
    sums, counts = np.zeros((len(keys), store.d_model)), np.zeros(len(keys))
    for shard in store.iter_shards(columns=["acts", "window_index", "is_special"]):
        keep = ~shard["is_special"].astype(bool)
        rows = codes[shard["window_index"][keep]]
        ind = sp.csr_matrix((np.ones(rows.size), (rows, np.arange(rows.size))), shape=(len(keys), rows.size))
        sums += ind @ shard["acts"][keep].astype(np.float64)
        counts += np.bincount(rows, minlength=len(keys))
    locus = pd.DataFrame(sums / np.maximum(counts, 1)[:, None],
                         index=pd.MultiIndex.from_tuples([tuple(k.split("\t")) for k in keys],
                                                         names=["sample_id", "region_id"]))
    cond = obs["condition"].astype(str)
    locus = locus[locus.index.get_level_values("sample_id").isin(cond.index)]
    sample_emb = locus.groupby(level="sample_id").mean()
    y = (cond.reindex(sample_emb.index) == "case").to_numpy()
    scaler = StandardScaler().fit(sample_emb.to_numpy())
    probe = LogisticRegression(C=1.0, max_iter=2000, random_state=seed).fit(
        scaler.transform(sample_emb.to_numpy()), y)
    score = pd.Series(probe.decision_function(scaler.transform(locus.to_numpy())), index=locus.index)
    is_case = cond.reindex(score.index.get_level_values("sample_id")).eq("case").to_numpy()
    ranking = []
    for region, grp in score.groupby(level="region_id"):  # one test per locus
        m = is_case[score.index.get_level_values("region_id") == region]
        res = sst.mannwhitneyu(grp.to_numpy()[m], grp.to_numpy()[~m], alternative="two-sided")
        ranking.append((res.pvalue, -abs(res.statistic / (m.sum() * (~m).sum()) - 0.5), region))
    return [r for *_, r in sorted(ranking)]


def pipeline_one(seed: int, fraction: float, args: argparse.Namespace, ctx: dict, work: Path) -> dict:
    from genosae.biomarkers.simulate import simulate_cohort
    from genosae.features.activations import window_activations
    from genosae.genome.designs import read_samples
    from genosae.genome.windows import cohort_windows
    from genosae.model.embed import embed_windows
    from genosae.model.store import ActivationStore

    t0 = time.time()
    out = work / f"seed{seed}_f{fraction:g}"
    sim = simulate_cohort(ctx["fasta"], ctx["gff3"], out / "sim", n_cases=args.n_cases,
                          n_controls=args.n_controls, n_genes=args.n_genes, motif=args.motif,
                          fraction_cases=fraction, background_snv_rate=args.background_snv_rate,
                          seed=seed)
    planted = set(sim.regions.loc[sim.regions["planted"], "region_id"].astype(str))
    regions = sim.regions[["region_id", "chrom", "start", "end", "strand", "name"]]
    windows = cohort_windows(ctx["reference"], read_samples(out / "sim" / "samples.tsv"), regions,
                             args.window_size, args.window_size // 2)
    store_dir = out / "store"
    embed_windows(ctx["adapter"], windows, windows["sequence"].tolist(), store_dir,
                  batch_size=args.batch_size, progress=False)
    t_embed = time.time() - t0
    acts = window_activations(ctx["sae"], ActivationStore(store_dir), progress=False)
    emb = mean_embeddings(store_dir, "sample_id")
    obs = sim.samples.set_index("sample_id")[["condition", "age"]]
    run = run_biomarkers(acts, None, windows, design={"kind": "cohort", "name": "bench"},
                         params={"permutations": 0, "alpha": ALPHA, "kmer_k": args.k, "cv_folds": 5,
                                 "covariates": []},
                         feature_names=acts.feature_names, catalog=ctx["catalog"], obs=obs,
                         embeddings=emb, seed=seed)
    b = run.biomarkers
    top5 = b[b["q"] <= ALPHA].head(5)
    top3 = run.loci[run.loci["locus_rank"] <= 3].assign(hit=lambda d: d["region_id"].astype(str)
                                                         .isin(planted))
    all_planted = top3.groupby("feature")["hit"].all()
    recall_sae = float(top5["feature"].map(all_planted).fillna(False).any())
    motif_id = resolve_motif(args.motif)[1].split()[-1]
    motif5 = top5["best_motif"].astype(str).eq(motif_id) & (top5["motif_q"] <= ALPHA)
    km = run.baselines.set_index("method")
    kmer_table = run.extra[f"kmer_k{args.k}_table"]  # the baseline run_biomarkers already ran
    top_k = kmer_table.head(5)
    top_k = top_k[(top_k["q"] <= ALPHA) & (top_k["direction"] == "up")]
    loc = run.locus_table
    sig_loci = set(loc.loc[loc["n_sig_features"] > 0, "region_id"].astype(str))
    sig_tests = run.locus_tests[run.locus_tests["q"] <= ALPHA]
    row = {
        "seed": seed, "fraction_cases": fraction, "recall5_sae": recall_sae,
        "recall5_kmer": float(bool(motif_kmers(sim.motif, args.k) & set(top_k["feature"]))),
        "motif5_sae": float(motif5.any()),
        "loci_prec5": float(loc.head(5)["region_id"].astype(str).isin(planted).mean()),
        "loci_recall": len(sig_loci & planted) / len(planted) if planted else np.nan,
        "n_sig_sae": int((b["q"] <= ALPHA).sum()), "n_sig_kmer": int((kmer_table["q"] <= ALPHA).sum()),
        "n_sig_loci_nonplanted": len(sig_loci - planted),
        "locus_fdp": float((~sig_tests["region_id"].astype(str).isin(planted)).mean())
        if len(sig_tests) else 0.0,
        "probe_loci_prec5": float(np.isin(probe_locus_ranking(store_dir, windows, obs, seed)[:5],
                                          list(planted)).mean()),
        "auroc_sae_l1": km.loc["sae_features", "cv_auroc"],
        "auroc_kmer_l1": km.loc[f"kmer_k{args.k}", "cv_auroc"],
        "auroc_probe_l2": km.loc["linear_probe_l2", "cv_auroc"],
        "n_windows": len(windows), "embed_s": round(t_embed, 1), "total_s": round(time.time() - t0, 1),
    }
    print(" ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()),
          flush=True)
    return row


def pipeline_context(args: argparse.Namespace) -> dict:
    from genosae.genome.reference import Reference
    from genosae.genome.yeast import build_yeast_reference
    from genosae.model.adapter import load_model
    from genosae.sae.io import load_sae

    sae_dir = Path(args.sae)
    if not (sae_dir / "sae_weights.safetensors").exists():
        raise SystemExit(f"no trained SAE in {sae_dir}; run `make demo` first or pass --sae")
    y = build_yeast_reference(args.cache_dir)
    catalog = pd.read_csv(args.catalog) if args.catalog and Path(args.catalog).exists() else None
    return {"fasta": y.fasta, "gff3": y.gff3, "reference": Reference.open(y.fasta),
            "adapter": load_model(args.model, layer=args.layer, device="cpu", local_files_only=True,
                                  batch_size=args.batch_size),
            "sae": load_sae(sae_dir), "catalog": catalog}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=["pipeline", "synthetic"], default="pipeline")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.0, 0.3, 0.6, 0.9],
                    help="fraction of cases carrying the planted motif (the signal strength)")
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--model", default="models/genosae-yeast-cnn")
    ap.add_argument("--layer", type=int, default=6)
    ap.add_argument("--sae", default="results/sae/seed0")
    ap.add_argument("--catalog", default="results/features/feature_catalog.csv")
    ap.add_argument("--cache-dir", default="resources/yeast")
    ap.add_argument("--n-genes", type=int, default=10)
    ap.add_argument("--n-cases", type=int, default=10)
    ap.add_argument("--n-controls", type=int, default=10)
    ap.add_argument("--motif", default="REB1")
    ap.add_argument("--background-snv-rate", type=float, default=0.001)
    ap.add_argument("--window-size", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--out", default=None, help="CSV of the per-run rows")
    args = ap.parse_args()
    t0 = time.time()
    if args.mode == "synthetic":
        rows = [synthetic_one(s, f, args.k) for f in args.fractions for s in range(args.seeds)]
        print("NOTE: synthetic activations (no model/SAE run); see the module docstring.")
    else:
        ctx = pipeline_context(args)
        with tempfile.TemporaryDirectory(prefix="genosae-recovery-") as tmp:
            rows = [pipeline_one(s, f, args, ctx, Path(tmp)) for f in args.fractions
                    for s in range(args.seeds)]
    df = pd.DataFrame(rows)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(args.out, index=False)
    shown = [m for m in METRICS if m in df.columns]
    print(df.groupby("fraction_cases")[shown].mean().round(3).to_string())
    print(f"{len(rows)} runs in {time.time() - t0:.1f} s ({args.mode})")


if __name__ == "__main__":
    main()
