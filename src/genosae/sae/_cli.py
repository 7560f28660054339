"""SAE subcommands: ``train-sae``, ``evaluate-sae`` and ``sweep-sae``.

Every command splits the store's windows the same way (:func:`genosae.sae.train.split_windows`):
windows on ``atlas.holdout_chroms`` plus a ``seed``-seeded 10% of the others are held out for
evaluation and never trained on.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from genosae.errors import InputError

HOLDOUT_FRACTION = 0.1


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-sae", help="train a sparse autoencoder on an activation store")
    p.add_argument("--config", required=True, help="YAML config (sae and atlas sections)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--store", help="activation store folder")
    src.add_argument("--windows", help="windows TSV: stream activations from the config's model, no store "
                                       "(needs --reference-dir)")
    p.add_argument("--reference-dir", default=None, help="prepared reference folder (genome.fa) for --windows")
    p.add_argument("--out", required=True, help="SAE folder (SAELens layout; resumed if present)")
    p.add_argument("--seed", type=int, default=None, help="SAE seed (default: first of sae.seeds)")
    p.add_argument("--device", default=None, help="torch device (default: model.device)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: config threads)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_train)

    p = sub.add_parser("evaluate-sae", help="held-out reconstruction, sparsity and spliced-in LM loss")
    p.add_argument("--config", required=True)
    p.add_argument("--store", required=True, help="activation store the SAE was trained on")
    p.add_argument("--sae", required=True, help="SAE folder written by train-sae (or SAELens / Goodfire .pt)")
    p.add_argument("--out", required=True, help="metrics JSON (a CSV is written beside it)")
    p.add_argument("--reference-dir", default=None,
                   help="prepared reference folder (genome.fa): adds the spliced-in LM loss on "
                        "held-out windows using config model")
    p.add_argument("--max-sequences", type=int, default=128,
                   help="held-out windows used for the LM loss (seeded subsample)")
    p.add_argument("--device", default=None)
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("encode-codes", help="sparse SAE codes of every token of a store (sharded, resumable)")
    p.add_argument("--config", required=True)
    p.add_argument("--store", required=True, help="activation store folder")
    p.add_argument("--sae", required=True, help="SAE folder (or SAELens / Goodfire .pt)")
    p.add_argument("--out", required=True, help="code store folder (resumed if present)")
    p.add_argument("--device", default=None)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_encode_codes)

    p = sub.add_parser("sweep-sae", help="FVU-vs-L0 sweep over sae.sweep expansion factors and ks")
    p.add_argument("--config", required=True)
    p.add_argument("--store", required=True)
    p.add_argument("--out", required=True, help="sweep folder (one sub-folder per run)")
    p.add_argument("--device", default=None)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_sweep)


# ---------------------------------------------------------------------------------- helpers
def _setup(config_path: str, store_path: str, device: str | None, threads: int | None = None):
    import torch

    from genosae.config import load_config
    from genosae.model.store import ActivationStore

    config = load_config(config_path, check_files=False)
    torch.set_num_threads(int(threads or config.get("threads", 2)))
    if not Path(store_path, "manifest.json").exists():
        raise InputError("not an activation store (no manifest.json); run `genosae embed` first",
                         path=store_path)
    store = ActivationStore(store_path)
    held = split_for(store, config)
    return config, store, held, _device(device or config["model"].get("device", "auto"))


def split_for(store: Any, config: dict) -> np.ndarray:
    """The held-out window mask of ``store`` under ``config`` (same for every SAE command)."""
    from genosae.sae.train import split_windows

    holdout = config.get("atlas", {}).get("holdout_chroms", [])
    return split_windows(store.windows, holdout, fraction=HOLDOUT_FRACTION,
                         seed=int(config.get("seed", 0)))


def _device(spec: str) -> str:
    import torch

    if spec == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return spec


def store_metadata(store: Any) -> dict[str, Any]:
    """SAE provenance from an activation store's manifest."""
    from genosae._io import stable_hash
    from genosae.sae.io import hook_name

    man = store.manifest
    model = man.get("model") or {}
    name = model.get("path") or model.get("id") if isinstance(model, dict) else str(model)
    return {"model_name": name, "model": model, "layer": int(man["layer"]),
            "hook_name": hook_name(int(man["layer"])), "tokenizer": man.get("tokenization"),
            "dataset_path": str(store.path) if hasattr(store, "path") else None,
            "dataset_hash": stable_hash({k: man.get(k) for k in
                                         ("config_hash", "windows_hash", "n_tokens", "shards")}),
            "context_size": None, "prepend_bos": False}


# ---------------------------------------------------------------------------------- commands
def stream_source(config: dict, windows_path: str | Path, reference_dir: str | Path | None, device: str) -> Any:
    """A :class:`~genosae.model.stream.ModelActivationStream` of the config's model over a windows TSV."""
    from genosae.model.adapter import load_model_from_config
    from genosae.model.embed import fasta_sequences
    from genosae.model.store import read_windows_table
    from genosae.model.stream import ModelActivationStream

    if reference_dir is None or not Path(reference_dir, "genome.fa").is_file():
        raise InputError("--windows needs --reference-dir with the prepared genome.fa", path=reference_dir,
                         record="--reference-dir")
    if not Path(windows_path).is_file():
        raise InputError("windows table not found; fix the path", path=windows_path)
    adapter = load_model_from_config(config["model"], device=device)
    return ModelActivationStream(adapter, read_windows_table(windows_path),
                                 fasta_sequences(Path(reference_dir, "genome.fa")),
                                 buffer_tokens=int(config["sae"].get("stream_buffer_tokens", 131_072)),
                                 reverse_complement=bool(config["model"].get("reverse_complement", False)),
                                 path=windows_path)


def _train(args: argparse.Namespace) -> int:
    from genosae.sae.train import SAETrainConfig, train_sae

    if args.windows is not None:
        import torch

        from genosae.config import load_config

        config = load_config(args.config, check_files=False)
        torch.set_num_threads(int(getattr(args, "threads", None) or config.get("threads", 2)))
        device = _device(args.device or config["model"].get("device", "auto"))
        store = stream_source(config, args.windows, args.reference_dir, device)
        held = split_for(store, config)
        cfg = SAETrainConfig.from_config(config["sae"], seed=args.seed)
        sae = train_sae(store, cfg, args.out, device=device, progress=not args.no_progress,
                        window_mask=~held, metadata=store_metadata(store))
        print(f"trained {sae.architecture()} SAE d_sae={sae.d_sae} on the model stream -> {args.out}")
        return 0
    config, store, held, device = _setup(args.config, args.store, args.device, getattr(args, "threads", None))
    cfg = SAETrainConfig.from_config(config["sae"], seed=args.seed)
    sae = train_sae(store, cfg, args.out, device=device, progress=not args.no_progress,
                    window_mask=~held, metadata=store_metadata(store))
    print(f"trained {sae.architecture()} SAE d_sae={sae.d_sae} -> {args.out}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from genosae.sae.evaluate import evaluate_sae, write_metrics
    from genosae.sae.external import expectations_from_store
    from genosae.sae.io import load_sae

    config, store, held, device = _setup(args.config, args.store, args.device, getattr(args, "threads", None))
    sae = load_sae(args.sae, device=device, **expectations_from_store(store))
    adapter = sequences = None
    if args.reference_dir is not None:
        adapter, sequences = _lm_inputs(config, store, held, Path(args.reference_dir),
                                        args.max_sequences, device)
    metrics = evaluate_sae(sae, store, n_tokens=int(config["sae"]["eval_tokens"]),
                           window_mask=held, adapter=adapter, sequences=sequences,
                           seed=int(config.get("seed", 0)))
    metrics["split"] = {"holdout_chroms": list(config["atlas"].get("holdout_chroms", [])),
                        "holdout_fraction": HOLDOUT_FRACTION, "n_heldout_windows": int(held.sum())}
    write_metrics(metrics, args.out)
    print(json.dumps({k: v for k, v in metrics.items() if not isinstance(v, dict)}, indent=2))
    return 0


def _lm_inputs(config: dict, store: Any, held: np.ndarray, reference_dir: Path,
               max_sequences: int, device: str):
    from genosae.genome.reference import Reference
    from genosae.genome.windows import window_sequences
    from genosae.model.adapter import load_model_from_config

    fasta = reference_dir / "genome.fa"
    windows = store.windows
    if "sequence" not in windows and not fasta.exists():
        raise InputError("no genome.fa in the reference folder; run `genosae prepare-reference` "
                         "first", path=reference_dir)
    idx = np.flatnonzero(held)
    if idx.size > max_sequences:
        idx = np.sort(np.random.default_rng(int(config.get("seed", 0)))
                      .choice(idx, size=max_sequences, replace=False))
    ref = Reference.open(fasta, config["reference"].get("chrom_aliases") or {}) \
        if fasta.exists() else None
    sequences = window_sequences(windows.iloc[idx], ref)
    adapter = load_model_from_config(config["model"], layer=int(store.manifest["layer"]), device=device)
    return adapter, sequences


def _encode_codes(args: argparse.Namespace) -> int:
    from genosae.sae.codes import encode_store
    from genosae.sae.external import expectations_from_store
    from genosae.sae.io import load_sae

    _config, store, _held, device = _setup(args.config, args.store, args.device)
    sae = load_sae(args.sae, device=device, **expectations_from_store(store))
    codes = encode_store(store, sae, args.out, device=device, progress=not args.no_progress, sae_path=str(args.sae))
    dense = sum((store.path / s["file"]).stat().st_size for s in store.shards)
    print(f"{codes.n_tokens:,} tokens, {codes.manifest['nnz']:,} nonzero codes, {codes.nbytes / 1e6:.1f} MB "
          f"({codes.nbytes / max(dense, 1):.2f} x the store's {dense / 1e6:.1f} MB) -> {args.out}")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from genosae.sae.sweep import sweep
    from genosae.sae.train import SAETrainConfig

    config, store, held, device = _setup(args.config, args.store, args.device, getattr(args, "threads", None))
    sw = config["sae"].get("sweep", {})
    cfg = SAETrainConfig.from_config(config["sae"], training_tokens=int(sw.get("training_tokens",
                                                                              500_000)))
    table = sweep(store, sw.get("expansion_factors", [4, 8]), sw.get("ks", [16, 32, 64]),
                  base_cfg=cfg, out_dir=args.out, eval_tokens=int(config["sae"]["eval_tokens"]),
                  train_mask=~held, eval_mask=held, device=device,
                  progress=not args.no_progress, metadata=store_metadata(store))
    print(table.to_string(index=False))
    return 0
