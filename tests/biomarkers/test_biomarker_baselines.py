import numpy as np
import pandas as pd
import pytest

from genosae.biomarkers import kmer_baseline, kmer_counts, linear_probe, mean_embeddings
from genosae.biomarkers.baselines import kmer_names
from genosae.errors import InputError


def test_kmer_counts_match_naive():
    seqs = ["ACGTACGTNNAC", "acgt", "", "TTTTT", "GATTACA"]
    k = 2
    names = kmer_names(k)
    assert names[:3] == ["AA", "AC", "AG"] and len(names) == 16
    got = kmer_counts(seqs, k)
    for i, s in enumerate(seqs):
        s = s.upper()
        for j, kmer in enumerate(names):
            naive = sum(s[p:p + k] == kmer for p in range(len(s) - k + 1))
            assert got[i, j] == naive, (s, kmer)
    assert kmer_counts(["ACGTA"], 3).sum() == 3
    with pytest.raises(InputError):
        kmer_counts(seqs, 0)


def test_kmer_baseline_finds_planted_motif(cohort):
    ad_obs = cohort.samples.set_index("sample_id")
    ad_obs = ad_obs[ad_obs["condition"] != "reference"]
    seqs = [cohort.windows.loc[cohort.windows["sample_id"] == s, "sequence"].str.cat(sep="N")
            for s in ad_obs.index]
    res = kmer_baseline(seqs, ad_obs, k=4, folds=4)
    t = res["table"]
    # planting the motif creates its k-mers and destroys the reference k-mers it overwrote: both
    # separate the groups perfectly; every k-mer of the motif is among the best, increased in cases
    motif = t[t["feature"].isin({"TTACCCG"[i:i + 4] for i in range(4)})]
    assert len(motif) == 4 and (motif["direction"] == "up").all() and (motif["q"] < 0.05).all()
    assert (motif["p"] == t["p"].min()).any()
    assert res["classifier"].auroc > 0.8


def test_linear_probe_and_store_embeddings(tmp_path):
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    windows = pd.DataFrame({"window_id": [f"w{i}" for i in range(20)],
                            "region_id": [f"r{i // 2}" for i in range(20)]})
    windows.to_csv(tmp_path / "windows.tsv", sep="\t", index=False)
    acts = rng.normal(size=(200, 6)).astype(np.float16)
    widx = np.repeat(np.arange(20), 10).astype(np.int32)
    special = np.zeros(200, bool)
    special[::10] = True
    acts[special] = 100  # must be ignored
    save_file({"acts": acts, "window_index": widx, "is_special": special},
              str(tmp_path / "shard-00000.safetensors"))
    (tmp_path / "manifest.json").write_text(
        '{"format": "genosae-activations/1", "d_model": 6, "n_tokens": 200, "layer": 0, "dtype": "float16",'
        ' "windows_file": "windows.tsv",'
        ' "shards": [{"file": "shard-00000.safetensors", "n_tokens": 200}]}')
    emb = mean_embeddings(tmp_path, "region_id")
    assert emb.shape == (10, 6)
    ref = acts[(widx // 2 == 3) & ~special].astype(np.float64).mean(0)
    np.testing.assert_allclose(emb.loc["r3"].to_numpy(), ref, rtol=1e-6)
    y = np.r_[np.zeros(20), np.ones(20)]
    x = rng.normal(size=(40, 8))
    x[y == 1, 2] += 4
    assert linear_probe(x, y, folds=4).auroc > 0.85
    assert linear_probe(rng.normal(size=(40, 8)), y, folds=4).auroc < 0.8


def test_unit_kmers_count_each_reference_kmer_once():
    from genosae.biomarkers.baselines import unit_sequences
    from genosae.genome.reference import reverse_complement

    rng = np.random.default_rng(1)
    ref = "".join(rng.choice(list("ACGT"), 40))
    starts = np.array([0, 10, 20, 30])  # 20-bp windows every 10 bp, the last one clipped at 40
    ends = np.minimum(starts + 20, 40)
    rows = []
    for sample, strand in (("s1", "+"), ("s2", "-")):
        for s, e in zip(starts, ends):
            seq = ref[s:e] if strand == "+" else reverse_complement(ref[s:e])
            rows.append((sample, "R", "chrI", s, e, strand, seq))
    w = pd.DataFrame(rows, columns=["sample_id", "region_id", "chrom", "start", "end", "strand",
                                    "sequence"])
    seqs = unit_sequences(w, w["sequence"].tolist(), pd.Index(["s2", "s1"]), "sample_id")
    assert seqs == [reverse_complement(ref), ref]
    np.testing.assert_array_equal(kmer_counts(seqs[1:], 3)[0], kmer_counts([ref], 3)[0])
    assert kmer_counts(seqs[1:], 3).sum() == 38  # not 4 windows' 18 + 18 + 18 + 8 = 62
    with pytest.raises(InputError, match="no windows"):
        unit_sequences(w, w["sequence"].tolist(), pd.Index(["s3"]), "sample_id")
