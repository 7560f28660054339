"""Alignment: sparse path equals a dense brute force, BH equals statsmodels, selection on calibration,
held-out scores unbiased, and an enrichment test whose unit is the window."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy import stats

import genosae.features.alignment as alignment_module
from genosae.features.alignment import (
    AlignmentCounts,
    align_concepts,
    best_per_concept,
    best_per_feature,
    threshold_matrix,
    trivial_f1,
)

THR = (0.0, 0.15, 0.5, 0.6, 0.8)


def _random_case(seed: int, n_tok: int = 400, n_feat: int = 7, n_conc: int = 4, width: int = 20):
    rng = np.random.default_rng(seed)
    dense = rng.exponential(1.0, (n_tok, n_feat)) * (rng.random((n_tok, n_feat)) < 0.3)
    memb = rng.random((n_tok, n_conc)) < np.array([0.05, 0.2, 0.5, 0.0])[:n_conc]
    # instances: runs of 5 tokens share an id per concept
    inst = np.where(memb, (np.arange(n_tok)[:, None] // 5) * n_conc + np.arange(n_conc)[None, :] + 1, 0)
    win = np.arange(n_tok) // width
    cal = (rng.random(win.max() + 1) < 0.5)[win]  # calibration by window
    return dense.astype(np.float32), memb, inst, cal, win


def _window_z(fire: np.ndarray, member: np.ndarray, win: np.ndarray) -> tuple[float, float, int]:
    """Direct window-clustered score test: s_w = Σ (x - x̄)(y - ȳ) per window, z = Σ s / sqrt(Σ s²)."""
    x, y = fire.astype(float), member.astype(float)
    ids = np.unique(win)
    s = np.array([((x[win == u] - x.mean()) * (y[win == u] - y.mean())).sum() for u in ids])
    v = (s**2).sum()
    if fire.sum() == 0 or v <= 1e-9:
        return 0.0, 1.0, 0
    z = s.sum() / np.sqrt(v)
    hits = int(sum((x * y)[win == u].sum() > 0 for u in ids))
    return z, float(stats.t.sf(z, len(ids) - 1)), hits


def _brute(dense, memb, inst, cal, win, thr):
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
            z, p, n_hit = _window_z(fire, m, win[test])
            rows.append(dict(threshold=thr[k], f1_calibration=f1s[k], tp=tp, n_fire=fire.sum(), f1=f1,
                             mcc=mcc, domain_recall=dom, z=z, p=p, n_windows_hit=n_hit,
                             n_windows=len(np.unique(win[test]))))
    return pd.DataFrame(rows)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sparse_equals_dense_bruteforce(seed):
    dense, memb, inst, cal, win = _random_case(seed)
    got = align_concepts(sp.csr_matrix(dense), sp.csr_matrix(memb), sp.csr_matrix(inst),
                         calibration_mask=cal, concept_names=list("abcd"), thresholds=THR, window_index=win)
    want = _brute(dense, memb, inst, cal, win, THR)
    assert len(got) == len(want) == dense.shape[1] * memb.shape[1]
    for col in ["threshold", "f1_calibration", "tp", "n_fire", "f1", "mcc", "domain_recall", "z", "p",
                "n_windows_hit", "n_windows"]:
        np.testing.assert_allclose(got[col].to_numpy(float), want[col].to_numpy(float), rtol=1e-7,
                                   atol=1e-9, err_msg=col)
    assert (got["p"] < 1).any()  # the comparison is not only of the p = 1 corner


def test_streamed_chunks_and_small_blocks_equal_one_pass(monkeypatch):
    dense, memb, _, cal, win = _random_case(5, n_tok=600)
    one = align_concepts(dense, memb, None, calibration_mask=cal, concept_names=list("abcd"), window_index=win)
    thr_abs = threshold_matrix(sp.csr_matrix(dense)[cal].max(axis=0).toarray().ravel(), THR)
    counts = AlignmentCounts(thr_abs, 4, thresholds=THR)
    for lo in range(0, 600, 100):  # chunks of five whole windows
        counts.add(dense[lo:lo + 100], memb[lo:lo + 100], calibration_mask=cal[lo:lo + 100],
                   window_index=win[lo:lo + 100])
    pd.testing.assert_frame_equal(counts.result(concept_names=list("abcd")), one)
    monkeypatch.setattr(alignment_module, "_BLOCK_CELLS", 50)  # one window per dense block
    small = align_concepts(dense, memb, None, calibration_mask=cal, concept_names=list("abcd"), window_index=win)
    pd.testing.assert_frame_equal(small, one)
    # a held-out window split over two chunks would be two test units: refused
    held = np.flatnonzero(~cal)
    w0 = held[win[held] == win[held[0]]]
    split = AlignmentCounts(thr_abs, 4, thresholds=THR)
    split.add(dense[w0[:5]], memb[w0[:5]], calibration_mask=cal[w0[:5]], window_index=win[w0[:5]])
    with pytest.raises(ValueError, match="two chunks"):
        split.add(dense[w0[5:]], memb[w0[5:]], calibration_mask=cal[w0[5:]], window_index=win[w0[5:]])


def test_dense_input_and_names():
    dense, memb, inst, cal, win = _random_case(3)
    a = align_concepts(dense, memb, inst, calibration_mask=cal, concept_names=list("abcd"),
                       feature_names=[f"x{i}" for i in range(7)], window_index=win)
    assert a["feature"].tolist() == [f"x{i}" for i in range(7) for _ in range(4)]
    assert a["concept"].tolist() == list("abcd") * 7
    b = align_concepts(sp.csr_matrix(dense), memb, inst, calibration_mask=cal, concept_names=list("abcd"),
                       feature_names=[f"x{i}" for i in range(7)], window_index=win)
    pd.testing.assert_frame_equal(a, b)


def test_trivial_f1_formula():
    # a unit firing everywhere: precision p, recall 1 → F1 = 2p/(1+p); and no association (p = 1)
    n, k = 1000, 37
    p = k / n
    assert trivial_f1(p) == pytest.approx(2 * (k / n) * 1 / ((k / n) + 1))
    memb = np.zeros((n, 1), bool)
    memb[np.arange(0, n, 27)] = True
    everywhere = np.ones((n, 1), np.float32)
    win = np.arange(n) // 50
    cal = win % 2 == 0
    a = align_concepts(everywhere, memb, None, calibration_mask=cal, concept_names=["c"], window_index=win)
    assert a["f1"].iloc[0] == pytest.approx(a["trivial_f1"].iloc[0])
    assert not a["captured"].iloc[0]
    assert a["mcc"].iloc[0] == 0.0 and a["p"].iloc[0] == 1.0 and a["z"].iloc[0] == 0.0


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


def test_noise_features_selected_on_calibration_score_like_a_random_pick():
    """Winner's curse: the best of many pure-noise features, chosen and scored on the same half, looks
    good; chosen on calibration and scored on held-out it scores like any noise feature."""
    rng = np.random.default_rng(7)
    n_win, width, n_feat = 200, 100, 1500
    n = n_win * width
    win = np.arange(n) // width
    cal = (np.arange(n_win) % 2 == 0)[win]
    memb = np.zeros((n, 1), bool)
    for s in rng.choice(n - 20, 150, replace=False):  # 150 sites of 20 bp → prevalence ~ 0.15
        memb[s:s + 20] = True
    dense = (rng.random((n, n_feat)) < 0.1).astype(np.float32)  # noise, independent of the concept
    a = align_concepts(sp.csr_matrix(dense), memb, None, calibration_mask=cal, concept_names=["c"],
                       window_index=win)
    f1 = a["f1"].to_numpy()
    mean, sd = f1.mean(), f1.std()
    chosen = best_per_concept(a).loc["c"]
    assert chosen["n_candidates"] == n_feat
    assert abs(chosen["f1"] - mean) < 2 * sd  # unbiased: one draw from the noise distribution
    assert f1.max() > mean + 3 * sd  # the old rule (best held-out F1) reports an inflated score
    f1_cal = a["f1_calibration"].to_numpy()
    assert chosen["f1_calibration"] > f1_cal.mean() + 3 * f1_cal.std()  # its selection score is inflated
    assert chosen["f1"] < chosen["trivial_f1"] and not a["captured"].any()


def test_best_concept_and_best_feature_are_chosen_on_calibration():
    # f0 matches concept a on calibration windows and concept b on held-out windows: the choice must
    # follow calibration (a) even though held-out F1 is higher for b
    n_win, width = 40, 50
    n = n_win * width
    win = np.arange(n) // width
    cal = (np.arange(n_win) % 2 == 0)[win]
    rng = np.random.default_rng(1)
    memb = rng.random((n, 2)) < 0.2
    f0 = np.where(cal, memb[:, 0], memb[:, 1]).astype(np.float32)
    f1 = (memb[:, 0] & (rng.random(n) < 0.7)).astype(np.float32)  # a weaker, honest "a" feature
    a = align_concepts(np.column_stack([f0, f1]), memb, None, calibration_mask=cal, concept_names=["a", "b"],
                       window_index=win)
    bf = best_per_feature(a)
    assert bf.loc["f0", "concept"] == "a" and bf.loc["f0", "f1_calibration"] == 1.0
    assert bf.loc["f0", "f1"] < 0.5 and not bf.loc["f0", "captured"] and bf.loc["f0", "n_candidates"] == 2
    bc = best_per_concept(a)
    assert bc.loc["a", "feature"] == "f0"  # calibration F1 1.0 beats f1's 0.82 ...
    assert bc.loc["a", "f1"] < a.set_index(["feature", "concept"]).loc[("f1", "a"), "f1"]  # ... held-out lower


def test_window_test_one_run_in_one_window_is_not_significant():
    """Adjacent tokens are not independent: one long run inside one window is one observation."""
    n_win, width = 100, 200
    n = n_win * width
    win = np.arange(n) // width
    cal = (np.arange(n_win) < 50)[win]
    memb = np.zeros((n, 1), bool)
    one = np.zeros((n, 1), np.float32)
    lo = 70 * width + 40  # held-out window 70
    memb[lo:lo + 60] = True
    one[lo:lo + 60] = 1.0
    memb[10 * width + 40:10 * width + 100] = True  # the concept also occurs once on the calibration half
    one[10 * width + 40:10 * width + 100] = 1.0
    a = align_concepts(one, memb, None, calibration_mask=cal, concept_names=["c"], window_index=win)
    row = a.iloc[0]
    assert row["f1"] == 1.0 and row["n_windows_hit"] == 1 and row["n_windows"] == 50
    old_p = stats.hypergeom.sf(row["tp"] - 1, (~cal).sum(), memb[~cal].sum(), row["n_fire"])
    assert old_p < 1e-100  # what the token-level hypergeometric test said
    assert row["p"] > 0.1 and not row["captured"]
    # the same feature and concept in one short run in each of 30 held-out windows: 30 units agree
    memb2 = np.zeros((n, 1), bool)
    for w in range(50, 80):
        memb2[w * width + 40:w * width + 50] = True
    for w in range(0, 30):
        memb2[w * width + 40:w * width + 50] = True
    many = align_concepts(memb2.astype(np.float32), memb2, None, calibration_mask=cal, concept_names=["c"],
                          window_index=win).iloc[0]
    assert many["n_windows_hit"] == 30 and many["p"] < 1e-5 and many["captured"]


def test_window_test_is_calibrated_where_token_test_is_not():
    """Independent run-structured feature and concept: few window-level p < 0.05, many token-level ones."""
    rng = np.random.default_rng(3)
    n_win, width, n_feat = 120, 200, 200
    n = n_win * width
    win = np.arange(n) // width
    cal = (np.arange(n_win) % 2 == 0)[win]

    def runs(k: int, length: int) -> np.ndarray:
        x = np.zeros(n, bool)
        for s in rng.choice(n - length, k, replace=False):
            x[s:s + length] = True
        return x

    memb = runs(200, 30)[:, None]
    dense = np.column_stack([runs(150, 30) for _ in range(n_feat)]).astype(np.float32)
    a = align_concepts(sp.csr_matrix(dense), memb, None, calibration_mask=cal, concept_names=["c"],
                       window_index=win)
    token_p = stats.hypergeom.sf(a["tp"] - 1, (~cal).sum(), memb[~cal].sum(), a["n_fire"])
    assert (a["p"] < 0.05).mean() <= 0.08
    assert (token_p < 0.05).mean() > 0.15
    assert not a["captured"].any()


def test_without_windows_there_is_no_test():
    dense, memb, inst, cal, _ = _random_case(4)
    memb[:, 0] = dense[:, 2] > 0.5
    a = align_concepts(dense, memb, inst, calibration_mask=cal, concept_names=list("abcd"))
    assert a["p"].isna().all() and a["q"].isna().all() and not a["captured"].any()
    assert a.set_index(["feature", "concept"]).loc[("f2", "a"), "f1"] > 0.9  # the scores are still there


def test_best_helpers_and_bad_input():
    dense, memb, inst, cal, win = _random_case(4, n_tok=2000)
    memb[:, 0] = dense[:, 2] > 0.5  # feature f2 is concept a
    a = align_concepts(dense, memb, inst, calibration_mask=cal, concept_names=list("abcd"), window_index=win)
    bc = best_per_concept(a)
    assert bc.loc["a", "feature"] == "f2" and bc.loc["a", "n_candidates"] == 7
    bf = best_per_feature(a)
    assert bf.loc["f2", "concept"] == "a" and bf.loc["f2", "captured"] and bf.loc["f2", "q"] < 1e-6
    assert a.loc[a["feature"] != "f2", "captured"].sum() == 0
    with pytest.raises(ValueError, match="thresholds"):
        align_concepts(dense, memb, None, calibration_mask=cal, concept_names=list("abcd"), thresholds=(2,))
    with pytest.raises(ValueError, match="one row per token"):
        align_concepts(dense, memb[:10], None, calibration_mask=cal, concept_names=list("abcd"))
