"""Planted case: one feature fires exactly on a motif's occurrences in random sequence."""

from __future__ import annotations

import numpy as np
import pytest

from genosae.features.alignment import align_concepts
from genosae.features.motifs import (
    encode_sequences,
    feature_pwms,
    match_motifs,
    pwm_from_sequences,
    site_sequences,
    top_sites,
    trim_pwm,
)
from genosae.genome.motifs import Motif


def _onehot_pwm(seq: str) -> np.ndarray:
    return pwm_from_sequences(np.stack(encode_sequences([seq] * 20)), pseudocount=0.5)


def test_alignment_finds_planted_concept(planted):
    PLANTED = planted.motif
    a = align_concepts(planted.acts.codes, planted.membership, planted.instances,
                       calibration_mask=planted.cal_tokens, concept_names=planted.concept_names,
                       feature_names=planted.acts.feature_names,
                       window_index=planted.acts.tokens["window_index"].to_numpy())
    row = a[(a.feature == "f0") & (a.concept == f"motif:{PLANTED}")].iloc[0]
    assert row["f1"] == 1.0 and row["precision"] == 1.0 and row["recall"] == 1.0
    assert row["domain_recall"] == 1.0 and row["mcc"] == pytest.approx(1.0)
    # 30 held-out windows are the test's independent units: p ~ t_29 tail at z = sqrt(30)
    assert row["captured"] and row["q"] < 1e-4 and row["n_windows_hit"] == row["n_windows"] == 30
    # noise features capture nothing; f0 is not "G_or_C"
    assert not a[a.feature != "f0"]["captured"].any()
    assert not a[(a.feature == "f0") & (a.concept == "G_or_C")]["captured"].any()


def test_pwm_from_top_sites_matches_planted_motif(planted):
    PLANTED = planted.motif
    pwms, sites = feature_pwms(planted.acts, planted.windows, planted.sequences, [0], n_top=30, flank=8)
    assert len(sites) == 30 and sites["window_index"].is_unique
    core, _ = trim_pwm(pwms[0], min_ic=1.0)
    consensus = "".join("ACGT"[i] for i in core.argmax(1))
    assert consensus == PLANTED
    rng = np.random.default_rng(5)
    decoys = [Motif(f"D{i}", f"decoy{i}", rng.dirichlet(np.ones(4) * 0.4, size=int(rng.integers(6, 14))))
              for i in range(30)]
    targets = [*decoys[:15], Motif("P1", "planted", _onehot_pwm(PLANTED)), *decoys[15:]]
    m = match_motifs({"f0": pwms[0]}, targets)
    assert m.loc[0, "motif_id"] == "P1" and m.loc[0, "motif_strand"] == "+"
    assert m.loc[0, "motif_q"] < 0.01
    # a reverse-complement target is found on the other strand
    rc = PLANTED[::-1].translate(str.maketrans("ACGT", "TGCA"))
    targets[15] = Motif("P1rc", "planted_rc", _onehot_pwm(rc))
    m2 = match_motifs({"f0": pwms[0]}, targets)
    assert m2.loc[0, "motif_id"] == "P1rc" and m2.loc[0, "motif_strand"] == "-"


def test_top_sites_and_minus_strand_orientation(planted):
    sites = top_sites(planted.acts, [0], n_top=5)
    assert (sites["activation"].diff().dropna() <= 0).all()
    # a '-' window reads the reverse complement; its site is the mirror position
    w = planted.windows.iloc[[0]].assign(strand="-")
    s = sites.iloc[[0]].copy()
    s["window_index"] = 0
    s["bp_start"], s["bp_end"] = 10, 11
    seq = planted.sequences[0]
    rc = seq[::-1].translate(str.maketrans("ACGT", "TGCA"))
    got = site_sequences(s, w.reset_index(drop=True), [rc], flank=3)[0]  # sequences come RC-ed
    off = 120 - 11
    assert "".join("ACGTN"[i] for i in got) == rc[off - 3:off + 4]
    # which is the reverse complement of the reference around base 10
    assert "".join("ACGTN"[i] for i in got) == seq[7:14][::-1].translate(str.maketrans("ACGT", "TGCA"))
