"""Genomic language models: load, embed, store activations, train the default model.

Public API (loaded on first use, so ``import genosae.model.store`` does not pull in
``transformers``): :func:`load_model`, :class:`ModelAdapter`, :func:`fetch_model` (``adapter``);
:func:`embed_windows` (``embed``); :class:`ActivationStore`, :class:`ActivationStoreWriter`,
:func:`merge_stores`, :func:`read_windows_table` (``store``); :func:`random_init_model`
(``control``); :class:`GenosaeCNNConfig`, :class:`GenosaeCNNForMaskedLM`, :func:`build_tokenizer`,
:func:`token_ids` (``lm``); :class:`LMTrainConfig`, :func:`train_lm`, :func:`evaluate_lm` (``train_lm``).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ModelAdapter": "adapter", "fetch_model": "adapter", "load_model": "adapter",
    "embed_windows": "embed",
    "ActivationStore": "store", "ActivationStoreWriter": "store", "merge_stores": "store",
    "read_windows_table": "store",
    "random_init_model": "control",
    "GenosaeCNNConfig": "lm", "GenosaeCNNForMaskedLM": "lm", "build_tokenizer": "lm", "token_ids": "lm",
    "LMTrainConfig": "train_lm", "evaluate_lm": "train_lm", "train_lm": "train_lm",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        msg = f"module 'genosae.model' has no attribute {name!r}"
        raise AttributeError(msg)
    return getattr(importlib.import_module(f"genosae.model.{_EXPORTS[name]}"), name)
