"""Known-motif enrichment: a motif planted in cases is found by Fisher and the logistic model, BH holds
the others back, covariates enter the model, and the cross-reference says which SAE biomarkers found it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sst

from genosae.biomarkers.motif_enrichment import (
    cross_reference,
    known_motif_enrichment,
    motif_hit_counts,
)
from genosae.genome.motifs import Motif


def _pwm(consensus: str, p: float = 0.97) -> np.ndarray:
    m = np.full((len(consensus), 4), (1 - p) / 3)
    m[np.arange(len(consensus)), ["ACGT".index(b) for b in consensus]] = p
    return m


MOTIFS = [Motif("M1", "RAP1", _pwm("ACACCCATACAT")), Motif("M2", "REB1", _pwm("TTACCCGG")),
          Motif("M3", "ABF1", _pwm("TCACTATACGA"))]


def _design(n: int = 40, seed: int = 0):
    rng = np.random.default_rng(seed)
    seqs, cond = {}, {}
    for i in range(2 * n):
        s = list(rng.choice(list("ACGT"), 300))
        is_case = i < n
        if is_case and i % 8 != 0:  # 7 of 8 cases carry RAP1
            p = int(rng.integers(20, 130))
            s[p:p + 12] = "ACACCCATACAT"
        if i % 5 == 0:  # REB1 at the same rate in both groups
            p = int(rng.integers(160, 280))
            s[p:p + 8] = "TTACCCGG"
        name = f"u{i}"
        seqs[name] = "".join(s)
        cond[name] = "case" if is_case else "control"
    obs = pd.DataFrame({"condition": pd.Series(cond)})
    obs["gc_fraction"] = [(v.count("G") + v.count("C")) / len(v) for v in seqs.values()]
    return seqs, obs


def test_planted_motif_is_enriched_and_the_others_are_not():
    seqs, obs = _design()
    counts = motif_hit_counts(seqs, MOTIFS)
    assert list(counts.columns) == ["M1", "M2", "M3"] and (counts.index == list(seqs)).all()
    assert (counts.loc[[f"u{i}" for i in range(40) if i % 8], "M1"] >= 1).all()
    res = known_motif_enrichment(counts, obs, motif_names={m.id: m.name for m in MOTIFS},
                                 covariates=["gc_fraction"]).set_index("motif_id")
    rap1 = res.loc["M1"]
    has = counts["M1"] > 0
    table = [[int(has[:40].sum()), 40 - int(has[:40].sum())], [int(has[40:].sum()), 40 - int(has[40:].sum())]]
    assert rap1["fisher_p"] == pytest.approx(sst.fisher_exact(table).pvalue)
    assert rap1["fisher_q"] < 1e-8 and rap1["direction"] == "case" and rap1["odds_ratio"] > 10
    assert rap1["logit_p"] < 1e-6 and rap1["logit_coef"] > 0 and rap1["motif_name"] == "RAP1"
    assert res.loc["M2", "fisher_q"] > 0.05 and res.loc["M3", "fisher_q"] > 0.05
    assert list(res.index[:1]) == ["M1"]  # sorted by p


def test_logistic_model_uses_the_covariates():
    """A motif that only tracks GC, which differs by group, is significant by Fisher but not once GC
    is in the logistic model."""
    rng = np.random.default_rng(1)
    n = 60
    gc = np.r_[rng.normal(0.6, 0.05, n), rng.normal(0.4, 0.05, n)]
    has = rng.random(2 * n) < 1 / (1 + np.exp(-(gc - 0.5) * 40))
    units = [f"u{i}" for i in range(2 * n)]
    counts = pd.DataFrame({"M1": has.astype(int)}, index=pd.Index(units, name="unit"))
    obs = pd.DataFrame({"condition": ["case"] * n + ["control"] * n, "gc_fraction": gc}, index=units)
    plain = known_motif_enrichment(counts, obs).iloc[0]
    adj = known_motif_enrichment(counts, obs, covariates=["gc_fraction"]).iloc[0]
    assert plain["fisher_p"] < 1e-3 and plain["logit_p"] < 1e-3
    assert adj["fisher_p"] == plain["fisher_p"] and adj["logit_p"] > 0.01


def test_groups_are_tested_apart_and_separation_is_reported():
    units = [f"s{i}|L{j}" for i in range(10) for j in range(2)]
    cond = ["case" if i < 5 else "control" for i in range(10) for _ in range(2)]
    present = [int(i < 5 and j == 0) for i in range(10) for j in range(2)]  # L0: only cases; L1: nobody
    counts = pd.DataFrame({"M1": present}, index=units)
    obs = pd.DataFrame({"condition": cond}, index=units)
    res = known_motif_enrichment(counts, obs, group=pd.Series([u.split("|")[1] for u in units], index=units))
    by = res.set_index("group")
    assert by.loc["L0", "n_case_with"] == 5 and by.loc["L0", "n_control_with"] == 0
    assert by.loc["L0", "fisher_p"] == pytest.approx(sst.fisher_exact([[5, 0], [0, 5]]).pvalue)
    assert by.loc["L0", "logit_coef"] > 1 and by.loc["L0", "logit_p"] < 0.05  # Firth: finite under separation
    assert by.loc["L1", "fisher_p"] == 1.0 and by.loc["L1", "logit_note"] == "motif in all or no units"


def test_cross_reference_names_what_the_sae_found_and_what_no_motif_explains():
    seqs, obs = _design()
    counts = motif_hit_counts(seqs, MOTIFS)
    enr = known_motif_enrichment(counts, obs, motif_names={m.id: m.name for m in MOTIFS})
    rng = np.random.default_rng(2)
    prof = pd.DataFrame({"f1": (counts["M1"] > 0) * 1.0 + rng.normal(0, 0.1, len(counts)),  # tracks RAP1
                         "f2": (obs["condition"] == "case") * 1.0 + rng.normal(0, 0.5, len(counts)),
                         "f3": rng.normal(size=len(counts))}, index=counts.index)
    bm = pd.DataFrame({"feature": ["f2", "f1", "f3"], "q": [1e-6, 1e-5, 0.5], "motif_name": ["", "", ""]})
    table, summary = cross_reference(enr, bm, prof, counts, obs["condition"])
    assert summary["motifs_significant"] == ["RAP1"]
    assert summary["motifs_found_by_sae"] == {"RAP1": ["f1"]}
    t = table.set_index("feature")
    assert t.loc["f1", "explained"] and "RAP1" in t.loc["f1", "explained_by"]
    assert "f3" not in t.index  # not a biomarker at q <= 0.05
    # f2 follows the condition (so it correlates with RAP1 across all units) but not RAP1 within groups
    assert not t.loc["f2", "explained"] and summary["biomarkers_unexplained"] == ["f2"]
    pooled = sst.spearmanr(prof["f2"], counts["M1"] > 0).statistic
    assert pooled > 0.5  # what a pooled correlation would have wrongly called "explained"
    bm2 = bm.iloc[[0]]
    t3, _ = cross_reference(enr, bm2.assign(motif_name=["RAP1"]), prof, counts, obs["condition"])
    assert t3["explained"].iat[0] and "named" in t3["explained_by"].iat[0]
    assert "found by SAE biomarkers: RAP1 (f1)" in summary["line_found"]


def test_firth_matches_plain_logistic_without_separation_and_stays_finite_with_it():
    import statsmodels.api as sm

    from genosae.biomarkers.motif_enrichment import firth_logit

    rng = np.random.default_rng(3)
    X = np.column_stack([np.ones(400), rng.normal(size=400)])
    y = (rng.random(400) < 1 / (1 + np.exp(-(0.3 + 0.8 * X[:, 1])))).astype(float)
    beta, _, ok = firth_logit(X, y)
    ml = sm.Logit(y, X).fit(disp=0).params
    assert ok and np.allclose(beta, ml, atol=0.03)  # the penalty is O(1/n)
    sep = np.column_stack([np.ones(20), np.r_[np.ones(10), np.zeros(10)]])
    b, _, ok = firth_logit(sep, np.r_[np.ones(10), np.zeros(10)])
    assert ok and np.isfinite(b).all() and b[1] == pytest.approx(2 * np.log(21), rel=1e-3)  # log((10.5/0.5)^2)


def test_a_chance_correlation_in_a_small_design_does_not_explain_a_biomarker():
    """10 + 10 units: a motif present in 9 cases and 2 controls is enriched; 30 random features
    include some with |within-group rho| >= 0.3 by chance, and none is called explained."""
    rng = np.random.default_rng(7)
    units = [f"u{i}" for i in range(20)]
    cond = pd.Series(["case"] * 10 + ["control"] * 10, index=units)
    has = np.r_[np.ones(9), 0, np.ones(2), np.zeros(8)]
    counts = pd.DataFrame({"M1": has.astype(int)}, index=pd.Index(units, name="unit"))
    enr = known_motif_enrichment(counts, pd.DataFrame({"condition": cond}), motif_names={"M1": "RAP1"})
    assert enr["fisher_q"].iat[0] <= 0.05
    prof = pd.DataFrame(rng.normal(size=(20, 30)), index=units, columns=[f"f{i}" for i in range(30)])
    bm = pd.DataFrame({"feature": prof.columns, "q": 0.01})
    table, summary = cross_reference(enr, bm, prof, counts, cond, n_biomarkers=30)
    rho = [np.mean([sst.spearmanr(prof.loc[cond == g, f], counts.loc[cond == g, "M1"]).statistic
                    for g in ("case", "control")]) for f in prof.columns]
    assert max(abs(r) for r in rho) >= 0.3  # what |rho| alone would have called explained
    assert not table["explained"].any() and summary["motifs_found_by_sae"] == {}
