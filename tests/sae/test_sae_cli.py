"""End to end through the CLI: tiny CNN LM -> activation store -> train / evaluate / sweep."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from genosae.cli import main


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    from genosae.genome.reference import Reference
    from genosae.genome.windows import window_sequences
    from genosae.model.adapter import load_model
    from genosae.model.embed import embed_windows
    from genosae.model.lm import GenosaeCNNConfig, GenosaeCNNForMaskedLM, build_tokenizer

    root = tmp_path_factory.mktemp("sae_cli")
    torch.manual_seed(0)
    model_dir = root / "model"
    GenosaeCNNForMaskedLM(GenosaeCNNConfig(hidden_size=16, num_hidden_layers=3, kernel_size=3,
                                           intermediate_size=24)).save_pretrained(model_dir)
    build_tokenizer().save_pretrained(model_dir)
    rng = np.random.default_rng(0)
    chroms = {"chrI": 2400, "chrXVI": 640}
    ref_dir = root / "reference"
    ref_dir.mkdir()
    with open(ref_dir / "genome.fa", "w") as fh:
        for name, n in chroms.items():
            fh.write(f">{name}\n{''.join(rng.choice(list('ACGT'), size=n))}\n")
    rows = [(f"{c}:{s}", c, s, s + 64, "+", f"{c}:{s}") for c, n in chroms.items()
            for s in range(0, n - 63, 64)]
    windows = pd.DataFrame(rows, columns=["window_id", "chrom", "start", "end", "strand",
                                          "region_id"])
    ref = Reference.open(ref_dir / "genome.fa")
    adapter = load_model(model_dir, layer=2, device="cpu", dtype="float32")
    store = root / "store"
    embed_windows(adapter, windows, window_sequences(windows, ref), store, windows_per_shard=16,
                  storage_dtype="float32", progress=False)
    config = {"threads": 1, "seed": 0, "atlas": {"holdout_chroms": ["chrXVI"]},
              "model": {"path": str(model_dir), "device": "cpu", "dtype": "float32"},
              "sae": {"architecture": "topk", "expansion_factor": 2, "k": 4, "batch_size": 256,
                      "lr": 5e-3, "training_tokens": 256 * 12, "eval_tokens": 5000,
                      "seeds": [3, 4],
                      "sweep": {"expansion_factors": [1, 2], "ks": [2, 4],
                                "training_tokens": 256 * 4}}}
    cfg_path = root / "config.yaml"
    cfg_path.write_text(yaml.safe_dump(config))
    return {"root": root, "config": cfg_path, "store": store, "ref": ref_dir}


def test_train_evaluate_sweep(workspace, capsys):
    w = workspace
    sae_dir = w["root"] / "sae"
    assert main(["train-sae", "--config", str(w["config"]), "--store", str(w["store"]),
                 "--out", str(sae_dir), "--no-progress"]) == 0
    cfg = json.loads((sae_dir / "cfg.json").read_text())
    assert cfg["architecture"] == "topk" and cfg["d_sae"] == 32 and cfg["k"] == 4
    meta = cfg["metadata"]
    assert meta["hook_name"] == "blocks.1.hook_resid_post" and meta["layer"] == 2
    assert meta["training"]["seed"] == 3  # first of sae.seeds

    out = w["root"] / "metrics.json"
    assert main(["evaluate-sae", "--config", str(w["config"]), "--store", str(w["store"]),
                 "--sae", str(sae_dir), "--out", str(out), "--reference-dir", str(w["ref"]),
                 "--max-sequences", "8"]) == 0
    m = json.loads(out.read_text())
    assert 0 <= m["fvu"] < 1 and m["l0"] <= 4
    assert m["n_sequences"] == 8 and m["lm_loss_clean"] > 0
    assert np.isfinite(m["frac_loss_recovered"])
    assert m["split"]["n_heldout_windows"] >= 10  # chrXVI (10 windows) + 10% of the others
    assert out.with_suffix(".csv").exists()

    sweep_dir = w["root"] / "sweep"
    assert main(["sweep-sae", "--config", str(w["config"]), "--store", str(w["store"]),
                 "--out", str(sweep_dir), "--no-progress"]) == 0
    table = pd.read_csv(sweep_dir / "sweep.csv")
    assert sorted(zip(table["expansion_factor"], table["k"])) == [(1, 2), (1, 4), (2, 2), (2, 4)]
    assert (table.loc[table["k"] == 2, "l0"] <= 2).all()
    assert (sweep_dir / "sweep.png").stat().st_size > 0


def test_bad_store_is_a_clean_error(workspace, tmp_path, capsys):
    rc = main(["train-sae", "--config", str(workspace["config"]), "--store", str(tmp_path),
               "--out", str(tmp_path / "x")])
    assert rc == 2
    assert "not an activation store" in capsys.readouterr().err


def test_train_on_the_model_stream_matches_the_split_and_provenance(workspace, tmp_path, capsys):
    """``train-sae --windows``: no store; same held-out split, model/layer provenance, a working SAE."""
    from genosae.model.store import ActivationStore
    from genosae.sae.evaluate import evaluate_sae
    from genosae.sae.io import load_sae

    w = workspace
    store = ActivationStore(w["store"])
    windows = tmp_path / "atlas.windows.tsv"
    store.windows.to_csv(windows, sep="\t", index=False)
    out = tmp_path / "sae_stream"
    config = yaml.safe_load(w["config"].read_text())
    config["model"]["layer"] = 2  # the store's layer
    cfg_path = tmp_path / "config.yaml"
    cfg_path.write_text(yaml.safe_dump(config))
    assert main(["train-sae", "--config", str(cfg_path), "--windows", str(windows), "--reference-dir",
                 str(w["ref"]), "--out", str(out), "--no-progress"]) == 0
    assert "on the model stream" in capsys.readouterr().out
    meta = json.loads((out / "cfg.json").read_text())["metadata"]
    assert meta["layer"] == 2 and meta["model_name"] == str(w["root"] / "model")
    sae = load_sae(out)
    from genosae.sae._cli import split_for

    held = split_for(store, config)
    m = evaluate_sae(sae, store, n_tokens=5000, window_mask=held, seed=0)
    assert m["fvu"] < 0.6 and m["l0"] <= 4  # it learned the held-out activations of the same model
    rc = main(["train-sae", "--config", str(w["config"]), "--windows", str(windows), "--out", str(tmp_path / "x")])
    assert rc == 2 and "--reference-dir" in capsys.readouterr().err


def test_encode_codes_cli(workspace, tmp_path, capsys):
    from genosae.model.store import ActivationStore
    from genosae.sae.codes import CodeStore
    from genosae.sae.io import load_sae

    w = workspace
    sae_dir = w["root"] / "sae"
    if not (sae_dir / "cfg.json").exists():
        assert main(["train-sae", "--config", str(w["config"]), "--store", str(w["store"]), "--out", str(sae_dir),
                     "--no-progress"]) == 0
    out = tmp_path / "codes"
    assert main(["encode-codes", "--config", str(w["config"]), "--store", str(w["store"]), "--sae", str(sae_dir),
                 "--out", str(out), "--no-progress"]) == 0
    assert "nonzero codes" in capsys.readouterr().out
    store, sae = ActivationStore(w["store"]), load_sae(sae_dir)
    acts = np.concatenate([s["acts"] for s in store.iter_shards()])
    with torch.no_grad():
        direct = sae.encode(torch.from_numpy(acts).float()).numpy()
    np.testing.assert_array_equal(CodeStore(out).codes().toarray(), direct)
