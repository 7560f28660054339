"""Sparse autoencoders: architectures (``topk``, ``batchtopk``, ``relu``), training, evaluation,
SAELens-layout I/O and width/k sweeps.

Public API
----------
- :class:`SAEConfig`, :class:`SAE`, :func:`get_architecture`, :data:`ARCHITECTURES`
- :class:`TopKSAE`, :class:`BatchTopKSAE`, :class:`ReLUSAE` (+ ``*Config``)
- :class:`SAETrainConfig`, :class:`SAETrainer`, :func:`train_sae`, :func:`split_windows`
- :func:`evaluate_sae`, :func:`write_metrics`
- :func:`save_sae`, :func:`load_sae` (also SAELens folders and Goodfire ``.pt`` checkpoints)
- :func:`load_saelens`, :func:`load_goodfire`, :func:`detect_format`, :func:`check_provenance`,
  :data:`GOODFIRE_EVO2_L26` (SAEs trained elsewhere)
- :func:`sweep`
"""

from genosae.sae.base import ARCHITECTURES, SAE, SAEConfig, get_architecture, register_architecture
from genosae.sae.batchtopk import BatchTopKSAE, BatchTopKSAEConfig
from genosae.sae.evaluate import evaluate_sae, write_metrics
from genosae.sae.external import (
    GOODFIRE_EVO2_L26,
    check_provenance,
    detect_format,
    load_goodfire,
    load_saelens,
)
from genosae.sae.io import load_sae, save_sae
from genosae.sae.relu import ReLUSAE, ReLUSAEConfig
from genosae.sae.sweep import sweep
from genosae.sae.topk import TopKSAE, TopKSAEConfig
from genosae.sae.train import SAETrainConfig, SAETrainer, split_windows, train_sae

__all__ = [
    "ARCHITECTURES",
    "GOODFIRE_EVO2_L26",
    "SAE",
    "BatchTopKSAE",
    "BatchTopKSAEConfig",
    "ReLUSAE",
    "ReLUSAEConfig",
    "SAEConfig",
    "SAETrainConfig",
    "SAETrainer",
    "TopKSAE",
    "TopKSAEConfig",
    "check_provenance",
    "detect_format",
    "evaluate_sae",
    "get_architecture",
    "load_goodfire",
    "load_sae",
    "load_saelens",
    "register_architecture",
    "save_sae",
    "split_windows",
    "sweep",
    "train_sae",
    "write_metrics",
]
