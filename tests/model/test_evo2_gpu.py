"""The Evo 2 adapter on the real ``evo2`` package, weights and GPU (opt-in: skipped unless GENOSAE_EVO2 is set).

Run on a CUDA machine with the evo2 extra installed and the checkpoint fetched::

    pip install -e '.[dev,evo2]'
    genosae fetch-model evo2:evo2_7b          # or evo2_1b_base, evo2_7b_base, ... (needs the hub)
    GENOSAE_EVO2=evo2_7b python -m pytest -q tests/model/test_evo2_gpu.py

With GENOSAE_EVO2 set nothing skips: a missing GPU, package or checkpoint fails the test.
"""

from __future__ import annotations

import csv
import os
from importlib import resources

import numpy as np
import pytest
import torch

from genosae.genome.reference import reverse_complement
from genosae.model.adapter import load_model

NAME = os.environ.get("GENOSAE_EVO2", "")
pytestmark = pytest.mark.skipif(not NAME, reason="real Evo 2 check: set GENOSAE_EVO2=<model name> on a CUDA "
                                                  "machine with the evo2 extra and the checkpoint (docs/models.md)")
#: evo2 0.6's own forward-pass check (evo2/test/test_evo2.py): mean next-token loss over its prompts.csv
EXPECTED_LOSS = {"evo2_40b": 0.2159424, "evo2_7b": 0.3476563, "evo2_40b_base": 0.2149658,
                 "evo2_7b_base": 0.3520508, "evo2_1b_base": 0.501953125, "evo2_20b": 0.2166748046875}


@pytest.fixture(scope="module")
def adapter():
    return load_model(f"evo2:{NAME}", layer=12 if NAME in ("evo2_1b_base", "evo2_20b") else 26, batch_size=2)


@pytest.fixture(scope="module")
def prompts() -> list[str]:
    with resources.files("evo2.test.data").joinpath("prompts.csv").open(encoding="utf-8-sig", newline="") as fh:
        return [row[0] for row in list(csv.reader(fh))[1:]]


def _direct(ad, seq: str, module: str) -> torch.Tensor:
    ids = torch.tensor(ad.tokenizer.tokenize(seq), dtype=torch.long, device="cuda:0")[None]
    _, emb = ad.evo2.forward(ids, return_embeddings=True, layer_names=[module])
    return emb[module][0].cpu()


def test_hidden_states_match_evo2_forward(adapter, prompts):
    ad = adapter
    assert ad.kind == "causal" and ad.dtype == torch.bfloat16 and ad.hook_module == f"blocks.{ad.layer}"
    seqs = [p[:2000] for p in prompts[:3]] + [prompts[3][:1500]]  # two lengths: batches of one length each
    for rc in (False, True):
        for seq, (acts, spans) in zip(seqs, ad.hidden_states(seqs, reverse_complement=rc)):
            read = reverse_complement(seq) if rc else seq
            ref = _direct(ad, read, ad.hook_module)
            assert acts.shape == (len(seq), ad.d_model) == ref.shape
            scale = float(ref.float().abs().max())
            torch.testing.assert_close(acts.float(), ref.float(), atol=2e-2 * scale, rtol=2e-2)
            np.testing.assert_array_equal(spans.bp_start, np.arange(len(seq))[::-1] if rc else np.arange(len(seq)))
    sub = load_model(f"evo2:{NAME}", layer=ad.layer, submodule="mlp.l3")
    assert sub.hook_module == f"blocks.{ad.layer}.mlp.l3"
    torch.testing.assert_close(sub.hidden_states([seqs[0]])[0][0].float(),
                               _direct(sub, seqs[0], sub.hook_module).float(), atol=1e-2, rtol=2e-2)


def test_lm_loss_matches_evo2s_own_check(adapter, prompts):
    if NAME not in EXPECTED_LOSS:
        pytest.skip(f"evo2 publishes no expected loss for {NAME}")
    losses = [adapter.lm_loss([p]) for p in prompts]
    assert np.mean(losses) == pytest.approx(EXPECTED_LOSS[NAME], abs=1e-2)
    spliced = np.mean([adapter.lm_loss([p], transform=lambda h: h) for p in prompts[:2]])
    assert spliced == pytest.approx(np.mean(losses[:2]), rel=1e-3)
