"""The default model's code: tokenizer, HF registration, masking, training resume, evaluation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoModelForMaskedLM, AutoTokenizer

from genosae.model.lm import (
    MASK_ID,
    GenosaeCNNConfig,
    GenosaeCNNForMaskedLM,
    build_tokenizer,
    mask_tokens,
    token_ids,
)
from genosae.model.train_lm import (
    LMTrainConfig,
    kmer_context_baseline,
    masked_base_scores,
    train_lm,
)

TINY = {"hidden_size": 16, "num_hidden_layers": 2, "kernel_size": 3}


def test_tokenizer_matches_vectorised_encoding(tmp_path):
    seq = "ACGTNacgtnRYX"
    tok = build_tokenizer()
    tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    enc = loaded(seq, return_offsets_mapping=True)
    assert enc["input_ids"] == token_ids(seq).tolist()
    assert enc["offset_mapping"] == [(i, i + 1) for i in range(len(seq))]


def test_registered_with_auto_classes(tmp_path):
    model = GenosaeCNNForMaskedLM(GenosaeCNNConfig(**TINY)).eval()
    model.save_pretrained(tmp_path)
    again = AutoModelForMaskedLM.from_pretrained(tmp_path, local_files_only=True).eval()
    base = AutoModel.from_pretrained(tmp_path, local_files_only=True)
    assert type(again) is GenosaeCNNForMaskedLM and base.config.model_type == "genosae-cnn"
    ids = torch.from_numpy(token_ids("ACGT" * 16))[None]
    out = again(ids, output_hidden_states=True)
    assert len(out.hidden_states) == TINY["num_hidden_layers"] + 1
    torch.testing.assert_close(out.logits, model(ids).logits)


def test_masking_only_touches_bases_at_the_rate():
    ids = torch.from_numpy(token_ids("ACGTN" * 4000))[None]
    mb = mask_tokens(ids, 0.15, torch.Generator().manual_seed(0))
    chosen = mb.labels != -100
    assert not chosen[ids == 7].any()  # N is never a target
    rate = chosen.sum().item() / (ids != 7).sum().item()
    assert 0.13 < rate < 0.17
    assert 0.75 < (mb.input_ids[chosen] == MASK_ID).float().mean().item() < 0.85


#: The levers for motifs (first-block kernel, span masking, regulatory windows): the run must resume as exactly.
MOTIF_OPTIONS = dict(model={**TINY, "first_kernel_size": 5}, mask_span=(2, 4), regulatory_fraction=0.5,
                     regulatory_upstream=60, regulatory_downstream=20)


@pytest.mark.parametrize("options", [{}, MOTIF_OPTIONS], ids=["default", "motif-options"])
def test_training_learns_and_resumes_exactly_after_a_kill(make_fasta, make_gff, tmp_path, monkeypatch, options):
    period = "AACGT"  # a repeat whose bases the receptive field (7 bp) predicts from their neighbours
    fasta = make_fasta({"chrA": period * 400, "chrB": period * 400, "chrH": period * 100})
    gff = make_gff([("chrA", "CDS", 301, 600, "+", 0, "ID=CDS:a;locus_tag=A1"),
                    ("chrB", "CDS", 1001, 1300, "-", 0, "ID=CDS:b;locus_tag=B1"),
                    ("chrH", "CDS", 101, 200, "+", 0, "ID=CDS:h;locus_tag=H1")])
    common = dict(fasta=str(fasta), holdout_chrom="chrH", window=64, batch_size=8, lr=5e-3, warmup=5,
                  max_minutes=1e6, threads=1, model=TINY, checkpoint_every=10, annotation=str(gff))
    common.update(options)
    full = tmp_path / "full"
    train_lm(LMTrainConfig(output_dir=str(full), steps=20, **common))
    part = tmp_path / "part"
    calls = {"n": 0}
    clip = torch.nn.utils.clip_grad_norm_

    def killed_at_step_15(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 15:
            raise KeyboardInterrupt  # the job is killed mid-run; the step-10 checkpoint survives
        return clip(*args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", killed_at_step_15)
    with pytest.raises(KeyboardInterrupt):
        train_lm(LMTrainConfig(output_dir=str(part), steps=20, **common))
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", clip)
    assert not (part / "config.json").exists()
    resumed = train_lm(LMTrainConfig(output_dir=str(part), steps=20, **common))
    a = AutoModelForMaskedLM.from_pretrained(full).state_dict()
    b = AutoModelForMaskedLM.from_pretrained(resumed).state_dict()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)
    # it learned the repeat: masked bases of the held-out copy are predicted well above chance
    model = AutoModelForMaskedLM.from_pretrained(full).eval()
    codes = token_ids(period * 100)
    lp = masked_base_scores(model, codes, window=64, core=32, stride_mask=8).log2p
    assert -lp.mean() < 1.5  # chance is 2 bits


def test_kmer_baseline_is_exact_on_a_deterministic_sequence():
    codes = token_ids("ACGT" * 500)
    res = kmer_context_baseline([codes], codes, np.arange(10, 1990), contexts=(0, 1))
    assert res["per_context"][0]["bits_per_base"] == pytest.approx(2.0, abs=0.01)
    assert res["best_context"] == 1 and res["accuracy"] == 1.0
