import json

import pytest
import torch

from genosae.errors import InputError
from genosae.sae import (
    BatchTopKSAE,
    BatchTopKSAEConfig,
    ReLUSAE,
    ReLUSAEConfig,
    TopKSAE,
    TopKSAEConfig,
    load_sae,
    save_sae,
)


def _fitted(cls, cfg, seed=0):
    gen = torch.Generator().manual_seed(seed)
    sae = cls(cfg, seed=seed)
    acts = 2.0 + 3.0 * torch.randn(500, cfg.d_in, generator=gen)
    sae.set_normalization(acts)
    with torch.no_grad():
        sae.b_dec.normal_(generator=gen)
        sae.b_enc.normal_(generator=gen)
        sae.W_enc.add_(0.1 * torch.randn(sae.W_enc.shape, generator=gen))
    if isinstance(sae, BatchTopKSAE):
        sae.threshold.fill_(0.5)
    return sae, acts


CASES = [
    (TopKSAE, TopKSAEConfig(d_in=8, d_sae=24, k=3)),
    (BatchTopKSAE, BatchTopKSAEConfig(d_in=8, d_sae=24, k=3)),
    (ReLUSAE, ReLUSAEConfig(d_in=8, d_sae=24)),
]


@pytest.mark.parametrize(("cls", "cfg"), CASES)
def test_round_trip(tmp_path, cls, cfg):
    sae, acts = _fitted(cls, cfg)
    save_sae(sae, tmp_path, metadata={"model_name": "m", "layer": 6, "tokenizer": "char",
                                      "dataset_hash": "abc"}, reference_inputs=acts[:32])
    raw = json.loads((tmp_path / "cfg.json").read_text())
    assert raw["metadata"]["hook_name"] == "blocks.5.hook_resid_post"
    assert raw["metadata"]["genosae"]["architecture"] == cls.architecture()
    back = load_sae(tmp_path)
    assert type(back) is cls
    assert back.cfg.outlier_norm_threshold == sae.cfg.outlier_norm_threshold
    x = acts[100:200]
    with torch.no_grad():
        assert torch.equal(back.encode(x) > 0, sae.encode(x) > 0)
        assert torch.allclose(back(x), sae(x), atol=1e-4)
    # folded weights: SAELens-style arithmetic on the raw file reproduces our reconstruction
    from safetensors.torch import load_file

    w = load_file(str(tmp_path / "sae_weights.safetensors"))
    pre = (x - w["b_dec"]) @ w["W_enc"] + w["b_enc"]
    with torch.no_grad():
        assert torch.allclose(pre, sae.pre_acts(sae.normalize(x)), atol=1e-4)


def test_wrong_architecture_is_refused(tmp_path):
    sae, acts = _fitted(TopKSAE, TopKSAEConfig(d_in=8, d_sae=24, k=3))
    save_sae(sae, tmp_path, reference_inputs=acts[:32])
    with pytest.raises(InputError, match="not 'relu'"):
        load_sae(tmp_path, architecture="relu")
    cfg_path = tmp_path / "cfg.json"
    raw = json.loads(cfg_path.read_text())
    # only our architecture edited: disagrees with the SAELens field
    raw["metadata"]["genosae"]["architecture"] = "relu"
    cfg_path.write_text(json.dumps(raw))
    with pytest.raises(InputError, match="does not match"):
        load_sae(tmp_path)
    # both edited consistently: the weights load as a ReLU SAE but the self-check catches it
    raw["architecture"] = "standard"
    cfg_path.write_text(json.dumps(raw))
    with pytest.raises(InputError, match="self-check failed"):
        load_sae(tmp_path)


def test_missing_files_and_tampered_weights(tmp_path):
    with pytest.raises(InputError, match=r"missing cfg\.json"):
        load_sae(tmp_path)
    sae, acts = _fitted(TopKSAE, TopKSAEConfig(d_in=8, d_sae=24, k=3))
    save_sae(sae, tmp_path, reference_inputs=acts[:32])
    raw = json.loads((tmp_path / "cfg.json").read_text())
    raw["metadata"]["genosae"]["config"]["k"] = 5  # a different k changes every code
    (tmp_path / "cfg.json").write_text(json.dumps(raw))
    with pytest.raises(InputError, match="self-check failed"):
        load_sae(tmp_path)
    assert load_sae(tmp_path, check=False).cfg.k == 5


@pytest.mark.parametrize(("cls", "cfg"), CASES)
def test_loads_in_saelens(tmp_path, cls, cfg):
    sae_lens = pytest.importorskip("sae_lens")
    sae, acts = _fitted(cls, cfg)
    save_sae(sae, tmp_path, metadata={"model_name": "m", "layer": 2}, reference_inputs=acts[:32])
    theirs = sae_lens.SAE.load_from_disk(str(tmp_path))
    expected = {"topk": "topk", "batchtopk": "jumprelu", "relu": "standard"}[cls.architecture()]
    assert theirs.cfg.architecture() == expected
    assert theirs.cfg.metadata.hook_name == "blocks.1.hook_resid_post"
    x = acts[200:300]
    with torch.no_grad():
        assert torch.allclose(theirs.encode(x), sae.encode(x), atol=1e-4)
        assert torch.allclose(theirs(x), sae(x), atol=1e-4)


def test_hook_names_follow_transformerlens():
    from genosae.sae.io import hook_name

    assert hook_name(0) == "blocks.0.hook_resid_pre"
    assert hook_name(6) == "blocks.5.hook_resid_post"
    assert hook_name(-1) == "hidden_states.-1"
