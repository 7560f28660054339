"""Alignment: sparse path equals a dense brute force, BH equals statsmodels, thresholds from calibration."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy import stats
from statsmodels.stats.multitest import multipletests

from genosae.features.alignment import (
    align_concepts,
    benjamini_hochberg,
    best_per_concept,
    best_per_feature,
    trivial_f1,
)

THR = (0.0, 0.15, 0.5, 0.6, 0.8)


def _random_case(seed: int, n_tok: int = 400, n_feat: int = 7, n_conc: int = 4):
    rng = np.random.default_rng(seed)
    dense = rng.exponential(1.0, (n_tok, n_feat)) * (rng.random((n_tok, n_feat)) < 0.3)
    memb = rng.random((n_tok, n_conc)) < np.array([0.05, 0.2, 0.5, 0.0])[:n_conc]
    # instances: runs of 5 tokens share an id per concept
    inst = np.where(memb, (np.arange(n_tok)[:, None] // 5) * n_conc + np.arange(n_conc)[None, :] + 1, 0)
    cal = rng.random(n_tok) < 0.5
    return dense.astype(np.float32), memb, inst, cal


def _brute(dense, memb, inst, cal, thr):
    rows = []
    test = ~cal
    for f in range(dense.shape[1]):
        mx = max(dense[cal, f].max(), 0)
        for c in range(memb.shape[1]):
            f1s = []
            for t in thr:
                fire = dense[cal, f] > np.float32(t) * np.float32(mx)
                m = memb[cal, c]
                tp = (fire & m).sum()
                den = fire.sum() + m.sum()
                f1s.append(2 * tp / den if den else 0.0)
            k = int(np.argmax(f1s))
            fire = dense[test, f] > np.float32(thr[k]) * np.float32(mx)
            m = memb[test, c]
            tp, fp = (fire & m).sum(), (fire & ~m).sum()
            fn, tn = (~fire & m).sum(), (~fire & ~m).sum()
            f1 = 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else 0.0
            den = np.sqrt(float((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)))
            mcc = (tp * tn - fp * fn) / den if den else 0.0
            ids = inst[test, c]
            all_ids = set(ids[ids > 0])
            hit = set(ids[(ids > 0) & fire])
            dom = len(hit) / len(all_ids) if all_ids else np.nan
            p = stats.hypergeom.sf(tp - 1, test.sum(), m.sum(), fire.sum()) if fire.sum() else 1.0
            rows.append(dict(threshold=thr[k], f1_calibration=f1s[k], tp=tp, n_fire=fire.sum(), f1=f1,
                             mcc=mcc, domain_recall=dom, p=p))
    return pd.DataFrame(rows)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sparse_equals_dense_bruteforce(seed):
    dense, memb, inst, cal = _random_case(seed)
    got = align_concepts(sp.csr_matrix(dense), sp.csr_matrix(memb), sp.csr_matrix(inst),
                         calibration_mask=cal, concept_names=list("abcd"), thresholds=THR)
    want = _brute(dense, memb, inst, cal, THR)
    assert len(got) == len(want) == dense.shape[1] * memb.shape[1]
    for col in ["threshold", "f1_calibration", "tp", "n_fire", "f1", "mcc", "domain_recall", "p"]:
        np.testing.assert_allclose(got[col].to_numpy(float), want[col].to_numpy(float), rtol=1e-9,
                                   atol=1e-12, err_msg=col)


def test_dense_input_and_names():
    dense, memb, inst, cal = _random_case(3)
    a = align_concepts(dense, memb, inst, calibration_mask=cal, concept_names=list("abcd"),
                       feature_names=[f"x{i}" for i in range(7)])
    assert a["feature"].iloc[0] == "x0" and set(a["concept"]) == set("abcd")
    b = align_concepts(sp.csr_matrix(dense), memb, inst, calibration_mask=cal, concept_names=list("abcd"),
                       feature_names=[f"x{i}" for i in range(7)])
    pd.testing.assert_frame_equal(a, b)


def test_bh_matches_statsmodels():
    rng = np.random.default_rng(0)
    p = np.concatenate([rng.random(500), rng.random(50) * 1e-4, [1.0, 0.0, 0.5, 0.5]])
    np.testing.assert_allclose(benjamini_hochberg(p), multipletests(p, method="fdr_bh")[1], rtol=1e-12)
    with_nan = np.array([0.01, np.nan, 0.04, 0.03])
    q = benjamini_hochberg(with_nan)
    assert np.isnan(q[1])
    np.testing.assert_allclose(q[[0, 2, 3]], multipletests(with_nan[[0, 2, 3]], method="fdr_bh")[1])


def test_trivial_f1_formula():
    # a unit firing everywhere: precision p, recall 1 → F1 = 2p/(1+p)
    n, k = 1000, 37
    p = k / n
    assert trivial_f1(p) == pytest.approx(2 * (k / n) * 1 / ((k / n) + 1))
    memb = np.zeros((n, 1), bool)
    memb[:k] = True
    everywhere = np.ones((n, 1), np.float32)
    cal = np.arange(n) % 2 == 0
    a = align_concepts(everywhere, memb, None, calibration_mask=cal, concept_names=["c"])
    assert a["f1"].iloc[0] == pytest.approx(a["trivial_f1"].iloc[0])
    assert not a["captured"].iloc[0]
    assert a["mcc"].iloc[0] == 0.0


def test_threshold_chosen_on_calibration_half_only():
    # feature = concept strength; on calibration only strong activations (>0.5 max) are the concept,
    # on held-out tokens weak activations are the concept too → chosen threshold must come from calibration
    n = 200
    cal = np.arange(n) < 100
    act = np.tile(np.array([1.0, 0.3, 0.0, 0.0], np.float32), n // 4)[:, None]
    memb = np.zeros((n, 1), bool)
    memb[:100, 0] = act[:100, 0] == 1.0
    memb[100:, 0] = act[100:, 0] > 0
    a = align_concepts(act, memb, None, calibration_mask=cal, concept_names=["c"])
    row = a.iloc[0]
    assert row["threshold"] == 0.5 and row["f1_calibration"] == 1.0
    assert row["recall"] == pytest.approx(0.5) and row["precision"] == 1.0
    # swap halves: the other half prefers threshold 0 (fires on anything > 0)
    b = align_concepts(act, memb, None, calibration_mask=~cal, concept_names=["c"])
    assert b.iloc[0]["threshold"] == 0.0


def test_best_helpers_and_bad_input():
    dense, memb, inst, cal = _random_case(4)
    memb[:, 0] = dense[:, 2] > 0.5  # feature f2 is concept a
    a = align_concepts(dense, memb, inst, calibration_mask=cal, concept_names=list("abcd"))
    assert best_per_concept(a).loc["a", "feature"] == "f2"
    bf = best_per_feature(a)
    assert bf.loc["f2", "concept"] == "a" and bf.loc["f2", "captured"]
    with pytest.raises(ValueError, match="thresholds"):
        align_concepts(dense, memb, None, calibration_mask=cal, concept_names=list("abcd"), thresholds=(2,))
    with pytest.raises(ValueError, match="one row per token"):
        align_concepts(dense, memb[:10], None, calibration_mask=cal, concept_names=list("abcd"))
