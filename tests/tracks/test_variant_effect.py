"""genosae variant-effect: a planted motif-creating SNV ranks the motif's feature first; positions after
an indel are exact; tables, LLRs and delta tracks equal a direct computation; one-line errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyBigWig
import pytest
import torch
from tracks_helpers import REGION

from genosae.cli import main
from genosae.genome.reference import Reference, reverse_complement
from genosae.model.adapter import TokenSpans
from genosae.tracks import effect_tables, score_variants, variant_alleles, variant_effect

MOTIF = "CACGTG"
CONTEXT = (-2, 4)  # the context model sees bases i-2 .. i+3: a whole 6-mer starting at i-2 ... i
VCF_HEAD = ("##fileformat=VCFv4.2\n##contig=<ID=chrXVI,length=948066>\n"
            "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")


class ContextModel:
    """A DNA 'model' whose hidden state at base i is the one-hot of bases i-2 .. i+3 (N = zeros), so
    a linear read-out can detect an exact 6-mer: the ground truth for ranking and coordinates."""

    kind = "base"

    def __init__(self) -> None:
        self.width = CONTEXT[1] - CONTEXT[0]

    def hidden_states(self, seqs, *, reverse_complement: bool = False):
        out = []
        for s in seqs:
            text = globals()["reverse_complement"](s) if reverse_complement else s
            codes = np.frombuffer(text.encode(), np.uint8)
            one = np.zeros((len(text) + self.width, 4), np.float32)
            for j, b in enumerate(b"ACGT"):
                one[-CONTEXT[0]:-CONTEXT[0] + len(text), j] = codes == b
            acts = np.concatenate([one[k:k + len(text)] for k in range(self.width)], axis=1)
            n = len(text)
            start = np.arange(n) if not reverse_complement else n - 1 - np.arange(n)
            out.append((torch.from_numpy(acts), TokenSpans(start, start + 1, np.zeros(n, bool), np.zeros(n, bool))))
        return out


def motif_encoder(n_random: int = 15, seed: int = 0):
    """Feature 0 fires (0.5) exactly on the 6-mer CACGTG read on the token 2 bases into it; the others
    are ReLUs of random read-outs of the same context."""
    w0 = np.zeros((6, 4), np.float32)
    for k, b in enumerate(MOTIF):
        w0[k, "ACGT".index(b)] = 1.0
    rng = np.random.default_rng(seed)
    W = np.concatenate([w0.reshape(-1, 1), rng.normal(size=(24, n_random)).astype(np.float32)], axis=1)
    b = np.r_[-5.5, rng.normal(size=n_random)].astype(np.float32)

    def encode(acts: np.ndarray) -> np.ndarray:
        return np.maximum(acts @ W + b, 0.0)

    return encode, W, b


@pytest.fixture(scope="module")
def chrxvi(yeast_reference):
    return Reference.open(yeast_reference.fasta)


def _snv_creating_motif(ref: Reference) -> tuple[int, str, str]:
    """A chrXVI base where one substitution creates CACGTG (and no CACGTG within 300 bp)."""
    seq = ref.fetch("chrXVI", 100_000, 140_000).upper()
    for i in range(400, len(seq) - 400):
        w = seq[i:i + 6]
        diff = [k for k in range(6) if w[k] != MOTIF[k]]
        if len(diff) == 1 and MOTIF not in seq[i - 300:i + 306] and reverse_complement(MOTIF) not in seq[i - 300:i + 306]:
            p = i + diff[0]
            return 100_000 + p, seq[p], MOTIF[diff[0]]
    raise AssertionError("no candidate site")


def _alleles(rows):
    recs = pd.DataFrame(rows, columns=["chrom", "pos", "ref", "alts", "id", "line"])
    return variant_alleles(recs)


def test_planted_motif_creating_snv_ranks_the_motif_feature_first(chrxvi):
    pos, r, a = _snv_creating_motif(chrxvi)
    bg = chrxvi.fetch("chrXVI", pos + 5_000, pos + 5_001).upper()
    alleles = _alleles([("chrXVI", pos, r, (a,), "planted", 1),
                        ("chrXVI", pos + 5_000, bg, ("A" if bg != "A" else "C",), "bg", 2)])
    encode, _, _ = motif_encoder()
    scores = score_variants(ContextModel(), encode, chrxvi, alleles, flank=200, progress=False)
    labels = pd.Series({"f0": "motif CBF1 (E-box)"})
    variants, top, effects = effect_tables(scores, labels, np.r_[0.5, np.full(15, np.nan)], top=3)
    planted = top[top["variant_id"] == alleles["variant_id"].iat[0]]
    assert planted["feature"].iat[0] == "f0" and planted["effect"].iat[0] == pytest.approx(1.0)
    assert planted["named"].iat[0] and variants["top_named_feature"].iat[0] == "f0"
    site = chrxvi.fetch("chrXVI", pos - 5, pos + 6).upper()
    start = pos - 5 + (site[:5] + a + site[6:]).index(MOTIF)
    # + strand reads the motif at its 3rd base; on - the palindrome's reverse read fires 2 bases from its end
    assert planted["peak_pos"].iat[0] in {start + 2 + 1, start + 3 + 1}
    assert (effects.query("variant_id == @alleles.variant_id.iat[1] and feature == 'f0'")["effect"] == 0).all()
    assert variants["top_feature"].iat[1] != "f0"


def test_indel_positions_are_exact(chrxvi):
    """After a 3-bp deletion and a 2-bp insertion every base farther than the context from the edit
    is the same base with the same context, so its per-base delta is exactly 0 (a shifted map, the old
    cohort behaviour, would compare different bases all along the window)."""
    pos = 300_000
    ref4 = chrxvi.fetch("chrXVI", pos, pos + 4).upper()
    anchor = chrxvi.fetch("chrXVI", pos + 1_000, pos + 1_001).upper()
    alleles = _alleles([("chrXVI", pos, ref4, (ref4[0],), "del", 1),
                        ("chrXVI", pos + 1_000, anchor, (anchor + "TT",), "ins", 2)])
    encode, _, _ = motif_encoder()
    scores = score_variants(ContextModel(), encode, chrxvi, alleles, flank=100, track=list(range(16)), progress=False)
    for i, (edit_lo, edit_hi) in enumerate([(pos + 1, pos + 4), (pos + 1_001, pos + 1_001)]):
        for strand in "+-":
            _chrom, w0, diff = scores.tracks[3][strand][i]
            coords = w0 + np.arange(len(diff))
            near = (coords >= edit_lo - 6) & (coords < edit_hi + 6)
            all_f = np.stack([scores.tracks[t][strand][i][2] for t in range(16)])
            assert np.nanmax(np.abs(all_f[:, ~near])) < 1e-5  # float rounding only
            assert np.nanmax(np.abs(all_f[:, near])) > 0.1  # and the edit does change something
        if i == 0:  # the deleted bases have no alternative base: no value there
            assert np.isnan(diff[coords == pos + 1]).all() and np.isnan(diff[coords == pos + 3]).all()
            assert not np.isnan(diff[coords == pos + 4]).any()
    assert scores.variants["kind"].tolist() == ["deletion", "insertion"]
    assert (scores.variants["window_end"] - scores.variants["window_start"]).tolist() == [204, 201]


def _write_vcf(path, rows):
    path.write_text(VCF_HEAD + "".join(f"chrXVI\t{p}\t{i}\t{r}\t{a}\t.\tPASS\t.\n" for p, i, r, a in rows))
    return path


@pytest.fixture(scope="module")
def cli_run(cnn_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("ve")
    chrom, s, _ = REGION
    ref = cnn_run.reference
    b = [ref.fetch(chrom, s + k, s + k + 1).upper() for k in (100, 400, 700)]
    d = ref.fetch(chrom, s + 400, s + 403).upper()
    rows = [(s + 101, "snv1", b[0], "G" if b[0] != "G" else "T"), (s + 401, "del1", d, d[0]),
            (s + 701, "ins1", b[2], b[2] + "AC")]
    vcf = _write_vcf(out / "v.vcf", rows)
    paths = variant_effect(cnn_run.config, vcf=vcf, outdir=out / "res", flank=64, top=4, n_track=3, progress=False)
    return cnn_run, paths, rows


def test_cli_tables_equal_a_direct_computation(cli_run):
    run, paths, rows = cli_run
    v = pd.read_csv(paths["variants"], keep_default_na=False)
    assert v["id"].tolist() == ["snv1", "del1", "ins1"] and v["kind"].tolist() == ["snv", "deletion", "insertion"]
    assert (v["llr_method"] == "masked_pll_allele±0bp").all()
    eff = pd.read_parquet(paths["effects"])
    assert len(eff) == 3 * run.sae.d_sae
    # direct: the SNV's window on + strand, feature maxima from the SAE on the model's own hidden states
    pos0, ref_b, alt_b = rows[0][0] - 1, rows[0][2], rows[0][3]
    ws, we = int(v["window_start"].iat[0]), int(v["window_end"].iat[0])
    assert (ws, we) == (pos0 - 64, pos0 + 1 + 64)
    seq = run.reference.fetch("chrXVI", ws, we).upper()
    alt = seq[:pos0 - ws] + alt_b + seq[pos0 - ws + 1:]
    codes = []
    for x in (seq, alt):
        acts, spans = run.adapter.hidden_states([x])[0]
        with torch.no_grad():
            codes.append(run.sae.encode(acts[~torch.from_numpy(spans.is_special)]).numpy())
    row = eff[eff["variant_id"] == v["variant_id"].iat[0]].set_index("feature")
    np.testing.assert_allclose(row["ref_max_plus"].to_numpy(), codes[0].max(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(row["alt_max_plus"].to_numpy(), codes[1].max(0), rtol=1e-5, atol=1e-6)
    scale = run.catalog["max_activation"].reindex(row.index).to_numpy()
    d = codes[1] - codes[0]  # an SNV: base i of alt stands for base i of ref
    peak = d[np.abs(d).argmax(0), np.arange(d.shape[1])]
    dmax = codes[1].max(0) - codes[0].max(0)
    np.testing.assert_allclose(row["effect_plus"], np.where(np.abs(dmax) > np.abs(peak), dmax, peak) / scale,
                               rtol=1e-4, atol=1e-6)
    assert (np.abs(peak) >= np.abs(dmax) - 1e-6).all()  # for an SNV the per-base peak bounds the max change
    # the LLR of an SNV on a one-token-per-base MLM is the masked marginal, averaged over both strands
    llr = []
    for rc in (False, True):
        text = reverse_complement(seq) if rc else seq
        i = (len(seq) - 1 - (pos0 - ws)) if rc else pos0 - ws
        batch = run.adapter.tokenize([text])
        tok = int(np.flatnonzero((batch.bp_start[0].numpy() == i) & ~batch.is_special[0].numpy())[0])
        ids = batch.input_ids.clone()
        ids[0, tok] = run.adapter.tokenizer.mask_token_id
        with torch.no_grad():
            logp = torch.log_softmax(run.adapter.model(input_ids=ids).logits[0, tok].float(), -1)
        vocab = run.adapter.tokenizer.get_vocab()
        a_, r_ = (reverse_complement(alt_b), reverse_complement(ref_b)) if rc else (alt_b, ref_b)
        llr.append(float(logp[vocab[a_]] - logp[vocab[r_]]))
    assert v["llr"].iat[0] == pytest.approx(np.mean(llr), rel=1e-4, abs=1e-5)
    top = pd.read_csv(paths["top"], keep_default_na=False)
    assert (top.groupby("variant_id")["rank"].apply(list) == pd.Series([[1, 2, 3, 4]] * 3, index=sorted(v["variant_id"]))).all()
    first = top[top["rank"] == 1].set_index("variant_id")["feature"]
    assert (first.reindex(v["variant_id"]).to_numpy() == v["top_feature"].to_numpy()).all()
    assert top.groupby("variant_id")["effect"].apply(lambda e: (np.diff(np.abs(e.to_numpy())) <= 1e-7).all()).all()


def test_cli_delta_tracks_hold_the_per_base_deltas(cli_run):
    _run, paths, rows = cli_run
    import json

    meta = json.loads(paths["params"].read_text())
    tracked = meta["track_features"]
    assert len(tracked) == 3
    bws = sorted(p.name for p in paths["tracks"].glob("*.bw"))
    assert bws == sorted(f"{f}.delta.{t}.bw" for f in tracked for t in ("plus", "minus"))
    v = pd.read_csv(paths["variants"], keep_default_na=False)
    # the deletion: no value on the two deleted bases, values on both sides
    d0 = rows[1][0] - 1
    bw = pyBigWig.open(str(paths["tracks"] / f"{tracked[0]}.delta.plus.bw"))
    vals = np.asarray(bw.values("chrXVI", d0 - 10, d0 + 10))
    assert np.isnan(vals[11:13]).all() and np.isfinite(vals[:11]).all() and np.isfinite(vals[13:]).all()
    # outside every variant's window there is no value
    assert np.isnan(bw.values("chrXVI", int(v["window_start"].min()) - 5, int(v["window_start"].min()))).all()
    bw.close()
    session = paths["igv_session"].read_text()
    assert all(f'"tracks/{f}.delta.{t}.bw"' in session for f in tracked for t in ("plus", "minus"))
    # each variant's per-base peak (from the effects table) is the value its track holds at that base
    eff = pd.read_parquet(paths["effects"])
    checked = 0
    for f in tracked:
        for tag, strand in (("plus", "+"), ("minus", "-")):
            bw = pyBigWig.open(str(paths["tracks"] / f"{f}.delta.{tag}.bw"))
            for vid in v["variant_id"]:
                r = eff[(eff["variant_id"] == vid) & (eff["feature"] == f)].iloc[0]
                if r["peak_strand"] == strand and r["peak_pos"] > 0 and r["peak_delta"] != 0:
                    got = bw.values("chrXVI", int(r["peak_pos"]) - 1, int(r["peak_pos"]))[0]
                    assert got == pytest.approx(r["peak_delta"], rel=1e-5, abs=1e-6)
                    checked += 1
            bw.close()
    assert checked >= 3


@pytest.mark.parametrize(("body", "needle"), [
    ("chrXVI\t101\t.\tQ\tA\t.\tPASS\t.\n", "does not match the reference"),
    ("chrNope\t101\t.\tA\tC\t.\tPASS\t.\n", "unknown chromosome"),
    ("chrXVI\t101\t.\tA\t<DEL>\t.\tPASS\t.\n", "no sequence alleles"),
])
def test_bad_vcf_gives_one_input_error_line(cnn_run, tmp_path, capsys, body, needle):
    ref_base = cnn_run.reference.fetch("chrXVI", 100, 101).upper()
    vcf = tmp_path / "bad.vcf"
    vcf.write_text(VCF_HEAD + body.replace("\tA\t<DEL>", f"\t{ref_base}\t<DEL>"))
    rc = main(["variant-effect", "--config", str(cnn_run.config), "--vcf", str(vcf), "--outdir",
               str(tmp_path / "x"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and "Traceback" not in "".join(err)
    assert err[-1].startswith("genosae variant-effect: error:") and needle in err[-1]
    assert not (tmp_path / "x" / "variant_effects.csv").exists()
