"""Evo 2 adapter logic on CPU, with a stand-in ``evo2`` package.

The real ``evo2`` package needs CUDA (vortex kernels) and multi-GB checkpoints, so these tests put a
tiny module with the same API in ``sys.modules["evo2"]``: ``Evo2(model_name, local_path=None)`` with
``.tokenizer`` (vortex's ``CharLevelTokenizer``: bytes, ``pad_id`` 1), ``.model`` (``blocks.N`` returning
``(x, None)``, ``blocks.N.mlp.l1/l2/l3``, ``forward(x) -> (logits, None)``, bfloat16) and
``.forward(input_ids, return_embeddings, layer_names)`` written as in evo2 0.6 (hooks on
``model.get_submodule(name)``, returns ``(model.forward(ids), embeddings)``). The model is causal, so
reading a chunk on its own differs from reading it after its left context. What this cannot test: the real
weights, vortex and CUDA (see docs/models.md for the GPU check).
"""

from __future__ import annotations

import sys
import types
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from genosae.errors import InputError
from genosae.genome.reference import reverse_complement
from genosae.model.adapter import load_model
from genosae.model.embed import embed_windows
from genosae.sae.external import model_key

D, N_BLOCKS, VOCAB = 12, 4, 512


class _MLP(nn.Module):  # vortex ParallelGatedMLP: l3(act(l1(x)) * l2(x))
    def __init__(self) -> None:
        super().__init__()
        self.l1, self.l2, self.l3 = nn.Linear(D, 2 * D), nn.Linear(D, 2 * D), nn.Linear(2 * D, D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.l3(nn.functional.gelu(self.l1(x)) * self.l2(x))


class _Block(nn.Module):
    """Causal: a running mean over the positions so far, then the gated MLP; returns ``(x, None)``."""

    def __init__(self) -> None:
        super().__init__()
        self.pre_norm, self.post_norm, self.mixer, self.mlp = nn.LayerNorm(D), nn.LayerNorm(D), nn.Linear(D, D), _MLP()

    def forward(self, x: torch.Tensor, inference_params: object = None, padding_mask: object = None) -> tuple:
        run = x.cumsum(1) / torch.arange(1, x.shape[1] + 1, device=x.device, dtype=x.dtype)[None, :, None]
        x = x + self.mixer(self.pre_norm(run))
        return self.mlp(self.post_norm(x)) + x, None


class _StripedHyena(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embedding_layer = nn.Embedding(VOCAB, D)
        self.blocks = nn.ModuleList(_Block() for _ in range(N_BLOCKS))
        self.norm, self.unembed = nn.LayerNorm(D), nn.Linear(D, VOCAB)

    def forward(self, x: torch.Tensor, inference_params_dict: object = None, padding_mask: object = None) -> tuple:
        x = self.embedding_layer(x)
        for block in self.blocks:
            x, _ = block(x)
        return self.unembed(self.norm(x)), None


class _CharLevelTokenizer:  # vortex.model.tokenizer.CharLevelTokenizer
    eod_id, eos_id, pad_id = 0, 0, 1

    def tokenize(self, text: str) -> list:
        return list(np.frombuffer(text.encode("utf-8"), dtype=np.uint8))


class FakeEvo2:
    """evo2.Evo2 with a tiny random model; records how it was constructed."""

    created: ClassVar[list[tuple[str, str | None]]] = []

    def __init__(self, model_name: str = "evo2_7b", local_path: str | None = None, use_kernels: bool = False):
        FakeEvo2.created.append((model_name, local_path))
        torch.manual_seed(7)
        self.model = _StripedHyena().to(torch.bfloat16).eval()
        self.tokenizer = _CharLevelTokenizer()

    def forward(self, input_ids: torch.Tensor, return_embeddings: bool = False, layer_names: list | None = None):
        embeddings, handles = {}, []
        if return_embeddings:
            def hook_fn(layer_name):
                def hook(_, __, output):
                    if isinstance(output, tuple):
                        output = output[0]
                    embeddings[layer_name] = output.detach()
                return hook
            for name in layer_names:
                handles.append(self.model.get_submodule(name).register_forward_hook(hook_fn(name)))
        try:
            with torch.no_grad():
                logits = self.model.forward(input_ids)
            return (logits, embeddings) if return_embeddings else (logits, None)
        finally:
            for h in handles:
                h.remove()

    __call__ = forward


@pytest.fixture
def fake_evo2(monkeypatch, tmp_path):
    """The stand-in package, CUDA reported available, a hub cache of our own; yields a checkpoint path."""
    from huggingface_hub import constants

    module = types.ModuleType("evo2")
    module.Evo2 = FakeEvo2
    module.__version__ = "0.6.0-fake"
    monkeypatch.setitem(sys.modules, "evo2", module)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    FakeEvo2.created.clear()
    ckpt = tmp_path / "weights" / "evo2_1b_base.pt"
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"weights")
    return ckpt


def _direct(ad, seq: str, module: str) -> torch.Tensor:
    """``module``'s output for ``seq`` read alone, by a hook of our own on the bare model."""
    got = []
    handle = ad.evo2.model.get_submodule(module).register_forward_hook(
        lambda _m, _a, out: got.append(out[0] if isinstance(out, tuple) else out))
    try:
        with torch.inference_mode():
            ad.evo2.model(torch.tensor([list(seq.encode())]))
    finally:
        handle.remove()
    return got[0][0]


SEQS = ["ACGTNACGGT" * 5, "TTGACA" * 6 + "acgt", "GATTACA" * 9, "CCGG"]


def test_hidden_states_spans_both_strands(fake_evo2):
    ad = load_model(f"evo2:{fake_evo2}", layer=-1, batch_size=3)
    assert FakeEvo2.created == [("evo2_1b_base", str(fake_evo2))]
    assert (ad.kind, ad.tokenization, ad.layer, ad.n_hidden) == ("causal", "char", N_BLOCKS - 1, N_BLOCKS)
    assert (ad.hook_module, ad.d_model, ad.dtype, ad.context) == ("blocks.3", D, torch.bfloat16, 8192)
    assert ad.source["path"] == "evo2:evo2_1b_base" and model_key(ad.source["path"]) == "evo2_1b_base"
    for rc in (False, True):
        for seq, (acts, spans) in zip(SEQS, ad.hidden_states(SEQS, reverse_complement=rc)):
            seq = seq.upper()
            read = reverse_complement(seq) if rc else seq
            assert acts.dtype == torch.bfloat16 and acts.shape == (len(seq), D)
            torch.testing.assert_close(acts, _direct(ad, read, "blocks.3"), atol=0, rtol=0)
            pos = np.arange(len(seq))
            np.testing.assert_array_equal(spans.bp_start, pos[::-1] if rc else pos)
            np.testing.assert_array_equal(spans.bp_end, (pos[::-1] if rc else pos) + 1)
            assert not spans.is_special.any()
            np.testing.assert_array_equal(spans.has_n, np.frombuffer(read.encode(), np.uint8) == ord("N"))
    ids = ad.tokenize(["ACGTN"]).input_ids[0].tolist()
    assert ids == [ord(c) for c in "ACGTN"]  # bytes of the upper-cased bases, no BOS


def test_submodule_and_layer_checks(fake_evo2):
    ad = load_model(f"evo2:{fake_evo2}", layer=2, submodule="mlp.l3")
    assert (ad.layer, ad.hook_module) == (2, "blocks.2.mlp.l3")
    torch.testing.assert_close(ad.hidden_states([SEQS[0]])[0][0], _direct(ad, SEQS[0], "blocks.2.mlp.l3"),
                               atol=0, rtol=0)
    with pytest.raises(InputError, match=r"layer 26 is out of range: evo2_1b_base has blocks 0\.\.3"):
        load_model(f"evo2:{fake_evo2}", layer=26)
    with pytest.raises(InputError, match=r"block 1 of evo2_1b_base has no module 'mlp.l9'; it has .*mlp\.l3"):
        load_model(f"evo2:{fake_evo2}", layer=1, submodule="mlp.l9")


def test_long_inputs_are_read_in_trained_context_chunks(fake_evo2):
    ad = load_model(f"evo2:{fake_evo2}", layer=1)
    seq = "".join(np.random.default_rng(3).choice(list("ACGT"), size=8192 + 300))
    acts, spans = ad.hidden_states([seq])[0]
    assert acts.shape == (len(seq), D)
    np.testing.assert_array_equal(spans.bp_start, np.arange(len(seq)))
    torch.testing.assert_close(acts[:8192], _direct(ad, seq[:8192], "blocks.1"), atol=0, rtol=0)
    torch.testing.assert_close(acts[8192:], _direct(ad, seq[8192:], "blocks.1"), atol=0, rtol=0)
    # the model is causal: with its left context the second chunk would read differently
    assert not torch.equal(acts[8192:8200], _direct(ad, seq, "blocks.1")[8192:8200])
    rc_acts, rc_spans = ad.hidden_states([seq], reverse_complement=True)[0]
    np.testing.assert_array_equal(rc_spans.bp_start, np.arange(len(seq))[::-1])
    torch.testing.assert_close(rc_acts[8192:], _direct(ad, reverse_complement(seq)[8192:], "blocks.1"))


def _next_token_loss(ad, seqs: list[str]) -> float:
    total, count = 0.0, 0
    for s in seqs:
        ids = torch.tensor([list(s.upper().encode())])
        with torch.inference_mode():
            logits = ad.evo2.model(ids)[0][0, :-1].float()
        total += float(nn.functional.cross_entropy(logits, ids[0, 1:], reduction="sum"))
        count += ids.shape[1] - 1
    return total / count


def test_lm_loss_next_token_with_chunks_and_transform(fake_evo2):
    ad = load_model(f"evo2:{fake_evo2}", layer=2, batch_size=2)
    clean = ad.lm_loss(SEQS)
    assert np.isfinite(clean) and clean == pytest.approx(_next_token_loss(ad, SEQS), rel=1e-5)
    assert ad.lm_loss(SEQS, transform=lambda h: h) == pytest.approx(clean, rel=1e-6)
    assert abs(ad.lm_loss(SEQS, transform=torch.zeros_like) - clean) > 1e-3
    long = "".join(np.random.default_rng(4).choice(list("ACGT"), size=8192 + 50))
    assert ad.lm_loss([long]) == pytest.approx(_next_token_loss(ad, [long[:8192], long[8192:]]), rel=1e-5)


@pytest.mark.parametrize("storage", ["float16", "float32"])
def test_embed_store_keeps_bfloat16_values(fake_evo2, tmp_path, storage):
    chrom = "".join(np.random.default_rng(5).choice(list("ACGT"), size=300))
    win = pd.DataFrame({"window_id": ["a", "b"], "chrom": "chr1", "start": [0, 100], "end": [80, 180],
                        "strand": ["+", "-"], "region_id": ["r1", "r2"]})

    def seqs(w: pd.DataFrame) -> list[str]:
        return [chrom[r.start:r.end] if r.strand == "+" else reverse_complement(chrom[r.start:r.end])
                for r in w.itertuples()]

    ad = load_model(f"evo2:{fake_evo2}", layer=2, submodule="mlp.l3")
    store = embed_windows(ad, win, seqs, tmp_path / "store", storage_dtype=storage, progress=False,
                          reverse_complement=True)
    m = store.manifest
    assert (m["dtype"], m["layer"], m["hook_module"], m["tokenization"]) == (storage, 2, "blocks.2.mlp.l3", "char")
    acts = np.concatenate([s["acts"] for s in store.iter_shards()])
    assert acts.dtype == np.dtype(storage)
    tt = store.token_table()
    for wi, seq in enumerate(seqs(win)):
        for rev in (False, True):
            rows = np.flatnonzero((tt.window_index == wi) & (tt.reverse == rev))
            want = ad.hidden_states([seq], reverse_complement=rev)[0][0].float().numpy()
            np.testing.assert_array_equal(acts[rows], want.astype(storage))  # bf16 values are exact in both


def test_offline_checkpoint_from_the_hub_cache(fake_evo2):
    from huggingface_hub import constants

    hub = fake_evo2.parent.parent / "hub"
    assert constants.HF_HUB_CACHE == str(hub)
    with pytest.raises(InputError, match=r"evo2_1b_base is not in the local Hugging Face cache.*"
                                         r"genosae fetch-model evo2:evo2_1b_base"):
        load_model("evo2:evo2_1b_base")
    repo = hub / "models--arcinstitute--evo2_1b_base"
    (repo / "snapshots" / ("a" * 40)).mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    (repo / "snapshots" / ("a" * 40) / "evo2_1b_base.pt").write_bytes(b"weights")
    ad = load_model("evo2:evo2_1b_base", layer=0)
    assert FakeEvo2.created[-1] == ("evo2_1b_base", str(repo / "snapshots" / ("a" * 40) / "evo2_1b_base.pt"))
    assert ad.hook_module == "blocks.0"
    merged = hub.parent / "evo2_1b_base.pt"  # where evo2 writes a checkpoint merged from its shards
    merged.write_bytes(b"weights")
    load_model("evo2:evo2_1b_base", layer=0)
    assert FakeEvo2.created[-1] == ("evo2_1b_base", str(merged))


def test_refusals(fake_evo2, monkeypatch):
    for kw, pattern in [({"device": "cpu"}, "places itself on cuda:0"),
                        ({"dtype": "float32"}, "computes in the dtypes of its own config"),
                        ({"device": "cuda:1"}, "CUDA_VISIBLE_DEVICES")]:
        with pytest.raises(InputError, match=pattern):
            load_model(f"evo2:{fake_evo2}", **kw)
    with pytest.raises(InputError, match="unknown Evo 2 model 'evo3_7b'"):
        load_model("evo2:evo3_7b")
    with pytest.raises(InputError, match="Evo 2 checkpoint not found"):
        load_model("evo2:/nowhere/evo2_7b.pt")
    with pytest.raises(InputError, match=r"model\.submodule .* applies to Evo 2 models only"):
        load_model("models/genosae-yeast-cnn", submodule="mlp.l3")
    from genosae.model.control import random_init_model

    with pytest.raises(InputError, match=r"control model .* not available for Evo 2"):
        random_init_model(f"evo2:{fake_evo2}", fake_evo2.parent.parent / "control")
    monkeypatch.setitem(sys.modules, "evo2", None)
    with pytest.raises(InputError, match=r"install the evo2 extra \(pip install 'genosae\[evo2\]'"):
        load_model(f"evo2:{fake_evo2}")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InputError, match="Evo 2 needs a CUDA GPU"):
        load_model(f"evo2:{fake_evo2}")
