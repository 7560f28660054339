"""The whole cohort path on real code and real yeast promoters, with a model of known behaviour.

A one-block GenosaeCNN is set by hand so that its layer-1 hidden state is the one-hot base plus a
fixed pattern wherever the REB1 consensus occurs (a model whose "feature" we know). Then:
``simulate_cohort`` plants REB1 in promoters of carrier cases → cohort windows from the VCFs →
``embed_windows`` → an SAE trained on those activations → feature logos matched to JASPAR with
Tomtom → ``run_biomarkers``. The top biomarker must be an SAE feature aligned to REB1, its top loci
the planted promoters, q < 0.05.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from genosae.biomarkers import run_biomarkers
from genosae.biomarkers.loci import vcf_locus_variants
from genosae.biomarkers.simulate import resolve_motif, simulate_cohort
from genosae.features.activations import feature_activations
from genosae.features.motifs import feature_pwms, match_motifs
from genosae.genome.designs import read_samples
from genosae.genome.motifs import load_jaspar
from genosae.genome.reference import Reference
from genosae.genome.windows import cohort_windows
from genosae.model.adapter import load_model
from genosae.model.embed import embed_windows
from genosae.model.lm import VOCAB, GenosaeCNNConfig, GenosaeCNNForMaskedLM, build_tokenizer
from genosae.model.store import ActivationStore
from genosae.sae.train import SAETrainConfig, train_sae


def motif_detector(path, motif: str) -> None:
    """Save a GenosaeCNN whose block-1 output = one-hot base (+ a pattern at motif centres)."""
    cfg = GenosaeCNNConfig(hidden_size=8, num_hidden_layers=1, kernel_size=len(motif), dilations=[1],
                           intermediate_size=8)
    model = GenosaeCNNForMaskedLM(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        emb = model.model.embeddings.weight
        for i, b in enumerate("ACGT"):
            emb[VOCAB[b], i] = 1.0
        block = model.model.layers[0]
        # channel 4 of the conv: +10 per matching base, −10 per mismatch, fires only on an exact match
        w = -10.0 * torch.ones(4, len(motif))
        for j, b in enumerate(motif):
            w["ACGT".index(b), j] = 10.0
        block.conv.weight[4, :4, :] = w
        block.conv.bias[4] = -10.0 * (len(motif) - 0.5)
        block.conv_norm.weight.fill_(1.0)
        block.ffn_norm.weight.fill_(1.0)
    model.save_pretrained(path)
    build_tokenizer().save_pretrained(path)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_planted_motif_is_the_top_biomarker(yeast_reference, tmp_path):
    motif, _ = resolve_motif("REB1")
    sim = simulate_cohort(yeast_reference.fasta, yeast_reference.gff3, tmp_path / "sim", n_cases=6,
                          n_controls=6, n_genes=8, regions_per_gene=2, motif="REB1",
                          fraction_cases=1.0, background_snv_rate=0.001, seed=3)
    planted = set(sim.truth.loc[sim.truth["n_snvs"] > 0, "region_id"])
    assert len(planted) >= 6
    ref = Reference.open(yeast_reference.fasta)
    regions = sim.regions[["region_id", "chrom", "start", "end", "strand", "name"]]
    windows = cohort_windows(ref, read_samples(tmp_path / "sim" / "samples.tsv"), regions, 512, 256)

    motif_detector(tmp_path / "model", motif)
    adapter = load_model(tmp_path / "model", layer=1, device="cpu", local_files_only=True)
    store = embed_windows(adapter, windows, windows["sequence"].tolist(), tmp_path / "store",
                          progress=False)
    acts_raw = np.concatenate([s["acts"] for s in ActivationStore(store.path).iter_shards()])
    assert acts_raw.shape[1] == 8 and (np.abs(acts_raw[:, 4:]) > 1).any()  # the detector fired

    # the SAE trains on its own data (as on the genome atlas in the workflow): random DNA in which
    # the motif is common enough to earn a feature
    rng = np.random.default_rng(0)
    train_seqs = []
    for _ in range(150):
        seq = np.frombuffer(b"ACGT", dtype=np.uint8)[rng.integers(0, 4, 512)].copy()
        for pos in rng.choice(np.arange(0, 512 - len(motif), 40), 4, replace=False):
            seq[pos:pos + len(motif)] = np.frombuffer(motif.encode(), dtype=np.uint8)
        train_seqs.append(seq.tobytes().decode())
    train_w = pd.DataFrame({"window_id": [f"t{i}" for i in range(150)], "chrom": "synthetic",
                            "start": 0, "end": 512, "strand": "+"})
    train_store = embed_windows(adapter, train_w, train_seqs, tmp_path / "train_store", progress=False)
    cfg = SAETrainConfig(architecture="topk", d_sae=8, k=1, batch_size=512, lr=3e-3,
                         training_tokens=300_000, stats_tokens=20_000, seed=0)
    sae = train_sae(ActivationStore(train_store.path), cfg, tmp_path / "sae", progress=False)
    acts = feature_activations(sae, ActivationStore(store.path))

    pwms, _ = feature_pwms(acts, windows, windows["sequence"].tolist(), n_top=30, flank=8)
    fungi = load_jaspar(collection="CORE", tax_group="fungi")
    matches = match_motifs({f"f{k}": v for k, v in pwms.items()}, fungi)
    catalog = matches.rename(columns={"motif_name": "best_motif"})[["feature", "best_motif", "motif_q"]]
    catalog["label"] = np.where(catalog["motif_q"] <= 0.05, "motif " + catalog["best_motif"], "")

    run = run_biomarkers(acts.codes, acts.tokens, windows, design={"kind": "cohort", "name": "e2e"},
                         params={"permutations": 50, "alpha": 0.05, "kmer_k": 4, "cv_folds": 3,
                                 "covariates": ["age"]},
                         feature_names=acts.feature_names, catalog=catalog,
                         obs=sim.samples.set_index("sample_id")[["condition", "age"]],
                         sae=sae, store=ActivationStore(store.path))
    top = run.biomarkers.iloc[0]
    # Tomtom's best JASPAR match is REB1 or NSI1, its paralog with the same TTACCCGG motif; matched
    # against REB1 alone the feature's logo is significant
    assert top["best_motif"] in {"REB1", "NSI1"} and top["motif_q"] <= 0.05, run.biomarkers.head()
    # a motif name reaches a biomarker row only where its match passed (q ≤ 0.05 here)
    shown = run.biomarkers["best_motif"].fillna("").astype(str).str.len() > 0
    assert (run.biomarkers.loc[shown, "motif_q"] <= 0.05).all()
    assert run.biomarkers.loc[~shown, "motif_q"].isna().all()
    f = int(str(top["feature"]).removeprefix("f"))
    reb1 = [m for m in fungi if m.name == "REB1"]
    assert match_motifs({f: pwms[f]}, reb1).loc[0, "motif_p"] <= 0.01
    assert top["q"] < 0.05 and top["direction"] == "up" and top["empirical_p"] <= 2 / 51
    loci = run.loci[run.loci["feature"] == top["feature"]].head(len(planted))
    assert set(loci["region_id"]) == planted
    assert (loci["q"] < 0.05).all() and loci["variants"].str.contains(r"\(case 1.0 / control 0.0\)").all()
    # at base-pair resolution the feature changes on the planted motif: within its 9 bp of a planted SNV
    assert (loci["peak_diff"] > 0).all() and (loci["peak_to_variant"] <= len(motif)).all()
    truth = sim.truth.set_index("region_id")
    for r in loci.itertuples():
        assert truth.loc[r.region_id, "motif_start"] < r.peak_pos <= truth.loc[r.region_id, "motif_end"]
    assert set(run.locus_table.head(len(planted))["region_id"]) == planted
    # permuted labels: the family-wise rate (share of permutations with any BH rejection) is not
    # clearly above α, over the features that vary (the rest cannot be rejected)
    perm = run.permutation
    varies = int((np.ptp(run.adata.layers["mean"], axis=0) > 0).sum())
    assert perm.n_tested == varies and perm.rejections.shape == (50,)
    assert perm.familywise_ci[0] <= 0.05 and perm.rejections.max() <= varies
    base = run.baselines.set_index("method")
    assert base.loc["kmer_k4", "n_features"] == 256 and 0 <= base.loc["kmer_k4", "cv_auroc"] <= 1
    assert base.loc["sae_features", "best_feature"] == top["feature"]
    # the variants read back from the haplotype windows are exactly the VCFs' (this cohort has SNVs only)
    spans = windows.groupby("region_id").agg(chrom=("chrom", "first"), start=("start", "min"),
                                             end=("end", "max")).reset_index()
    from_vcf = vcf_locus_variants(read_samples(tmp_path / "sim" / "samples.tsv"), spans, ref)
    key = ["region_id", "pos", "ref", "alt", "carriers_case", "carriers_control"]
    pd.testing.assert_frame_equal(from_vcf[key].sort_values(key).reset_index(drop=True),
                                  run.variants[key].sort_values(key).reset_index(drop=True),
                                  check_dtype=False)
