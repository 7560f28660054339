"""Sparse autoencoders: architectures (``topk``, ``batchtopk``, ``relu``), training, evaluation,
SAELens-layout I/O and width/k sweeps.

Public API
----------
- :class:`SAEConfig`, :class:`SAE`, :func:`get_architecture`, :data:`ARCHITECTURES`
- :class:`TopKSAE`, :class:`BatchTopKSAE`, :class:`ReLUSAE` (+ ``*Config``)
- :class:`SAETrainConfig`, :class:`SAETrainer`, :func:`train_sae`, :func:`split_windows`
- :func:`evaluate_sae`, :func:`write_metrics`
- :func:`save_sae`, :func:`load_sae`
- :func:`sweep`
"""

from genosae.sae.base import ARCHITECTURES, SAE, SAEConfig, get_architecture, register_architecture
from genosae.sae.batchtopk import BatchTopKSAE, BatchTopKSAEConfig
from genosae.sae.evaluate import evaluate_sae, write_metrics
from genosae.sae.io import load_sae, save_sae
from genosae.sae.relu import ReLUSAE, ReLUSAEConfig
from genosae.sae.sweep import sweep
from genosae.sae.topk import TopKSAE, TopKSAEConfig
from genosae.sae.train import SAETrainConfig, SAETrainer, split_windows, train_sae

__all__ = [
    "ARCHITECTURES",
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
    "evaluate_sae",
    "get_architecture",
    "load_sae",
    "register_architecture",
    "save_sae",
    "split_windows",
    "sweep",
    "train_sae",
    "write_metrics",
]
