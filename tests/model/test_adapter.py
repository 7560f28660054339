"""ModelAdapter over five tiny model families: exact token→base maps, layer hook, LM loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_lms import FAMILIES, random_dna

from genosae.errors import InputError
from genosae.model.adapter import load_model, normalise_dna, reverse_complement

EXPECT = {"cnn": ("char", "mlm"), "nt_fast": ("kmer", "mlm"), "nt_slow": ("kmer", "mlm"),
          "bpe": ("bpe", "mlm"), "causal": ("char", "causal")}
SEQS = [random_dna(50, 1, with_n=True), random_dna(37, 2), random_dna(64, 3).lower(), random_dna(13, 4)]


@pytest.fixture(scope="module", params=FAMILIES)
def adapter(request, model_dirs):
    return request.param, load_model(model_dirs[request.param], layer=1, batch_size=3)


def _token_strings(ad, ids):
    toks = ad.tokenizer.convert_ids_to_tokens(ids.tolist())
    return [t.removeprefix("##") for t in toks]


def test_kind_and_tokenization(adapter):
    fam, ad = adapter
    assert (ad.tokenization, ad.kind) == EXPECT[fam]
    assert ad.layer == 1 and ad.d_model == 16
    if fam.startswith("nt"):
        assert ad.kmer == 6


def test_exact_bp_map(adapter):
    fam, ad = adapter
    batch = ad.tokenize(SEQS)
    for b, seq in enumerate(SEQS):
        n = int(batch.lengths[b])
        seq = normalise_dna(seq)
        ids = batch.input_ids[b, :n]
        special = batch.is_special[b, :n].numpy()
        start, end = batch.bp_start[b, :n].numpy(), batch.bp_end[b, :n].numpy()
        toks = _token_strings(ad, ids)
        body = [t for t, s in zip(toks, special) if not s]
        assert "".join(body) == seq  # tokens tile the sequence
        assert [seq[a:e] for a, e, s in zip(start, end, special) if not s] == body
        assert (start[special] == -1).all() and (end[special] == -1).all()
        assert bool(batch.attention_mask[b, n:].eq(0).all())
        has_n = batch.has_n[b, :n].numpy()
        np.testing.assert_array_equal(has_n, [("N" in t) and not s for t, s in zip(toks, special)])
    if fam != "cnn":
        assert batch.is_special[:, 0].all()  # CLS / BOS first
    if fam.startswith("nt"):
        assert max(len(t) for t in _token_strings(ad, batch.input_ids[0])) == 6


def test_nt_single_base_fallback(model_dirs):
    ad = load_model(model_dirs["nt_slow"], layer=1)
    seq = "ACGTNACGTACGTACGTTTAC"
    b = ad.tokenize([seq])
    toks = _token_strings(ad, b.input_ids[0])
    assert toks == ["<cls>", "A", "C", "G", "T", "N", "ACGTAC", "GTACGT", "T", "T", "A", "C", "<eos>"]
    assert b.bp_start[0].tolist() == [-1, 0, 1, 2, 3, 4, 5, 11, 17, 18, 19, 20, -1]


def test_hook_equals_output_hidden_states_both_strands(adapter):
    _fam, ad = adapter
    res_f = ad.hidden_states(SEQS)
    res_r = ad.hidden_states(SEQS, reverse_complement=True)
    for rc, res in ((False, res_f), (True, res_r)):
        for seq, (acts, spans) in zip(SEQS, res):
            seq = normalise_dna(seq)
            inp = reverse_complement(seq) if rc else seq
            single = ad.tokenize([inp])
            with torch.inference_mode():
                out = ad.model(input_ids=single.input_ids, attention_mask=single.attention_mask,
                               output_hidden_states=True)
            ref = out.hidden_states[ad.layer][0]
            assert acts.shape == ref.shape
            torch.testing.assert_close(acts, ref, atol=1e-5, rtol=1e-4)  # padded batch == single
            body = ~spans.is_special
            toks = [t for t, s in zip(_token_strings(ad, single.input_ids[0]), spans.is_special) if not s]
            got = [seq[a:e] for a, e in zip(spans.bp_start[body], spans.bp_end[body])]
            assert got == ([reverse_complement(t) for t in toks] if rc else toks)
    for ly in (0, -1):  # first and last hidden state too (the last is post-norm for ESM / Llama)
        other = load_model(ad.source["path"], layer=ly)
        single = other.tokenize([SEQS[1]])
        with torch.inference_mode():
            ref = other.model(input_ids=single.input_ids, attention_mask=single.attention_mask,
                              output_hidden_states=True).hidden_states[other.layer][0]
        torch.testing.assert_close(other.hidden_states([SEQS[1]])[0][0], ref, atol=1e-5, rtol=1e-4)


def test_lm_loss_transform(adapter):
    _fam, ad = adapter
    clean = ad.lm_loss(SEQS, seed=0)
    assert np.isfinite(clean) and clean > 0
    assert ad.lm_loss(SEQS, transform=lambda h: h, seed=0) == pytest.approx(clean, rel=1e-6)
    assert ad.lm_loss(SEQS, seed=0) == clean  # deterministic masks
    # masks independent of batching
    ad.batch_size, bs = 1, ad.batch_size
    try:
        assert ad.lm_loss(SEQS, seed=0) == pytest.approx(clean, rel=1e-5)
    finally:
        ad.batch_size = bs
    zero = ad.lm_loss(SEQS, transform=torch.zeros_like, seed=0)
    assert abs(zero - clean) > 1e-4


def test_layer_out_of_range(model_dirs):
    with pytest.raises(InputError, match="out of range"):
        load_model(model_dirs["cnn"], layer=9)


def test_offline_hub_id_refused():
    with pytest.raises(InputError, match="not in the local Hugging Face cache"):
        load_model("no-such-org/no-such-dna-model-xyz", local_files_only=True)
