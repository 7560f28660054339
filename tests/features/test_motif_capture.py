"""Motif capture: token precision × site recall against FIMO sites, chosen on calibration, scored held-out."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from genosae.errors import InputError
from genosae.features.activations import FeatureActs, _collect, random_units, window_split
from genosae.features.catalog import feature_labels, motif_labels
from genosae.features.motif_capture import (
    MOTIF_CAPTURE_COLUMNS,
    SET_COLUMNS,
    motif_capture,
    motif_sites,
)
from genosae.genome.motifs import motif_concepts, scan_motifs


@pytest.fixture(scope="module")
def planted_sites(jaspar_planted, jaspar_fungi):
    chosen = [m for m in jaspar_fungi if m.name in {"REB1", "ABF1", "MCM1", "RAP1", "GCN4"}]
    hits = scan_motifs(chosen, {"chr1": jaspar_planted.genome}, threshold=1e-4)
    return motif_sites(motif_concepts(hits))


def test_motif_sites_merges_overlapping_hits_of_one_motif():
    concepts = pd.DataFrame({
        "chrom": ["c1"] * 6, "start": [10, 12, 40, 10, 0, 30], "end": [20, 22, 50, 20, 100, 35],
        "strand": ["+", "-", "+", "+", "+", "+"],
        "concept": ["motif:M1 FOO", "motif:M1 FOO", "motif:M1 FOO", "motif:M2 BAR", "gene", "motif:M3"],
        "name": ["a", "b", "c", "d", "g", "e"]})
    s = motif_sites(concepts)
    assert s[["motif_id", "motif_name", "start", "end"]].values.tolist() == [
        ["M1", "FOO", 10, 22], ["M1", "FOO", 40, 50], ["M2", "BAR", 10, 20], ["M3", "M3", 30, 35]]
    assert s["name"].is_unique and set(s["concept"]) == {"motif:M1 FOO", "motif:M2 BAR", "motif:M3"}
    with pytest.raises(InputError, match="concepts table lacks"):
        motif_sites(concepts.drop(columns="end"))


def test_planted_feature_captures_its_motif_held_out(jaspar_planted, planted_sites):
    d = jaspar_planted
    cal_w = window_split(len(d.windows), seed=0)
    random = FeatureActs(d.acts.codes[:, 1:], d.acts.tokens, ["r0", "r1", "r2", "r3", "r4"], "random")
    table, f1 = motif_capture({"sae": d.acts, "random": random}, planted_sites, cal_w, ~cal_w, min_sites=5)
    assert list(table.columns) == [*MOTIF_CAPTURE_COLUMNS, *[f"{s}_{c}" for s in ("sae", "random")
                                                             for c in SET_COLUMNS]]
    row = table.set_index("motif_name").loc["REB1"]
    assert row["sae_unit"] == "f0" and row["sae_f1"] >= 0.8 and row["captured"]
    assert row["sae_precision"] >= 0.7 and row["sae_recall"] >= 0.7  # planted sites FIMO misses cost precision
    assert row["n_sites_calibration"] >= 50 and row["n_sites_heldout"] >= 50 and row["sae_n_units"] == 6
    assert row["random_f1"] < 0.1 and row["margin"] > 0.7
    # GCN4 is planted in 100 other windows where no feature fires: f0 does not capture it, nor does any unit
    gcn4 = table.set_index("motif_name").loc["GCN4"]
    assert gcn4["n_sites_heldout"] >= 30 and not gcn4["captured"] and gcn4["sae_f1"] < 0.2
    assert f1.loc["f0", row["motif_id"]] >= 0.8 and f1.loc["f0", gcn4["motif_id"]] < 0.1
    assert table["sae_f1"].is_monotonic_decreasing


def test_unit_is_chosen_on_calibration_not_held_out(jaspar_planted, planted_sites):
    """A unit that fires on the sites only in held-out windows is never chosen: selection is blind to them."""
    d = jaspar_planted
    cal_w = window_split(len(d.windows), seed=0)
    held_tok = ~cal_w[d.acts.tokens["window_index"].to_numpy()]
    f0 = d.acts.codes[:, 0].toarray().ravel()
    good_cal = np.where(~held_tok, f0, 0.0)  # fires on the sites in calibration windows only
    good_held = np.where(held_tok, f0, 0.0)  # ... in held-out windows only
    codes = sp.csr_matrix(np.column_stack([good_cal, good_held]).astype(np.float32))
    acts = FeatureActs(codes, d.acts.tokens, ["cal_only", "held_only"])
    table, f1 = motif_capture({"sae": acts}, planted_sites, cal_w, ~cal_w, min_sites=5)
    row = table.set_index("motif_name").loc["REB1"]
    assert row["sae_unit"] == "cal_only" and row["sae_f1_calibration"] >= 0.8
    assert row["sae_f1"] == 0.0 and not row["captured"]  # the honest held-out score of that choice
    assert f1.loc["held_only", row["motif_id"]] >= 0.8  # the best held-out unit exists, and is not reported


def test_streamed_units_equal_in_memory_units(fake_store):
    store = fake_store
    units = random_units(store.d_model, 4, seed=2)
    codes, tokens = _collect(store, units, batch_size=64, max_tokens=None, exclude_special=True)
    acts = FeatureActs(codes, tokens, units.feature_names, "random")
    w = store.windows
    concepts = pd.DataFrame({"chrom": "chrI", "start": w["start"].to_numpy() + 3, "end": w["start"].to_numpy() + 8,
                             "strand": "+", "concept": "motif:X1 XX", "name": [f"s{i}" for i in range(len(w))]})
    sites = motif_sites(concepts)
    cal_w = np.arange(len(w)) % 2 == 0
    a, fa = motif_capture({"mem": acts}, sites, cal_w, ~cal_w, min_sites=1)
    b, fb = motif_capture({"mem": units}, sites, cal_w, ~cal_w, min_sites=1, store=store, batch_size=20)
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(fa, fb)
    with pytest.raises(InputError, match="pass store="):
        motif_capture({"mem": units}, sites, cal_w, ~cal_w)
    with pytest.raises(InputError, match="not overlap"):
        motif_capture({"mem": acts}, sites, cal_w, cal_w)


def test_motif_labels_rule():
    idx = pd.Index(["f0", "f1", "f2", "f3"], name="feature")
    names = pd.DataFrame({"motif_id": ["M1", None, "M1", None], "motif_name": ["REB1", None, "REB1", None],
                          "motif_q": [1e-5, np.nan, 1e-4, np.nan]}, index=idx)
    capture = pd.DataFrame({"motif": ["motif:M1 REB1", "motif:M2 ABF1", "motif:M3 MCM1"],
                            "motif_id": ["M1", "M2", "M3"], "motif_name": ["REB1", "ABF1", "MCM1"],
                            "captured": [True, True, False], "sae_unit": ["f0", "f1", "f3"],
                            "sae_f1": [0.9, 0.7, 0.6]})
    site_f1 = pd.DataFrame({"M1": [0.9, 0.1, 0.2, 0.0]}, index=idx)
    lab = motif_labels(names, capture, site_f1, index=idx, min_f1=0.5, max_share=0.3)
    assert lab["motif_label"].tolist() == ["REB1", "ABF1", "REB1", ""]
    assert lab["motif_label_source"].tolist() == ["tomtom+sites", "sites", "tomtom", ""]
    assert lab["motif_name_share"].tolist()[0] == 0.5 and lab["motif_name_flagged"].tolist() == [True, False, True,
                                                                                                  False]
    np.testing.assert_allclose(lab["motif_site_f1"], [0.9, np.nan, 0.2, np.nan])
    cat = pd.concat([names, lab], axis=1).assign(captured=False, best_concept=None, f1=np.nan)
    labels = feature_labels(cat)
    assert labels.tolist() == ["motif REB1 (Tomtom q 1e-05, sites F1 0.90)", "motif ABF1 (sites F1 0.70)",
                               "motif REB1 (Tomtom q 1e-04)", "unassigned"]
