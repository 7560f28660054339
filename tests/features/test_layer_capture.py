"""Concept capture by layer (``layer_concept_capture``): the shipped model's SAE carries codon phase.

Computed at test time on a small atlas: random 512-bp windows of the yeast genome, calibration off
chrXVI, scored on chrXVI, one layer of ``models/genosae-yeast-cnn`` and of its untrained control.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from genosae.errors import InputError
from genosae.features.activations import calibration_windows
from genosae.features.catalog import clearly_captured
from genosae.features.layer_capture import layer_concept_capture
from genosae.genome.windows import atlas_windows, window_sequences
from genosae.model.control import random_init_model
from genosae.sae.train import SAETrainConfig

MODEL = Path(__file__).resolve().parents[2] / "models" / "genosae-yeast-cnn"
LAYER = 6  # the demo's layer, where the demo's SAE carries codon phase (README: codon_pos2(+) F1 0.84)


def test_shipped_model_layer_carries_codon_phase_and_control_does_not(yeast_genome, yeast_concepts, tmp_path):
    ref, _ = yeast_genome
    windows = atlas_windows(ref.chrom_sizes, n_windows=300, size=512, seed=0)
    cal, _ = calibration_windows(windows, holdout_chroms=["chrXVI"])
    assert 10 <= (~cal).sum() < 60
    control = random_init_model(MODEL, tmp_path / "control", seed=0)
    cfg = SAETrainConfig(architecture="topk", d_sae=512, k=16, batch_size=1024, training_tokens=120_000, seed=0,
                         checkpoint_every=10**9, stats_tokens=16_384)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        summary, fvu = layer_concept_capture({"model": str(MODEL), "control": str(control)}, LAYER, windows,
                                             window_sequences(windows, ref), yeast_concepts, cal, tmp_path / "work",
                                             sae_cfg=cfg, n_random=64)
    finally:
        torch.set_num_threads(n)
    assert not any(str(c).startswith("motif:") for c in summary.index)
    assert {"best_sae_f1", "best_neuron_f1", "best_random_f1", "best_control_f1"} <= set(summary.columns)
    assert summary["n_sae_candidates"].max() == 512 and summary["n_random_candidates"].max() == 64
    codon = [c for c in summary.index if str(c).startswith("codon_pos")]
    assert len(codon) == 6
    # measured at this size: SAE 0.35-0.64 (3 of 6 clear 0.5), neurons 0.48-0.79, control's SAE 0.11-0.13
    sae, ctrl = summary.loc[codon, "best_sae_f1"], summary.loc[codon, "best_control_f1"]
    neuron = summary.loc[codon, "best_neuron_f1"]
    assert clearly_captured(summary.loc[codon], "best_sae_f1", 0.5).sum() >= 2, sae
    assert (sae > ctrl + 0.15).all(), (sae, ctrl)
    assert (neuron > ctrl + 0.3).all(), (neuron, ctrl)
    assert clearly_captured(summary.loc[codon], "best_control_f1", 0.5).sum() == 0, ctrl
    assert 0 < fvu["model"] < 0.5 and not (tmp_path / "work" / "model").exists()


def test_layer_concept_capture_needs_annotation_concepts(yeast_concepts, tmp_path):
    motifs_only = yeast_concepts.head(3).assign(concept="motif:MA0359.3 RAP1")
    with pytest.raises(InputError, match="no annotation concepts"):
        layer_concept_capture({"model": "m", "control": "c"}, 1, motifs_only, [], motifs_only, [], tmp_path,
                              sae_cfg=None)
