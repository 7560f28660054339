"""Motif naming that can say "no match": aligned sites, background-corrected gate, Tomtom, a null beside it.

Each test here fails on the old naming (10 argmax sites, IC vs uniform, a central 4-column fallback,
the lowest-p target reported whatever its q): that procedure named pure noise GAL4/PPR1/ABF1.
"""

from __future__ import annotations

import numpy as np
import pytest

from genosae.errors import InputError
from genosae.features.motifs import (
    NamingParams,
    NullQueries,
    align_sites,
    background_composition,
    encode_sequences,
    feature_queries,
    match_motifs,
    motif_core,
    name_features,
    naming_params,
    null_queries,
    pwm_from_sequences,
    queries_from_sites,
    random_sites,
    relative_entropy,
    stream_peak_sites,
    top_sites,
    trim_pwm,
)

YEAST_BG = np.array([0.31, 0.19, 0.19, 0.31])  # as the jaspar_planted fixture (62 % AT)
SPACER_MOTIFS = {"GAL4", "PPR1", "ABF1", "SFL1"}  # long degenerate spacers: what flat queries match


def _name(data, motifs, *, n_pseudo: int = 200, params: NamingParams | None = None):
    p = params or NamingParams()
    bg = background_composition(data.sequences)
    queries, stats, _ = feature_queries(data.acts, data.windows, data.sequences, bg, p)
    nulls = null_queries(data.acts, data.windows, data.sequences, bg, p, n_pseudo=n_pseudo, seed=11)
    return name_features(queries, stats, motifs, nulls, params=p)


@pytest.fixture(scope="module")
def planted_names(jaspar_planted, jaspar_fungi):
    return _name(jaspar_planted, jaspar_fungi)


def test_planted_jaspar_motif_is_named_and_noise_is_not(planted_names):
    names, summary = planted_names
    # REB1 sampled from its JASPAR PWM into 160 windows of 62 % AT sequence, on both strands
    assert names.loc["f0", "motif_status"] == "named"
    assert names.loc["f0", "motif_name"] in {"REB1", "NSI1"}  # NSI1: REB1's paralog, same TTACCCGG motif
    assert names.loc["f0", "motif_q"] <= 0.01 and names.loc["f0", "motif_p"] < names.loc["f0", "motif_shuffle_p"]
    assert names.loc["f0", "motif_query_ic"] >= 5.0 and names.loc["f0", "motif_n_sites"] == 160
    noise = names.drop(index="f0")
    assert noise["motif_name"].isna().all(), noise
    assert set(noise["motif_status"]) <= {"uninformative", "no_match"}
    assert summary["n_named"] == 1 and summary["names_per_motif"] == {names.loc["f0", "motif_name"]: 1}
    # the null ran beside it and expects (almost) no false names among the 6 features tried
    assert summary["n_tried"] == 6 and summary["null"]["random_sites"]["n_pseudo"] == 200
    assert summary["expected_false_names"] <= 0.1 and summary["expected_false_names_upper95"] < 0.2


def test_too_few_sites_gives_no_query(jaspar_planted, jaspar_fungi):
    names, summary = _name(jaspar_planted, jaspar_fungi, n_pseudo=20,
                           params=NamingParams(n_sites=400, min_sites=300))
    assert (names["motif_status"] == "too_few_sites").all() and names["motif_name"].isna().all()
    assert summary["n_tried"] == 0 and summary["n_named"] == 0


def test_pure_noise_features_get_no_names_and_the_null_agrees(jaspar_planted, jaspar_fungi):
    """300 noise features (random peak sites): no names, and the null predicts about none."""
    d = jaspar_planted
    noise = random_sites(d.acts, 300, 200, n_windows=len(d.windows), seed=99)
    p = NamingParams()
    bg = background_composition(d.sequences)
    queries, stats, _ = queries_from_sites(noise, [f"null{i}" for i in range(300)], d.windows, d.sequences, bg, p)
    nulls = null_queries(d.acts, d.windows, d.sequences, bg, p, n_pseudo=300, seed=5)
    names, summary = name_features(queries, stats, jaspar_fungi, nulls, params=p)
    assert summary["n_tried"] == 300
    assert summary["n_named"] == 0, names[names["motif_status"] == "named"]
    assert summary["expected_false_names"] <= 1.0
    assert summary["n_named"] <= summary["expected_false_names_upper95"]
    assert names["motif_name"].isna().all()


def test_old_procedure_names_noise_gal4_new_gate_refuses(jaspar_fungi):
    """The artefact: 10 random sites → PWM trimmed at 0.3 bits vs uniform → Tomtom → spacer motifs."""
    rng = np.random.default_rng(0)
    pwms = {f"n{i}": pwm_from_sequences(rng.choice(4, size=(10, 21), p=YEAST_BG)) for i in range(80)}
    old = match_motifs(pwms, jaspar_fungi)  # trim=True: the old queries, central 4 columns as fallback
    assert old["motif_name"].isin(SPACER_MOTIFS).mean() > 0.5  # the null winning
    # the new gate: relative entropy vs the background, no fallback core → no query at all
    for pwm in pwms.values():
        assert motif_core(pwm, YEAST_BG)[0] is None
    flat = np.tile(YEAST_BG, (21, 1))
    assert motif_core(flat, YEAST_BG)[0] is None and trim_pwm(flat)[0].shape == (4, 4)  # old: 4 columns sent


def test_random_pwms_get_no_more_names_than_the_null_predicts(jaspar_fungi):
    """Informative but random PWMs pass the gate; their raw best matches are the spacer motifs, yet
    (q, column shuffles, the pooled shuffle null) they get at most the names the null predicts."""
    import pandas as pd

    rng = np.random.default_rng(4)
    queries = {f"d{i}": rng.dirichlet(np.ones(4) * 0.5, size=int(rng.integers(6, 13))) for i in range(120)}
    stats = pd.DataFrame({"motif_n_sites": 100, "motif_query_width": 0, "motif_query_columns": 0,
                          "motif_query_ic": 0.0, "motif_status": None}, index=pd.Index(list(queries), name="feature"))
    names, summary = name_features(queries, stats, jaspar_fungi, {}, params=NamingParams())
    assert names["best_motif"].isin(SPACER_MOTIFS).mean() > 0.3  # raw best matches: the spacer artefact
    shuffles = summary["null"]["column_shuffles"]
    assert shuffles["n_pseudo"] > 0 and shuffles["scaled_to"] == 120
    assert summary["n_named"] <= max(1.0, shuffles["expected_false_names_upper95"])
    assert summary["n_named"] <= 1 and (names["motif_status"] != "named").sum() >= 119
    assert summary["best_motif_counts"] and sum(summary["names_per_motif"].values()) == summary["n_named"]


def test_column_shuffles_refuse_compositional_matches(jaspar_fungi):
    """A poly-T query matches some T-rich motif; its shuffles match it as well, so it is not a name."""
    import pandas as pd

    poly_t = np.tile([0.05, 0.05, 0.05, 0.85], (10, 1))
    stats = pd.DataFrame({"motif_n_sites": 100, "motif_query_width": 10, "motif_query_columns": 10,
                          "motif_query_ic": 10.0, "motif_status": None}, index=pd.Index(["polyT"], name="feature"))
    names, _ = name_features({"polyT": poly_t}, stats, jaspar_fungi, {}, params=NamingParams())
    assert names.loc["polyT", "motif_p"] >= names.loc["polyT", "motif_shuffle_p"]
    assert names.loc["polyT", "motif_status"] == "no_match"


def test_null_threshold_blocks_names_the_null_can_make(jaspar_fungi):
    """A null whose pseudo-features match REB1 strongly pushes the p threshold below a weak REB1 match."""
    import pandas as pd

    reb1 = next(m for m in jaspar_fungi if m.name == "REB1").pwm
    weak = 0.6 * reb1 + 0.4 * YEAST_BG
    stats = pd.DataFrame({"motif_n_sites": 100, "motif_query_width": 9, "motif_query_columns": 9,
                          "motif_query_ic": 9.0, "motif_status": None}, index=pd.Index(["weak"], name="feature"))
    alone, _ = name_features({"weak": weak}, stats, jaspar_fungi, {}, params=NamingParams())
    assert alone.loc["weak", "motif_status"] == "named"
    strong = {f"s{i}": reb1 for i in range(5)}  # 5 of 100 pseudo-features carry REB1 itself
    names, summary = name_features({"weak": weak}, stats, jaspar_fungi, {"planted": NullQueries(strong, 100)},
                                   params=NamingParams())
    assert summary["p_null"] < names.loc["weak", "motif_p"]
    assert names.loc["weak", "motif_status"] == "no_match"
    assert summary["null"]["planted"]["n_named"] == 0  # the same rule: p < p_null fails for them too


def test_background_and_relative_entropy():
    # A3 C1 G1 T1, strand-symmetrised: A = T = 4, C = G = 2 (N ignored)
    np.testing.assert_allclose(background_composition(["AAAT", "GCN"]), [1 / 3, 1 / 6, 1 / 6, 1 / 3])
    np.testing.assert_allclose(relative_entropy(np.tile(YEAST_BG, (3, 1)), YEAST_BG), 0, atol=1e-12)
    # an A column is worth more than 2 bits against a 31 % A background
    assert relative_entropy(np.array([[1.0, 0, 0, 0]]), YEAST_BG)[0] == pytest.approx(-np.log2(0.31))
    with pytest.raises(InputError, match="background composition"):
        background_composition(["NNNN"])


def test_align_sites_recovers_shifted_reverse_complemented_sites():
    rng = np.random.default_rng(4)
    motif = "TGACGTCATT"
    codes = rng.choice(4, size=(80, 41), p=YEAST_BG).astype(np.uint8)
    enc = encode_sequences([motif])[0]
    rc = (3 - enc)[::-1]
    for i in range(80):  # each site shifted up to ±6 bp from the peak, half of them on the other strand
        pos = 15 + int(rng.integers(-6, 7))
        codes[i, pos:pos + len(motif)] = rc if i % 2 else enc
    pwm, shift, strand = align_sites(codes, YEAST_BG, width=21)
    core, _, n_inf, total = motif_core(pwm, YEAST_BG)
    consensus = "".join("ACGT"[j] for j in core.argmax(1))
    rc_motif = motif[::-1].translate(str.maketrans("ACGT", "TGCA"))
    assert motif in consensus or rc_motif in consensus, consensus
    assert n_inf >= len(motif) - 1 and total > 15
    assert len(np.unique(shift)) > 5 and set(np.unique(strand)) == {0, 1}
    # the centred PWM of the old procedure blurs the same sites
    centred = pwm_from_sequences(codes[:, 10:31])
    assert relative_entropy(centred, YEAST_BG).sum() < 0.5 * relative_entropy(pwm, YEAST_BG).sum()


def test_stream_peak_sites_equals_top_sites(fake_store):
    from genosae.features.activations import _collect, random_units

    store = fake_store
    units = random_units(store.d_model, 5, seed=1)
    codes, tokens = _collect(store, units, batch_size=64, max_tokens=None, exclude_special=True)
    from genosae.features.activations import FeatureActs

    acts = FeatureActs(codes, tokens, units.feature_names, "random")
    want = top_sites(acts, n_top=4)
    got = stream_peak_sites(store, units, 5, n_sites=4, batch_size=20)
    cols = ["feature", "window_index", "bp_start", "bp_end"]
    assert got[cols].to_numpy().tolist() == want[cols].to_numpy().tolist()
    np.testing.assert_allclose(got["activation"], want["activation"], rtol=1e-6)


def test_naming_params_from_config_and_validation():
    p = naming_params({"motif_min_sites": 60, "motif_q": 0.05, "motif_sites": 80, "top_examples": 3})
    assert (p.min_sites, p.q_max, p.n_sites, p.min_column_ic) == (60, 0.05, 80, 0.5)
    with pytest.raises(InputError, match="motif naming parameter"):
        NamingParams(n_sites=10, min_sites=50)
    with pytest.raises(InputError, match="null_quantile"):
        NamingParams(null_quantile=1.5)
