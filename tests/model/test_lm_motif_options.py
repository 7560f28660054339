"""The default model's levers for motifs: first-block kernel, span masking, regulatory windows, the held-out
promoter evaluation, and their ``train-lm`` options, training log and model card."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_lms import random_dna
from transformers import AutoModelForMaskedLM

from genosae.cli import main
from genosae.genome.annotation import read_annotation
from genosae.genome.reference import runs
from genosae.model.lm import (
    MASK_ID,
    GenosaeCNNConfig,
    GenosaeCNNForMaskedLM,
    mask_tokens,
    token_ids,
)
from genosae.model.train_lm import (
    LMTrainConfig,
    evaluate_lm,
    kmer_context_baseline,
    load_codes,
    masked_base_scores,
    regulatory_regions,
    sample_windows,
    train_lm,
    write_model_card,
)

MODEL = Path(__file__).resolve().parents[2] / "models" / "genosae-yeast-cnn"
TINY = {"hidden_size": 16, "num_hidden_layers": 2, "kernel_size": 3}


# ----------------------------------------------------------------------------- first-block kernel
def test_first_kernel_size_round_trips_and_sets_the_receptive_field(tmp_path):
    cfg = GenosaeCNNConfig(**TINY, first_kernel_size=15)
    assert cfg.receptive_field == 1 + 14 * 1 + 2 * 2  # dilations [1, 2]
    torch.manual_seed(0)
    model = GenosaeCNNForMaskedLM(cfg).eval()
    assert model.model.layers[0].conv.kernel_size == (15,) and model.model.layers[1].conv.kernel_size == (3,)
    model.save_pretrained(tmp_path)
    again = AutoModelForMaskedLM.from_pretrained(tmp_path, local_files_only=True).eval()
    assert again.config.first_kernel_size == 15
    ids = torch.from_numpy(token_ids("ACGTTGCAAN" * 7))[None]
    a, b = model(ids, output_hidden_states=True), again(ids, output_hidden_states=True)
    assert a.logits.shape[1] == ids.shape[1]  # odd kernels keep the length
    for x, y in zip(a.hidden_states, b.hidden_states):
        torch.testing.assert_close(x, y, rtol=0, atol=0)
    assert GenosaeCNNConfig(**TINY).receptive_field == 1 + 2 * 3


@pytest.mark.parametrize("key", ["kernel_size", "first_kernel_size"])
def test_even_kernel_is_refused(key):
    with pytest.raises(ValueError, match=f"{key} must be a positive odd integer"):
        GenosaeCNNConfig(**{**TINY, key: 14})


def test_shipped_model_without_the_key_gives_the_same_hidden_states():
    """Values computed with the model code before ``first_kernel_size`` existed."""
    model = AutoModelForMaskedLM.from_pretrained(MODEL, local_files_only=True).eval()
    assert "first_kernel_size" not in json.loads((MODEL / "config.json").read_text())
    assert model.config.first_kernel_size is None and model.config.receptive_field == 529
    ids = torch.from_numpy(token_ids("ACGTACGTTTGACA" * 10 + "TATAAAAGGC"))[None]
    with torch.no_grad():
        out = model(ids, output_hidden_states=True)
    expected = {1: [2.4044041633605957, 1.9229813814163208, 1.5854281187057495],
                6: [15.84044075012207, 14.923345565795898, 14.578990936279297],
                8: [18.87957000732422, 16.390186309814453, 18.63897705078125]}
    for layer, sums in expected.items():
        got = out.hidden_states[layer][0].sum(-1)[[0, 70, 149]]
        torch.testing.assert_close(got, torch.tensor(sums), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(out.hidden_states[6][0, 70, :3],
                               torch.tensor([7.84132194519043, -5.2230939865112305, 1.143018126487732]),
                               rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- span masking
def _old_mask_tokens(ids_BL, rate, generator):
    """``mask_tokens`` as it was before span masking (checkpoints must resume identically)."""
    is_base = (ids_BL >= 3) & (ids_BL <= 6)
    chosen = (torch.rand(ids_BL.shape, generator=generator) < rate) & is_base
    labels = torch.where(chosen, ids_BL, torch.full_like(ids_BL, -100))
    roll = torch.rand(ids_BL.shape, generator=generator)
    inputs = ids_BL.clone()
    inputs[chosen & (roll < 0.8)] = MASK_ID
    rand_sel = chosen & (roll >= 0.8) & (roll < 0.9)
    inputs[rand_sel] = torch.randint(3, 7, ids_BL.shape, generator=generator)[rand_sel]
    return inputs, labels


def test_span_1_1_is_exactly_the_old_masking():
    ids = torch.from_numpy(token_ids(random_dna(4000, 1, with_n=True)).reshape(8, 500))
    g_old, g_new, g_default = (torch.Generator().manual_seed(7) for _ in range(3))
    for _ in range(3):
        inputs, labels = _old_mask_tokens(ids, 0.15, g_old)
        new = mask_tokens(ids, 0.15, g_new, span=(1, 1))
        default = mask_tokens(ids, 0.15, g_default)
        for mb in (new, default):
            assert torch.equal(mb.input_ids, inputs) and torch.equal(mb.labels, labels)
    assert torch.equal(g_old.get_state(), g_new.get_state())


def _maximal_runs(chosen_BL: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Start and end of every maximal run of chosen positions, row by row (rows never join)."""
    padded = np.pad(chosen_BL.numpy(), ((0, 0), (0, 1)))
    return runs(padded.ravel())


@pytest.mark.parametrize("span", [(3, 8), (1, 5), (4, 4)])
def test_span_masking_rate_and_run_lengths(span):
    lo = span[0]
    ids = torch.randint(3, 7, (256, 512), generator=torch.Generator().manual_seed(0))
    mb = mask_tokens(ids, 0.15, torch.Generator().manual_seed(1), span=span)
    chosen = mb.labels != -100
    assert abs(chosen.float().mean().item() - 0.15) < 0.01
    start, end = _maximal_runs(chosen)
    assert (end - start).min() >= lo  # spans lie inside the window: never cut short
    # every masked base is a target with its own label, 80% of them [MASK]
    assert torch.equal(mb.labels[chosen], ids[chosen])
    assert 0.77 < (mb.input_ids[chosen] == MASK_ID).float().mean().item() < 0.83


def test_span_lengths_and_starts_are_uniform_and_decided_per_span():
    lo, hi, n_l = 2, 6, 512
    ids = torch.randint(3, 7, (1024, n_l), generator=torch.Generator().manual_seed(0))
    mb = mask_tokens(ids, 0.03, torch.Generator().manual_seed(2), span=(lo, hi))  # few spans merge
    chosen = mb.labels != -100
    start, end = _maximal_runs(chosen)
    length = end - start
    single = length <= hi
    assert single.mean() > 0.95  # merged spans are rare
    share = np.array([(length[single] == n).mean() for n in range(lo, hi + 1)])
    assert np.abs(share - 1 / (hi - lo + 1)).max() < 0.02, share
    # span starts: anywhere the span fits, uniformly (positions in the padded, flattened layout)
    col = start % (n_l + 1)
    assert col.min() == 0 and (end % (n_l + 1)).max() == n_l
    counts = np.histogram(col[single & (col < n_l - hi)], bins=4, range=(0, n_l - hi))[0]
    assert np.abs(counts / counts.mean() - 1).max() < 0.12, counts
    # [MASK] / random / keep per span: a single span is all [MASK] or none
    is_mask = np.pad((mb.input_ids == MASK_ID).numpy(), ((0, 0), (0, 1))).ravel()  # as _maximal_runs
    csum = np.r_[0, np.cumsum(is_mask)]
    n_mask = csum[end] - csum[start]
    homogeneous = (n_mask == 0) | (n_mask == length)
    assert homogeneous[single].mean() > 0.97
    assert 0.75 < (n_mask[single] == length[single]).mean() < 0.85


def test_span_masking_touches_only_base_tokens():
    seq = token_ids(random_dna(3000, 3, with_n=True) + "N" * 40)
    ids = torch.from_numpy(np.tile(seq, (16, 1)))
    ids[:, -20:] = 0  # padding
    mb = mask_tokens(ids, 0.3, torch.Generator().manual_seed(0), span=(3, 10))
    base = (ids >= 3) & (ids <= 6)
    assert (mb.labels[~base] == -100).all()
    assert torch.equal(mb.input_ids[~base], ids[~base])
    assert abs((mb.labels[base] != -100).float().mean().item() - 0.3) < 0.01
    with pytest.raises(ValueError, match="1 <= lo <= hi"):
        mask_tokens(ids, 0.15, torch.Generator(), span=(3, 2))


# ----------------------------------------------------------------------------- regulatory windows
@pytest.fixture
def toy_genome(make_fasta, make_gff):
    """chrA/chrB for training, chrH held out; genes on all three (``+`` and ``-``)."""
    fasta = make_fasta({"chrA": random_dna(6000, 1), "chrB": random_dna(5000, 2), "chrH": random_dna(2400, 3)})
    gff = make_gff([
        ("chrA", "gene", 2001, 2600, "+", ".", "ID=gene:a1;locus_tag=A1"),
        ("chrA", "CDS", 2001, 2600, "+", 0, "ID=CDS:a1;locus_tag=A1"),
        ("chrA", "CDS", 2651, 3000, "-", 0, "ID=CDS:a2;locus_tag=A2"),  # its 3' flank overlaps a1's
        ("chrB", "CDS", 41, 900, "-", 0, "ID=CDS:b1;locus_tag=B1"),  # 3' flank clipped at 0
        ("chrH", "CDS", 1001, 1500, "+", 0, "ID=CDS:h1;locus_tag=H1"),
        ("chrH", "CDS", 1201, 1600, "-", 0, "ID=CDS:h2;locus_tag=H2"),
        ("chrH", "CDS", 1801, 2100, "+", 0, "ID=CDS:h3;locus_tag=H3"),
        ("chrH", "CDS", 101, 300, "-", 0, "ID=CDS:h4;locus_tag=H4"),
    ])
    return fasta, gff


def test_regulatory_regions_are_stranded_flanks_merged(toy_genome):
    _, gff = toy_genome
    ann = read_annotation(gff)
    sizes = {"chrA": 6000, "chrB": 5000}  # the training chromosomes; chrH held out
    reg = regulatory_regions(ann, sizes, upstream=100, downstream=30)
    got = list(zip(reg.chrom.tolist(), reg.start.tolist(), reg.end.tolist()))
    # a1 (+, CDS 2000-2600): [1900, 2000) and [2600, 2630); a2 (-, 2650-3000): [3000, 3100) and [2620, 2650)
    # b1 (-, 40-900): [900, 1000) and [10, 40)
    assert got == [(0, 1900, 2000), (0, 2600, 2650), (0, 3000, 3100), (1, 10, 40), (1, 900, 1000)]
    assert reg.cum.tolist() == np.cumsum([100, 50, 100, 30, 100]).tolist()


def _overlaps(which, starts, window, reg) -> np.ndarray:
    same = which[:, None] == reg.chrom[None, :]
    hit = (starts[:, None] < reg.end[None, :]) & (starts[:, None] + window > reg.start[None, :])
    return (same & hit).any(1)


def test_regulatory_windows_hold_a_region_base_at_a_uniform_offset(toy_genome):
    _, gff = toy_genome
    reg = regulatory_regions(read_annotation(gff), {"chrA": 6000, "chrB": 5000}, upstream=100, downstream=30)
    lengths = np.array([6000.0, 5000.0])
    rng = np.random.default_rng(0)
    which, starts = sample_windows(rng, lengths, 64, 20_000, reg, 20_000)
    assert _overlaps(which, starts, 64, reg).all()
    assert (starts >= 0).all() and (starts + 64 <= lengths[which]).all()
    # one 1-bp region: the window start is the base minus a uniform offset in [0, window)
    one = regulatory_regions(read_annotation(gff), {"chrA": 6000}, upstream=1, downstream=0)
    assert one.start.tolist() == [1999, 3000]
    _, s = sample_windows(np.random.default_rng(1), lengths[:1], 64, 64_000, one, 64_000)
    offset = np.where(s > 2500, 3000 - s, 1999 - s)
    counts = np.bincount(offset, minlength=64)
    assert counts.size == 64 and counts.min() > 0.8 * 1000 and counts.max() < 1.2 * 1000


def test_regulatory_share_and_default_stream(toy_genome):
    _, gff = toy_genome
    reg = regulatory_regions(read_annotation(gff), {"chrA": 6000, "chrB": 5000}, upstream=100, downstream=30)
    lengths = np.array([6000.0, 5000.0])
    cfg = LMTrainConfig(fasta="", output_dir="", batch_size=16, regulatory_fraction=0.5)
    assert cfg.n_regulatory == 8
    rng = np.random.default_rng(0)
    hits = np.array([_overlaps(*sample_windows(rng, lengths, 64, 16, reg, 8), 64, reg) for _ in range(500)])
    assert hits[:, 8:].all()  # the regulatory half
    random_share = hits[:, :8].mean()  # the rest is random: ~6% of 64-bp windows touch a region
    assert 0.03 < random_share < 0.12
    # without regulatory windows the rng is drawn exactly as before the option existed
    a, b = np.random.default_rng(5), np.random.default_rng(5)
    which, starts = sample_windows(a, lengths, 64, 16)
    old_which = b.choice(2, size=16, p=lengths / lengths.sum())
    old_starts = (b.random(16) * (lengths[old_which] - 64)).astype(np.int64)
    assert np.array_equal(which, old_which) and np.array_equal(starts, old_starts)
    assert a.bit_generator.state == b.bit_generator.state


def test_training_draws_regulatory_windows_off_the_heldout_chromosome(toy_genome, tmp_path, monkeypatch):
    import genosae.model.train_lm as tl

    fasta, gff = toy_genome
    seen = []

    def record(rng, lengths, window, n, regions=None, n_regulatory=0):
        out = sample_windows(rng, lengths, window, n, regions, n_regulatory)
        seen.append((lengths.copy(), regions, *out))
        return out

    monkeypatch.setattr(tl, "sample_windows", record)
    train_lm(LMTrainConfig(fasta=str(fasta), output_dir=str(tmp_path / "m"), holdout_chrom="chrH", window=64,
                           batch_size=4, steps=5, warmup=1, threads=1, model=TINY, regulatory_fraction=1.0,
                           regulatory_upstream=100, regulatory_downstream=30, annotation=str(gff)))
    assert len(seen) == 5
    expected = regulatory_regions(read_annotation(gff), {"chrA": 6000, "chrB": 5000}, upstream=100, downstream=30)
    for lengths, reg, which, starts in seen:
        assert lengths.tolist() == [6000, 5000]  # chrA, chrB: chrH is never drawn from
        for got, want in zip(reg, expected):
            assert np.array_equal(got, want)
        assert _overlaps(which, starts, 64, expected).all()


# ----------------------------------------------------------------------------- held-out promoters
def test_heldout_promoter_evaluation(toy_genome, tmp_path):
    fasta, gff = toy_genome
    torch.manual_seed(0)
    model_dir = tmp_path / "model"
    GenosaeCNNForMaskedLM(GenosaeCNNConfig(**TINY)).save_pretrained(model_dir)
    res = evaluate_lm(model_dir, fasta, holdout_chrom="chrH", start=0, end=1024, annotation=gff,
                      output=tmp_path / "eval_heldout.json")
    assert list(res)[:6] == ["holdout", "n_positions", "model", "kmer_baseline", "unigram_bits",
                             "delta_bits_vs_kmer"]
    assert res["n_positions"] == 1024
    pr = res["promoters"]
    # 500 bp upstream: h1 + [500, 1000), h2 - [1600, 2100), h3 + [1300, 1800), h4 - [300, 800)
    mask = np.zeros(2400, dtype=bool)
    for lo, hi in [(500, 1000), (1600, 2100), (1300, 1800), (300, 800)]:
        mask[lo:hi] = True
    assert pr["n_genes"] == 4 and pr["n_positions"] == mask.sum() == 1500
    # the model's numbers: the whole-chromosome pass, promoter positions only
    model = AutoModelForMaskedLM.from_pretrained(model_dir, local_files_only=True).eval()
    chrom = load_codes(fasta, ["chrH"])[0]
    full = masked_base_scores(model, chrom)
    keep = mask[full.positions]
    assert pr["model"]["bits_per_base"] == pytest.approx(float(-full.log2p[keep].mean()), rel=1e-6)
    assert pr["model"]["accuracy"] == pytest.approx(float(full.correct[keep].mean()))
    # the k-mer numbers: on exactly those positions
    kmer = kmer_context_baseline(load_codes(fasta, ["chrA", "chrB"]), chrom, np.flatnonzero(mask))
    assert pr["kmer_baseline"] == kmer
    assert pr["delta_bits_vs_kmer"] == pytest.approx(pr["model"]["bits_per_base"] - kmer["bits_per_base"])
    assert "promoters" in json.loads((tmp_path / "eval_heldout.json").read_text())
    # no annotation beside the FASTA or given: no promoter block, the rest unchanged
    gff.unlink()
    plain = evaluate_lm(model_dir, fasta, holdout_chrom="chrH", start=0, end=1024)
    assert "promoters" not in plain and plain["model"] == res["model"]


# ----------------------------------------------------------------------------- CLI, log and card
def test_train_lm_cli_records_the_options_and_the_card_states_them(toy_genome, tmp_path, capsys):
    fasta, gff = toy_genome
    out = tmp_path / "run"
    args = ["train-lm", "--fasta", str(fasta), "--output-dir", str(out), "--holdout-chrom", "chrH",
            "--steps", "2", "--batch-size", "4", "--hidden-size", "8", "--layers", "2", "--threads", "1",
            "--kernel-size", "3", "--first-kernel-size", "15", "--mask-rate", "0.2", "--mask-span", "3", "6",
            "--regulatory-fraction", "0.5", "--regulatory-upstream", "200", "--regulatory-downstream", "50",
            "--annotation", str(gff), "--lr", "0.001"]
    assert main(args) == 0
    tc = json.loads((out / "training_log.json").read_text())["train_config"]
    assert tc["model"] == {"hidden_size": 8, "num_hidden_layers": 2, "kernel_size": 3, "first_kernel_size": 15}
    assert (tc["mask_rate"], tc["mask_span"], tc["lr"]) == (0.2, [3, 6], 0.001)
    assert (tc["regulatory_fraction"], tc["regulatory_upstream"], tc["regulatory_downstream"]) == (0.5, 200, 50)
    assert tc["annotation"] == str(gff)
    assert AutoModelForMaskedLM.from_pretrained(out).config.first_kernel_size == 15
    ev = json.loads((out / "eval_heldout.json").read_text())
    assert ev["promoters"]["n_positions"] == 1500
    card = (out / "README.md").read_text()
    assert "kernel 3 (first block: 15)" in card
    assert "2 of each batch's 4 (50%) hold a base drawn" in card
    assert f"(200 bp upstream of the\n  start and 50 bp downstream of the end, on the gene's strand; `{gff}`)" in card
    assert "span masking of 20% of bases in spans of 3–6 bases" in card
    assert ("--lr 0.001 --kernel-size 3 --first-kernel-size 15 --mask-rate 0.2 --mask-span 3 6 "
            "--regulatory-fraction 0.5 --regulatory-upstream 200 --regulatory-downstream 50`") in card
    assert "### Held-out promoters (chrH, 500 bp upstream of 4 coding genes, 1,500 positions)" in card
    assert card.index("### Held-out promoters") < card.index("## Limits")


def test_card_of_a_default_run_reads_as_before(tmp_path):
    """The shipped model's log and evaluation without its promoter block: the card's recipe lines are the old ones."""
    (tmp_path / "training_log.json").write_text((MODEL / "training_log.json").read_text())
    evaluation = json.loads((MODEL / "eval_heldout.json").read_text())
    evaluation.pop("promoters", None)
    (tmp_path / "eval_heldout.json").write_text(json.dumps(evaluation))
    card = write_model_card(tmp_path).read_text()
    assert ("random 512-bp windows,\n  random reverse complement; BERT masking of 15% of bases (80/10/10).\n"
            in card)
    assert "(dilated Conv1d, kernel 9 → GELU → LayerNorm)" in card
    assert "--steps 4000 --max-minutes 105`\n" in card
    assert "Held-out promoters" not in card


@pytest.mark.parametrize(("flags", "message"), [
    (["--mask-span", "3", "2"], "mask_span: the mask span needs two integers 1 <= LO <= HI"),
    (["--mask-span", "0", "2"], "mask_span: the mask span needs two integers 1 <= LO <= HI"),
    (["--regulatory-fraction", "1.5"], "regulatory_fraction: the regulatory fraction must be in [0, 1]"),
    (["--first-kernel-size", "14"], "model.first_kernel_size: the kernel size must be a positive odd integer"),
    (["--kernel-size", "8"], "model.kernel_size: the kernel size must be a positive odd integer"),
    (["--mask-rate", "0"], "mask_rate: the mask rate must be in (0, 1)"),
    (["--regulatory-fraction", "0.5", "--annotation", "missing.gff3"], "annotation file not found"),
])
def test_train_lm_cli_refuses_bad_values_in_one_line(toy_genome, tmp_path, capsys, flags, message):
    fasta, _ = toy_genome
    assert main(["train-lm", "--fasta", str(fasta), "--output-dir", str(tmp_path / "x"), *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err, err
    assert not (tmp_path / "x").exists()


def test_regulatory_windows_need_an_annotation(make_fasta, tmp_path, capsys):
    fasta = make_fasta({"chrA": random_dna(3000, 1), "chrH": random_dna(1000, 2)})
    assert main(["train-lm", "--fasta", str(fasta), "--output-dir", str(tmp_path / "x"), "--holdout-chrom",
                 "chrH", "--regulatory-fraction", "0.5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs the genome's annotation" in err and "--annotation" in err, err
