"""Time and peak memory of each workflow step as the atlas grows: 1x / 4x / 16x the demo's 1,200 windows.

Each scale runs the real Snakemake workflow (the demo config, its model and reference) up to the
feature catalogue in its own output folder, then reads every rule's Snakemake benchmark file
(wall time, peak RSS) and the size on disk of the activation store and the code store. The table
shows each step's time and peak RSS with the ratio to the 1x run of the same invocation: time should
grow about linearly with the atlas and peak RSS stay flat (the features step streams whole-window
batches from the code store).

    python benchmarks/bench_scale.py --light                  # 1x 4x 16x, > 2 h on 2 cores
    python benchmarks/bench_scale.py --scales 1 2 --light     # a quick check
    python benchmarks/bench_scale.py --root results_scale --cores 2
    python benchmarks/bench_scale.py --light --report-only    # the tables of finished runs only

``--light`` switches off what only multiplies the work and is not what is being scaled: the control model
(a second embedding, SAE and feature analysis) and the replicate SAE. Without it every scale runs the
demo's own settings.
Finished steps are not rerun (Snakemake), so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
DEMO_WINDOWS = 1200
#: Rules whose benchmark files are reported, in the order of the data's path.
STEPS = ("prepare_reference", "atlas_windows", "embed", "embed_merge", "train_sae", "encode_codes", "features",
         "control_init", "control_embed", "control_train_sae")


def scale_config(base: dict, scale: float, root: Path, *, light: bool) -> dict:
    """The demo config with ``scale`` x its atlas windows, writing into ``root/x{scale}``."""
    cfg = copy.deepcopy(base)
    cfg["outdir"] = str(root / f"x{scale:g}")
    cfg["atlas"]["n_windows"] = round(DEMO_WINDOWS * scale)
    if light:
        cfg["control_model"]["enabled"] = False
        cfg["sae"]["seeds"] = cfg["sae"]["seeds"][:1]
    return cfg


def run_scale(cfg: dict, cores: int) -> float:
    """Run the workflow up to the feature catalogue; return the wall time in seconds."""
    out = Path(cfg["outdir"])
    out.mkdir(parents=True, exist_ok=True)
    cfg_path = out / "bench_config.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    target = f"{out}/features/feature_catalog.csv"
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    cmd = [sys.executable, "-m", "snakemake", target, "--profile", "workflow/profiles/default", "--cores", str(cores),
           "--configfile", str(cfg_path)]  # --configfile takes several paths: the target goes first
    t0 = time.perf_counter()
    log = out / "bench_snakemake.log"
    with open(log, "w") as fh:
        proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT, check=False)
    if proc.returncode:
        sys.exit(f"snakemake failed at scale {cfg['atlas']['n_windows']} windows; see {log}")
    return time.perf_counter() - t0


def _du(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6 if path.exists() else float("nan")


def step_table(out: Path) -> pd.DataFrame:
    """Per step: wall seconds (summed over a rule's jobs), peak RSS (max over its jobs), MB on disk."""
    bench = out / "benchmarks"
    rows = [{"step": _rule_of(f.relative_to(bench)), **pd.read_csv(f, sep="\t").iloc[0][["s", "max_rss"]].to_dict()}
            for f in sorted(bench.rglob("*.tsv"))]
    if not rows:
        return pd.DataFrame()
    tab = pd.DataFrame(rows).groupby("step").agg(jobs=("s", "size"), seconds=("s", "sum"), peak_rss_mb=("max_rss", "max"))
    order = [s for s in STEPS if s in tab.index] + sorted(set(tab.index) - set(STEPS))
    tab = tab.loc[order]
    disk = {"embed_merge": _du(out / "embed" / "atlas" / "store"), "encode_codes": _du(out / "codes" / "atlas")}
    tab["disk_mb"] = [disk.get(s, float("nan")) for s in tab.index]
    return tab


def _rule_of(rel: Path) -> str:
    """The step a benchmark file (``benchmarks/<group>/<name>.tsv``) belongs to."""
    name = rel.name.removesuffix(".tsv")
    if rel.parts[0] == "control_model":
        return f"control_{name}"
    if rel.parts[0] == "embed":
        return "embed_merge" if name.endswith(".merge") else "embed"
    if rel.parts[0] == "sae":
        return {"train": "train_sae"}.get(name.split(".")[0], name.split(".")[0])
    if rel.parts[0] == "windows":
        return f"{name}_windows"
    return name.split(".")[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scales", type=float, nargs="+", default=[1, 4, 16])
    ap.add_argument("--root", type=Path, default=REPO / "results_scale")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--light", action="store_true",
                    help="no control model, one SAE seed (what does not grow with the atlas only adds time)")
    ap.add_argument("--config", type=Path, default=REPO / "config" / "config.yaml")
    ap.add_argument("--report-only", action="store_true",
                    help="print the tables from the finished runs under --root without running anything")
    args = ap.parse_args()
    base = yaml.safe_load(args.config.read_text())
    tables, outdirs = {}, {}
    for s in args.scales:
        cfg = scale_config(base, s, args.root.resolve(), light=args.light)
        outdirs[s] = Path(cfg["outdir"])
        if not args.report_only:
            wall = run_scale(cfg, args.cores)
            print(f"x{s:g}: {cfg['atlas']['n_windows']} windows, workflow {wall:.0f} s", flush=True)
        tables[s] = step_table(outdirs[s])
        if tables[s].empty:
            sys.exit(f"no benchmark files under {cfg['outdir']}/benchmarks: run without --report-only first")
    first = tables[args.scales[0]]
    print(f"\n| step | {' | '.join(f'x{s:g} s (ratio)' for s in args.scales)} | "
          f"{' | '.join(f'x{s:g} peak RSS MB (ratio)' for s in args.scales)} | disk MB at x{args.scales[-1]:g} |")
    print("|---|" + "---|" * (2 * len(args.scales) + 1))
    for step in first.index:
        secs = [tables[s].loc[step, "seconds"] if step in tables[s].index else float("nan") for s in args.scales]
        rss = [tables[s].loc[step, "peak_rss_mb"] if step in tables[s].index else float("nan") for s in args.scales]
        disk = tables[args.scales[-1]].loc[step, "disk_mb"] if step in tables[args.scales[-1]].index else float("nan")
        print(f"| {step} | " + " | ".join(f"{v:.0f} ({v / secs[0]:.1f}x)" for v in secs) + " | "
              + " | ".join(f"{v:.0f} ({v / rss[0]:.2f}x)" for v in rss) + f" | {disk:.0f} |")
    parts = {s: feature_timings(outdirs[s]) for s in args.scales}
    print(f"\nfeatures step by part (features.json timings_s), seconds (ratio to x{args.scales[0]:g}):")
    print(f"| part | {' | '.join(f'x{s:g}' for s in args.scales)} |")
    print("|---|" + "---|" * len(args.scales))
    for part in parts[args.scales[0]]:
        vals = [parts[s].get(part, float("nan")) for s in args.scales]
        print(f"| {part} | " + " | ".join(f"{v:.0f} ({v / vals[0]:.1f}x)" for v in vals) + " |")


def feature_timings(out: Path) -> dict[str, float]:
    """Seconds per part of the features step of one run (empty when it has not finished)."""
    path = out / "features" / "features.json"
    return json.loads(path.read_text()).get("timings_s", {}) if path.exists() else {}


if __name__ == "__main__":
    main()
