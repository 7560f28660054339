"""Sharded on-disk store of per-token hidden states (the *activation store*).

Layout of a store folder (see ``docs/architecture.md``, "Activation store")::

    manifest.json             format, model, layer, d_model, dtype, tokenization, n_tokens, shards, ...
    windows.tsv               the windows table, in order (window_index = row number)
    shard-XXXXX.safetensors   acts [N, D], window_index i32, token_index i32, bp_start i64,
                              bp_end i64 (reference coordinates, -1 for special tokens),
                              is_special bool, has_n bool

Shards are written to a temporary name and renamed; the manifest is rewritten atomically after every
shard. Readers only ever open the shards the manifest lists, so a killed writer leaves a store that
is either resumable or readable up to its last complete shard, never one with a torn shard.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from genosae._io import atomic_path, read_json, write_json, write_table
from genosae.errors import InputError

FORMAT = "genosae-activations/1"
MANIFEST = "manifest.json"
WINDOWS_FILE = "windows.tsv"

StorageDtype = Literal["float32", "float16", "bfloat16"]
STORAGE_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}

#: Per-token columns of a shard (besides ``acts``) and their on-disk dtypes.
TOKEN_COLUMNS: dict[str, torch.dtype] = {
    "window_index": torch.int32,
    "token_index": torch.int32,
    "bp_start": torch.int64,
    "bp_end": torch.int64,
    "is_special": torch.bool,
    "has_n": torch.bool,
}

#: Manifest keys that identify what a store contains; a resumed or merged store must agree on all.
IDENTITY_KEYS = ("format", "model", "layer", "d_model", "dtype", "tokenization", "config_hash", "windows_hash")

#: Columns of the windows table that are read as strings whatever they look like.
_STR_COLUMNS = ("window_id", "chrom", "strand", "region_id", "group", "sample_id", "haplotype", "sequence", "edits")


def shard_name(shard_idx: int) -> str:
    """File name of shard ``shard_idx`` (``shard-00000.safetensors``)."""
    return f"shard-{int(shard_idx):05d}.safetensors"


def windows_hash(windows: pd.DataFrame) -> str:
    """Order-sensitive content hash of a windows table (columns and values)."""
    h = hashlib.sha256()
    h.update(json.dumps([str(c) for c in windows.columns]).encode())
    h.update(pd.util.hash_pandas_object(windows.reset_index(drop=True), index=False).to_numpy().tobytes())
    return h.hexdigest()[:16]


def read_windows_table(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a windows TSV with the string columns kept as strings (``window_id`` "001" stays "001")."""
    header = pd.read_csv(path, sep="\t", nrows=0).columns
    dtype = {c: str for c in header if c in _STR_COLUMNS}
    return pd.read_csv(path, sep="\t", dtype=dtype, keep_default_na=False, na_values=[""])


def _to_torch(x: Any, dtype: torch.dtype, name: str, n: int | None) -> torch.Tensor:
    t = x.detach().cpu() if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))
    if n is not None and (t.ndim != 1 or t.shape[0] != n):
        msg = f"{name} must be a 1-D array of {n} values, got shape {tuple(t.shape)}"
        raise ValueError(msg)
    return t.to(dtype).contiguous()


class ActivationStoreWriter:
    """Write (or resume writing) an activation store, one shard at a time.

    Parameters
    ----------
    path
        Store folder; created if missing. If it holds a manifest already, the writer resumes it,
        refusing when the model, layer, config hash, tokenization, dtype or windows differ.
    manifest_meta
        ``model`` (dict: id/path, revision, config sha), ``layer``, ``d_model``, ``tokenization`` and
        ``config_hash``; any further JSON-able keys are stored as-is.
    windows
        The windows table embedded in the store; ``window_index`` is its row number.
    storage_dtype
        On-disk dtype of ``acts``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        manifest_meta: dict,
        windows: pd.DataFrame,
        storage_dtype: StorageDtype = "float16",
    ) -> None:
        if storage_dtype not in STORAGE_DTYPES:
            msg = f"storage_dtype must be one of {sorted(STORAGE_DTYPES)}, got {storage_dtype!r}"
            raise ValueError(msg)
        missing = [k for k in ("model", "layer", "d_model", "tokenization", "config_hash") if k not in manifest_meta]
        if missing:
            msg = f"manifest_meta lacks {missing}"
            raise ValueError(msg)
        self.path = Path(path)
        self.storage_dtype = storage_dtype
        self._torch_dtype = STORAGE_DTYPES[storage_dtype]
        self.windows = windows.reset_index(drop=True)
        self.n_windows = len(self.windows)
        meta = json.loads(json.dumps(manifest_meta, default=str))  # JSON-normalise (tuples -> lists)
        fresh = {
            "format": FORMAT,
            **meta,
            "layer": int(meta["layer"]),
            "d_model": int(meta["d_model"]),
            "dtype": storage_dtype,
            "windows_hash": windows_hash(self.windows),
            "n_windows": self.n_windows,
            "windows_file": WINDOWS_FILE,
            "n_tokens": 0,
            "complete": False,
            "shards": [],
        }
        manifest_path = self.path / MANIFEST
        if manifest_path.exists():
            old = read_json(manifest_path)
            diff = [k for k in IDENTITY_KEYS if old.get(k) != fresh.get(k)]
            if diff:
                raise InputError(
                    f"an activation store made with different settings ({', '.join(diff)}) is already here; "
                    "delete the folder or choose another output",
                    path=manifest_path,
                    record=diff[0],
                )
            self.manifest = old
            self.manifest["complete"] = False
        else:
            self.path.mkdir(parents=True, exist_ok=True)
            write_table(self.windows, self.path / WINDOWS_FILE)
            self.manifest = fresh
            write_json(self.manifest, manifest_path)
        self.d_model = int(self.manifest["d_model"])

    def completed_shards(self) -> set[int]:
        """Indices of the shards already written (and listed in the manifest)."""
        return {int(s["index"]) for s in self.manifest["shards"]}

    def write_shard(
        self,
        shard_idx: int,
        acts: torch.Tensor | np.ndarray,
        window_index: Any,
        token_index: Any,
        bp_start: Any,
        bp_end: Any,
        is_special: Any,
        has_n: Any,
        window_range: tuple[int, int] | Sequence[int],
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Write shard ``shard_idx`` (temp file, rename) and record it in the manifest.

        ``acts`` is ``[N, d_model]``; the per-token columns are length ``N``; ``window_range`` is the
        half-open ``[a, b)`` range of window indices the shard covers (all tokens of those windows).
        Rewriting an index already present replaces it. ``extra`` holds further 1-D per-token
        columns (e.g. ``reverse``); their names are recorded in the manifest's ``extra_columns``.
        """
        acts_t = acts.detach().cpu() if isinstance(acts, torch.Tensor) else torch.from_numpy(np.asarray(acts))
        if acts_t.ndim != 2 or acts_t.shape[1] != self.d_model:
            msg = f"acts must be [N, {self.d_model}], got {tuple(acts_t.shape)}"
            raise ValueError(msg)
        n = int(acts_t.shape[0])
        cols = dict(zip(TOKEN_COLUMNS, (window_index, token_index, bp_start, bp_end, is_special, has_n)))
        if self._torch_dtype == torch.float16 and n:  # bfloat16/float32 values beyond 65504 would become inf
            peak = float(torch.nan_to_num(acts_t.abs(), nan=0.0, posinf=0.0).max())
            if peak > torch.finfo(torch.float16).max:
                raise InputError(f"activations reach {peak:.4g}, beyond float16's range (65504), and would be stored "
                                 "as inf; set embed.storage_dtype: bfloat16 or float32", path=self.path,
                                 record="embed.storage_dtype")
        tensors = {"acts": acts_t.to(self._torch_dtype).contiguous()}
        for name, dtype in TOKEN_COLUMNS.items():
            tensors[name] = _to_torch(cols[name], dtype, name, n)
        for name, values in (extra or {}).items():
            if name in tensors:
                msg = f"extra column {name!r} clashes with a standard column"
                raise ValueError(msg)
            arr = np.asarray(values)
            tensors[name] = _to_torch(arr, torch.from_numpy(arr[:0]).dtype, name, n)
        if extra:
            self.manifest["extra_columns"] = sorted(set(self.manifest.get("extra_columns", [])) | set(extra))
        a, b = (int(v) for v in window_range)
        if not 0 <= a <= b <= self.n_windows:
            msg = f"window_range {[a, b]} outside [0, {self.n_windows}]"
            raise ValueError(msg)
        if n and (int(tensors["window_index"].min()) < a or int(tensors["window_index"].max()) >= b):
            msg = f"shard {shard_idx}: window_index outside window_range {[a, b]}"
            raise ValueError(msg)
        name = shard_name(shard_idx)
        with atomic_path(self.path / name) as tmp:
            save_file(tensors, str(tmp), metadata={"format": FORMAT, "window_range": f"{a},{b}"})
        entry = {"file": name, "index": int(shard_idx), "n_tokens": n, "window_range": [a, b]}
        shards = [s for s in self.manifest["shards"] if int(s["index"]) != int(shard_idx)] + [entry]
        self._set_shards(shards)

    def _set_shards(self, shards: list[dict]) -> None:
        shards.sort(key=lambda s: int(s["index"]))
        self.manifest["shards"] = shards
        self.manifest["n_tokens"] = int(sum(s["n_tokens"] for s in shards))
        write_json(self.manifest, self.path / MANIFEST)

    def finalize(self) -> ActivationStore:
        """Mark the store complete (all shards this writer was asked for are written) and open it."""
        self.manifest["complete"] = True
        write_json(self.manifest, self.path / MANIFEST)
        return ActivationStore(self.path)


class ActivationStore:
    """Read-only view of an activation store folder.

    Attributes
    ----------
    manifest
        The parsed ``manifest.json``.
    d_model
        Width of the stored hidden states.
    n_tokens
        Tokens over all listed shards.
    windows
        The embedded windows table (row number = ``window_index``); loaded on first use.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        manifest_path = self.path / MANIFEST
        if not manifest_path.is_file():
            raise InputError(
                "not an activation store (no manifest.json); run `genosae embed` first", path=self.path
            )
        self.manifest: dict = read_json(manifest_path)
        if self.manifest.get("format") != FORMAT:
            raise InputError(
                f"unsupported store format {self.manifest.get('format')!r} (expected {FORMAT!r}); re-embed",
                path=manifest_path,
                record="format",
            )
        self.d_model = int(self.manifest["d_model"])
        self.n_tokens = int(self.manifest["n_tokens"])
        self.layer = int(self.manifest["layer"])
        self.dtype: str = self.manifest["dtype"]
        self.shards: list[dict] = list(self.manifest["shards"])
        self._windows: pd.DataFrame | None = None

    def __repr__(self) -> str:
        return (f"ActivationStore({str(self.path)!r}, n_tokens={self.n_tokens}, d_model={self.d_model}, "
                f"layer={self.layer}, shards={len(self.shards)})")

    @property
    def windows(self) -> pd.DataFrame:
        if self._windows is None:
            self._windows = read_windows_table(self.path / self.manifest.get("windows_file", WINDOWS_FILE))
        return self._windows

    @property
    def n_windows(self) -> int:
        return int(self.manifest.get("n_windows", len(self.windows)))

    @property
    def complete(self) -> bool:
        return bool(self.manifest.get("complete", False))

    def _open(self, shard: dict):
        f = self.path / shard["file"]
        if not f.is_file():
            raise InputError(f"shard {shard['file']} listed in the manifest is missing; re-run embedding",
                             path=self.path / MANIFEST, record=shard["file"])
        return safe_open(str(f), framework="pt")

    def load_shard(
        self,
        i: int,
        *,
        columns: Sequence[str] | None = None,
        framework: Literal["numpy", "torch"] = "numpy",
    ) -> dict[str, Any]:
        """Tensors of the ``i``-th listed shard (all columns, or ``columns``).

        With ``framework="numpy"``, bfloat16 ``acts`` are returned as float32 (numpy has no bfloat16).
        """
        shard = self.shards[i]
        names = list(columns) if columns is not None else ["acts", *TOKEN_COLUMNS]
        with self._open(shard) as fh:
            out = {k: fh.get_tensor(k) for k in names}
        if framework == "numpy":
            out = {k: (v.float() if v.dtype == torch.bfloat16 else v).numpy() for k, v in out.items()}
        return out

    def iter_shards(
        self,
        *,
        columns: Sequence[str] | None = None,
        framework: Literal["numpy", "torch"] = "numpy",
    ) -> Iterator[dict[str, Any]]:
        """Yield each listed shard's tensors in order (see :meth:`load_shard`)."""
        for i in range(len(self.shards)):
            yield self.load_shard(i, columns=columns, framework=framework)

    def token_table(self) -> pd.DataFrame:
        """One row per stored token, in store order (row ``i`` = ``i``-th token of :meth:`iter_shards`).

        Columns: ``window_index, token_index, bp_start, bp_end, is_special, has_n`` (+ any
        ``extra_columns`` of the manifest, e.g. ``reverse``), ``chrom, window_id``.
        """
        names = [*TOKEN_COLUMNS, *self.manifest.get("extra_columns", [])]
        parts = list(self.iter_shards(columns=names))
        if parts:
            cols = {k: np.concatenate([p[k] for p in parts]) for k in names}
        else:
            cols = {k: np.zeros(0, dtype=getattr(np, str(v).removeprefix("torch."))) for k, v in TOKEN_COLUMNS.items()}
        df = pd.DataFrame(cols)
        w = self.windows
        df["chrom"] = w["chrom"].to_numpy()[df["window_index"].to_numpy()]
        df["window_id"] = w["window_id"].to_numpy()[df["window_index"].to_numpy()]
        return df

    def shard_offsets(self) -> np.ndarray:
        """Global index of each shard's first token (length ``n_shards + 1``)."""
        return np.concatenate([[0], np.cumsum([int(s["n_tokens"]) for s in self.shards])]).astype(np.int64)

    def iter_batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        exclude_special: bool = True,
        exclude_n: bool = True,
        window_mask: np.ndarray | Sequence[bool] | None = None,
        dtype: torch.dtype = torch.float32,
        buffer_shards: int = 4,
        drop_last: bool = False,
        with_index: bool = False,
    ) -> Iterator[torch.Tensor | tuple[torch.Tensor, torch.Tensor]]:
        """Stream ``[batch_size, d_model]`` activation batches without loading the whole store.

        Shards are visited in a seeded random order, ``buffer_shards`` at a time; the tokens of the
        buffer (plus any remainder from the previous one) are shuffled and cut into batches. The
        sequence of batches is a pure function of the arguments.

        Parameters
        ----------
        window_mask
            Bool array over windows (length ``n_windows``): only tokens of ``True`` windows are used
            (train / held-out splits). Shards with no selected window are not read.
        with_index
            Also yield the global token indices (rows of :meth:`token_table`) of each batch.
        drop_last
            Drop a final batch smaller than ``batch_size``.
        """
        if batch_size < 1:
            msg = f"batch_size must be >= 1, got {batch_size}"
            raise ValueError(msg)
        wmask = None
        if window_mask is not None:
            wmask = np.asarray(window_mask, dtype=bool)
            if wmask.shape != (self.n_windows,):
                msg = f"window_mask must have one value per window ({self.n_windows}), got {wmask.shape}"
                raise ValueError(msg)
        rng = np.random.default_rng(seed)
        offsets = self.shard_offsets()
        order = [i for i in range(len(self.shards))
                 if wmask is None or wmask[slice(*self.shards[i]["window_range"])].any()]
        if shuffle:
            order = [order[j] for j in rng.permutation(len(order))]
        carry_x = torch.zeros(0, self.d_model, dtype=dtype)
        carry_i = torch.zeros(0, dtype=torch.int64)
        for g in range(0, len(order), max(1, buffer_shards)):
            xs, idx = [carry_x], [carry_i]
            for i in order[g:g + max(1, buffer_shards)]:
                sh = self.load_shard(i, framework="torch")
                keep = torch.ones(sh["acts"].shape[0], dtype=torch.bool)
                if exclude_special:
                    keep &= ~sh["is_special"]
                if exclude_n:
                    keep &= ~sh["has_n"]
                if wmask is not None:
                    keep &= torch.from_numpy(wmask)[sh["window_index"].long()]
                rows = torch.nonzero(keep).squeeze(1)
                xs.append(sh["acts"][rows].to(dtype))
                idx.append(rows + int(offsets[i]))
            x, ix = torch.cat(xs), torch.cat(idx)
            if shuffle:
                perm = torch.from_numpy(rng.permutation(x.shape[0]))
                x, ix = x[perm], ix[perm]
            n_full = (x.shape[0] // batch_size) * batch_size
            for s in range(0, n_full, batch_size):
                yield (x[s:s + batch_size], ix[s:s + batch_size]) if with_index else x[s:s + batch_size]
            carry_x, carry_i = x[n_full:].clone(), ix[n_full:].clone()
        if carry_x.shape[0] and not drop_last:
            yield (carry_x, carry_i) if with_index else carry_x


def merge_stores(parts: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str]) -> ActivationStore:
    """Merge the stores written by parallel embedding jobs (``--part i/n``) into one store at ``out``.

    All parts must be complete and agree on model, layer, config, dtype and windows; together they
    must cover every window exactly once. Shard files are hard-linked where the file system allows,
    else copied. The merged manifest is written last, so an interrupted merge leaves no store.
    """
    if not parts:
        raise InputError("no parts to merge; pass the part folders written by `genosae embed --part`")
    stores = [ActivationStore(p) for p in parts]
    first = stores[0]
    for st in stores:
        if not st.complete:
            raise InputError("this part is unfinished; re-run its `genosae embed --part` job first",
                             path=st.path / MANIFEST, record="complete")
        diff = [k for k in IDENTITY_KEYS if st.manifest.get(k) != first.manifest.get(k)]
        if diff:
            raise InputError(
                f"part differs from {first.path} in {', '.join(diff)}; all parts must come from one embed config",
                path=st.path / MANIFEST, record=diff[0])
    entries: dict[int, tuple[ActivationStore, dict]] = {}
    for st in stores:
        for s in st.shards:
            idx = int(s["index"])
            if idx in entries:
                raise InputError(f"shard {idx} is in two parts ({entries[idx][0].path} and {st.path})",
                                 path=st.path / MANIFEST, record=s["file"])
            entries[idx] = (st, s)
    covered = np.zeros(first.n_windows, dtype=np.int64)
    for _, s in entries.values():
        covered[slice(*s["window_range"])] += 1
    if (covered != 1).any():
        bad = int(np.flatnonzero(covered != 1)[0])
        raise InputError(f"the parts cover window {bad} {covered[bad]} times (must be once); "
                         "pass every part of the run", path=first.path / MANIFEST, record=f"window {bad}")
    out = Path(out)
    if (out / MANIFEST).exists():
        raise InputError("output already holds an activation store; remove it first", path=out)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(first.path / first.manifest.get("windows_file", WINDOWS_FILE), out / WINDOWS_FILE)
    shards = []
    for idx in sorted(entries):
        st, s = entries[idx]
        src, dst = st.path / s["file"], out / shard_name(idx)
        if dst.exists():
            dst.unlink()
        try:
            os.link(src, dst)
        except OSError:
            with atomic_path(dst) as tmp:
                shutil.copyfile(src, tmp)
        shards.append({**s, "file": dst.name})
    manifest = {**first.manifest, "shards": shards, "complete": True,
                "n_tokens": int(sum(s["n_tokens"] for s in shards)), "windows_file": WINDOWS_FILE,
                "merged_from": [str(Path(p)) for p in parts]}
    write_json(manifest, out / MANIFEST)
    return ActivationStore(out)
