import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from genosae.biomarkers import locus_profiles, read_profiles, region_profiles, write_profiles
from genosae.errors import InputError


def _naive(codes, tokens, windows, unit):
    dense = codes.toarray()
    key = windows[unit].to_numpy()[tokens["window_index"].to_numpy()]
    out = {}
    for u in pd.unique(key):
        block = dense[key == u]
        out[u] = (block.mean(0), block.max(0), (block > 0).mean(0))
    return out


@pytest.mark.parametrize("unit", ["sample_id", "region_id"])
def test_layers_match_naive_aggregation(cohort, unit):
    # regions pool samples of both conditions here, so the condition column is left out
    windows = cohort.windows.drop(columns="condition") if unit == "region_id" else cohort.windows
    ad = region_profiles(cohort.codes, cohort.tokens, windows, unit=unit,
                         feature_names=cohort.feature_names)
    ref = _naive(cohort.codes, cohort.tokens, cohort.windows, unit)
    assert ad.n_obs == len(ref)
    for u, (mean, mx, frac) in ref.items():
        i = ad.obs_names.get_loc(str(u))
        np.testing.assert_allclose(ad.layers["mean"][i], mean, rtol=1e-5)
        np.testing.assert_allclose(ad.layers["max"][i], mx, rtol=1e-6)
        np.testing.assert_allclose(ad.layers["frac_active"][i], frac, rtol=1e-6)
    np.testing.assert_array_equal(ad.X, ad.layers["mean"])
    assert list(ad.var_names) == cohort.feature_names


def test_region_covariates_and_catalog(cohort):
    w = cohort.windows[cohort.windows["sample_id"] == "case_00"]
    keep = np.isin(cohort.tokens["window_index"], w.index)
    tokens = cohort.tokens[keep].copy()
    tokens["window_index"] = pd.Index(w.index).get_indexer(tokens["window_index"])
    w = w.reset_index(drop=True).assign(sequence="ACGCGT" * 5)
    cat = pd.DataFrame({"feature": [7, 3], "label": ["REB1-like", "x"], "best_concept": ["motif", ""],
                        "f1": [0.9, 0.1]})
    ad = region_profiles(cohort.codes[keep], tokens, w, catalog=cat, feature_names=cohort.feature_names)
    assert ad.obs["length"].eq(30).all()
    np.testing.assert_allclose(ad.obs["gc_fraction"], 4 / 6)
    # CG count 10 in 30 bp, C = G = 10 -> 10 * 30 / 100
    np.testing.assert_allclose(ad.obs["cpg_ratio"], 3.0)
    assert ad.var.loc["f7", "label"] == "REB1-like"
    assert ad.var.loc["f0", "label"] == ""


def test_h5ad_round_trip_and_scanpy(cohort, tmp_path):
    import scanpy as sc

    ad = region_profiles(cohort.codes, cohort.tokens, cohort.windows, unit="sample_id",
                         obs=cohort.samples, config={"seed": 0, "x": None},
                         feature_names=cohort.feature_names)
    ad = ad[ad.obs["condition"] != "reference"].copy()
    path = write_profiles(ad, tmp_path / "profiles.h5ad")
    back = read_profiles(path)
    assert isinstance(back.obs["condition"].dtype, pd.CategoricalDtype)
    assert list(back.obs["condition"].cat.categories) == ["case", "control"]
    np.testing.assert_array_equal(back.layers["mean"], ad.layers["mean"])
    assert set(back.layers) == {"mean", "max", "frac_active"}
    assert "numpy" in back.uns["genosae"]["versions"]
    sc.tl.rank_genes_groups(back, "condition", groups=["case"], reference="control", method="wilcoxon")
    top = back.uns["rank_genes_groups"]["names"]["case"][0]
    assert top == cohort.planted_feature


def test_locus_profiles_delta_against_reference(cohort):
    lp = locus_profiles(cohort.codes, cohort.tokens, cohort.windows, feature_names=cohort.feature_names)
    assert lp.delta_baseline == "__reference__"
    assert lp.mean.shape == (17, 10, 24)
    ref = list(lp.samples).index("__reference__")
    np.testing.assert_allclose(lp.delta[ref], 0, atol=1e-7)
    f = cohort.feature_names.index(cohort.planted_feature)
    case = list(lp.samples).index(cohort.carriers[0])
    r = list(lp.regions["region_id"]).index(cohort.planted_regions[0])
    assert lp.delta[case, r, f] > 0.5
    long = lp.to_long([f])
    assert len(long) == 17 * 10 and set(long["feature"]) == {cohort.planted_feature}


def test_bad_inputs_raise(cohort):
    with pytest.raises(InputError, match="rows"):
        region_profiles(cohort.codes[:10], cohort.tokens, cohort.windows)
    neg = cohort.codes.copy()
    neg.data[0] = -1
    with pytest.raises(InputError, match="non-negative"):
        region_profiles(neg, cohort.tokens, cohort.windows)
    with pytest.raises(InputError, match="unit"):
        region_profiles(cohort.codes, cohort.tokens, cohort.windows, unit="gene")
    w = cohort.windows.copy()
    w.loc[0, "condition"] = "control"
    with pytest.raises(InputError, match="one condition"):
        region_profiles(cohort.codes, cohort.tokens, w, unit="sample_id")
    assert sp.issparse(cohort.codes)


def test_profiles_from_window_acts(cohort):
    from genosae.features.activations import WindowActs

    wa = WindowActs.from_codes(cohort.codes, cohort.tokens, len(cohort.windows),
                               feature_names=cohort.feature_names)
    a = region_profiles(cohort.codes, cohort.tokens, cohort.windows, unit="sample_id",
                        feature_names=cohort.feature_names)
    b = region_profiles(wa, None, cohort.windows, unit="sample_id")
    assert list(b.var_names) == cohort.feature_names
    for layer in ("mean", "max", "frac_active"):
        np.testing.assert_allclose(a.layers[layer], b.layers[layer], rtol=1e-6)
    # a sample's mean is the token-weighted mean of its windows
    s = cohort.samples["sample_id"].iloc[0]
    rows = np.flatnonzero(cohort.windows["sample_id"].to_numpy()[cohort.tokens["window_index"]] == s)
    np.testing.assert_allclose(b[s].layers["mean"][0], cohort.codes[rows].toarray().mean(axis=0), rtol=1e-5)
    lp = locus_profiles(wa, None, cohort.windows)
    np.testing.assert_allclose(lp.mean, locus_profiles(cohort.codes, cohort.tokens, cohort.windows).mean)
    with pytest.raises(InputError, match="windows table has"):
        region_profiles(wa, None, cohort.windows.iloc[:-1])


def _tiled(strand="+", ref="AAAAAAAAAAGGGGGCGCGC"):
    """One 20-bp region tiled by three 10-bp windows every 5 bp (stride < size: overlaps)."""
    from genosae.genome.reference import reverse_complement

    starts = np.array([0, 5, 10])
    seqs = [ref[s:s + 10] if strand == "+" else reverse_complement(ref[s:s + 10]) for s in starts]
    windows = pd.DataFrame({"window_id": [f"w{i}" for i in range(3)], "chrom": "chrI",
                            "start": starts + 100, "end": starts + 110, "strand": strand,
                            "region_id": "R", "sequence": seqs})
    win = np.repeat(np.arange(3), 10)
    tokens = pd.DataFrame({"window_index": win, "token_index": np.tile(np.arange(10), 3),
                           "chrom": "chrI", "bp_start": 100 + starts[win] + np.tile(np.arange(10), 3)})
    tokens["bp_end"] = tokens["bp_start"] + 1
    codes = np.zeros((30, 2), np.float32)
    codes[win == 0, 0] = 1.0  # feature 0 fires on the first window only; feature 1 everywhere
    codes[:, 1] = 1.0
    return windows, tokens, sp.csr_matrix(codes), ref


def test_overlapping_windows_count_each_base_once():
    windows, tokens, codes, _ = _tiled()
    ad = region_profiles(codes, tokens, windows, feature_names=["f0", "f1"])
    # per base: bases 0–4 are seen only by window 0 (value 1), 5–9 by windows 0 and 1 (mean ½),
    # 10–19 only with value 0 → (5 + 2.5) / 20; the token mean would say 10/30
    np.testing.assert_allclose(ad.layers["mean"][0], [7.5 / 20, 1.0], rtol=1e-6)
    np.testing.assert_allclose(ad.layers["frac_active"][0], [7.5 / 20, 1.0], rtol=1e-6)
    assert ad.obs["n_tokens"].iloc[0] == 30 and ad.obs["length"].iloc[0] == 20
    from genosae.biomarkers.profiles import window_base_weights

    np.testing.assert_allclose(window_base_weights(windows, ["region_id"]), [0.75, 0.5, 0.75])
    # two haplotypes at the same coordinates are two copies, not an overlap
    hap = pd.concat([windows.assign(haplotype=0), windows.assign(haplotype=1)], ignore_index=True)
    np.testing.assert_allclose(window_base_weights(hap, ["region_id"]), [0.75, 0.5, 0.75] * 2)
    far = windows.assign(start=[0, 100, 200], end=[10, 110, 210])
    np.testing.assert_allclose(window_base_weights(far, ["region_id"]), 1.0)


def test_minus_strand_region_sequence_is_joined_on_the_reference():
    from genosae.biomarkers.profiles import sequence_covariates
    from genosae.genome.reference import reverse_complement

    for strand in "-+":
        windows, tokens, codes, ref = _tiled(strand)
        ad = region_profiles(codes, tokens, windows, feature_names=["f0", "f1"])
        expect = sequence_covariates([ref]).iloc[0]
        assert ad.obs["gc_fraction"].iloc[0] == pytest.approx(expect["gc_fraction"])  # 10/20
        assert ad.obs["cpg_ratio"].iloc[0] == pytest.approx(expect["cpg_ratio"])
        from genosae.biomarkers.profiles import merged_unit_sequences

        texts, length = merged_unit_sequences(windows, windows["sequence"].tolist(),
                                              np.zeros(3, np.int64), 1, ["region_id"])
        assert texts == [ref if strand == "+" else reverse_complement(ref)] and length[0] == 20
