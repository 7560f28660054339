"""A Markdown summary of a finished run: SAE quality, concepts captured, motif matches, biomarkers."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from genosae.errors import InputError


def _clearly_captured(summary: pd.DataFrame, col: str, f1: float, margin: float = 0.1) -> pd.Series:
    return (summary[col] >= f1) & (summary[col] > summary["trivial_f1"] + margin)


def _text(value: object) -> str:
    """A table cell as text; empty for a missing value (NaN from an empty CSV cell)."""
    return value if isinstance(value, str) else ""


def _first_item(text: object) -> str:
    """First entry of a ``; ``-separated cell (empty for a missing value)."""
    return text.split(";")[0] if isinstance(text, str) else ""


def summarize_run(results: str | Path, *, motif_q: float = 0.05) -> str:
    """Read ``results/`` and return the demo's headline numbers as Markdown."""
    results = Path(results)
    need = [results / "sae" / "seed0" / "eval_metrics.json", results / "features" / "baseline_summary.csv",
            results / "features" / "feature_catalog.csv"]
    for path in need:
        if not path.exists():
            raise InputError("missing; run the workflow first", path=path)
    m = json.loads(need[0].read_text())
    lines = ["### SAE (held-out tokens)", "", "| architecture | d_sae | FVU | L0 | dead | dense | loss recovered (zero abl.) | loss recovered (mean abl.) |",
             "|---|---|---|---|---|---|---|---|",
             f"| {m.get('architecture')} | {m.get('d_sae')} | {m.get('fvu', float('nan')):.3f} | {m.get('l0', float('nan')):.1f} | "
             f"{m.get('dead_frac', float('nan')):.1%} | {m.get('dense_frac', float('nan')):.1%} | "
             f"{m.get('frac_loss_recovered', float('nan')):.3f} | {m.get('frac_loss_recovered_mean_abl', float('nan')):.3f} |", ""]
    summ = pd.read_csv(need[1])
    summ = summ[~summ["concept"].astype(str).str.startswith("motif:")]
    lines += ["### Annotation and sequence concepts captured (held-out F1, clearly above the trivial F1 + 0.1)", "",
              "| units | F1 ≥ 0.5 | F1 ≥ 0.8 |", "|---|---|---|"]
    for col, name in (("best_sae_f1", "SAE features"), ("best_neuron_f1", "neurons"), ("best_random_f1", "random directions")):
        lines.append(f"| {name} | {int(_clearly_captured(summ, col, 0.5).sum())} | {int(_clearly_captured(summ, col, 0.8).sum())} |")
    ahead = int((summ["best_sae_f1"] > summ["best_neuron_f1"]).sum())
    lines += ["", f"SAE ahead of neurons on {ahead} of {len(summ)} concepts.", ""]
    top = summ.assign(margin=summ["best_sae_f1"] - summ["trivial_f1"]).sort_values("best_sae_f1", ascending=False).head(12)
    lines += ["| concept | prevalence | trivial F1 | best SAE F1 (feature) | best neuron F1 | best random F1 |", "|---|---|---|---|---|---|"]
    for r in top.itertuples():
        lines.append(f"| {r.concept} | {r.prevalence:.3f} | {r.trivial_f1:.3f} | {r.best_sae_f1:.3f} ({r.best_sae_feature}) | "
                     f"{r.best_neuron_f1:.3f} | {r.best_random_f1:.3f} |")
    cat = pd.read_csv(need[2])
    n_motif = int((cat["motif_q"] <= motif_q).sum()) if "motif_q" in cat else 0
    lines += ["", f"Features whose top-activation logo matches a JASPAR motif at q ≤ {motif_q}: {n_motif} of {len(cat)} "
              f"(active features: {int((cat['frequency'] > 0).sum())}).", ""]
    for design_dir in sorted((results / "biomarkers").glob("*/")):
        bio_path = design_dir / "biomarkers.csv"
        if not bio_path.exists():
            continue
        bio = pd.read_csv(bio_path)
        lines += [f"### Biomarkers: {design_dir.name}", "",
                  f"{int((bio['q'] <= 0.05).sum())} features with q ≤ 0.05 "
                  f"({int((bio['q_adjusted'] <= 0.05).sum())} after covariate adjustment) of {len(bio)}.", "",
                  "Concept and motif names only where they passed their test in the catalogue (— = none).", "",
                  "| rank | feature | label | direction | AUROC | q | captured concept (F1) | named motif (q) | top locus |", "|---|---|---|---|---|---|---|---|---|"]
        for r in bio.head(5).itertuples():
            locus = _first_item(r.top_loci)
            concept = (f"{r.best_concept} ({r.concept_f1:.2f})" if _text(r.best_concept) else "—")
            motif = f"{r.best_motif} (q {r.motif_q:.1g})" if _text(r.best_motif) else "—"
            lines.append(f"| {r.rank} | {r.feature} | {_text(r.label)} | {r.direction} | {r.auroc:.3f} | "
                         f"{r.q:.2g} | {concept} | {motif} | {locus} |")
        loc_path = design_dir / "locus_summary.csv"
        if loc_path.exists():
            loc = pd.read_csv(loc_path)
            summ_d = json.loads((design_dir / "design_summary.json").read_text()) \
                if (design_dir / "design_summary.json").exists() else {}
            lines += ["", f"Locus-level tests: {summ_d.get('n_significant_locus_tests', '?')} of "
                      f"{summ_d.get('n_locus_tests', '?')} feature × locus pairs with q ≤ 0.05, at "
                      f"{int((loc['n_sig_features'] > 0).sum())} of {len(loc)} loci.", "",
                      "| locus rank | locus | features changed | min q | most case-enriched variant |",
                      "|---|---|---|---|---|"]
            for r in loc.head(5).itertuples():
                var = _first_item(r.variants)
                lines.append(f"| {r.locus_rank} | {r.chrom}:{r.start}-{r.end} ({r.name}) | "
                             f"{r.n_sig_features} | {r.min_q:.2g} | {var} |")
        base = design_dir / "baselines.csv"
        if base.exists():
            b = pd.read_csv(base)
            lines += ["", "| method | significant | CV AUROC |", "|---|---|---|"]
            for r in b.itertuples():
                sig = "" if pd.isna(r.n_significant) else int(r.n_significant)
                lines.append(f"| {r.method} | {sig} | {r.cv_auroc:.3f} |")
        cal = design_dir / "calibration.json"
        if cal.exists():
            c = json.loads(cal.read_text())
            if "familywise_rate" in c:
                lines += ["", f"Permutation calibration: {c['n_permutations_with_rejection']} of "
                          f"{c['n_permutations']} permuted labellings had any feature at BH q ≤ {c['alpha']} "
                          f"(family-wise rate {c['familywise_rate']:.3f}, 95 % CI {c['familywise_ci_low']:.3f}–"
                          f"{c['familywise_ci_high']:.3f}; BH keeps it ≤ α under the complete null); "
                          f"{c['mean_rejections']:.3g} features rejected per permutation on average."]
            else:
                lines += ["", "Permutation calibration: calibration.json predates the family-wise figure; "
                          "re-run `genosae biomarkers`."]
        lines.append("")
    return "\n".join(lines)
