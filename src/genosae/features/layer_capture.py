"""Motif and concept capture of a model at one layer, from scratch: embed, train an SAE, score.

What ``benchmarks/bench_motif_capture.py`` sweeps over layers and what the shipped-model test checks:
promoter windows split into calibration (off the held-out chromosomes) and held-out ones
(:func:`promoter_windows`); for the model and its control (the same architecture untrained,
:mod:`genosae.model.control`) the layer's activation store (:func:`~genosae.model.embed.embed_windows`)
and a TopK SAE trained on the calibration windows (:func:`~genosae.sae.train.train_sae`); then
:func:`~genosae.features.motif_capture.motif_capture` of the model's SAE, its neurons, random directions
and the control's SAE (:func:`layer_motif_capture`). :func:`layer_concept_capture` does the same for the
annotation and sequence concepts (CDS, codon phase, promoter, repeats, ...) on any windows (the atlas):
what ``benchmarks/bench_layer_capture.py`` sweeps to choose the layer a run reads.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from genosae.errors import InputError
from genosae.features.activations import feature_activations, neuron_units, random_units, store_mean
from genosae.features.alignment import align_source, align_store
from genosae.features.catalog import baseline_summary
from genosae.features.motif_capture import motif_capture
from genosae.genome.genes import promoters
from genosae.genome.reference import Reference
from genosae.genome.windows import make_windows

__all__ = ["layer_concept_capture", "layer_motif_capture", "promoter_windows"]


def promoter_windows(annotation: pd.DataFrame, reference: Reference, *, holdout_chroms: Sequence[str],
                     n_calibration: int, n_heldout: int | None = None, upstream: int = 500, downstream: int = 0,
                     size: int = 512, stride: int = 256, seed: int = 0) -> pd.DataFrame:
    """Promoter windows: ``n_calibration`` drawn (seeded) off ``holdout_chroms``, and those on them.

    Promoters are :func:`genosae.genome.genes.promoters`, tiled by
    :func:`~genosae.genome.windows.make_windows`; ``n_heldout`` (default all) are drawn from the
    held-out ones.

    Returns
    -------
    Windows table in reference order (``window_index`` = row number).
    """
    prom = promoters(annotation, upstream=upstream, downstream=downstream, chrom_sizes=reference.chrom_sizes)
    win = make_windows(prom[prom["end"] > prom["start"]], size=size, stride=stride,
                       chrom_sizes=reference.chrom_sizes)
    held = win["chrom"].isin(list(holdout_chroms)).to_numpy()
    if not held.any() or held.all():
        raise InputError(f"no promoter windows on both sides of the held-out chromosomes {list(holdout_chroms)}",
                         record="atlas.holdout_chroms")
    rng = np.random.default_rng(seed)
    cal = rng.choice(np.flatnonzero(~held), size=min(n_calibration, int((~held).sum())), replace=False)
    ho = np.flatnonzero(held)
    if n_heldout is not None and n_heldout < ho.size:
        ho = rng.choice(ho, size=n_heldout, replace=False)
    order = {c: i for i, c in enumerate(reference.chroms)}
    out = win.iloc[np.r_[cal, ho]]
    return (out.assign(_o=out["chrom"].map(order)).sort_values(["_o", "start"], kind="stable")
            .drop(columns="_o").reset_index(drop=True))


def _store_and_saes(model: str, layer: int, windows: pd.DataFrame, sequences: Sequence[str],
                    calibration: np.ndarray, work: Path, sae_cfg: Any, seeds: Sequence[int], *, batch_size: int,
                    storage_dtype: str, device: str) -> tuple[Any, dict[int, Any], dict[int, float]]:
    """Activation store of ``model`` at ``layer`` and, per seed, the SAE trained on its calibration windows
    and its final training FVU."""
    from genosae.model.adapter import load_model
    from genosae.model.embed import embed_windows
    from genosae.sae.train import CURVES_CSV, train_sae

    adapter = load_model(model, layer=layer, device=device, dtype="float32")
    store = embed_windows(adapter, windows, list(sequences), work / "store", batch_size=batch_size,
                          storage_dtype=storage_dtype, progress=False)
    saes, fvu = {}, {}
    for seed in seeds:
        out = work / f"sae_seed{seed}"
        saes[seed] = train_sae(store, dataclasses.replace(sae_cfg, seed=seed), out, device=device, progress=False,
                               window_mask=calibration, metadata={"model_name": model, "layer": adapter.layer})
        fvu[seed] = float(pd.read_csv(out / CURVES_CSV)["fvu"].iloc[-5:].mean())
    return store, saes, fvu


def layer_motif_capture(
    models: Mapping[str, str],
    layer: int,
    windows: pd.DataFrame,
    sequences: Sequence[str],
    sites: pd.DataFrame,
    calibration: np.ndarray,
    work_dir: str | Path,
    *,
    sae_cfg: Any,
    n_random: int = 384,
    thresholds: Sequence[float] = (0.0, 0.15, 0.5, 0.6, 0.8),
    min_sites: int = 20,
    min_f1: float = 0.5,
    margin: float = 0.1,
    batch_size: int = 32,
    storage_dtype: str = "float16",
    device: str = "cpu",
    seed: int = 0,
    sae_seeds: Sequence[int] | None = None,
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Site F1 of every motif at ``layer``: the model's SAE vs its neurons, random directions and the control's SAE.

    Parameters
    ----------
    models
        ``{"model": path, "control": path}`` (the control: :func:`genosae.model.control.random_init_model`).
    windows, sequences
        Windows table and its sequences (:func:`promoter_windows`, ``window_sequences``).
    sites
        :func:`~genosae.features.motif_capture.motif_sites` of the FIMO motif concepts.
    calibration
        Bool per window: SAE training, unit and threshold choice; the others are scored.
    work_dir
        Scratch folder for the stores and SAEs (removed again).
    sae_cfg
        :class:`~genosae.sae.train.SAETrainConfig` of both SAEs.
    n_random, thresholds, min_sites, min_f1, margin
        Random directions (centred, as the pipeline's); :func:`~genosae.features.motif_capture.motif_capture`
        settings, ``captured`` against every null set (random, neuron, control).
    seed
        Seed of the random directions.
    sae_seeds
        Replicate SAEs: one SAE per seed on each store (same windows and stores), scored each against the
        same neurons and random directions and the control's SAE of the same seed. Default: only
        ``sae_cfg.seed``.

    Returns
    -------
    table, fvu
        The ``motif_capture`` table (sets ``sae``, ``neuron``, ``random``, ``control``), one block of rows
        per SAE seed (column ``sae_seed``), and the final training FVU of the ``model`` and ``control``
        SAEs (mean over the seeds).
    """
    missing = {"model", "control"} - set(models)
    if missing:
        raise InputError(f"models needs the keys 'model' and 'control' (missing {sorted(missing)})", record="models")
    cal = np.asarray(calibration, dtype=bool)
    seeds = list(dict.fromkeys(sae_seeds if sae_seeds is not None else [sae_cfg.seed]))
    if not seeds:
        raise InputError("sae_seeds must name at least one seed", record="sae_seeds")
    work_dir = Path(work_dir)
    acts: dict[str, dict[int, Any]] = {}
    fvu: dict[str, float] = {}
    kw = {"batch_size": batch_size, "storage_dtype": storage_dtype, "device": device}
    for name in ("control", "model"):  # the model's store stays, for the streamed neuron and random sets
        store, saes, fvu_seed = _store_and_saes(models[name], layer, windows, sequences, cal, work_dir / name,
                                                sae_cfg, seeds, **kw)
        acts[name] = {s: feature_activations(sae, store, device=device) for s, sae in saes.items()}
        fvu[name] = float(np.mean(list(fvu_seed.values())))
        if name == "control":
            shutil.rmtree(work_dir / name)
    mean = store_mean(store)
    neurons, randoms = neuron_units(store.d_model, mean), random_units(store.d_model, n_random, seed, mean)
    tables = []
    for s in seeds:
        sets = {"sae": acts["model"][s], "neuron": neurons, "random": randoms, "control": acts["control"][s]}
        table, _ = motif_capture(sets, sites, cal, ~cal, store=store, thresholds=thresholds, min_sites=min_sites,
                                 min_f1=min_f1, min_margin=margin, null_sets=("random", "neuron", "control"))
        tables.append(table.assign(sae_seed=s))
    shutil.rmtree(work_dir / "model")
    return pd.concat(tables, ignore_index=True), fvu


def layer_concept_capture(
    models: Mapping[str, str],
    layer: int,
    windows: pd.DataFrame,
    sequences: Sequence[str],
    concepts: pd.DataFrame,
    calibration: np.ndarray,
    work_dir: str | Path,
    *,
    sae_cfg: Any,
    n_random: int = 384,
    thresholds: Sequence[float] = (0.0, 0.15, 0.5, 0.6, 0.8),
    min_f1: float = 0.5,
    batch_size: int = 32,
    storage_dtype: str = "float16",
    device: str = "cpu",
    seed: int = 0,
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Held-out F1 of every annotation concept at ``layer``: the model's SAE vs its neurons, random directions
    and the control's SAE, under the pipeline's rule (unit and threshold chosen on the calibration windows).

    Parameters
    ----------
    models
        ``{"model": path, "control": path}`` as for :func:`layer_motif_capture`.
    windows, sequences
        Windows table and its sequences (e.g. the atlas windows and ``window_sequences``).
    concepts
        The prepared concepts table (``concepts.tsv.gz``); ``motif:`` concepts are left out (motif capture
        scores them by site, :func:`layer_motif_capture`).
    calibration
        Bool per window: SAE training, unit and threshold choice; the others are scored.
    work_dir
        Scratch folder for the stores and SAEs (removed again).
    sae_cfg
        :class:`~genosae.sae.train.SAETrainConfig` of both SAEs (seed ``sae_cfg.seed``).
    n_random, thresholds, min_f1, seed
        Random directions (centred) and their seed; the alignment's threshold fractions and F1 cut.

    Returns
    -------
    summary, fvu
        :func:`~genosae.features.catalog.baseline_summary` over the sets ``sae``, ``neuron``, ``random`` and
        ``control`` (indexed by concept), and the final training FVU of the ``model`` and ``control`` SAEs.
    """
    missing = {"model", "control"} - set(models)
    if missing:
        raise InputError(f"models needs the keys 'model' and 'control' (missing {sorted(missing)})", record="models")
    names = sorted(c for c in concepts["concept"].astype(str).unique() if not c.startswith("motif:"))
    if not names:
        raise InputError("the concepts table holds no annotation concepts (only motif: ones)", record="concepts")
    concepts = concepts[concepts["concept"].astype(str).isin(names)]
    cal = np.asarray(calibration, dtype=bool)
    work_dir = Path(work_dir)
    kw = {"batch_size": batch_size, "storage_dtype": storage_dtype, "device": device}
    params = {"concept_names": names, "calibration_windows": cal, "thresholds": tuple(thresholds), "min_f1": min_f1}
    alignments: dict[str, pd.DataFrame] = {}
    fvu: dict[str, float] = {}
    for name, set_name in (("control", "control"), ("model", "sae")):  # the model's store stays for the baselines
        store, saes, fvu_seed = _store_and_saes(models[name], layer, windows, sequences, cal, work_dir / name,
                                                sae_cfg, [sae_cfg.seed], **kw)
        acts = feature_activations(saes[sae_cfg.seed], store, device=device)
        alignments[set_name] = align_source(acts, concepts, **params)
        fvu[name] = fvu_seed[sae_cfg.seed]
        if name == "control":
            shutil.rmtree(work_dir / name)
    mean = store_mean(store)
    units = {"neuron": neuron_units(store.d_model, mean), "random": random_units(store.d_model, n_random, seed, mean)}
    base = align_store(store, units, concepts, **params)
    shutil.rmtree(work_dir / "model")
    summary = baseline_summary({"sae": alignments["sae"], **base, "control": alignments["control"]})
    return summary, fvu
