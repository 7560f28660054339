"""A Markdown summary of a finished run: SAE quality, concepts captured, motif matches, biomarkers."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from genosae.errors import InputError
from genosae.features.catalog import clearly_captured


def _text(value: object) -> str:
    """A table cell as text; empty for a missing value (NaN from an empty CSV cell)."""
    return value if isinstance(value, str) else ""


def _first_item(text: object) -> str:
    """First entry of a ``; ``-separated cell (empty for a missing value)."""
    return text.split(";")[0] if isinstance(text, str) else ""


_SET_NAMES = {"sae": "SAE features", "control": "control-model SAE", "neuron": "neurons",
              "random": "random directions"}


def _feature_lines(results: Path, summ: pd.DataFrame, cat: pd.DataFrame) -> list[str]:
    """Concept capture (chosen on calibration, scored held-out), motif names vs their null, motif capture."""
    info_path = results / "features" / "features.json"
    info = json.loads(info_path.read_text()) if info_path.exists() else {}
    split = info.get("split", {})
    sets = [s for s in ("sae", "control", "neuron", "random") if f"best_{s}_f1" in summ]
    summ = summ[~summ["concept"].astype(str).str.startswith("motif:")]
    n_cand = {s: int(summ[f"n_{s}_candidates"].max()) for s in sets if f"n_{s}_candidates" in summ}
    lines = ["### Annotation and sequence concepts captured", "",
             f"Each set's unit and threshold chosen on the calibration windows, F1 reported on the held-out "
             f"ones ({split.get('rule', '?')} split: {split.get('n_calibration_windows', '?')} calibration / "
             f"{split.get('n_heldout_windows', '?')} held-out windows, held out: "
             f"{', '.join(split.get('holdout_chroms', [])) or 'random half'}); "
             "counted when held-out F1 clears the trivial F1 + 0.1.", "",
             "| units | candidates | F1 ≥ 0.5 | F1 ≥ 0.8 |", "|---|---|---|---|"]
    for s in sets:
        col = f"best_{s}_f1"
        lines.append(f"| {_SET_NAMES[s]} | {n_cand.get(s, '?')} | {int(clearly_captured(summ, col, 0.5).sum())} | "
                     f"{int(clearly_captured(summ, col, 0.8).sum())} |")
    ahead = int((summ["best_sae_f1"] > summ["best_neuron_f1"]).sum())
    lines += ["", f"SAE ahead of neurons on {ahead} of {len(summ)} concepts"]
    if "best_control_f1" in summ:
        beats = int((summ["best_sae_f1"] > summ["best_control_f1"] + 0.1).sum())
        lines[-1] += f"; ahead of the control model by > 0.1 on {beats}"
    lines[-1] += ". Features `captured` in the catalogue: " + str(int(cat["captured"].sum())) + \
        (" (held-out F1 ≥ 0.5, q ≤ 0.05, and > control + 0.1)." if "best_control_f1" in summ else ".")
    top = summ.sort_values("best_sae_f1", ascending=False).head(12)
    head = " | ".join(f"best {_SET_NAMES[s]} F1" for s in sets[1:])
    lines += ["", f"| concept | prevalence | trivial F1 | best SAE F1 (feature) | {head} |",
              "|---|---|---|---|" + "---|" * (len(sets) - 1)]
    for r in top.itertuples():
        rest = " | ".join(f"{getattr(r, f'best_{s}_f1'):.3f}" for s in sets[1:])
        lines.append(f"| {r.concept} | {r.prevalence:.3f} | {r.trivial_f1:.3f} | {r.best_sae_f1:.3f} "
                     f"({r.best_sae_feature}) | {rest} |")
    naming = info.get("motif_naming", {})
    if naming:
        flagged = naming.get("flagged_motifs") or []
        lines += ["", f"**Motif names** (Tomtom q ≤ {naming.get('q_max')}, "
                  "beating column-shuffled queries and the pseudo-feature nulls): "
                  f"{naming.get('n_named', 0)} of {naming.get('n_features', len(cat))} features named "
                  f"({naming.get('n_queries', '?')} had an informative aligned PWM); the nulls expect "
                  f"{naming.get('expected_false_names')} false names (95 % upper bound "
                  f"{naming.get('expected_false_names_upper95')}). Motifs naming > 5 % of features: "
                  f"{', '.join(flagged) if flagged else 'none'}."]
        per_motif = naming.get("names_per_motif") or {}
        if per_motif:
            lines[-1] += " Names per motif: " + ", ".join(f"{k} {v}" for k, v in list(per_motif.items())[:10]) + "."
        control = (info.get("control") or {}).get("motif_naming") or {}
        if control:
            lines[-1] += (f" Control model: {control.get('n_named', 0)} features named "
                          f"(nulls expect {control.get('expected_false_names')}).")
    cap_path = results / "features" / "motif_capture.csv"
    if cap_path.exists():
        cap = pd.read_csv(cap_path)
        cap_sets = [s for s in sets if f"{s}_f1" in cap]
        if len(cap):
            lines += ["", f"**Motif capture** (FIMO sites of {len(cap)} JASPAR motifs with enough sites in both "
                      "halves; token precision × site recall, unit and threshold chosen on calibration, F1 on "
                      "held-out):", "", "| units | candidates | motifs with held-out F1 ≥ 0.5 | ≥ 0.3 | median F1 |",
                      "|---|---|---|---|---|"]
            for s in cap_sets:
                f1 = cap[f"{s}_f1"]
                lines.append(f"| {_SET_NAMES[s]} | {int(cap[f'{s}_n_units'].iloc[0])} | {int((f1 >= 0.5).sum())} | "
                             f"{int((f1 >= 0.3).sum())} | {f1.median():.3f} |")
            lines += ["", f"Captured (SAE F1 ≥ 0.5 and > 0.1 above every null set): {int(cap['captured'].sum())}.",
                      "", "| motif | sites (cal / held-out) | SAE F1 (feature) | " +
                      " | ".join(f"{_SET_NAMES[s]} F1" for s in cap_sets[1:]) + " |",
                      "|---|---|---|" + "---|" * (len(cap_sets) - 1)]
            for r in cap.sort_values("sae_f1", ascending=False).head(8).itertuples():
                rest = " | ".join(f"{getattr(r, f'{s}_f1'):.3f}" for s in cap_sets[1:])
                lines.append(f"| {r.motif_name} | {r.n_sites_calibration} / {r.n_sites_heldout} | "
                             f"{r.sae_f1:.3f} ({r.sae_unit}) | {rest} |")
    return [*lines, ""]


def summarize_run(results: str | Path) -> str:
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
    lines += _feature_lines(results, pd.read_csv(need[1]), pd.read_csv(need[2]))
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
                auc = "" if pd.isna(r.cv_auroc) else f"{r.cv_auroc:.3f}"
                lines.append(f"| {r.method} | {sig} | {auc} |")
        known_path = design_dir / "known_motifs.csv"
        if known_path.exists():
            km = pd.read_csv(known_path, keep_default_na=False, na_values=["nan", "NaN"])
            unit = km[km["group"].astype(str) == ""]
            sig = unit[pd.to_numeric(unit["fisher_q"]) <= 0.05]
            km_summary = (json.loads((design_dir / "design_summary.json").read_text()).get("known_motifs") or {}) \
                if (design_dir / "design_summary.json").exists() else {}
            lines += ["", f"Known-motif enrichment (FIMO, Fisher + Firth logistic, BH): {len(sig)} of {len(unit)} "
                      "motifs enriched" + (": " + ", ".join(
                          f"{r.motif_name} {float(r.frac_case):.0%} vs {float(r.frac_control):.0%} "
                          f"(q {float(r.fisher_q):.1g})" for r in sig.head(5).itertuples()) if len(sig) else "") + "."]
            for key in ("line_found", "line_unexplained"):
                if km_summary.get(key):
                    lines.append(f"{km_summary[key][0].upper()}{km_summary[key][1:]}.")
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
