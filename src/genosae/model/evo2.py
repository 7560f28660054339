"""Evo 2 through the ``evo2`` package, behind the same :class:`~genosae.model.adapter.ModelAdapter`
interface as the Hugging Face models.

``load_model("evo2:evo2_7b", layer=26)`` reads module ``blocks.26`` (the residual stream after block
26, the input of Goodfire's layer-26 SAE); ``submodule="mlp.l3"`` reads ``blocks.26.mlp.l3``. Layers
count blocks (0-based), so ``layer`` is the block index that Evo 2 SAEs record. Hidden states come
from ``Evo2.forward(input_ids, return_embeddings=True, layer_names=[module])``, logits from
``Evo2.forward(input_ids)``; a ``transform`` for :meth:`~ModelAdapter.lm_loss` is a forward hook on
the same module. Tokens are the bytes of the upper-cased sequence (``CharLevelTokenizer``: one token
per base, no special tokens, no BOS, as ``Evo2.score_sequences`` by default). A sequence longer than
the checkpoint's trained context is read in consecutive chunks of that many bases, each without the
bases before it. The model computes in the dtypes its vortex config sets (bfloat16); the activation
store casts to ``embed.storage_dtype``.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch import nn

from genosae.errors import InputError
from genosae.model.adapter import (
    EncodedSequence,
    ModelAdapter,
    TokenizedBatch,
    TokenSpans,
    covers_n,
)

__all__ = ["EVO2_MODELS", "Evo2Adapter", "evo2_repo", "load_evo2"]

#: Evo 2 checkpoints the ``evo2`` package knows: name -> (hub repository, trained context in bases)
EVO2_MODELS: dict[str, tuple[str, int]] = {
    "evo2_7b": ("arcinstitute/evo2_7b", 1_048_576),
    "evo2_20b": ("arcinstitute/evo2_20b", 1_048_576),
    "evo2_40b": ("arcinstitute/evo2_40b", 1_048_576),
    "evo2_7b_262k": ("arcinstitute/evo2_7b_262k", 262_144),
    "evo2_7b_base": ("arcinstitute/evo2_7b_base", 8_192),
    "evo2_40b_base": ("arcinstitute/evo2_40b_base", 8_192),
    "evo2_1b_base": ("arcinstitute/evo2_1b_base", 8_192),
    "evo2_7b_microviridae": ("evo-design/evo-2-7b-8k-microviridae", 8_192),
}


def _known(name: str) -> str:
    if name not in EVO2_MODELS:
        raise InputError(f"unknown Evo 2 model {name!r}; use evo2:<name> with one of {', '.join(EVO2_MODELS)} "
                         "(or evo2:<folder>/<name>.pt)", record="model.path")
    return name


def evo2_repo(name: str) -> str:
    """Hub repository of the Evo 2 checkpoint ``name`` (``evo2_7b`` → ``arcinstitute/evo2_7b``)."""
    return EVO2_MODELS[_known(name)][0]


def _cached_checkpoint(name: str, revision: str | None) -> Path | None:
    """A complete ``<name>.pt`` already on disk: merged by ``evo2`` beside the hub cache, or in it."""
    from huggingface_hub import constants, try_to_load_from_cache

    merged = Path(os.path.dirname(constants.HF_HUB_CACHE)) / f"{name}.pt"
    if merged.is_file() and revision is None:
        return merged
    hit = try_to_load_from_cache(evo2_repo(name), f"{name}.pt", revision=revision)
    return Path(hit) if isinstance(hit, str) else None


def _checkpoint(spec: str, revision: str | None, local_files_only: bool) -> tuple[str, Path | None]:
    """``(model name, local checkpoint or None to let evo2 download it)`` for ``evo2:<spec>``."""
    if spec.endswith(".pt"):
        path = Path(spec).expanduser()
        if not path.is_file():
            raise InputError("Evo 2 checkpoint not found", path=path, record="model.path")
        return _known(path.stem), path
    name = _known(spec)
    cached = _cached_checkpoint(name, revision)
    if cached is not None:
        return name, cached
    if local_files_only:
        raise InputError(f"Evo 2 checkpoint {name} is not in the local Hugging Face cache and model.local_files_only "
                         f"is true; download it first (`genosae fetch-model evo2:{name}` on a machine with internet) "
                         "or set model.local_files_only: false", record="model.path")
    if revision is not None:
        raise InputError(f"model.revision needs the checkpoint of that revision on disk; fetch it first "
                         f"(`genosae fetch-model evo2:{name} --revision {revision}`)", record="model.revision")
    return name, None  # evo2 downloads (and merges the shards of) the checkpoint itself


def load_evo2(
    spec: str,
    *,
    revision: str | None = None,
    layer: int = -1,
    submodule: str = "",
    device: str = "auto",
    dtype: str = "auto",
    local_files_only: bool = True,
    batch_size: int = 32,
) -> Evo2Adapter:
    """Load Evo 2 (``spec`` = a name such as ``evo2_7b``, or a ``<name>.pt`` file) through the ``evo2``
    package; :func:`genosae.model.adapter.load_model` calls this for ``evo2:<spec>``."""
    if device not in ("auto", "cuda", "cuda:0"):
        raise InputError(f"Evo 2 places itself on cuda:0 (and splits across the visible GPUs), so model.device "
                         f"{device!r} would be ignored; set auto or cuda (choose GPUs with CUDA_VISIBLE_DEVICES)",
                         record="model.device")
    if dtype not in ("auto", "bfloat16"):
        raise InputError(f"Evo 2 computes in the dtypes of its own config (bfloat16), not {dtype!r}; set model.dtype: "
                         "auto (embed.storage_dtype sets how activations are stored)", record="model.dtype")
    if not torch.cuda.is_available():
        raise InputError("Evo 2 needs a CUDA GPU (the evo2 package runs on vortex CUDA kernels); run it on a GPU "
                         "node with model.device: cuda", record="model.device")
    try:
        import evo2
    except ImportError as err:
        raise InputError(f"Evo 2 needs the evo2 package: install the evo2 extra (pip install 'genosae[evo2]', on a "
                         f"CUDA machine; see docs/models.md): {err}", record="model.path") from err
    name, local_path = _checkpoint(spec, revision, local_files_only)
    try:
        with contextlib.redirect_stdout(sys.stderr):  # evo2 prints its loading progress; keep stdout for results
            model = evo2.Evo2(name, local_path=None if local_path is None else str(local_path))
    except (ImportError, OSError, RuntimeError, ValueError) as err:  # missing Transformer Engine, bad file, OOM
        first = (str(err).splitlines() or [""])[0][:200]
        raise InputError(f"could not load Evo 2 {name}: {type(err).__name__}: {first}", record="model.path") from err
    source = {"path": f"evo2:{name}", "revision": revision, "model_type": "evo2", "kind": "causal",
              "checkpoint": None if local_path is None else str(local_path),
              "evo2_version": getattr(evo2, "__version__", None)}
    return Evo2Adapter(model, name=name, layer=layer, submodule=submodule, batch_size=batch_size,
                       context=EVO2_MODELS[name][1], source=source)


class Evo2Adapter(ModelAdapter):
    """An ``evo2.Evo2`` model with one chosen module. Build with :func:`load_evo2`.

    Same attributes as :class:`ModelAdapter`, except: ``model`` is the vortex ``StripedHyena`` module
    (``evo2`` holds the ``Evo2`` object), ``layer`` is a block index and ``n_hidden`` the number of
    blocks, ``hook_module`` is ``blocks.{layer}[.{submodule}]`` and ``context`` the trained context.
    """

    def __init__(self, evo2_model: Any, *, name: str, layer: int = -1, submodule: str = "",
                 batch_size: int = 32, context: int, source: dict | None = None) -> None:
        self.evo2 = evo2_model
        self.model = evo2_model.model.eval()
        self.tokenizer = evo2_model.tokenizer
        self.kind = "causal"
        self.batch_size = int(batch_size)
        self.source = source or {"path": f"evo2:{name}"}
        self.tokenization, self.kmer = "char", 1
        self.context = int(context)
        self._takes_mask = False  # Evo2.forward takes no padding mask: every batch holds one length
        self._pad_id = int(getattr(self.tokenizer, "pad_id", 1))
        blocks = getattr(self.model, "blocks", None)
        if not isinstance(blocks, nn.ModuleList) or not len(blocks):
            raise InputError(f"{name}: the evo2 model has no `blocks` list; is this an Evo 2 checkpoint?",
                             record="model.path")
        n = len(blocks)
        resolved = layer + n if layer < 0 else layer
        if not 0 <= resolved < n:
            raise InputError(f"layer {layer} is out of range: {name} has blocks 0..{n - 1} (or -{n}..-1)",
                             record="model.layer")
        self.layer, self.n_hidden = resolved, n
        block = f"blocks.{resolved}"
        self.hook_module = f"{block}.{submodule}" if submodule else block
        modules = dict(self.model.named_modules())
        if self.hook_module not in modules:
            inside = [k.removeprefix(block + ".") for k in modules if k.startswith(block + ".")]
            raise InputError(f"block {resolved} of {name} has no module {submodule!r}; it has {', '.join(inside)}",
                             record="model.submodule")
        self._module = modules[self.hook_module]
        self.device = next(self.model.parameters()).device
        probe = self._layer_acts(self.tokenize(["ACGT" * 8]))
        if probe.ndim != 3 or tuple(probe.shape[:2]) != (1, 32):
            raise InputError(f"{self.hook_module} of {name} does not output one vector per token (got shape "
                             f"{tuple(probe.shape)}); choose another model.submodule", record="model.submodule")
        self.d_model, self.dtype = int(probe.shape[-1]), probe.dtype

    # ------------------------------------------------------------------ tokens and forward passes
    def _encode(self, seqs: Sequence[str]) -> list[EncodedSequence]:
        rows = []
        for seq in seqs:
            ids = np.asarray(self.tokenizer.tokenize(seq), dtype=np.int64)
            if len(ids) != len(seq):
                raise InputError(f"the Evo 2 tokenizer gave {len(ids)} tokens for {len(seq)} bases; expected one "
                                 "byte per base", record="model.path")
            start = np.arange(len(seq), dtype=np.int64)
            special = np.zeros(len(seq), dtype=bool)
            rows.append(EncodedSequence(ids, special, start, start + 1, covers_n(seq, start, start + 1, special)))
        return rows

    def _forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kw: Any) -> Any:
        outputs, _ = self.evo2.forward(input_ids.to(self.device))
        # Evo2.forward returns StripedHyena's (logits, inference state) as its first element
        return SimpleNamespace(logits=outputs[0] if isinstance(outputs, tuple | list) else outputs)

    def _layer_acts(self, batch: TokenizedBatch) -> torch.Tensor:
        _, embeddings = self.evo2.forward(batch.input_ids.to(self.device), return_embeddings=True,
                                          layer_names=[self.hook_module])
        return embeddings[self.hook_module]

    # ------------------------------------------------------------------ the trained context
    def _pieces(self, seqs: Sequence[str]) -> list[tuple[int, int, str]]:
        """``(sequence index, offset, chunk)``: each sequence cut into chunks of ``context`` bases."""
        return [(i, off, s[off:off + self.context]) for i, s in enumerate(seqs)
                for off in range(0, max(len(s), 1), self.context)]

    def _read(self, seqs: Sequence[str]) -> list[tuple[torch.Tensor, TokenSpans]]:
        pieces = self._pieces(seqs)
        parts: list[list[tuple[int, torch.Tensor, TokenSpans]]] = [[] for _ in seqs]
        for (i, off, _), (acts, spans) in zip(pieces, super()._read([p[2] for p in pieces])):
            parts[i].append((off, acts, spans))
        return [(torch.cat([a for _, a, _ in ps]), TokenSpans.concat([(o, sp) for o, _, sp in ps])) for ps in parts]

    def lm_loss(self, seqs: Sequence[str], *, transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
                mask_rate: float = 0.15, seed: int = 0) -> float:
        """Next-token loss in nats per predicted base; a sequence longer than the trained context is
        scored chunk by chunk (the first base of each chunk is not predicted). ``mask_rate`` and
        ``seed`` are unused (causal LM)."""
        chunks = [p[2] for p in self._pieces(seqs)]
        return super().lm_loss(chunks, transform=transform, mask_rate=mask_rate, seed=seed)
