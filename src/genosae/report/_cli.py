"""Subcommand ``report``: the HTML report of one biomarker run."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from genosae.errors import InputError


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="self-contained HTML report of a biomarker run")
    p.add_argument("--config", required=True, help="YAML config")
    p.add_argument("--design", required=True, help="design name")
    p.add_argument("--biomarkers-dir", required=True, help="folder written by `genosae biomarkers`")
    p.add_argument("--sae-metrics", default=None, nargs="*",
                   help="metrics JSON file(s) of the model/SAE (e.g. results/sae/main/metrics.json)")
    p.add_argument("--features-dir", default=None,
                   help="features step folder (results/features): adds concept/motif capture vs the control")
    p.add_argument("--out", required=True, help="output HTML, e.g. results/biomarkers/NAME/report.html")
    p.set_defaults(func=_report)


def _json(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise InputError(f"not valid JSON ({err.msg})", path=path, record=err.lineno) from None


def _report(args: argparse.Namespace) -> int:
    from genosae.config import load_config
    from genosae.report.html import features_section_inputs, write_html

    config = load_config(args.config, check_files=False)
    d = Path(args.biomarkers_dir)
    table = d / "biomarkers.csv"
    if not table.exists():
        raise InputError("no biomarkers.csv; run `genosae biomarkers` first", path=d)
    biomarkers = pd.read_csv(table)
    loci_path = d / "biomarker_loci.csv"
    loci = pd.read_csv(loci_path) if loci_path.exists() and loci_path.stat().st_size > 1 else None
    baselines = pd.read_csv(d / "baselines.csv") if (d / "baselines.csv").exists() else None
    locus_table = pd.read_csv(d / "locus_summary.csv") if (d / "locus_summary.csv").exists() else None
    known = {name: pd.read_csv(d / f"{name}.csv").fillna({"group": "", "explained_by": "", "motif_name": ""})
             for name in ("known_motifs", "known_motif_biomarkers")
             if (d / f"{name}.csv").exists() and (d / f"{name}.csv").stat().st_size > 1}
    metrics: dict = {}
    for m in args.sae_metrics or []:
        flat = _json(Path(m))
        if not flat:
            raise InputError("metrics file missing or empty", path=m)
        metrics.update({f"{Path(m).parent.name}/{k}": v for k, v in flat.items()
                        if not isinstance(v, dict | list)})
    summary = {**_json(d / "design_summary.json"), "design": args.design}
    clf = _json(d / "classifier.json")
    if clf:
        summary["L1 logistic CV AUROC (SAE features)"] = clf.get("auroc")
        summary["features selected by L1"] = ", ".join(clf.get("selected", [])[:10])
    write_html(args.out, biomarkers=biomarkers, loci=loci, locus_table=locus_table, baselines=baselines,
               calibration=_json(d / "calibration.json"), sae_metrics=metrics, config=config,
               design_summary=summary, alpha=config["biomarkers"]["alpha"],
               features=features_section_inputs(args.features_dir) if args.features_dir else None,
               title=f"genosae biomarkers: {args.design}", **known)
    print(f"report -> {args.out}")
    return 0
