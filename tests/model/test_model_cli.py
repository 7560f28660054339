"""`genosae embed` (whole and in parts) and `genosae merge-store` through the real CLI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import yaml
from tiny_lms import random_dna

from genosae.cli import main
from genosae.model.store import ActivationStore


def test_embed_parts_and_merge(model_dirs, tmp_path, capsys):
    ref = tmp_path / "reference"
    ref.mkdir()
    (ref / "genome.fa").write_text(f">chrI\n{random_dna(300, 5)}\n")
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump({"model": {"path": str(model_dirs["cnn"]), "layer": 1, "batch_size": 4},
                                   "embed": {"storage_dtype": "float32"}}))
    w = pd.DataFrame({"window_id": [f"w{i}" for i in range(7)], "chrom": "chrI", "start": np.arange(7) * 30,
                      "end": np.arange(7) * 30 + 50, "strand": ["+", "-"] * 3 + ["+"], "region_id": "r"})
    wfile = tmp_path / "atlas.windows.tsv"
    w.to_csv(wfile, sep="\t", index=False)
    common = ["--config", str(cfg), "--windows", str(wfile), "--reference-dir", str(ref), "--windows-per-shard", "2",
              "--no-progress"]
    assert main(["embed", *common, "--out", str(tmp_path / "whole")]) == 0
    for i in range(2):
        assert main(["embed", *common, "--out", str(tmp_path / f"p{i}"), "--part", f"{i}/2"]) == 0
    assert main(["merge-store", "--parts", str(tmp_path / "p0"), str(tmp_path / "p1"),
                 "--out", str(tmp_path / "merged")]) == 0
    whole, merged = ActivationStore(tmp_path / "whole"), ActivationStore(tmp_path / "merged")
    assert whole.n_tokens == merged.n_tokens == 7 * 50
    for a, b in zip(whole.iter_shards(), merged.iter_shards()):
        np.testing.assert_array_equal(a["acts"], b["acts"])
    # bad input: one clean line naming the windows file and the window
    w.loc[3, "end"] = w.loc[3, "start"]
    w.to_csv(wfile, sep="\t", index=False)
    capsys.readouterr()
    assert main(["embed", *common, "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert "atlas.windows.tsv" in err and "window w3" in err
    assert main(["embed", *common, "--out", str(tmp_path / "x"), "--part", "2/2"]) == 2
