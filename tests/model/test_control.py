"""The control model: same class, config and tokenizer as the trained model, weights from a fresh init."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from genosae.model.adapter import load_model
from genosae.model.control import CONTROL_INFO, random_init_model

DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "models" / "genosae-yeast-cnn"


def test_control_has_the_architecture_but_not_the_weights(tmp_path):
    out = random_init_model(DEFAULT_MODEL, tmp_path / "control", seed=3)
    trained = load_model(DEFAULT_MODEL, device="cpu", dtype="float32", layer=6)
    control = load_model(out, device="cpu", dtype="float32", layer=6)
    assert type(control.model) is type(trained.model)
    assert control.model.config.to_dict() | {"_name_or_path": ""} == trained.model.config.to_dict() | {"_name_or_path": ""}
    assert control.tokenizer("ACGTN")["input_ids"] == trained.tokenizer("ACGTN")["input_ids"]
    trained_sd, control_sd = trained.model.state_dict(), control.model.state_dict()
    assert trained_sd.keys() == control_sd.keys()
    weights = [k for k, v in trained_sd.items() if v.ndim >= 2]
    assert weights and all(not torch.allclose(trained_sd[k], control_sd[k]) for k in weights)
    info = json.loads((out / CONTROL_INFO).read_text())
    assert info["seed"] == 3 and info["n_parameters"] == sum(p.numel() for p in trained.model.parameters())
    # the same seed gives the same control; another seed another one
    again = load_model(random_init_model(DEFAULT_MODEL, tmp_path / "again", seed=3), device="cpu", dtype="float32")
    other = load_model(random_init_model(DEFAULT_MODEL, tmp_path / "other", seed=4), device="cpu", dtype="float32")
    k = weights[0]
    assert torch.equal(again.model.state_dict()[k], control_sd[k])
    assert not torch.equal(other.model.state_dict()[k], control_sd[k])


def test_control_of_a_hub_style_model(model_dirs, tmp_path):
    """Any HF family, not only the default CNN (a tiny Nucleotide-Transformer-style ESM here)."""
    src = model_dirs["nt_fast"]
    out = random_init_model(src, tmp_path / "control", seed=0)
    trained = load_model(src, device="cpu", dtype="float32")
    control = load_model(out, device="cpu", dtype="float32")
    assert type(control.model) is type(trained.model) and control.kind == trained.kind
    assert control.tokenization == trained.tokenization
    x = trained.tokenizer(["ACGTACGTACGTAAAC"], return_tensors="pt")
    with torch.no_grad():
        a = trained.model(**x, output_hidden_states=True).hidden_states[-1]
        b = control.model(**x, output_hidden_states=True).hidden_states[-1]
    assert a.shape == b.shape and not torch.allclose(a, b)
