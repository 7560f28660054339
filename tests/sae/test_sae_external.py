"""SAEs trained elsewhere: SAELens folders written by sae_lens itself and Goodfire-layout .pt files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from genosae.errors import InputError
from genosae.features.activations import numpy_encoder
from genosae.sae import BatchTopKSAE, ReLUSAE, TopKSAE, detect_format, load_goodfire, load_sae

D, F = 12, 40


def _randomise(sae_module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sae_module.named_parameters():
            scale = 0.3 if name.startswith("b_") else 1.0
            p.copy_(torch.randn(p.shape, generator=gen) * scale)


def _saelens(arch: str, **extra):
    sae_lens = pytest.importorskip("sae_lens")
    from sae_lens.saes.sae import SAEMetadata

    meta = SAEMetadata(model_name="org/tiny-dna-lm", hook_name="blocks.2.hook_resid_post")
    cls, cfg_cls = {"topk": (sae_lens.TopKSAE, sae_lens.TopKSAEConfig),
                    "jumprelu": (sae_lens.JumpReLUSAE, sae_lens.JumpReLUSAEConfig),
                    "standard": (sae_lens.StandardSAE, sae_lens.StandardSAEConfig)}[arch]
    kw = {"k": 5} if arch == "topk" else {}
    theirs = cls(cfg_cls(d_in=D, d_sae=F, metadata=meta, **kw, **extra))
    _randomise(theirs, seed=len(arch))
    if arch == "jumprelu":
        with torch.no_grad():
            theirs.threshold.copy_(torch.rand(F) * 0.5)
            theirs.threshold[0] = -0.2  # below 0: same codes as 0 after SAELens's ReLU
    return theirs


SAELENS_CASES = [
    ("topk", {}, TopKSAE),
    ("topk", {"rescale_acts_by_decoder_norm": True}, TopKSAE),
    ("jumprelu", {}, BatchTopKSAE),
    ("standard", {}, ReLUSAE),
    ("standard", {"apply_b_dec_to_input": False}, ReLUSAE),
]


@pytest.mark.parametrize(("arch", "extra", "ours_cls"), SAELENS_CASES)
def test_saelens_folder_gives_saelens_codes(tmp_path, arch, extra, ours_cls):
    theirs = _saelens(arch, **extra)
    theirs.save_model(tmp_path)
    assert detect_format(tmp_path)[0] == "saelens"
    ours = load_sae(tmp_path, expect_model="tiny-dna-lm", expect_layer=3)
    assert type(ours) is ours_cls
    assert ours.cfg.metadata["layer"] == 3  # blocks.2.hook_resid_post = hidden state 3
    x = torch.randn(300, D, generator=torch.Generator().manual_seed(7)) * 2
    with torch.no_grad():
        z_theirs, z_ours = theirs.encode(x), ours.encode(x)
        assert ((z_theirs > 0) == (z_ours > 0)).all()
        assert torch.allclose(z_ours, z_theirs, atol=1e-4)
        assert torch.allclose(ours.decode(z_ours), theirs.decode(z_theirs), atol=1e-4)
    assert (z_ours > 0).any()
    # the features analysis' encoder works on it unchanged
    assert numpy_encoder(ours)(x[:4].numpy()).shape == (4, F)


def test_saelens_mislabelled_or_unsupported_is_refused(tmp_path):
    theirs = _saelens("topk")
    theirs.save_model(tmp_path)
    with pytest.raises(InputError, match=r"trained on layer 3 .* layer 4"):
        load_sae(tmp_path, expect_layer=4)
    with pytest.raises(InputError, match="trained on model 'org/tiny-dna-lm'"):
        load_sae(tmp_path, expect_model="models/genosae-yeast-cnn")
    with pytest.raises(InputError, match="not 'relu'"):
        load_sae(tmp_path, architecture="relu")
    cfg = json.loads((tmp_path / "cfg.json").read_text())
    for key, value, match in (("normalize_activations", "layer_norm", "normalize_activations"),
                              ("architecture", "gated", "not supported")):
        bad = tmp_path / key
        bad.mkdir()
        (bad / "sae_weights.safetensors").symlink_to(tmp_path / "sae_weights.safetensors")
        (bad / "cfg.json").write_text(json.dumps({**cfg, key: value}))
        with pytest.raises(InputError, match=match):
            load_sae(bad)
    nolayer = tmp_path / "nolayer"
    nolayer.mkdir()
    (nolayer / "sae_weights.safetensors").symlink_to(tmp_path / "sae_weights.safetensors")
    (nolayer / "cfg.json").write_text(json.dumps({**cfg, "metadata": {"model_name": "m"}}))
    assert load_sae(nolayer).cfg.metadata["layer"] is None
    with pytest.raises(InputError, match="does not record which layer"):
        load_sae(nolayer, expect_layer=3)


# ------------------------------------------------------------------------------------ Goodfire
def _goodfire(tmp_path: Path, *, sidecar: dict | None, prefix: str = "_orig_mod.", d: int = D, f: int = F,
              name: str = "sae-layer26-mixed-expansion_8-k_64.pt") -> tuple[Path, dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(3)
    state = {"W": torch.randn(d, f, generator=gen) / d ** 0.5, "b_enc": 0.2 * torch.randn(f, generator=gen),
             "b_dec": torch.randn(d, generator=gen)}
    path = tmp_path / name
    torch.save({prefix + k: v for k, v in state.items()}, path)
    if sidecar is not None:
        path.with_suffix(".json").write_text(json.dumps(sidecar))
    return path, state


def _direct(x: torch.Tensor, st: dict[str, torch.Tensor], k: int, subtract: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The release's encode/decode written out: top-k of ReLU(x W + b_enc), then z Wᵀ + b_dec."""
    pre = torch.relu(((x - st["b_dec"]) if subtract else x) @ st["W"] + st["b_enc"])
    top = pre.topk(k, dim=1)
    z = torch.zeros_like(pre).scatter(1, top.indices, top.values)
    return z, z @ st["W"].T + st["b_dec"]


@pytest.mark.parametrize("subtract", [False, True])
def test_goodfire_checkpoint_gives_direct_codes(tmp_path, subtract):
    side = {"model": "evo2_7b", "layer": 26, "hook": "blocks.26", "k": 6, "subtract_b_dec": subtract}
    path, st = _goodfire(tmp_path, sidecar=side)
    for target in (path, tmp_path):  # the file, or the folder holding it
        sae = load_sae(target, expect_model="arcinstitute/evo2_7b", expect_layer=26)
        assert type(sae) is TopKSAE and sae.cfg.k == 6
        assert sae.cfg.metadata["hook_name"] == "blocks.26"
    x = torch.randn(200, D, generator=torch.Generator().manual_seed(5)) + st["b_dec"]
    z_ref, recon_ref = _direct(x, st, 6, subtract)
    with torch.no_grad():
        z = sae.encode(x)
        assert ((z > 0) == (z_ref > 0)).all()
        assert torch.allclose(z, z_ref, atol=1e-5)
        assert torch.allclose(sae.decode(z), recon_ref, atol=1e-5)


def test_goodfire_defaults_and_k_parameter(tmp_path):
    path, st = _goodfire(tmp_path, sidecar={"model": "evo2_7b", "layer": 26}, prefix="", f=96)
    assert load_goodfire(path).cfg.k == 64  # the release's top-64
    sae = load_sae(path, k=3)
    x = torch.randn(50, D, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.allclose(sae.encode(x), _direct(x, st, 3, False)[0], atol=1e-5)


def test_goodfire_mislabelled_or_unlabelled_is_refused(tmp_path):
    path, _ = _goodfire(tmp_path, sidecar={"model": "evo2_7b", "layer": 26, "hook": "blocks.26", "k": 4})
    with pytest.raises(InputError, match=r"trained on layer 26 .* layer 20"):
        load_sae(path, expect_layer=20)
    with pytest.raises(InputError, match="trained on model 'evo2_7b'"):
        load_sae(path, expect_model="evo2_1b_base")
    path.with_suffix(".json").write_text(json.dumps({"model": "evo2_7b", "layer": 26, "d_sae": F + 1}))
    with pytest.raises(InputError, match="d_sae"):
        load_sae(path)
    path.with_suffix(".json").write_text(json.dumps({"model": "evo2_7b", "lyr": 26}))
    with pytest.raises(InputError, match="unknown sidecar key"):
        load_sae(path)
    path.with_suffix(".json").unlink()
    assert load_sae(path, k=4).cfg.metadata["model_name"] is None  # loads, but cannot be checked
    with pytest.raises(InputError, match="does not record which model"):
        load_sae(path, k=4, expect_model="evo2_7b")



def _would_run(marker: str) -> None:  # what unpickling the object below would call
    Path(marker).write_text("code ran")


class _Pickled:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (_would_run, (self.marker,))


def test_pickled_code_and_non_state_dicts_are_refused(tmp_path):
    marker = tmp_path / "ran.txt"
    evil = tmp_path / "evil.pt"
    torch.save({"W": torch.zeros(2, 3), "payload": _Pickled(str(marker))}, evil)
    with pytest.raises(InputError, match=r"weights_only=True"):
        load_sae(evil)
    assert not marker.exists()  # nothing was unpickled into running code
    listed = tmp_path / "list" / "x.pt"
    listed.parent.mkdir()
    torch.save([torch.zeros(3)], listed)
    with pytest.raises(InputError, match="flat state dict"):
        load_sae(listed.parent)
    wrong = tmp_path / "wrong.pt"
    torch.save({"W_enc": torch.zeros(4, 8), "b_enc": torch.zeros(8)}, wrong)
    with pytest.raises(InputError, match="not the Goodfire layout"):
        load_sae(wrong)
    with pytest.raises(InputError, match="not found"):
        load_sae(tmp_path / "missing.pt")


def _store(path: Path, *, model: str, layer: int, n: int = 80) -> torch.Tensor:
    import numpy as np
    import pandas as pd

    from genosae.model.store import ActivationStoreWriter

    windows = pd.DataFrame({"window_id": ["w0", "w1"], "chrom": "chrI", "start": [0, 100], "end": [40, 140],
                            "strand": "+", "region_id": ["r0", "r1"]})
    acts = torch.randn(n, D, generator=torch.Generator().manual_seed(11))
    w = ActivationStoreWriter(path, windows=windows, storage_dtype="float32",
                              manifest_meta={"model": {"path": model}, "layer": layer, "d_model": D,
                                             "tokenization": "char", "config_hash": "x"})
    wi = np.repeat([0, 1], n // 2)
    ti = np.tile(np.arange(n // 2), 2)
    bp = windows["start"].to_numpy()[wi] + ti
    w.write_shard(0, acts.numpy(), wi, ti, bp, bp + 1, np.zeros(n, bool), np.zeros(n, bool), window_range=(0, 2))
    w.finalize()
    return acts


def test_features_commands_take_external_saes_and_check_the_store(tmp_path, capsys):
    from genosae.cli import main
    from genosae.features.activations import FeatureActs

    theirs = _saelens("topk")
    theirs.save_model(tmp_path / "saelens")
    acts = _store(tmp_path / "store", model="/models/tiny-dna-lm", layer=3)
    assert main(["encode-features", "--store", str(tmp_path / "store"), "--sae", str(tmp_path / "saelens"),
                 "--out", str(tmp_path / "codes")]) == 0
    got = FeatureActs.load(tmp_path / "codes").codes.toarray()
    with torch.no_grad():
        assert torch.allclose(torch.from_numpy(got), theirs.encode(acts), atol=1e-4)
    _store(tmp_path / "store4", model="/models/tiny-dna-lm", layer=4)
    assert main(["window-acts", "--store", str(tmp_path / "store4"), "--sae", str(tmp_path / "saelens"),
                 "--out", str(tmp_path / "wa")]) == 2
    assert "trained on layer 3" in capsys.readouterr().err
