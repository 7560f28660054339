"""SAEs trained elsewhere: SAELens-format folders and the Goodfire Evo 2 checkpoint layout.

Both load into genosae's own architectures, so every analysis step treats them like an SAE that
``genosae train-sae`` wrote; :func:`genosae.sae.io.load_sae` picks the reader (:func:`detect_format`).

SAELens folder (``cfg.json`` + ``sae_weights.safetensors``, as ``sae_lens.SAE.save_model`` writes it)
    ``topk`` → :class:`~genosae.sae.topk.TopKSAE`, ``jumprelu`` → :class:`~genosae.sae.batchtopk.BatchTopKSAE`
    (its inference rule *is* JumpReLU; thresholds below 0 are raised to 0, which changes nothing
    after SAELens's ReLU), ``standard`` → :class:`~genosae.sae.relu.ReLUSAE`. ``apply_b_dec_to_input:
    false`` and TopK's ``rescale_acts_by_decoder_norm: true`` are folded into the weights (exact).
    Refused: other architectures, ``normalize_activations`` other than ``none``, ``hook_z`` reshaping.
    Provenance: ``metadata.model_name``, ``metadata.hook_name`` and the layer (``metadata.layer`` or
    ``hook_layer``, else parsed from a ``blocks.N.hook_resid_pre|post`` hook name).
Goodfire Evo 2 checkpoint (a ``.pt`` torch state dict, e.g. ``sae-layer26-mixed-expansion_8-k_64.pt``)
    Tied ``W [d_model, d_sae]``, ``b_enc [d_sae]``, ``b_dec [d_model]`` (keys may carry the
    ``_orig_mod.`` / ``module.`` prefixes of ``torch.compile`` / DDP). Read only with
    ``torch.load(path, weights_only=True, map_location="cpu")``: a file that needs pickled code is
    refused. Codes are the per-token top-``k`` of ``ReLU(x·W + b_enc)`` (``(x - b_dec)·W + b_enc``
    with ``subtract_b_dec``), reconstruction ``z·Wᵀ + b_dec``; loaded as a genosae TopK SAE with
    ``W_enc = W``, ``W_dec = Wᵀ``. Provenance comes from a sidecar JSON beside the checkpoint (same
    stem, ``.json``): ``{"model", "layer", "hook", "k", "subtract_b_dec", "d_model", "d_sae"}``.

Provenance is checked by :func:`check_provenance` against the model and layer the activations come
from: a recorded value that disagrees is refused, and an external SAE that records none is refused
when a check is asked for.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors.torch import load_file

from genosae._io import read_json
from genosae.errors import InputError
from genosae.sae.base import SAE, get_architecture

log = logging.getLogger(__name__)

__all__ = [
    "GOODFIRE_EVO2_L26",
    "SAELENS_ARCHITECTURES",
    "SAE_FORMATS",
    "SAEFormat",
    "check_provenance",
    "detect_format",
    "expectations_from_store",
    "load_goodfire",
    "load_saelens",
    "model_key",
]

SAEFormat = Literal["genosae", "saelens", "goodfire"]
SAE_FORMATS: tuple[str, ...] = ("genosae", "saelens", "goodfire")

#: SAELens inference architecture -> the genosae architecture it loads as
SAELENS_ARCHITECTURES = {"topk": "topk", "jumprelu": "batchtopk", "standard": "relu"}

#: What the Goodfire/Arc release documents for ``Goodfire/Evo-2-Layer-26-Mixed`` (file
#: ``sae-layer26-mixed-expansion_8-k_64.pt``; the Evo 2 repository's ``sparse_autoencoder`` notebook):
#: Evo 2 7B, the output of block 26 (``ModelScope`` name ``blocks-26``), d_sae = 8 x 4096, top-64,
#: encoder ``x @ W + b_enc`` (no ``b_dec`` subtraction). A template for the sidecar JSON.
GOODFIRE_EVO2_L26: dict[str, Any] = {
    "model": "evo2_7b", "layer": 26, "hook": "blocks.26", "k": 64, "subtract_b_dec": False,
    "d_model": 4096, "d_sae": 32768,
}
_SIDECAR_KEYS = frozenset(GOODFIRE_EVO2_L26) | {"format", "source", "notes"}
_CFG_NAME, _WEIGHTS_NAME = "cfg.json", "sae_weights.safetensors"
_HOOK_RE = re.compile(r"^blocks\.(\d+)\.hook_resid_(pre|post)$")


# ------------------------------------------------------------------------------------ format
def detect_format(path: str | os.PathLike[str]) -> tuple[SAEFormat, Path]:
    """Which reader ``path`` needs, and the path it reads.

    A folder whose ``cfg.json`` has ``metadata.genosae`` is ``genosae``; other folders with a
    ``cfg.json`` are ``saelens``; a ``.pt``/``.pth`` file, or a folder holding exactly one, is
    ``goodfire``.
    """
    p = Path(path)
    if p.is_file():
        if p.suffix in (".pt", ".pth"):
            return "goodfire", p
        raise InputError("not an SAE: give a folder (cfg.json + sae_weights.safetensors) or a "
                         "Goodfire-layout .pt checkpoint", path=p)
    if not p.is_dir():
        raise InputError("SAE folder or checkpoint not found; fix the path", path=p)
    cfg = p / _CFG_NAME
    if cfg.is_file():
        meta = read_json(cfg).get("metadata") or {}
        return ("genosae" if isinstance(meta.get("genosae"), dict) else "saelens"), p
    pts = sorted([*p.glob("*.pt"), *p.glob("*.pth")])
    if len(pts) == 1:
        return "goodfire", pts[0]
    if pts:
        raise InputError(f"{len(pts)} .pt checkpoints in one folder; give the checkpoint file itself",
                         path=p)
    raise InputError(f"missing {_CFG_NAME}; is this an SAE folder written by genosae train-sae (or a "
                     "SAELens folder, or a folder with one Goodfire .pt checkpoint)?", path=p)


# ---------------------------------------------------------------------------------- provenance
def model_key(name: str | None) -> str | None:
    """Comparable model name: the last path / hub-id component, lower-case (``arcinstitute/evo2_7b``
    and ``evo2:evo2_7b`` → ``evo2_7b``, ``/x/models/genosae-yeast-cnn/`` → ``genosae-yeast-cnn``)."""
    if name is None:
        return None
    s = str(name).rstrip("/\\")
    return re.split(r"[/\\:]", s)[-1].lower() or None


def check_provenance(sae: SAE, *, expect_model: str | None = None, expect_layer: int | None = None,
                     path: str | os.PathLike[str] | None = None, require: bool = True) -> None:
    """Refuse an SAE whose recorded model or layer disagrees with what it will be applied to.

    ``sae.cfg.metadata`` holds ``model_name`` and ``layer``. With ``require`` an SAE that records
    no value for a checked field is refused too (external SAEs); otherwise it is logged.

    Raises
    ------
    InputError
        The recorded model or layer differs from ``expect_model`` / ``expect_layer``, or is missing.
    """
    meta = sae.cfg.metadata or {}
    fmt = (meta.get("source") or {}).get("format", "genosae")
    fix = (f"write the sidecar {Path(path or 'checkpoint.pt').with_suffix('.json').name} with model, "
           "layer and hook" if fmt == "goodfire" else "add metadata.model_name and metadata.layer to cfg.json")
    checks = (("model", expect_model, meta.get("model_name"), model_key),
              ("layer", expect_layer, meta.get("layer"), lambda v: None if v is None else int(v)))
    for what, want, have, norm in checks:
        if want is None:
            continue
        if have is None:
            if require:
                raise InputError(f"this {fmt} SAE does not record which {what} it was trained on, so it "
                                 f"cannot be checked against {what} {want!r}; {fix}", path=path,
                                 record=what)
            log.warning("SAE %s records no %s; not checked against %r", path, what, want)
            continue
        if norm(have) != norm(want):
            raise InputError(f"SAE was trained on {what} {have!r} but the activations come from {what} "
                             f"{want!r}; use the SAE of that {what} or fix model.path/model.layer",
                             path=path, record=what)


def expectations_from_store(store: Any) -> dict[str, Any]:
    """``{"expect_model", "expect_layer"}`` for :func:`~genosae.sae.io.load_sae` from an activation
    store's manifest (the model and layer its activations come from)."""
    man = getattr(store, "manifest", None) or {}
    model = man.get("model")
    name = (model.get("path") or model.get("id")) if isinstance(model, dict) else model
    layer = man.get("layer")
    return {"expect_model": None if name is None else str(name),
            "expect_layer": None if layer is None else int(layer)}


def _layer_from_hook(hook: str | None) -> int | None:
    """Hidden-state index of a TransformerLens residual hook (inverse of ``io.hook_name``)."""
    m = _HOOK_RE.match(hook or "")
    if m is None:
        return None
    block = int(m.group(1))
    return block + 1 if m.group(2) == "post" else block


# ------------------------------------------------------------------------------------ SAELens
def _build(arch: str, d_in: int, d_sae: int, state: dict[str, torch.Tensor], metadata: dict[str, Any],
           *, k: int | None = None, path: Path, device: str) -> SAE:
    cfg_cls, sae_cls = get_architecture(arch)
    kw: dict[str, Any] = {"d_in": d_in, "d_sae": d_sae, "outlier_norm_factor": None, "metadata": metadata}
    if arch in ("topk", "batchtopk"):
        kw["k"] = k if k is not None else min(32, d_sae)
    try:
        cfg = cfg_cls(**kw)
    except ValueError as err:
        raise InputError(str(err), path=path) from None
    sae = sae_cls(cfg)
    with torch.no_grad():
        sae.load_inference_state(state, torch.zeros(d_in), 1.0)
    return sae.to(torch.device(device)).eval()


def _shape_check(state: Mapping[str, torch.Tensor], shapes: Mapping[str, tuple[int, ...]], path: Path) -> None:
    extra, missing = set(state) - set(shapes), set(shapes) - set(state)
    if extra or missing:
        raise InputError(f"tensors {sorted(state)} are not the expected {sorted(shapes)} "
                         f"(missing {sorted(missing)}, unexpected {sorted(extra)})", path=path)
    for name, shape in shapes.items():
        if tuple(state[name].shape) != tuple(shape):
            raise InputError(f"tensor {name} has shape {tuple(state[name].shape)}, expected {tuple(shape)}",
                             path=path, record=name)


def load_saelens(folder: str | os.PathLike[str], *, device: str = "cpu") -> SAE:
    """Load a SAELens-format folder (see module docstring) as the matching genosae SAE.

    Returns
    -------
    SAE
        ``cfg.metadata`` holds ``model_name``, ``hook_name``, ``layer`` (``None`` when unknown) and
        ``source = {"format": "saelens", "architecture", "path"}``.
    """
    folder = Path(folder)
    cfg_path, w_path = folder / _CFG_NAME, folder / _WEIGHTS_NAME
    if not w_path.is_file():
        raise InputError(f"missing {_WEIGHTS_NAME} beside cfg.json; not a complete SAELens folder", path=folder)
    raw = read_json(cfg_path)
    arch = raw.get("architecture") or ("topk" if raw.get("activation_fn") == "topk" else "standard")
    if arch not in SAELENS_ARCHITECTURES:
        raise InputError(f"SAELens architecture {arch!r} is not supported; supported: "
                         f"{sorted(SAELENS_ARCHITECTURES)}", path=cfg_path, record="architecture")
    for key, ok in (("normalize_activations", ("none", None)), ("reshape_activations", ("none", None))):
        if raw.get(key) not in ok:
            raise InputError(f"{key}={raw.get(key)!r} is not supported (only 'none'): the SAE expects "
                             "inputs transformed in a way genosae does not reproduce", path=cfg_path, record=key)
    try:
        d_in, d_sae = int(raw["d_in"]), int(raw["d_sae"])
    except (KeyError, TypeError, ValueError):
        raise InputError("cfg.json needs integer d_in and d_sae", path=cfg_path, record="d_in") from None
    state = {k: v.float() for k, v in load_file(str(w_path)).items()}
    shapes = {"W_enc": (d_in, d_sae), "b_enc": (d_sae,), "W_dec": (d_sae, d_in), "b_dec": (d_in,)}
    if arch == "jumprelu":
        shapes["threshold"] = (d_sae,)
    _shape_check(state, shapes, w_path)
    W_enc, b_enc, W_dec, b_dec = state["W_enc"], state["b_enc"], state["W_dec"], state["b_dec"]
    k = None
    if arch == "topk":
        k = int(raw.get("k") or (raw.get("activation_fn_kwargs") or {}).get("k") or 0)
        if raw.get("rescale_acts_by_decoder_norm"):  # pre-acts x ||W_dec_f||, decoder rows / ||W_dec_f||
            norm = torch.linalg.vector_norm(W_dec, dim=1)
            W_enc, b_enc, W_dec = W_enc * norm, b_enc * norm, W_dec / norm[:, None]
    if raw.get("apply_b_dec_to_input", True) is False:  # SAELens: x @ W_enc; genosae: (x - b_dec) @ W_enc
        b_enc = b_enc + b_dec @ W_enc
    out = {"W_enc": W_enc.contiguous(), "b_enc": b_enc, "W_dec": W_dec.contiguous(), "b_dec": b_dec}
    if arch == "jumprelu":
        out["threshold"] = state["threshold"].clamp(min=0.0)
    meta_raw = raw.get("metadata") or {}
    hook = meta_raw.get("hook_name") or raw.get("hook_name") or raw.get("hook_point")
    recorded = [meta_raw.get(key, raw.get(key)) for key in ("layer", "hook_layer")]
    layer = next((v for v in recorded if v is not None), _layer_from_hook(hook))
    metadata = {"model_name": meta_raw.get("model_name") or raw.get("model_name"), "hook_name": hook,
                "layer": None if layer is None else int(layer),
                "source": {"format": "saelens", "architecture": arch, "path": str(folder),
                           "sae_lens_version": meta_raw.get("sae_lens_version") or raw.get("sae_lens_version")}}
    return _build(SAELENS_ARCHITECTURES[arch], d_in, d_sae, out, metadata, k=k, path=cfg_path, device=device)


# ----------------------------------------------------------------------------------- Goodfire
def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A flat ``{name: tensor}`` checkpoint read with ``weights_only=True``; prefixes removed."""
    try:
        obj = torch.load(path, weights_only=True, map_location="cpu")
    except (pickle.UnpicklingError, RuntimeError, EOFError, AttributeError, ValueError) as err:
        first = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
        raise InputError(f"refused: torch.load(weights_only=True) cannot read it ({first}); only a plain "
                         "state dict of tensors is accepted, pickled code is never run", path=path) from None
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise InputError(f"expected a flat state dict of tensors, got {type(obj).__name__}", path=path)
    out: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        name = str(key)
        while name.startswith(("_orig_mod.", "module.")):
            name = name.split(".", 1)[1]
        out[name] = value
    return out


def _sidecar(path: Path) -> dict[str, Any]:
    side_path = path.with_suffix(".json")
    if not side_path.is_file():
        return {}
    side = read_json(side_path)
    if not isinstance(side, dict):
        raise InputError("the sidecar must be a JSON object", path=side_path)
    unknown = set(side) - _SIDECAR_KEYS
    if unknown:
        raise InputError(f"unknown sidecar key(s) {sorted(unknown)}; allowed: {sorted(_SIDECAR_KEYS)}",
                         path=side_path, record=sorted(unknown)[0])
    return side


def load_goodfire(path: str | os.PathLike[str], *, k: int | None = None, device: str = "cpu") -> SAE:
    """Load a Goodfire-layout Evo 2 SAE checkpoint (see module docstring) as a genosae TopK SAE.

    Parameters
    ----------
    path
        The ``.pt`` file; its sidecar ``<stem>.json`` (if present) gives ``model``, ``layer``,
        ``hook``, ``k``, ``subtract_b_dec`` and optionally ``d_model``/``d_sae`` (checked).
    k
        Active latents per token (default: the sidecar's ``k``, else 64 as in the release).

    Returns
    -------
    SAE
        A :class:`~genosae.sae.topk.TopKSAE`; ``cfg.metadata`` holds ``model_name``, ``layer``,
        ``hook_name`` (``None`` without a sidecar) and ``source = {"format": "goodfire", ...}``.
    """
    path = Path(path)
    side = _sidecar(path)
    state = _read_state_dict(path)
    W = state.get("W")
    if W is None or W.ndim != 2:
        raise InputError(f"no 2-D tied weight 'W' (tensors: {sorted(state)}); not the Goodfire layout", path=path)
    d_model, d_sae = (int(n) for n in W.shape)
    _shape_check(state, {"W": (d_model, d_sae), "b_enc": (d_sae,), "b_dec": (d_model,)}, path)
    for key, have in (("d_model", d_model), ("d_sae", d_sae)):
        if side.get(key) is not None and int(side[key]) != have:
            raise InputError(f"sidecar says {key}={side[key]} but W is [{d_model}, {d_sae}]",
                             path=path.with_suffix(".json"), record=key)
    k = int(k if k is not None else side.get("k", GOODFIRE_EVO2_L26["k"]))
    subtract = bool(side.get("subtract_b_dec", GOODFIRE_EVO2_L26["subtract_b_dec"]))
    W, b_enc, b_dec = W.float(), state["b_enc"].float(), state["b_dec"].float()
    if not subtract:  # source: x @ W + b_enc; genosae: (x - b_dec) @ W_enc + b_enc'
        b_enc = b_enc + b_dec @ W
    out = {"W_enc": W.contiguous(), "b_enc": b_enc, "W_dec": W.T.contiguous(), "b_dec": b_dec}
    if not side:
        log.warning("%s has no sidecar %s: its model and layer are unknown and cannot be checked",
                    path, path.with_suffix(".json").name)
    metadata = {"model_name": side.get("model"), "layer": None if side.get("layer") is None else int(side["layer"]),
                "hook_name": side.get("hook"),
                "source": {"format": "goodfire", "path": str(path), "k": k, "subtract_b_dec": subtract}}
    return _build("topk", d_model, d_sae, out, metadata, k=k, path=path, device=device)
