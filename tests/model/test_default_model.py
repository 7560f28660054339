"""The shipped default model loads like a hub model and beats the k-mer baseline on held-out sequence."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pyfaidx
import pytest
from transformers import AutoModelForMaskedLM, AutoTokenizer

from genosae.model.lm import token_ids
from genosae.model.train_lm import kmer_context_baseline, load_codes, masked_base_scores

MODEL = Path(__file__).resolve().parents[2] / "models" / "genosae-yeast-cnn"


@pytest.fixture(scope="module")
def model():
    if not (MODEL / "model.safetensors").exists():
        pytest.fail(f"the shipped default model is missing from {MODEL}")
    return AutoModelForMaskedLM.from_pretrained(MODEL, local_files_only=True).eval()


def test_loads_with_auto_classes(model):
    tok = AutoTokenizer.from_pretrained(MODEL, local_files_only=True)
    assert tok("ACGTN")["input_ids"] == token_ids("ACGTN").tolist()
    assert model.config.model_type == "genosae-cnn"


def test_model_card_snippet_runs_after_import_genosae_only():
    """The model card's Python block, run as written in a fresh interpreter from the repository root."""
    card = (MODEL / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", card, flags=re.S)
    assert len(blocks) == 1, "the model card should hold exactly one Python example"
    assert "genosae.model" not in blocks[0]  # only `import genosae`, as the card promises
    proc = subprocess.run([sys.executable, "-c", blocks[0]], capture_output=True, text=True,
                          cwd=MODEL.parents[1], env={"HF_HUB_OFFLINE": "1", "PATH": ""})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("torch.Size([1, 14, 192])"), proc.stdout


def test_beats_kmer_baseline_on_a_heldout_slice(model, yeast_reference):
    fasta = pyfaidx.Fasta(str(yeast_reference.fasta), sequence_always_upper=True)
    assert "chrXVI" in fasta.keys()
    codes = token_ids(str(fasta["chrXVI"][300_000:316_000]))  # never seen in training
    positions, log2p, _ = masked_base_scores(model, codes)
    train = load_codes(yeast_reference.fasta, [c for c in fasta.keys() if c != "chrXVI"])
    kmer = kmer_context_baseline(train, codes, positions, contexts=(3, 4))
    model_bits = float(-log2p.mean())
    assert model_bits < kmer["bits_per_base"] - 0.02, (model_bits, kmer["bits_per_base"])
    assert model_bits < 1.9
