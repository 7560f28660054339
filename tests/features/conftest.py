"""Synthetic inputs for the feature tests: a random genome with a planted motif, a fake store/SAE."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from genosae.features.activations import FeatureActs

PLANTED = "TGACTCAGG"  # planted site (GCN4-like core, asymmetric so strand matters)


@dataclass
class Planted:
    genome: str
    windows: pd.DataFrame
    sequences: list[str]
    acts: FeatureActs
    membership: sp.csr_matrix
    instances: sp.csr_matrix
    concept_names: list[str]
    cal_tokens: np.ndarray
    motif: str = PLANTED


def make_planted(seed: int = 0, n_windows: int = 60, width: int = 120, per_window: int = 2) -> Planted:
    rng = np.random.default_rng(seed)
    genome = np.array(list("ACGT"))[rng.integers(0, 4, n_windows * width)]
    k = len(PLANTED)
    starts = []
    for w in range(n_windows):  # two non-overlapping sites per window
        slots = rng.choice(np.arange(5, width - k - 5, k + 3), per_window, replace=False)
        for s in slots:
            g = w * width + s
            genome[g:g + k] = list(PLANTED)
            starts.append(g)
    genome_s = "".join(genome)
    # also count accidental occurrences so the concept is exactly "PLANTED occurs here"
    arr = np.frombuffer(genome_s.encode(), np.uint8)
    pat = np.frombuffer(PLANTED.encode(), np.uint8)
    hit = np.ones(len(arr) - k + 1, bool)
    for i, b in enumerate(pat):
        hit &= arr[i:len(arr) - k + 1 + i] == b
    occ = np.flatnonzero(hit)
    n = len(genome_s)
    member = np.zeros(n, bool)
    inst = np.zeros(n, np.int64)
    for j, s in enumerate(occ):
        member[s:s + k] = True
        inst[s:s + k] = j + 1
    windows = pd.DataFrame({
        "window_id": [f"w{i}" for i in range(n_windows)], "chrom": "chr1",
        "start": np.arange(n_windows) * width, "end": (np.arange(n_windows) + 1) * width,
        "strand": "+", "region_id": [f"r{i}" for i in range(n_windows)],
    })
    pos = np.arange(n)
    tokens = pd.DataFrame({
        "window_index": pos // width, "token_index": pos % width, "chrom": "chr1", "bp_start": pos,
        "bp_end": pos + 1, "strand": "+", "window_id": windows["window_id"].to_numpy()[pos // width],
        "has_n": False,
    })
    # feature 0 fires on every base of an occurrence, peaking in its middle; features 1-3 are noise
    f0 = np.zeros(n, np.float32)
    bump = 1.0 + np.exp(-0.5 * ((np.arange(k) - k // 2) / 1.5) ** 2)
    for s in occ:
        f0[s:s + k] = bump
    noise = rng.exponential(1.0, (n, 3)).astype(np.float32) * (rng.random((n, 3)) < 0.1)
    codes = sp.csr_matrix(np.column_stack([f0, noise]))
    acts = FeatureActs(codes, tokens, ["f0", "f1", "f2", "f3"], "sae", {})
    gc = np.isin(genome, ["G", "C"])
    membership = sp.csr_matrix(np.column_stack([member, gc]))
    instances = sp.csr_matrix(np.column_stack([inst, np.where(gc, len(occ) + pos + 1, 0)]))
    cal_w = np.random.default_rng(seed + 1).permutation(n_windows) < n_windows // 2
    seqs = [genome_s[s:e] for s, e in zip(windows["start"], windows["end"], strict=True)]
    return Planted(genome_s, windows, seqs, acts, membership, instances, [f"motif:{PLANTED}", "G_or_C"],
                   cal_w[tokens["window_index"].to_numpy()])


@pytest.fixture(scope="session")
def planted() -> Planted:
    return make_planted()


class FakeStore:
    """Just enough of ActivationStore: windows, d_model, iter_shards (with a special token per window)."""

    def __init__(self, seed: int = 0, n_windows: int = 6, width: int = 16, d_model: int = 8, shards: int = 2):
        rng = np.random.default_rng(seed)
        self.d_model = d_model
        self.windows = pd.DataFrame({
            "window_id": [f"w{i}" for i in range(n_windows)], "chrom": "chrI",
            "start": np.arange(n_windows) * 100, "end": np.arange(n_windows) * 100 + width,
            "strand": ["+", "-"] * (n_windows // 2), "region_id": "r",
        })
        self._shards = []
        per = n_windows // shards
        for s in range(shards):
            wi = np.repeat(np.arange(s * per, (s + 1) * per), width + 1)
            ti = np.tile(np.arange(width + 1), per)
            special = ti == 0
            bp = np.where(special, -1, self.windows["start"].to_numpy()[wi] + ti - 1)
            self._shards.append({
                "acts": rng.standard_normal((len(wi), d_model)).astype(np.float32),
                "window_index": wi.astype(np.int32), "token_index": ti.astype(np.int32),
                "bp_start": bp.astype(np.int64), "bp_end": np.where(special, -1, bp + 1).astype(np.int64),
                "is_special": special, "has_n": np.zeros(len(wi), bool),
            })

    def iter_shards(self, **_):
        yield from self._shards


class FakeSAE:
    """ReLU encoder: relu((x - b_dec) @ W_enc + b_enc); W_dec rows are unit directions."""

    def __init__(self, d_in: int = 8, d_sae: int = 12, seed: int = 0):
        import torch

        g = torch.Generator().manual_seed(seed)
        self.W_enc = torch.randn(d_in, d_sae, generator=g)
        self.b_enc = torch.randn(d_sae, generator=g) * 0.5 - 0.5
        self.W_dec = torch.nn.functional.normalize(self.W_enc.T.clone(), dim=1)

        class Cfg:
            pass

        self.cfg = Cfg()
        self.cfg.d_sae = d_sae
        self.cfg.d_in = d_in

    def encode(self, acts_BD):
        import torch

        return torch.relu(acts_BD @ self.W_enc + self.b_enc)


@pytest.fixture
def fake_store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def fake_sae_factory():
    return FakeSAE


#: Yeast-like strand-symmetric base composition (62 % AT), the background of the JASPAR-planted data.
YEAST_BG = np.array([0.31, 0.19, 0.19, 0.31])


@dataclass
class JasparPlanted:
    """Random yeast-like sequence with a JASPAR motif sampled into some windows, and its features.

    ``acts`` columns: ``f0`` fires on the planted sites (a bump over the site's bases, peak jittered
    ± 2 bp), ``f1..`` are noise features firing on random tokens. ``planted`` holds each planted
    site's window, start and strand.
    """

    genome: str
    windows: pd.DataFrame
    sequences: list[str]
    acts: FeatureActs
    planted: pd.DataFrame
    motif: Any


def _sample_sites(rng: np.random.Generator, pwm: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` sites drawn from ``pwm`` ``[k, 4]``, half of them reverse-complemented; and their strand."""
    cum = np.cumsum(pwm, axis=1)
    site = np.minimum((rng.random((n, len(pwm), 1)) > cum[None]).sum(2), 3).astype(np.uint8)
    minus = rng.random(n) < 0.5
    site[minus] = (3 - site[minus])[:, ::-1]
    return site, minus


def make_jaspar_planted(motif_name: str = "REB1", *, other_name: str = "GCN4", seed: int = 0,
                        n_windows: int = 240, width: int = 200, n_planted: int = 160, n_other: int = 100,
                        n_noise: int = 5) -> JasparPlanted:
    """``motif_name`` planted in ``n_planted`` windows (where ``f0`` fires), ``other_name`` in
    ``n_other`` other windows at which no feature fires (a motif nothing should capture)."""
    from genosae.genome.motifs import load_jaspar

    jaspar = {m.name: m for m in load_jaspar()}
    motif, other = jaspar[motif_name], jaspar[other_name]
    rng = np.random.default_rng(seed)
    k = len(motif.pwm)
    genome = rng.choice(4, size=n_windows * width, p=YEAST_BG).astype(np.uint8)
    order = rng.permutation(n_windows)
    wins, other_wins = order[:n_planted], order[n_planted:n_planted + n_other]
    starts = wins * width + rng.integers(20, width - 20 - k, n_planted)
    site, minus = _sample_sites(rng, motif.pwm, n_planted)
    genome[starts[:, None] + np.arange(k)] = site
    ko = len(other.pwm)
    other_starts = other_wins * width + rng.integers(20, width - 20 - ko, len(other_wins))
    genome[other_starts[:, None] + np.arange(ko)] = _sample_sites(rng, other.pwm, len(other_wins))[0]
    n = len(genome)
    f0 = np.zeros(n, np.float32)
    bump = (1.0 + np.exp(-0.5 * ((np.arange(k) - k // 2) / 2.0) ** 2)).astype(np.float32)
    jitter = rng.integers(-2, 3, n_planted)
    f0[starts[:, None] + np.arange(k)] = bump[np.clip(np.arange(k)[None, :] - jitter[:, None], 0, k - 1)]
    f0[starts[:, None] + np.arange(k)] *= rng.uniform(0.8, 1.2, (n_planted, 1)).astype(np.float32)
    noise = (rng.exponential(1.0, (n, n_noise)) * (rng.random((n, n_noise)) < 0.02)).astype(np.float32)
    codes = sp.csr_matrix(np.column_stack([f0, noise]))
    genome_s = "".join(np.array(list("ACGT"))[genome])
    windows = pd.DataFrame({
        "window_id": [f"w{i}" for i in range(n_windows)], "chrom": "chr1",
        "start": np.arange(n_windows) * width, "end": (np.arange(n_windows) + 1) * width,
        "strand": "+", "region_id": "atlas",
    })
    pos = np.arange(n)
    tokens = pd.DataFrame({
        "window_index": pos // width, "token_index": pos % width, "chrom": "chr1", "bp_start": pos,
        "bp_end": pos + 1, "strand": "+", "window_id": windows["window_id"].to_numpy()[pos // width],
        "has_n": False,
    })
    acts = FeatureActs(codes, tokens, [f"f{i}" for i in range(1 + n_noise)], "sae", {})
    seqs = [genome_s[s:e] for s, e in zip(windows["start"], windows["end"], strict=True)]
    planted = pd.DataFrame({"window_index": wins, "start": starts, "end": starts + k,
                            "strand": np.where(minus, "-", "+")})
    return JasparPlanted(genome_s, windows, seqs, acts, planted, motif)


@pytest.fixture(scope="session")
def jaspar_planted() -> JasparPlanted:
    return make_jaspar_planted()


@pytest.fixture(scope="session")
def jaspar_fungi():
    from genosae.genome.motifs import load_jaspar

    return load_jaspar()
