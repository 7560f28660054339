"""GPN through the ``gpn`` package: tiny GPN (ConvNet and RoFormer encoders) and legacy ConvNet models,
saved with ``save_pretrained`` and loaded offline by ``load_model`` (which registers GPN's model types)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from tiny_lms import make_gpn, random_dna

from genosae.errors import InputError
from genosae.genome.reference import reverse_complement
from genosae.model.adapter import load_model
from genosae.model.embed import embed_windows

pytest.importorskip("gpn", reason="the gpn extra is not installed (pip install 'genosae[gpn]')")

ENCODERS = ["convnet", "roformer", "legacy"]
# different lengths in one batch: a model that ignores attention masks must never see padding
SEQS = [random_dna(50, 21, with_n=True), random_dna(37, 22), random_dna(64, 23).lower(), random_dna(13, 24)]
N_LAYERS = 3


@pytest.fixture(scope="module")
def gpn_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("gpn")
    dirs = {enc: make_gpn(root / enc, enc) for enc in ENCODERS}
    dirs["lower_vocab"] = make_gpn(root / "lower_vocab", normaliser=False)
    return dirs


@pytest.fixture(scope="module", params=ENCODERS)
def gpn_model(request, gpn_dirs):
    return request.param, gpn_dirs[request.param]


def _reference_states(model: torch.nn.Module, ids: torch.Tensor) -> list[torch.Tensor]:
    """GPN's hidden states computed along its own forward path: the embedding, each layer's output,
    and the base model's ``last_hidden_state`` (after ``ln_f`` for ``GPNModel``) as the last."""
    base = model.model
    with torch.inference_mode():
        x = (base.embeddings if hasattr(base, "embeddings") else base.embedding)(input_ids=ids)
        encoder = base.encoder
        if hasattr(encoder, "embed_positions"):  # RoFormer encoder: its own hidden states
            states = list(encoder(x, output_hidden_states=True).hidden_states)
        else:
            layers = encoder.layer if hasattr(encoder, "layer") else encoder
            states = [x]
            for layer in layers:
                states.append(layer(states[-1]))
        states[-1] = base(input_ids=ids).last_hidden_state
    assert len(states) == N_LAYERS + 1
    return states


def test_loads_without_importing_gpn(gpn_dirs):
    """A fresh interpreter that never imports gpn itself: load_model registers GPN's model types."""
    code = ("import sys; from genosae.model.adapter import load_model; "
            f"ad = load_model({str(gpn_dirs['convnet'])!r}, layer=2); "
            "print(ad.kind, ad.tokenization, ad.layer, ad.source['model_type'], 'gpn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["mlm", "char", "2", "GPN", "True"]  # nothing else printed on stdout


@pytest.mark.parametrize("layer", [0, 2, -1])
def test_hook_equals_hidden_state_both_strands(gpn_model, layer):
    enc, path = gpn_model
    ad = load_model(path, layer=layer, batch_size=3)
    assert (ad.kind, ad.tokenization, ad.d_model, ad.n_hidden) == ("mlm", "char", 16, N_LAYERS + 1)
    assert ad.layer == (layer % (N_LAYERS + 1))
    for rc in (False, True):
        res = ad.hidden_states(SEQS, reverse_complement=rc)
        for seq, (acts, spans) in zip(SEQS, res):
            seq = seq.upper()
            read = reverse_complement(seq) if rc else seq
            single = ad.tokenize([read])
            ref = _reference_states(ad.model, single.input_ids)[ad.layer][0]
            assert acts.shape == (len(seq), 16)
            torch.testing.assert_close(acts, ref, atol=1e-5, rtol=1e-4)  # batched (no padding) == single read
            # one token per base, no special tokens; reverse reads map back to forward coordinates
            assert not spans.is_special.any()
            pos = np.arange(len(seq))
            np.testing.assert_array_equal(spans.bp_start, pos[::-1] if rc else pos)
            np.testing.assert_array_equal(spans.bp_end, (pos[::-1] if rc else pos) + 1)
            np.testing.assert_array_equal(spans.has_n, np.frombuffer(read.encode(), np.uint8) == ord("N"))
    if enc == "convnet" and layer == -1:
        assert ad.hook_module == "model.ln_f"  # the last hidden state is taken after the final norm


def test_bases_are_known_tokens(gpn_dirs):
    """GPN's vocabulary is lower-case: upper-case input must still give a c g t, not [UNK]."""
    for key in ("convnet", "lower_vocab"):
        ad = load_model(gpn_dirs[key], layer=1)
        vocab = ad.tokenizer.get_vocab()
        ids = ad.tokenize(["ACGTacgtN"]).input_ids[0].tolist()
        assert ids == [vocab[b] for b in "acgtacgt"] + [ad.tokenizer.unk_token_id], key
    assert load_model(gpn_dirs["lower_vocab"], layer=1)._lower
    assert not load_model(gpn_dirs["convnet"], layer=1)._lower  # its normaliser lower-cases already


def test_lm_loss_is_masked_lm_loss(gpn_model):
    _enc, path = gpn_model
    ad = load_model(path, layer=2, batch_size=3)
    got = ad.lm_loss(SEQS, seed=5)
    total, count = 0.0, 0
    for i, seq in enumerate(SEQS):  # the documented mask: seeded 15 % of the tokens, at least one
        ids = ad.tokenize([seq]).input_ids
        u = np.random.default_rng([5, i]).random(ids.shape[1])
        chosen = torch.from_numpy((u < 0.15) | (u == u.min()))[None]
        with torch.inference_mode():
            logits = ad.model(input_ids=torch.where(chosen, ad.tokenizer.mask_token_id, ids)).logits
        total += float(torch.nn.functional.cross_entropy(logits[chosen], ids[chosen], reduction="sum"))
        count += int(chosen.sum())
    assert np.isfinite(got) and got == pytest.approx(total / count, rel=1e-5)
    assert ad.lm_loss(SEQS, seed=5, transform=lambda h: h) == pytest.approx(got, rel=1e-6)
    assert abs(ad.lm_loss(SEQS, seed=5, transform=torch.zeros_like) - got) > 1e-4


def test_embed_store_both_strands(gpn_dirs, tmp_path):
    chrom = random_dna(200, 25)
    win = pd.DataFrame({"window_id": ["a", "b", "c"], "chrom": "chr1", "start": [0, 40, 120],
                        "end": [60, 100, 170], "strand": ["+", "-", "+"], "region_id": ["r1", "r2", "r3"]})

    def seqs(w: pd.DataFrame) -> list[str]:
        return [chrom[r.start:r.end] if r.strand == "+" else reverse_complement(chrom[r.start:r.end])
                for r in w.itertuples()]

    ad = load_model(gpn_dirs["convnet"], layer=2, batch_size=2)
    store = embed_windows(ad, win, seqs, tmp_path / "store", windows_per_shard=2, storage_dtype="float32",
                          progress=False, reverse_complement=True)
    tt = store.token_table()
    acts = np.concatenate([s["acts"] for s in store.iter_shards()])
    assert store.manifest["tokenization"] == "char" and store.d_model == 16
    assert len(tt) == 2 * int((win.end - win.start).sum()) and not tt.is_special.any()
    for wi, seq in enumerate(seqs(win)):
        for rev in (False, True):
            rows = np.flatnonzero((tt.window_index == wi) & (tt.reverse == rev))
            np.testing.assert_allclose(acts[rows], ad.hidden_states([seq], reverse_complement=rev)[0][0].numpy(),
                                       atol=1e-6)
            # each token's reference base is the base the model read (complemented on the minus strand)
            minus = (win.strand[wi] == "-") != rev
            read = reverse_complement(seq) if rev else seq
            ref = [chrom[s] for s in tt.bp_start.to_numpy()[rows]]
            assert "".join(ref) == (reverse_complement(read)[::-1] if minus else read)


def test_missing_gpn_package_is_one_clear_error(gpn_dirs, monkeypatch):
    monkeypatch.setitem(sys.modules, "gpn", None)  # import gpn now raises ImportError
    with pytest.raises(InputError, match=r"GPN model: install the gpn extra \(pip install 'genosae\[gpn\]'\)"):
        load_model(gpn_dirs["legacy"], layer=1)


def test_control_model_of_gpn(gpn_dirs, tmp_path):
    from genosae.model.control import random_init_model

    out = random_init_model(gpn_dirs["convnet"], tmp_path / "control", seed=3)
    trained, control = load_model(gpn_dirs["convnet"], layer=2), load_model(out, layer=2)
    assert type(control.model) is type(trained.model) and control.hook_module == trained.hook_module
    a, b = (m.hidden_states([SEQS[1]])[0][0] for m in (trained, control))
    assert a.shape == b.shape and not torch.allclose(a, b)
