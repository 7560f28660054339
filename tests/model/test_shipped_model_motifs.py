"""The shipped default model carries a motif: an SAE feature fires on its held-out FIMO sites.

Computed at test time on a small slice (benchmarks/bench_motif_capture.py measures every layer and motif):
promoter windows of chrI–XV train a small TopK SAE on one layer of ``models/genosae-yeast-cnn`` and on the
same layer of its untrained control (:mod:`genosae.model.control`); the feature and threshold for the
motif are chosen on those windows and scored on chrXVI promoter windows, beside the best neuron (chosen by
the same rule) and the control's best feature.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from genosae.features.activations import calibration_windows
from genosae.features.layer_capture import layer_motif_capture, promoter_windows
from genosae.features.motif_capture import motif_sites
from genosae.genome.motifs import load_jaspar, motif_concepts, scan_motifs
from genosae.genome.windows import window_sequences
from genosae.model.control import random_init_model
from genosae.model.train_lm import MOTIF_CAPTURE_CARD, VARIANTS_CARD, write_model_card
from genosae.sae.train import SAETrainConfig

MODEL = Path(__file__).resolve().parents[2] / "models" / "genosae-yeast-cnn"
LAYER = 1  # the layer bench_motif_capture.py finds best for motifs
MOTIFS = ("SPT15",)  # the TATA box (JASPAR MA0386.2): the motif the bench finds best carried at layer 1
N_CALIBRATION, N_HELDOUT, D_SAE, K, TOKENS = 250, 150, 1024, 16, 256_000
#: Held-out F1 at this size (windows of seed 0), SAE seeds 0–5: SAE 0.56/0.48/0.59/0.50/0.49/0.58, best neuron
#: 0.41, control's SAE 0.50/0.30/0.42/0.49/0.34/0.40 — one control SAE varies by ±0.1, so a single seed cannot
#: carry a margin; every assertion is on the mean over SAE_SEEDS (and holds for every 3 of those 6 seeds: the
#: smallest mean margins are 0.08 over the control and the neuron). With the untrained control in place of
#: the model (SAE seeds 0–2): SAE 0.50/0.30/0.42, neuron 0.49, control (seed 1) 0.53/0.34/0.54, so every
#: assertion below fails.
MIN_F1, NEURON_MARGIN, CONTROL_MARGIN = 0.45, 0.05, 0.05
SAE_SEEDS = (0, 1, 2)


def capture(model: Path, control: Path, yeast_genome, work: Path, *, seed: int = 0,
            sae_seeds: tuple[int, ...] = SAE_SEEDS) -> pd.DataFrame:
    """``motif_capture`` table of :data:`MOTIFS` at :data:`LAYER`: the SAEs (one per seed) of ``model``, its
    neurons and the SAEs of ``control``, chosen on 250 chrI–XV promoter windows, scored on 150 of chrXVI."""
    ref, annotation = yeast_genome
    windows = promoter_windows(annotation, ref, holdout_chroms=["chrXVI"], n_calibration=N_CALIBRATION, n_heldout=N_HELDOUT,
                               seed=seed)
    cal, _ = calibration_windows(windows, holdout_chroms=["chrXVI"])
    motif = [m for m in load_jaspar() if m.name in MOTIFS]
    sites = motif_sites(motif_concepts(scan_motifs(motif, ref, threshold=1e-4)))
    cfg = SAETrainConfig(architecture="topk", d_sae=D_SAE, k=K, batch_size=1024, training_tokens=TOKENS,
                         seed=seed, checkpoint_every=10**9, stats_tokens=16_384)
    table, _ = layer_motif_capture({"model": str(model), "control": str(control)}, LAYER, windows,
                                   window_sequences(windows, ref), sites, cal, work, sae_cfg=cfg, n_random=1,
                                   min_sites=20, seed=seed, sae_seeds=sae_seeds)
    return table


@pytest.fixture(scope="module")
def control_model(tmp_path_factory) -> Path:
    return random_init_model(MODEL, tmp_path_factory.mktemp("control") / "model", seed=0)


def test_shipped_model_sae_feature_fires_on_tata_sites(yeast_genome, control_model, tmp_path):
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        table = capture(MODEL, control_model, yeast_genome, tmp_path)
    finally:
        torch.set_num_threads(n)
    assert list(table["motif_name"]) == ["SPT15"] * len(SAE_SEEDS), "too few SPT15 sites in a half to score it"
    assert list(table["sae_seed"]) == list(SAE_SEEDS)
    f1 = {s: float(table[f"{s}_f1"].mean()) for s in ("sae", "neuron", "control")}
    assert f1["sae"] >= MIN_F1, f1
    assert f1["sae"] >= f1["neuron"] + NEURON_MARGIN, f1
    assert f1["sae"] >= f1["control"] + CONTROL_MARGIN, f1


def test_model_card_keeps_the_motif_capture_section(tmp_path):
    for name in ("training_log.json", "eval_heldout.json"):
        shutil.copy(MODEL / name, tmp_path / name)
    (tmp_path / MOTIF_CAPTURE_CARD).write_text("| layer | motifs |\n|---|---|\n| 2 | 1 |\n")
    card = write_model_card(tmp_path).read_text()
    assert "## Motif capture by layer\n| layer | motifs |" in card
    assert card.index("## Motif capture by layer") < card.index("## Limits")
    assert "Variants tried" not in card
    (tmp_path / VARIANTS_CARD).write_text("| variant | tokens |\n|---|---|\n| reg 0.6 | 8 M |\n")
    card = write_model_card(tmp_path).read_text()
    assert card.index("## Motif capture by layer") < card.index("## Variants tried\n| variant |") < card.index("## Limits")
    (tmp_path / MOTIF_CAPTURE_CARD).unlink()
    (tmp_path / VARIANTS_CARD).unlink()
    card = write_model_card(tmp_path).read_text()
    assert "Motif capture" not in card and "Variants tried" not in card
