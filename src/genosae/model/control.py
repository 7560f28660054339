"""The control model: the same architecture as the configured model, randomly initialised.

Decode-gLM's control for "the model learned this": a concept or motif that an SAE on the untrained
model captures as well is explained by the architecture and the input statistics (a convolution of
one-hot bases already separates k-mers), not by training. The control keeps the configured model's
config (width, depth, receptive field, tokenizer) and takes the architecture's own initialisation
(``PreTrainedModel.__init__`` → ``post_init``) from a fixed seed.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from genosae._io import atomic_path, write_json

__all__ = ["CONTROL_INFO", "random_init_model"]

#: file written beside the control model's weights, naming where its architecture came from
CONTROL_INFO = "control_model.json"


def random_init_model(
    name_or_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    seed: int = 0,
    revision: str | None = None,
    local_files_only: bool = True,
    trust_remote_code: bool = False,
) -> Path:
    """Save a randomly initialised copy of a model (same class, config and tokenizer) to ``out_dir``.

    Returns
    -------
    ``out_dir``, holding the HF folder (``config.json``, weights, tokenizer files) and
    :data:`CONTROL_INFO` (``source``, ``revision``, ``seed``, ``model_type``, ``n_parameters``).
    Written atomically: a killed run leaves no half-written folder.
    """
    from genosae.errors import InputError
    from genosae.model.adapter import EVO2_PREFIX, load_model

    if str(name_or_path).startswith(EVO2_PREFIX):
        raise InputError("the control model (a random initialisation of the configured model) is not available "
                         "for Evo 2; set control_model.enabled: false", record="control_model.enabled")
    trained = load_model(name_or_path, revision=revision, device="cpu", dtype="float32",
                         local_files_only=local_files_only, trust_remote_code=trust_remote_code)
    cls, config = type(trained.model), trained.model.config
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        control = cls(config).eval()
    finally:
        torch.random.set_rng_state(generator_state)
    out_dir = Path(out_dir)
    with atomic_path(out_dir, is_dir=True) as tmp:
        control.save_pretrained(tmp)
        trained.tokenizer.save_pretrained(tmp)
        write_json({
            "kind": "random-init control",
            "source": str(name_or_path),
            "revision": revision,
            "seed": seed,
            "model_type": config.model_type,
            "class": cls.__name__,
            "n_parameters": int(sum(p.numel() for p in control.parameters())),
        }, tmp / CONTROL_INFO)
    return out_dir
