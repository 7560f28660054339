"""Sparse SAE codes on disk: the exchange format after the SAE (``genosae encode-codes``).

A code store holds, per token, the SAE's nonzero latents only, as CSR shards beside the same per-token
columns as the activation store it was encoded from (``window_index, token_index, bp_start, bp_end,
is_special, has_n`` and any extra columns such as ``reverse``), so every token keeps its exact map to
reference bases. Shard ``i`` of the codes holds the tokens of shard ``i`` of the source, in order.

Layout (``format: genosae-codes/1``)::

    manifest.json   source store identity (model, layer, windows hash, config hash), SAE identity
                    (path, architecture, d_sae, weights hash), n_tokens, nnz, shards
    windows.tsv     the source's windows table
    shard-00000.safetensors   indptr int64 [T+1], indices int16|int32 [nnz], values float32 [nnz],
                              the per-token columns [T]

Per token that is ``k x 6`` bytes (int16 index + float32 value, ``d_sae`` < 32768; the values exactly
as the SAE computed them) + 8 for ``indptr`` where a dense float16 store needs ``d_model x 2``. Encoding streams shard by shard (memory: one source
shard), resumes from the shards already written, and writes the manifest last.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from genosae._io import atomic_path, read_json, write_json, write_table
from genosae.errors import InputError
from genosae.model.store import (
    MANIFEST,
    TOKEN_COLUMNS,
    WINDOWS_FILE,
    read_windows_table,
    shard_name,
)

log = logging.getLogger(__name__)

__all__ = ["CODE_FORMAT", "CodeStore", "encode_store", "sae_fingerprint"]

CODE_FORMAT = "genosae-codes/1"
#: Source-store manifest keys a code store records and checks.
SOURCE_KEYS = ("model", "layer", "d_model", "tokenization", "config_hash", "windows_hash")


def sae_fingerprint(sae: Any) -> str:
    """Hash of the SAE's parameters and buffers (changes when any weight does)."""
    h = hashlib.sha256()
    for name, t in sorted(sae.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


class CodeStore:
    """Read-only view of a code store folder (see the module docstring)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        mpath = self.path / MANIFEST
        if not mpath.is_file():
            raise InputError("not a code store (no manifest.json); run `genosae encode-codes` first", path=self.path)
        self.manifest = read_json(mpath)
        if self.manifest.get("format") != CODE_FORMAT:
            raise InputError(f"not a code store (format {self.manifest.get('format')!r}, expected {CODE_FORMAT!r})",
                             path=mpath, record="format")
        self.d_sae = int(self.manifest["d_sae"])
        self.n_tokens = int(self.manifest["n_tokens"])
        self._windows: pd.DataFrame | None = None

    @property
    def shards(self) -> list[dict]:
        return list(self.manifest["shards"])

    @property
    def complete(self) -> bool:
        return bool(self.manifest.get("complete", False))

    @property
    def windows(self) -> pd.DataFrame:
        if self._windows is None:
            self._windows = read_windows_table(self.path / WINDOWS_FILE)
        return self._windows

    @property
    def n_windows(self) -> int:
        return int(self.manifest["n_windows"])

    @property
    def nbytes(self) -> int:
        """Bytes of the shard files on disk."""
        return int(sum((self.path / s["file"]).stat().st_size for s in self.shards))

    def load_shard(self, i: int) -> dict[str, Any]:
        """Shard ``i``: ``codes`` (``csr_matrix`` float32 ``[T, d_sae]``) and the per-token columns (numpy)."""
        entry = self.shards[i]
        f = self.path / entry["file"]
        if not f.is_file():
            raise InputError(f"shard {entry['file']} listed in the manifest is missing; re-run encode-codes",
                             path=self.path)
        t = load_file(str(f))
        n = int(entry["n_tokens"])
        codes = sp.csr_matrix((t["values"].numpy(), t["indices"].numpy().astype(np.int32),
                               t["indptr"].numpy()), shape=(n, self.d_sae))
        out: dict[str, Any] = {"codes": codes}
        for name in (*TOKEN_COLUMNS, *self.manifest.get("extra_columns", [])):
            out[name] = t[name].numpy()
        return out

    def iter_shards(self) -> Iterator[dict[str, Any]]:
        """Each shard in order (:meth:`load_shard`)."""
        for i in range(len(self.shards)):
            yield self.load_shard(i)

    def codes(self) -> sp.csr_matrix:
        """All codes ``[n_tokens, d_sae]`` (rows in store order)."""
        return sp.vstack([s["codes"] for s in self.iter_shards()], format="csr") if self.shards \
            else sp.csr_matrix((0, self.d_sae), dtype=np.float32)


def _check_source(store: Any) -> None:
    if not store.complete:
        raise InputError("the activation store is unfinished; finish `genosae embed` first", path=store.path)


def encode_store(store: Any, sae: Any, out: str | os.PathLike[str], *, device: str = "cpu",
                 chunk_tokens: int = 16_384, progress: bool = True, sae_path: str | None = None) -> CodeStore:
    """Encode every token of an :class:`~genosae.model.store.ActivationStore` with ``sae`` into a code
    store at ``out`` (resuming it when it was started with the same store and SAE)."""
    _check_source(store)
    out = Path(out)
    d_sae = int(sae.d_sae)
    if int(sae.d_in) != int(store.d_model):
        raise InputError(f"the SAE reads d_in={sae.d_in} but the store holds d_model={store.d_model}",
                         path=store.path)
    meta = {
        "format": CODE_FORMAT, "source": {k: store.manifest.get(k) for k in SOURCE_KEYS},
        "source_path": str(store.path),
        "sae": {"path": sae_path, "architecture": sae.architecture(), "d_sae": d_sae,
                "fingerprint": sae_fingerprint(sae)},
        "d_sae": d_sae, "index_dtype": "int16" if d_sae <= np.iinfo(np.int16).max else "int32",
        "value_dtype": "float32", "n_windows": int(store.n_windows),
        "extra_columns": list(store.manifest.get("extra_columns", [])),
    }
    mpath = out / MANIFEST
    done: dict[int, dict] = {}
    if mpath.is_file():
        old = read_json(mpath)
        if old.get("source") != meta["source"] or old.get("sae", {}).get("fingerprint") != meta["sae"]["fingerprint"]:
            raise InputError("a code store of another activation store or SAE is already here; delete the folder "
                             "or choose another output", path=mpath)
        done = {int(s["index"]): s for s in old.get("shards", []) if (out / s["file"]).is_file()}
    else:
        out.mkdir(parents=True, exist_ok=True)
        write_table(store.windows, out / WINDOWS_FILE)
    index_dtype = torch.int16 if meta["index_dtype"] == "int16" else torch.int32
    sae = sae.to(device).eval()
    src = store.shards
    todo = [i for i in range(len(src)) if i not in done]
    total_tok = int(sum(int(src[i]["n_tokens"]) for i in todo))
    with tqdm(total=total_tok, unit="tok", unit_scale=True, disable=not progress, desc="encode") as bar:
        for i in todo:
            sh = store.load_shard(i, columns=["acts", *TOKEN_COLUMNS, *meta["extra_columns"]], framework="torch")
            acts = sh["acts"]
            parts = []
            with torch.no_grad():
                for a in range(0, acts.shape[0], chunk_tokens):
                    z = sae.encode(acts[a:a + chunk_tokens].to(device=device, dtype=torch.float32)).float().cpu()
                    parts.append(sp.csr_matrix(z.numpy()))
                    bar.update(z.shape[0])
            codes = sp.vstack(parts, format="csr") if parts else sp.csr_matrix((0, d_sae), dtype=np.float32)
            codes.sort_indices()
            tensors = {"indptr": torch.from_numpy(codes.indptr.astype(np.int64)),
                       "indices": torch.from_numpy(codes.indices.astype(np.int64)).to(index_dtype),
                       "values": torch.from_numpy(codes.data.astype(np.float32))}
            for name in (*TOKEN_COLUMNS, *meta["extra_columns"]):
                tensors[name] = sh[name].contiguous()
            name = shard_name(i)
            with atomic_path(out / name) as tmp:
                save_file(tensors, str(tmp), metadata={"format": CODE_FORMAT})
            done[i] = {"file": name, "index": i, "n_tokens": int(codes.shape[0]), "nnz": int(codes.nnz),
                       "window_range": src[i]["window_range"]}
            write_json({**meta, "complete": False, **_totals(done)}, mpath)
    write_json({**meta, "complete": True, **_totals(done)}, mpath)
    return CodeStore(out)


def _totals(done: dict[int, dict]) -> dict[str, Any]:
    shards = [done[k] for k in sorted(done)]
    return {"shards": shards, "n_tokens": int(sum(s["n_tokens"] for s in shards)),
            "nnz": int(sum(s["nnz"] for s in shards))}
