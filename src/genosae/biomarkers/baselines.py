"""Baselines the SAE features must beat: k-mer count profiles and a linear probe on raw embeddings."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anndata as ad
import numpy as np
import pandas as pd

from genosae.biomarkers.calibration import ClassifierResult, Penalty, cv_classifier
from genosae.biomarkers.profiles import merged_unit_sequences, window_base_weights
from genosae.biomarkers.stats import case_control_masks, rank_features, test_features
from genosae.errors import InputError
from genosae.features.activations import segment_sum
from genosae.genome.reference import encode_bases

if TYPE_CHECKING:
    from genosae.model.store import ActivationStore


def kmer_names(k: int) -> list[str]:
    """All 4**k k-mers in index order (A=0, C=1, G=2, T=3; first base most significant)."""
    idx = np.arange(4**k)
    digits = (idx[:, None] // 4 ** np.arange(k - 1, -1, -1)[None, :]) % 4
    letters = np.frombuffer(b"ACGT", dtype="S1")[digits]
    return [b"".join(row).decode() for row in letters]


def kmer_counts(sequences: Sequence[str], k: int) -> np.ndarray:
    """Count every k-mer of each sequence (k-mers with non-ACGT bases are skipped).

    Vectorised: all sequences are concatenated, each position's k-mer index is built with k shifts,
    and one ``bincount`` over ``sequence * 4**k + kmer`` fills the ``[n_sequences, 4**k]`` table.
    """
    if not 1 <= k <= 10:
        raise InputError(f"k must be in 1..10, got {k}", record="biomarkers.kmer_k")
    n = len(sequences)
    if n == 0:
        return np.zeros((0, 4**k), dtype=np.int64)
    raw = [str(s).encode() for s in sequences]
    lens = np.array([len(s) for s in raw], dtype=np.int64)
    codes = encode_bases(b"".join(raw)).astype(np.int64)
    seq_of = np.repeat(np.arange(n), lens)
    total = codes.size
    if total < k:
        return np.zeros((n, 4**k), dtype=np.int64)
    m = total - k + 1
    index = np.zeros(m, dtype=np.int64)
    bad = np.zeros(m, dtype=bool)
    for j in range(k):  # loop over k only
        c = codes[j:j + m]
        index = index * 4 + np.where(c < 4, c, 0)
        bad |= c >= 4
    bad |= seq_of[:m] != seq_of[k - 1:k - 1 + m]  # k-mer spans two sequences
    good = ~bad
    flat = seq_of[:m][good] * 4**k + index[good]
    return np.bincount(flat, minlength=n * 4**k).reshape(n, 4**k)


def kmer_profiles(
    sequences: Sequence[str],
    obs: pd.DataFrame,
    k: int = 4,
) -> ad.AnnData:
    """Units × k-mers AnnData of k-mer frequencies (counts / total), with the given ``obs``.

    ``sequences`` has one sequence per ``obs`` row (a unit's sequence; for samples, their regions'
    sequences concatenated with ``N`` between them so no k-mer spans two regions).
    """
    if len(sequences) != len(obs):
        raise InputError(f"{len(sequences)} sequences for {len(obs)} units", record="sequences")
    counts = kmer_counts(sequences, k).astype(np.float32)
    total = counts.sum(axis=1, keepdims=True)
    freq = counts / np.maximum(total, 1)
    var = pd.DataFrame(index=pd.Index(kmer_names(k), name="feature"))
    return ad.AnnData(X=freq, obs=obs.copy(), var=var, layers={"mean": freq, "counts": counts})


def unit_sequences(windows: pd.DataFrame, sequences: Sequence[str], units: pd.Index,
                   unit: str) -> list[str]:
    """Each unit's sequence (in ``units`` order) with every base once: overlapping windows are
    stitched on their coordinates, strand-aware, and separate stretches (other regions, other
    haplotypes) joined with ``N`` (:func:`~genosae.biomarkers.profiles.merged_unit_sequences`), so
    a k-mer of the reference is counted once per copy of it in the unit."""
    if len(sequences) != len(windows):
        raise InputError(f"{len(sequences)} sequences for {len(windows)} windows", record="sequences")
    codes, uniques = pd.factorize(windows[unit].astype(str))
    texts, _ = merged_unit_sequences(windows, sequences, codes, len(uniques), [unit])
    index = pd.Index(uniques)
    pos = index.get_indexer([str(u) for u in units])
    missing = [u for u, i in zip(units, pos) if i < 0]
    if missing:
        raise InputError(f"no windows for unit(s) {missing[:3]}", record="windows")
    return [texts[i] for i in pos]


def mean_embeddings(store: str | Path | ActivationStore, unit: str = "region_id", *,
                    exclude_special: bool = True) -> pd.DataFrame:
    """Mean raw model activation per unit of an activation store (shards streamed).

    Reads the store through :class:`~genosae.model.store.ActivationStore`; each window is weighted
    so that overlapping windows count a base once
    (:func:`~genosae.biomarkers.profiles.window_base_weights`) and the per-unit sums are
    :func:`~genosae.features.activations.segment_sum` of each shard.

    Returns
    -------
    DataFrame ``units × d_model`` indexed by unit id (float64).
    """
    from genosae.model.store import ActivationStore

    store = store if isinstance(store, ActivationStore) else ActivationStore(store)
    windows = store.windows
    if unit not in windows.columns:
        raise InputError(f"store windows lack column {unit!r}", path=store.path / "windows.tsv")
    codes, uniques = pd.factorize(windows[unit].astype(str))
    base_w = window_base_weights(windows, [unit])  # overlapping windows: each base once
    sums = np.zeros((len(uniques), store.d_model))
    counts = np.zeros(len(uniques))
    for shard in store.iter_shards(columns=["acts", "window_index", "is_special"]):
        keep = ~shard["is_special"].astype(bool) if exclude_special else np.ones(len(shard["acts"]), bool)
        win = shard["window_index"].astype(np.int64)[keep]
        u, w = codes[win], base_w[win]
        sums += segment_sum(shard["acts"][keep].astype(np.float64), u, len(uniques), weights=w)
        counts += np.bincount(u, weights=w, minlength=len(uniques))
    return pd.DataFrame(sums / np.maximum(counts, 1)[:, None], index=pd.Index(uniques, name=unit))


def kmer_baseline(
    sequences: Sequence[str],
    obs: pd.DataFrame,
    *,
    k: int = 4,
    condition: str = "condition",
    case: str = "case",
    control: str = "control",
    covariates: Sequence[str] = (),
    folds: int = 5,
    seed: int = 0,
) -> dict[str, Any]:
    """The same per-feature tests and L1 classifier on k-mer frequency profiles of the units.

    Returns ``{"table": ranked stats DataFrame, "classifier": ClassifierResult, "adata": AnnData}``.
    """
    kad = kmer_profiles(sequences, obs, k)
    table = rank_features(test_features(kad, layer="mean", condition=condition, case=case,
                                        control=control, covariates=covariates))
    is_case, is_ctrl = case_control_masks(kad.obs, case, control, condition=condition)
    sel = is_case | is_ctrl
    clf = cv_classifier(kad.layers["mean"][sel], is_case[sel], folds, penalty="l1",
                        feature_names=list(kad.var_names), seed=seed)
    return {"table": table, "classifier": clf, "adata": kad}


def linear_probe(
    embeddings: np.ndarray | pd.DataFrame,
    y: np.ndarray,
    *,
    folds: int = 5,
    penalty: Penalty = "l2",
    seed: int = 0,
) -> ClassifierResult:
    """Cross-validated logistic probe (L1 or L2) on raw mean embeddings per unit."""
    names = [str(c) for c in embeddings.columns] if isinstance(embeddings, pd.DataFrame) else None
    return cv_classifier(np.asarray(embeddings), y, folds, penalty=penalty, feature_names=names,
                         seed=seed)


def compare_methods(results: dict[str, dict[str, Any]], alpha: float = 0.05) -> pd.DataFrame:
    """One row per method: ``method, n_features, n_significant, best_feature, best_q, best_auroc,
    cv_auroc`` (out-of-fold, :func:`~genosae.biomarkers.calibration.cv_classifier`), ``n_selected``
    from each method's ``{"table": ..., "classifier": ...}`` (either may be absent)."""
    rows = []
    for method, res in results.items():
        table, clf = res.get("table"), res.get("classifier")
        row: dict[str, Any] = {"method": method}
        if table is not None and len(table):
            best = rank_features(table).iloc[0]
            row.update(n_features=len(table), n_significant=int((table["q"] <= alpha).sum()),
                       best_feature=str(best["feature"]), best_q=float(best["q"]),
                       best_auroc=float(best["auroc"]))
        if clf is not None:
            row.update(cv_auroc=clf.auroc, n_selected=len(clf.selected))
        rows.append(row)
    cols = ["method", "n_features", "n_significant", "best_feature", "best_q", "best_auroc",
            "cv_auroc", "n_selected"]
    return pd.DataFrame(rows).reindex(columns=cols)
