"""Locus-level (variant-aware) cohort analysis: tests per feature × locus and variant calls."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sst
from statsmodels.stats.multitest import multipletests

from genosae.biomarkers import locus_profiles, run_biomarkers
from genosae.biomarkers.loci import (
    locus_summary,
    locus_variants,
    test_loci,
    variant_labels,
    vcf_locus_variants,
)
from genosae.errors import InputError


def test_locus_tests_match_scipy_and_statsmodels(cohort):
    lp = locus_profiles(cohort.codes, cohort.tokens, cohort.windows, feature_names=cohort.feature_names)
    t = test_loci(lp, chunk_features=5)  # several chunks
    assert len(t) == 10 * 24 and t[["feature", "region_id"]].drop_duplicates().shape[0] == 240
    is_case, is_ctrl = lp.conditions == "case", lp.conditions == "control"
    rng = np.random.default_rng(0)
    for i in rng.choice(len(t), 25, replace=False):
        row = t.iloc[i]
        f, r = lp.features.index(row["feature"]), list(lp.regions["region_id"]).index(row["region_id"])
        a, b = lp.mean[is_case, r, f].astype(float), lp.mean[is_ctrl, r, f].astype(float)
        if np.ptp(np.r_[a, b]) == 0:
            assert row["p"] == 1.0 and row["auroc"] == 0.5
            continue
        ref = sst.mannwhitneyu(a, b, alternative="two-sided")
        assert row["p"] == pytest.approx(ref.pvalue, rel=1e-9)
        assert row["auroc"] == pytest.approx(ref.statistic / (a.size * b.size))
        assert row["delta"] == pytest.approx(a.mean() - b.mean(), rel=1e-5, abs=1e-7)
        ref_row = list(lp.samples).index("__reference__")
        assert row["ref_delta_case"] == pytest.approx((a - lp.mean[ref_row, r, f]).mean(), abs=1e-6)
    tested = (np.ptp(lp.mean[is_case | is_ctrl], axis=0) > 0).T.ravel()  # t is feature-major
    assert (t.loc[~tested, "q"] == 1).all() and (t.loc[~tested, "p"] == 1).all()
    np.testing.assert_allclose(t.loc[tested, "q"], multipletests(t.loc[tested, "p"], method="fdr_bh")[1],
                               rtol=1e-9)
    planted = t[(t["feature"] == cohort.planted_feature) & t["region_id"].isin(cohort.planted_regions)]
    assert (planted["auroc"] == 1.0).all() and (planted["ref_delta_case"] > 0.5).all()
    # with NaN (a sample lacking a locus) the test omits that sample
    lp.mean[0, 0, :] = np.nan
    t2 = test_loci(lp, features=[cohort.planted_feature])
    a = lp.mean[is_case, 0, lp.features.index(cohort.planted_feature)]
    b = lp.mean[is_ctrl, 0, lp.features.index(cohort.planted_feature)]
    expect = sst.mannwhitneyu(a[~np.isnan(a)], b[~np.isnan(b)], alternative="two-sided",
                              method="asymptotic").pvalue
    assert t2.loc[t2["region_id"] == lp.regions["region_id"][0], "p"].item() == pytest.approx(expect)
    with pytest.raises(InputError, match="group 'nobody' has 0 samples"):
        test_loci(lp, case="nobody")


def _windows() -> pd.DataFrame:
    ref_plus, ref_minus = "ACGTACGTAC", "GGGAAATTTC"
    rows = [("__reference__", "", "R1", 100, "+", ref_plus), ("__reference__", "", "R2", 500, "-", ref_minus)]
    # R1 (+): pos 103 (offset 2, G) -> T in both cases; a control carries offset 9 C -> A
    rows += [("s1", "case", "R1", 100, "+", "ACTTACGTAC"), ("s2", "case", "R1", 100, "+", "ACTTACGTAC"),
             ("c1", "control", "R1", 100, "+", ref_plus), ("c2", "control", "R1", 100, "+", "ACGTACGTAA")]
    # R2 (-): sequence is the reverse complement of chrI:500-510; offset 0 G->C is forward pos 510 C>G
    rows += [("s1", "case", "R2", 500, "-", "CGGAAATTTC"), ("s2", "case", "R2", 500, "-", "GGGAAATTC"),
             ("c1", "control", "R2", 500, "-", ref_minus), ("c2", "control", "R2", 500, "-", ref_minus)]
    w = pd.DataFrame(rows, columns=["sample_id", "condition", "region_id", "start", "strand", "sequence"])
    return w.assign(chrom="chrI", end=w["start"] + 10)


def test_locus_variants_forward_coordinates_and_frequencies():
    v = locus_variants(_windows())
    got = {(r.region_id, r.pos, r.ref, r.alt): (r.freq_case, r.freq_control) for r in v.itertuples()}
    assert got == {("R1", 103, "G", "T"): (1.0, 0.0), ("R1", 110, "C", "A"): (0.0, 0.5),
                   ("R2", 510, "C", "G"): (0.5, 0.0)}
    assert v.attrs["n_indel_windows"] == 1  # s2's R2 haplotype has a deletion
    # two against two: even 2/2 carriers vs 0/2 has Fisher p = 1/3, so nothing is case-enriched
    for r in v.itertuples():
        table = [[r.carriers_case, 2 - r.carriers_case], [r.carriers_control, 2 - r.carriers_control]]
        assert r.p == pytest.approx(sst.fisher_exact(table).pvalue)
    np.testing.assert_allclose(v["q"], sst.false_discovery_control(v["p"]))
    assert not v["case_enriched"].any() and variant_labels(v).empty
    # at α = 1 every variant more frequent in cases passes; a control-enriched one never does
    loose = locus_variants(_windows(), alpha=1.0)
    enriched = loose.loc[loose["case_enriched"], ["region_id", "pos"]].apply(tuple, axis=1).tolist()
    assert sorted(enriched) == [("R1", 103), ("R2", 510)]
    assert variant_labels(loose)["R1"] == "chrI:103 G>T (case 1.0 / control 0.0)"
    with pytest.raises(InputError, match="__reference__"):
        locus_variants(_windows().query("sample_id != '__reference__'"))


def test_cohort_run_localises_to_planted_loci_and_variants(cohort, tmp_path):
    run = run_biomarkers(cohort.codes, cohort.tokens, cohort.windows,
                         design={"kind": "cohort", "name": "toy"},
                         params={"permutations": 0, "cv_folds": 4, "kmer_k": 3, "covariates": []},
                         feature_names=cohort.feature_names)
    top = run.locus_table.head(len(cohort.planted_regions))
    assert set(top["region_id"]) == set(cohort.planted_regions)
    assert (top["n_sig_features"] >= 1).all() and cohort.planted_feature in top["top_features"].iloc[0]
    # the planted motif sits at offset 10 of each planted window: its SNVs are the case-enriched variants
    planted_start = cohort.windows.drop_duplicates("region_id").set_index("region_id")["start"]
    for rid, text in zip(top["region_id"], top["variants"]):
        assert f"chrI:{planted_start[rid] + 11}" in text or f"chrI:{planted_start[rid] + 12}" in text
        assert "(case 1.0 / control 0.0)" in text
    loci = run.loci[run.loci["feature"] == cohort.planted_feature]
    assert set(loci.head(3)["region_id"]) == set(cohort.planted_regions)
    assert (loci.head(3)["q"] < 0.05).all() and loci["p"].is_monotonic_increasing
    row = run.biomarkers[run.biomarkers["feature"] == cohort.planted_feature].iloc[0]
    assert row["n_sig_loci"] == 3
    assert run.design_summary["n_loci_with_signal"] >= 3
    from genosae.biomarkers import write_run

    paths = write_run(run, tmp_path)
    sig = pd.read_csv(paths["locus_tests"])
    assert (sig["q"] <= 0.05).all() and len(sig) == run.design_summary["n_significant_locus_tests"]
    assert pd.read_csv(paths["locus_summary"])["region_id"].head(3).isin(cohort.planted_regions).all()
    assert len(pd.read_csv(paths["variants"])) == len(run.variants)
    import anndata as ad
    import scanpy as sc

    lad = ad.read_h5ad(paths["locus_profiles"])
    assert lad.n_obs == 17 * 10 and set(lad.layers) == {"mean", "max", "delta"}
    one = lad[(lad.obs["sample_id"] == cohort.carriers[0]) & (lad.obs["region_id"] == cohort.planted_regions[0])]
    f = cohort.feature_names.index(cohort.planted_feature)
    assert one.layers["delta"][0, f] == pytest.approx(
        run.locus_profiles.delta[list(run.locus_profiles.samples).index(cohort.carriers[0]),
                                 list(run.locus_profiles.regions["region_id"]).index(cohort.planted_regions[0]), f])
    at_locus = lad[(lad.obs["region_id"] == cohort.planted_regions[0]) & (lad.obs["condition"] != "reference")].copy()
    sc.tl.rank_genes_groups(at_locus, "condition", groups=["case"], reference="control", method="wilcoxon")
    assert at_locus.uns["rank_genes_groups"]["names"]["case"][0] == cohort.planted_feature


def test_locus_summary_ranks_by_number_of_features():
    tests = pd.DataFrame({"feature": ["a", "b", "a", "b"], "region_id": ["X", "X", "Y", "Y"],
                          "delta": [1.0, -1.0, 0.5, 0.1], "p": [0.001, 0.002, 0.01, 0.5],
                          "q": [0.01, 0.02, 0.04, 0.6]})
    regions = pd.DataFrame({"region_id": ["X", "Y"], "chrom": "chrI", "start": [0, 10], "end": [5, 15]})
    out = locus_summary(tests, regions, alpha=0.05)
    assert out["region_id"].tolist() == ["X", "Y"] and out["n_sig_features"].tolist() == [2, 1]
    assert out.loc[0, "top_features"] == "a↑, b↓" and out["n_nominal_features"].tolist() == [2, 1]
    # nothing passes BH: loci are ordered by nominal hits, then the smallest p
    weak = tests.assign(q=0.5, p=[0.02, 0.03, 0.005, 0.2])
    assert locus_summary(weak, regions)["region_id"].tolist() == ["Y", "X"]


def test_vcf_locus_variants_indels_and_multiallelic(make_fasta, tmp_path):
    from genosae.genome.reference import Reference

    seq = "ACGTACGTAC" * 10
    ref = Reference.open(make_fasta({"chr1": seq}))
    rows = [  # 1-based POS
        ("chr1", 11, seq[10], "T" if seq[10] != "T" else "G", "0|1", "0|0", "0|0"),
        ("chr1", 21, seq[20:23], seq[20], "1|1", "0|0", "0|1"),  # 2-bp deletion
        ("chr1", 31, seq[30], "C,G" if seq[30] not in "CG" else "A,T", "1|2", "0|0", "./."),
        ("chr1", 95, seq[94], "T" if seq[94] != "T" else "G", "1|1", "1|1", "1|1"),  # outside loci
    ]
    header = ["##fileformat=VCFv4.2", "##contig=<ID=chr1,length=100>",
              '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
              "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tS1\tS2\tC1"]
    body = [f"{c}\t{p}\t.\t{r}\t{a}\t.\tPASS\t.\tGT\t{g1}\t{g2}\t{g3}" for c, p, r, a, g1, g2, g3 in rows]
    vcf = tmp_path / "cohort.vcf"
    vcf.write_text("\n".join(header + body) + "\n")
    sheet = pd.DataFrame({"sample_id": ["S1", "S2", "C1"], "condition": ["case", "case", "control"],
                          "vcf": str(vcf)})
    regions = pd.DataFrame({"region_id": ["R1", "R2"], "chrom": "chr1", "start": [0, 50], "end": [50, 90]})
    v = vcf_locus_variants(sheet, regions, ref)
    got = {(r.region_id, r.pos, r.ref, r.alt): (r.freq_case, r.freq_control) for r in v.itertuples()}
    alts31 = rows[2][3].split(",")
    assert got == {("R1", 11, rows[0][2], rows[0][3]): (0.5, 0.0),
                   ("R1", 21, rows[1][2], rows[1][3]): (0.5, 1.0),
                   ("R1", 31, rows[2][2], alts31[0]): (0.5, 0.0),
                   ("R1", 31, rows[2][2], alts31[1]): (0.5, 0.0)}
    for r in v.itertuples():  # 2 cases, 1 control
        table = [[r.carriers_case, 2 - r.carriers_case], [r.carriers_control, 1 - r.carriers_control]]
        assert r.p == pytest.approx(sst.fisher_exact(table).pvalue)
    assert not v["case_enriched"].any() and variant_labels(v).empty
    with pytest.raises(InputError, match="not in the VCF"):
        vcf_locus_variants(sheet.assign(sample_id=["S1", "X", "C1"]), regions, ref)


def test_case_enriched_variants_pass_a_fisher_test():
    from genosae.biomarkers.loci import _carrier_table, carrier_fisher_p

    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 13, 200), rng.integers(0, 9, 200)
    p = carrier_fisher_p(a, b, 12, 8)
    for i in range(0, 200, 9):
        assert p[i] == pytest.approx(sst.fisher_exact([[a[i], 12 - a[i]], [b[i], 8 - b[i]]]).pvalue, rel=1e-9)
    # 10 cases / 10 controls: 8/10 vs 0/10 carriers passes, 3/10 vs 0/10 (the larger frequency
    # difference a label without a test would still list) does not
    calls = []
    for rid, pos, n_case, n_ctrl in (("A", 5, 8, 0), ("A", 9, 3, 0), ("B", 7, 0, 6), ("B", 8, 5, 5)):
        calls += [(f"case{i}", "case", rid, "chrI", pos, "A", "C") for i in range(n_case)]
        calls += [(f"ctrl{i}", "control", rid, "chrI", pos, "A", "C") for i in range(n_ctrl)]
    calls = pd.DataFrame(calls, columns=["sample_id", "condition", "region_id", "chrom", "pos", "ref", "alt"])
    t = _carrier_table(calls, "case", "control", 10, 10).set_index(["region_id", "pos"])
    assert t.loc[("A", 5), "case_enriched"] and t.loc[("A", 5), "q"] <= 0.05
    assert not t.loc[("A", 9), "case_enriched"] and t.loc[("A", 9), "freq_diff"] == 0.3
    assert not t.loc[("B", 7), "case_enriched"]  # significant, but enriched in controls
    assert t.loc[("B", 7), "q"] <= 0.05 and t.loc[("B", 8), "p"] == pytest.approx(1.0)
    np.testing.assert_allclose(t["q"], sst.false_discovery_control(t["p"]))
    assert variant_labels(t.reset_index()).to_dict() == {"A": "chrI:5 A>C (case 0.8 / control 0.0)"}
