"""Save and load SAEs in the SAELens 6 disk layout.

A saved SAE folder holds

``cfg.json``
    SAELens fields (``architecture`` = ``topk`` | ``jumprelu`` | ``standard``, ``d_in``, ``d_sae``,
    ``dtype``, ``apply_b_dec_to_input=true``, ``normalize_activations="none"``, ``k`` for TopK) and
    ``metadata`` with ``model_name``, ``hook_name`` (:func:`hook_name`), ``layer`` (hidden-state index),
    ``tokenizer``, ``dataset_hash``, ``sae_lens_version="6.0.0"`` (the layout version followed) and
    ``metadata["genosae"]``: our architecture, its full config and the normalisation.
``sae_weights.safetensors``
    ``W_enc [d_in, d_sae]``, ``b_enc``, ``W_dec [d_sae, d_in]``, ``b_dec`` (+ ``threshold [d_sae]``
    for BatchTopK, saved as JumpReLU), in *model units*.
``normalization.json``
    ``act_mean``, ``act_scale`` and the outlier rule.
``reference.safetensors``
    ``inputs [n, d_in]`` (raw activations) with the ``codes`` and ``recon`` they gave when saved.

Normalisation choice: it is **folded into the weights** (exact: ``W_enc*s``, ``W_dec/s``,
``b_dec/s + mean``), so ``sae_lens.SAE.load_from_disk`` needs no normalisation hook and produces
the same codes and reconstruction as ours. ``normalization.json`` keeps mean and scale so
:func:`load_sae` can return the training-space weights (unit-norm decoder rows).

:func:`load_sae` also reads SAEs trained elsewhere (SAELens folders without ``metadata.genosae``,
Goodfire Evo 2 ``.pt`` checkpoints) through :mod:`genosae.sae.external`, so every step that loads an
SAE accepts them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from genosae._io import atomic_path, read_json, write_json
from genosae.errors import InputError
from genosae.sae.base import SAE, SAEConfig, get_architecture

CFG_NAME = "cfg.json"
WEIGHTS_NAME = "sae_weights.safetensors"
NORM_NAME = "normalization.json"
REFERENCE_NAME = "reference.safetensors"
FORMAT = "genosae-sae/1"
SAELENS_LAYOUT_VERSION = "6.0.0"

#: our architecture -> the SAELens inference architecture it is saved as
SAELENS_ARCHITECTURE = {"topk": "topk", "batchtopk": "jumprelu", "relu": "standard"}


def hook_name(layer: int) -> str:
    """TransformerLens hook name of hidden-state index ``layer`` (HF ``output_hidden_states``).

    Index 0 is the embedding output (``blocks.0.hook_resid_pre``); index ``L >= 1`` is the output
    of block ``L - 1`` (``blocks.{L-1}.hook_resid_post``); a negative index has no fixed block
    and is written ``hidden_states.{L}``.
    """
    if layer < 0:
        return f"hidden_states.{layer}"
    if layer == 0:
        return "blocks.0.hook_resid_pre"
    return f"blocks.{layer - 1}.hook_resid_post"


def save_sae(sae: SAE, out_dir: str | os.PathLike[str], *, metadata: dict[str, Any] | None = None,
             reference_inputs: torch.Tensor | None = None) -> Path:
    """Write ``sae`` to ``out_dir`` in SAELens layout (see module docstring); files are atomic.

    Parameters
    ----------
    metadata
        Merged into ``sae.cfg.metadata`` (``model_name``, ``layer``, ``tokenizer``,
        ``dataset_hash``, ...); ``hook_name`` is derived from ``layer`` when absent.
    reference_inputs
        Raw activations ``[n, d_in]`` kept for the load-time self-check (default: 64 synthetic
        tokens drawn around the stored mean).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    arch = sae.architecture()
    sae_cfg = sae.cfg
    if metadata:
        sae_cfg.metadata = {**sae_cfg.metadata, **metadata}
    meta = dict(sae_cfg.metadata)
    if "layer" in meta and meta.get("hook_name") is None:
        meta["hook_name"] = hook_name(int(meta["layer"]))
    cfg_dict = sae_cfg.to_dict()
    cfg_dict.pop("metadata")
    norm = {"act_mean": sae.act_mean.detach().cpu().double().tolist(),
            "act_scale": float(sae.act_scale), "folded_into_weights": True,
            "outlier_norm_factor": sae_cfg.outlier_norm_factor,
            "outlier_norm_threshold": sae_cfg.outlier_norm_threshold,
            "outlier_rule": "tokens with ||acts||_2 > outlier_norm_threshold "
                            "(= outlier_norm_factor x median norm of the statistics sample) are "
                            "excluded from training and metrics"}
    meta.update({"sae_lens_version": SAELENS_LAYOUT_VERSION,
                 "genosae": {"format": FORMAT, "architecture": arch, "config": cfg_dict,
                             "normalization": norm}})
    saelens = {"architecture": SAELENS_ARCHITECTURE[arch], "d_in": sae.d_in, "d_sae": sae.d_sae,
               "dtype": "float32", "device": "cpu", "apply_b_dec_to_input": True,
               "normalize_activations": "none", "reshape_activations": "none",
               **sae.saelens_cfg(), "metadata": meta}
    state = {k: v.detach().cpu().float().contiguous() for k, v in sae.inference_state().items()}

    with torch.no_grad():
        if reference_inputs is None:
            gen = torch.Generator().manual_seed(0)
            reference_inputs = (torch.randn(64, sae.d_in, generator=gen) / sae.act_scale.cpu()
                                + sae.act_mean.cpu())
        ref = reference_inputs.detach().float().cpu()
        was = sae.training
        sae.eval()
        dev = sae.W_enc.device
        codes = sae.encode(ref.to(dev)).cpu()
        recon = sae.decode(codes.to(dev)).cpu()
        sae.train(was)
    with atomic_path(out / WEIGHTS_NAME) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})
    with atomic_path(out / REFERENCE_NAME) as tmp:
        save_file({"inputs": ref.contiguous(), "codes": codes.contiguous(),
                   "recon": recon.contiguous()}, str(tmp))
    write_json(norm, out / NORM_NAME)
    write_json(saelens, out / CFG_NAME)  # last: its presence marks a complete folder
    return out


def load_sae(path: str | os.PathLike[str], *, architecture: str | None = None,
             device: str = "cpu", check: bool = True, atol: float = 1e-4,
             expect_model: str | None = None, expect_layer: int | None = None,
             k: int | None = None) -> SAE:
    """Load an SAE: a genosae folder (:func:`save_sae`), a SAELens folder or a Goodfire ``.pt``.

    The format is detected (:func:`genosae.sae.external.detect_format`); SAEs trained elsewhere
    are read by :mod:`genosae.sae.external`. For a genosae folder the architecture in
    ``metadata.genosae`` must agree with the SAELens ``architecture`` field, with the tensors present
    and with ``architecture`` when given; with ``check`` the stored reference inputs are re-encoded
    and must reproduce the stored codes and reconstruction (so a TopK SAE can never come back as a
    ReLU one).

    Parameters
    ----------
    expect_model, expect_layer
        The model (path or hub id; compared by :func:`~genosae.sae.external.model_key`) and layer
        the activations come from; an SAE recording another is refused, and an external SAE that
        records none is refused (:func:`~genosae.sae.external.check_provenance`).
    k
        Goodfire checkpoints only: active latents per token (default: the sidecar's, else 64).

    Raises
    ------
    InputError
        Missing files, unknown or inconsistent architecture, failed self-check, wrong model/layer.
    """
    from genosae.sae.external import check_provenance, detect_format, load_goodfire, load_saelens

    fmt, where = detect_format(path)
    if fmt == "genosae":
        sae = _load_genosae(where, architecture=architecture, device=device, check=check, atol=atol)
    else:
        sae = load_saelens(where, device=device) if fmt == "saelens" else load_goodfire(where, k=k, device=device)
        if architecture is not None and architecture != sae.architecture():
            raise InputError(f"this is a {sae.architecture()!r} SAE, not {architecture!r}", path=where,
                             record="architecture")
    check_provenance(sae, expect_model=expect_model, expect_layer=expect_layer, path=where,
                     require=fmt != "genosae")
    return sae


def _load_genosae(folder: Path, *, architecture: str | None, device: str, check: bool, atol: float) -> SAE:
    """The genosae-folder branch of :func:`load_sae`."""
    cfg_path = folder / CFG_NAME
    for name in (CFG_NAME, WEIGHTS_NAME, NORM_NAME):
        if not (folder / name).exists():
            raise InputError(f"missing {name}; is this an SAE folder written by genosae "
                             "train-sae?", path=folder)
    raw = read_json(cfg_path)
    gmeta = (raw.get("metadata") or {}).get("genosae")
    if not isinstance(gmeta, dict) or "architecture" not in gmeta:
        raise InputError("no metadata.genosae.architecture: not a genosae SAE (re-save it "
                         "with genosae.sae.io.save_sae)", path=cfg_path, record="metadata.genosae")
    arch = gmeta["architecture"]
    cfg_cls, sae_cls = get_architecture(arch)
    if raw.get("architecture") != SAELENS_ARCHITECTURE[arch]:
        raise InputError(f"architecture {raw.get('architecture')!r} does not match the genosae "
                         f"architecture {arch!r} (expected {SAELENS_ARCHITECTURE[arch]!r}); the "
                         "folder was edited or mixed up: retrain or re-save it",
                         path=cfg_path, record="architecture")
    if architecture is not None and architecture != arch:
        raise InputError(f"this is a {arch!r} SAE, not {architecture!r}", path=cfg_path,
                         record="architecture")
    cfg: SAEConfig = cfg_cls.from_dict({**gmeta["config"], "architecture": arch})
    cfg.metadata = {k: v for k, v in raw["metadata"].items() if k != "genosae"}
    for key in ("d_in", "d_sae"):
        if raw.get(key) != getattr(cfg, key):
            raise InputError(f"{key}={raw.get(key)} disagrees with metadata.genosae.config",
                             path=cfg_path, record=key)
    state = load_file(str(folder / WEIGHTS_NAME))
    sae = sae_cls(cfg)
    expected = set(sae.inference_state())
    if set(state) != expected:
        raise InputError(f"weights {sorted(state)} do not match a {arch!r} SAE "
                         f"({sorted(expected)})", path=folder / WEIGHTS_NAME)
    norm = read_json(folder / NORM_NAME)
    try:
        sae.load_inference_state(state, torch.tensor(norm["act_mean"], dtype=torch.float32),
                                 float(norm["act_scale"]))
    except (RuntimeError, KeyError) as err:
        raise InputError(f"weights do not fit the config: {err}", path=folder / WEIGHTS_NAME) from err
    sae.to(torch.device(device)).eval()
    if check:
        _self_check(sae, folder, atol=atol)
    return sae


def _self_check(sae: SAE, folder: Path, *, atol: float) -> None:
    ref_path = folder / REFERENCE_NAME
    if not ref_path.exists():
        raise InputError(f"missing {REFERENCE_NAME} for the self-check (pass check=False to skip)",
                         path=folder)
    ref = load_file(str(ref_path))
    dev = sae.W_enc.device
    with torch.no_grad():
        codes = sae.encode(ref["inputs"].to(dev)).cpu()
        recon = sae.decode(codes.to(dev)).cpu()
    scale = float(ref["recon"].abs().max().clamp(min=1.0))
    # per token: same active latents and the same reconstruction; a near-tie at the TopK /
    # threshold boundary may flip after the fold/unfold rounding, so 2% of tokens may differ
    same_support = ((codes > 0) == (ref["codes"] > 0)).all(1)
    close = ((recon - ref["recon"]).abs() <= atol * scale + 1e-3 * ref["recon"].abs()).all(1)
    ok = same_support & close
    if float(ok.float().mean()) < 0.98:
        err = float((recon - ref["recon"]).abs().max())
        raise InputError(f"self-check failed: the loaded {sae.architecture()!r} SAE does not "
                         f"reproduce its stored reference reconstruction ({int((~ok).sum())} of "
                         f"{ok.numel()} tokens differ, max abs error {err:.3g}); the weights or "
                         "config were altered", path=ref_path)
