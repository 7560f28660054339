"""Self-contained HTML report of a biomarker run (plots embedded as base64 PNG)."""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from genosae._io import atomic_path, write_table
from genosae.biomarkers.calibration import calibration_text

DASHBOARD_LINK = "../../features/dashboards/feature_{id}.html"

_CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
h1{border-bottom:2px solid #444} h2{margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;font-size:0.85em;margin:0.5em 0}
td,th{border:1px solid #ddd;padding:3px 7px;text-align:right} th{background:#f2f2f2}
td:first-child,th:first-child{text-align:left} .note{color:#666;font-size:0.9em}
pre{background:#f7f7f7;padding:1em;overflow-x:auto;font-size:0.8em}
.scroll{overflow-x:auto} td,th{white-space:nowrap}
"""


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def volcano_plot(biomarkers: pd.DataFrame, alpha: float = 0.05) -> str:
    """Cliff's delta vs −log10 p; features with q ≤ alpha in red, top 5 labelled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.2))
    x = biomarkers["cliffs_delta"].to_numpy(float)
    y = -np.log10(np.clip(biomarkers["p"].to_numpy(float), 1e-300, 1))
    sig = biomarkers["q"].to_numpy(float) <= alpha
    ax.scatter(x[~sig], y[~sig], s=8, c="0.6", label="q > α")
    ax.scatter(x[sig], y[sig], s=12, c="tab:red", label=f"q ≤ {alpha}")
    for _, row in biomarkers.head(5).iterrows():
        ax.annotate(str(row["feature"]), (row["cliffs_delta"], -np.log10(max(row["p"], 1e-300))),
                    fontsize=7)
    ax.set_xlabel("Cliff's delta (case vs control)")
    ax.set_ylabel("−log10 p (Mann-Whitney U)")
    ax.legend(fontsize=8)
    return _png(fig)


def locus_plot(locus_table: pd.DataFrame, chrom_order: list[str] | None = None) -> str:
    """Manhattan-style view of a cohort's loci: features changed per locus along the genome."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from genosae.genome.reference import chrom_sort_key

    t = locus_table.dropna(subset=["chrom", "start"]).copy()
    order = chrom_order or list(dict.fromkeys(sorted(t["chrom"].astype(str), key=chrom_sort_key)))
    t["c"] = t["chrom"].astype(str).map({c: i for i, c in enumerate(order)})
    t = t.sort_values(["c", "start"]).reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(8, 3.2))
    colors = np.where(t["c"] % 2 == 0, "tab:blue", "tab:cyan")
    ax.bar(np.arange(len(t)), t["n_sig_features"], color=colors, width=0.8)
    top = t.nlargest(min(5, len(t)), "n_sig_features")
    for i, row in top.iterrows():
        if row["n_sig_features"] > 0:
            ax.annotate(str(row.get("name") or row["region_id"]), (i, row["n_sig_features"]),
                        fontsize=7, rotation=60, ha="left", va="bottom")
    mids = t.groupby("c").apply(lambda g: g.index.to_numpy().mean(), include_groups=False)
    ax.set_xticks(mids.to_numpy(), [order[int(c)] for c in mids.index], rotation=90, fontsize=7)
    ax.set_ylim(0, max(1.0, float(t["n_sig_features"].max())) * 1.3)  # room for the labels
    ax.set_ylabel("features with locus q ≤ α")
    ax.set_xlabel("loci in genome order")
    return _png(fig)


def _bar_plot(labels: list[str], values: list[float], xlabel: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 0.45 * len(labels) + 1))
    ax.barh(labels, values, color="tab:blue")
    ax.axvline(0.5, color="0.5", ls="--", lw=1)
    ax.set_xlim(0, 1)
    ax.set_xlabel(xlabel)
    return _png(fig)


def _rejections_plot(rejections: list[int], summary: Mapping[str, Any]) -> str:
    """Histogram of the number of features rejected (BH q ≤ α) per label permutation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r = np.asarray(rejections, dtype=int)
    counts = np.bincount(r) if r.size else np.zeros(1, int)
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.bar(np.arange(counts.size), counts, color=["tab:gray"] + ["tab:red"] * (counts.size - 1))
    ax.set_xlabel("features with q ≤ α under one permuted labelling")
    ax.set_ylabel("permutations")
    ax.set_title(f"family-wise rate {float(summary['familywise_rate']):.3f} "
                 f"({float(summary['familywise_ci_low']):.3f}–{float(summary['familywise_ci_high']):.3f}), "
                 f"α = {summary['alpha']}", fontsize=9)
    return _png(fig)


def _table(df: pd.DataFrame | None, *, escape: bool = True) -> str:
    if df is None or len(df) == 0:
        return '<p class="note">none</p>'
    table = df.to_html(index=False, escape=escape, float_format=lambda v: f"{v:.3g}", border=0)
    return f'<div class="scroll">{table}</div>'  # wide tables scroll inside the page


def _kv(d: Mapping[str, Any] | None) -> str:
    if not d:
        return '<p class="note">not available</p>'
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_fmt(v))}</td></tr>"
                   for k, v in d.items())
    return f"<table>{rows}</table>"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict | list):
        return json.dumps(v, default=str)[:300]
    return str(v)


def _feature_table(rows: pd.DataFrame, *, adjusted: bool = False) -> str:
    """Feature rows as HTML with dashboard links (adjusted: the covariate-model columns first)."""
    stat = (["coef_adjusted", "p_adjusted", "q_adjusted", "q"] if adjusted
            else ["cliffs_delta", "auroc", "log2fc", "p", "q", "q_adjusted", "empirical_p"])
    shown = [c for c in ["rank", "feature", "label", "direction", *stat, "n_sig_loci", "best_concept",
                         "best_motif", "motif_q", "top_loci"] if c in rows.columns]
    out = rows[shown].copy()
    for c in out.columns:
        if out[c].dtype == object:
            out[c] = out[c].fillna("").astype(str).map(html.escape)
    out["feature"] = rows["feature"].astype(str).map(
        lambda f: f'<a href="{DASHBOARD_LINK.format(id=html.escape(f))}">{html.escape(f)}</a>')
    return _table(out, escape=False)


def render_report(
    *,
    biomarkers: pd.DataFrame,
    loci: pd.DataFrame | None = None,
    locus_table: pd.DataFrame | None = None,
    qc: Mapping[str, Any] | None = None,
    baselines: pd.DataFrame | None = None,
    calibration: Mapping[str, Any] | None = None,
    sae_metrics: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
    design_summary: Mapping[str, Any] | None = None,
    versions: Mapping[str, str] | None = None,
    features: Mapping[str, Any] | None = None,
    known_motifs: pd.DataFrame | None = None,
    known_motif_biomarkers: pd.DataFrame | None = None,
    alpha: float = 0.05,
    n_top: int = 20,
    title: str = "genosae biomarker report",
) -> str:
    """The report as one HTML string (no external files: plots are inline base64 PNGs).

    ``features`` (:func:`features_section_inputs`) adds how far the feature names can be trusted: concept
    and motif capture of the SAE beside the control model, neurons and random directions, and the motif
    names against their null. ``known_motifs`` / ``known_motif_biomarkers`` (``known_motifs.csv``,
    ``known_motif_biomarkers.csv``) add the known-motif enrichment baseline and its cross-reference.
    """
    n_sig = int((biomarkers["q"] <= alpha).sum())
    known_summary = (design_summary or {}).get("known_motifs")
    design_summary = {k: v for k, v in (design_summary or {}).items() if k != "known_motifs"}
    covs = (design_summary or {}).get("covariates_used") or []
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"]
    parts += ["<h2>Design</h2>", _kv(design_summary)]
    qc_rows = {**(qc or {}), "features tested": len(biomarkers), f"features with q ≤ {alpha}": n_sig}
    if "q_adjusted" in biomarkers.columns:
        qc_rows[f"features with q_adjusted ≤ {alpha}"] = int((biomarkers["q_adjusted"] <= alpha).sum())
    parts += ["<h2>QC</h2>", _kv(qc_rows)]
    parts += ["<h2>Volcano plot</h2>", volcano_plot(biomarkers, alpha)]
    parts += [f"<h2>Top {min(n_top, len(biomarkers))} features without covariates</h2>",
              '<p class="note">Two-sided Mann-Whitney U on the per-unit mean activation, BH q over '
              "features; ranked by q, then p, then |Cliff's delta|; direction = side of ½ of the "
              "AUROC. A concept or motif name is shown only where it passed its test in the feature "
              "catalogue (motif_q is its Tomtom q-value). Feature ids link to the feature "
              "dashboards.</p>", _feature_table(biomarkers.head(n_top))]
    if "q_adjusted" in biomarkers.columns:
        adj = biomarkers.sort_values(["q_adjusted", "p_adjusted", "rank"], kind="stable").head(n_top)
        note = (f"adjusted for {', '.join(map(str, covs))}" if covs else
                "no covariates were available, so this is the plain OLS (pooled t-test)")
        parts += [f"<h2>Top {len(adj)} features adjusted for covariates</h2>",
                  f'<p class="note">OLS <code>feature ~ 1 + case + covariates</code> ({html.escape(note)}); '
                  "ranked by q_adjusted. A feature in the first table but not here is explained by "
                  "the covariates (e.g. sequence composition).</p>",
                  _feature_table(adj, adjusted=True)]
    if locus_table is not None and len(locus_table):
        parts += ["<h2>Loci (variant-aware, feature × locus tests)</h2>",
                  '<p class="note">Every feature tested at every locus (Mann-Whitney U of the samples\' '
                  "locus mean activation, equivalently of their delta to the reference haplotype; "
                  "BH over all feature × locus pairs). Loci ranked by the number of features with "
                  f"q ≤ {alpha}; <i>variants</i> are the locus's most case-enriched variants (more "
                  "frequent in cases, Fisher's exact test of carriers, BH q ≤ α).</p>",
                  locus_plot(locus_table), _table(locus_table.head(n_top))]
    if loci is not None and len(loci):
        top5 = biomarkers["feature"].astype(str).head(5)
        first = loci[loci["feature"].astype(str).isin(top5)]
        parts += ["<h2>Top loci of the top 5 features</h2>", _table(first.head(50))]
    parts += ["<h2>Baselines: SAE features vs k-mers vs linear probe</h2>"]
    if baselines is not None and len(baselines):
        parts.append(_table(baselines))
        if "cv_auroc" in baselines.columns:
            b = baselines.dropna(subset=["cv_auroc"])
            if len(b):
                parts.append(_bar_plot(b["method"].astype(str).tolist(), b["cv_auroc"].tolist(),
                                       "cross-validated AUROC"))
    else:
        parts.append('<p class="note">not run</p>')
    parts += _known_motif_section(known_motifs, known_motif_biomarkers, known_summary, alpha, n_top)
    parts += ["<h2>Calibration (label permutations)</h2>"]
    if calibration and "familywise_rate" in calibration:
        cal = {k: v for k, v in calibration.items() if k != "rejections_per_permutation"}
        parts += [f"<p>{html.escape(calibration_text(calibration))}</p>", _kv(cal)]
        if calibration.get("rejections_per_permutation"):
            parts.append(_rejections_plot(list(calibration["rejections_per_permutation"]), calibration))
    elif calibration:
        parts.append('<p class="note">calibration.json was written by an older genosae (it holds the '
                     "mean fraction of features rejected, which does not bound the chance of a false "
                     "discovery); re-run <code>genosae biomarkers</code> for the family-wise rate.</p>")
    else:
        parts.append('<p class="note">not run</p>')
    if features:
        parts += _features_section(features)
    parts += ["<h2>Model and SAE metrics</h2>", _kv(sae_metrics)]
    parts += ["<h2>Package versions</h2>", _kv(versions)]
    parts += ["<h2>Config</h2>",
              f"<pre>{html.escape(json.dumps(config or {}, indent=2, default=str))}</pre>"]
    parts.append("</body></html>")
    return "\n".join(parts)


def _known_motif_section(table: pd.DataFrame | None, cross: pd.DataFrame | None,
                         summary: Mapping[str, Any] | None, alpha: float, n_top: int) -> list[str]:
    """The baseline a user runs today: known motifs enriched in cases (Fisher, Firth logistic), and
    which of them the SAE biomarkers also found."""
    parts = ["<h2>Known-motif enrichment (FIMO + Fisher / logistic)</h2>"]
    if table is None or not len(table):
        return [*parts, '<p class="note">not run (no motifs or no unit sequences)</p>']
    parts.append('<p class="note">Every configured motif scanned with FIMO on each unit (both strands); a unit '
                 "has the motif with at least one hit. Fisher's exact test of has-motif vs case/control and a "
                 "Firth-penalised logistic model with the covariates (likelihood-ratio p), BH over every motif "
                 "(× locus for cohorts; <i>group</i> = the locus, empty = all loci of a sample).</p>")
    if summary:
        for key in ("line_found", "line_unexplained"):
            if summary.get(key):
                parts.append(f"<p>{html.escape(str(summary[key]))}</p>")
    cols = [c for c in ("motif_name", "motif_id", "group", "frac_case", "frac_control", "odds_ratio", "fisher_p",
                        "fisher_q", "logit_coef", "logit_q", "direction") if c in table.columns]
    parts.append(_table(table[cols].head(n_top)))
    if cross is not None and len(cross):
        parts += [f"<h3>SAE biomarkers (q ≤ {alpha}) and the enriched known motifs</h3>",
                  '<p class="note"><i>explained_by</i>: an enriched motif the feature is named after, or '
                  "whose presence it tracks within case and within control units (Spearman |ρ| ≥ "
                  f"{_fmt((summary or {}).get('min_rho', 0.3))}, Stouffer-combined over the groups, BH q ≤ "
                  f"{alpha} over every biomarker × motif pair).</p>", _table(cross)]
    return parts


_SETS = {"sae": "SAE", "control": "control model SAE", "neuron": "neurons", "random": "random directions"}


def features_section_inputs(features_dir: str | Path) -> dict[str, Any]:
    """What the report shows of the features step: ``features.json``, ``baseline_summary.csv`` and
    ``motif_capture.csv`` of ``features_dir`` (missing files are left out)."""
    d = Path(features_dir)
    out: dict[str, Any] = {}
    if (d / "features.json").exists():
        out["info"] = json.loads((d / "features.json").read_text())
    for key, name in (("concepts", "baseline_summary.csv"), ("motif_capture", "motif_capture.csv")):
        if (d / name).exists() and (d / name).stat().st_size > 1:
            out[key] = pd.read_csv(d / name)
    return out


def _features_section(features: Mapping[str, Any]) -> list[str]:
    info = features.get("info") or {}
    split = info.get("split") or {}
    cand = info.get("n_candidates") or {}
    parts = ["<h2>How far the feature names can be trusted</h2>",
             '<p class="note">Every unit set (SAE features, the same SAE trained on the randomly initialised '
             "control model, single neurons, random directions) gets its unit and threshold chosen on the "
             f"calibration windows and is scored on the held-out ones ({html.escape(str(split.get('rule', '?')))} "
             f"split, {split.get('n_calibration_windows', '?')} / {split.get('n_heldout_windows', '?')} windows); "
             "a set with more candidates has more chances, so the candidate counts are shown. A concept "
             "or motif counts as captured only where the SAE beats the control model and random "
             "directions.</p>",
             _kv({f"candidates: {_SETS.get(k, k)}": v for k, v in cand.items()})]
    concepts = features.get("concepts")
    if concepts is not None and len(concepts):
        sets = [k for k in _SETS if f"best_{k}_f1" in concepts]
        c = concepts[~concepts["concept"].astype(str).str.startswith("motif:")]
        c = c.sort_values("best_sae_f1", ascending=False).head(15)
        cols = ["concept", "prevalence", "trivial_f1", "best_sae_feature", *[f"best_{k}_f1" for k in sets]]
        parts += ["<h3>Concepts (held-out F1 of each set's calibration-chosen unit)</h3>",
                  _table(c[cols].round(3))]
    naming = info.get("motif_naming") or {}
    if naming:
        flagged = naming.get("flagged_motifs") or []
        control = (info.get("control") or {}).get("motif_naming") or {}
        text = (f"{naming.get('n_named', 0)} of {naming.get('n_features', '?')} features carry a motif name "
                f"(Tomtom q ≤ {naming.get('q_max')}, better than column-shuffled queries and than the "
                f"pseudo-feature nulls); the nulls expect {naming.get('expected_false_names')} false names "
                f"(95 % upper bound {naming.get('expected_false_names_upper95')}). Motifs naming more than "
                f"{100 * float(naming.get('max_share', 0.05)):.0f} % of features: "
                f"{', '.join(flagged) if flagged else 'none'}.")
        if control:
            text += f" Control model: {control.get('n_named', 0)} features named."
        parts += ["<h3>Motif names</h3>", f"<p>{html.escape(text)}</p>"]
    capture = features.get("motif_capture")
    if capture is not None and len(capture):
        sets = [k for k in _SETS if f"{k}_f1" in capture]
        cols = ["motif_name", "n_sites_calibration", "n_sites_heldout", "sae_unit", *[f"{k}_f1" for k in sets],
                "captured"]
        top = capture.sort_values("sae_f1", ascending=False).head(15)
        parts += ["<h3>Motif capture (FIMO sites: token precision × site recall, held-out F1)</h3>",
                  f'<p class="note">{int(capture["captured"].sum())} of {len(capture)} motifs captured.</p>',
                  _table(top[cols].round(3))]
    return parts


def write_report(
    out_dir: str | Path,
    *,
    biomarkers: pd.DataFrame,
    loci: pd.DataFrame | None = None,
    locus_table: pd.DataFrame | None = None,
    adata: Any = None,
    catalog: pd.DataFrame | None = None,
    baselines: pd.DataFrame | None = None,
    calibration: Mapping[str, Any] | None = None,
    sae_metrics: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
    design_summary: Mapping[str, Any] | None = None,
    known_motifs: pd.DataFrame | None = None,
    known_motif_biomarkers: pd.DataFrame | None = None,
    alpha: float = 0.05,
    html_name: str = "report.html",
) -> dict[str, Path]:
    """Write ``biomarkers.csv``, ``biomarker_loci.csv`` and ``report.html`` into ``out_dir``.

    ``adata`` (profiles) adds unit counts to the QC section; ``catalog`` adds the number of features
    whose concept passed its test (``captured``). Returns the written paths by name.
    """
    from genosae.biomarkers.profiles import versions as _versions

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    qc: dict[str, Any] = {}
    if adata is not None:
        qc["units"] = int(adata.n_obs)
        if "condition" in adata.obs.columns:
            qc.update({f"units ({k})": int(v) for k, v in adata.obs["condition"].value_counts().items()})
        if "n_tokens" in adata.obs.columns:
            qc["median tokens per unit"] = float(adata.obs["n_tokens"].median())
        qc["features"] = int(adata.n_vars)
        mean = adata.layers["mean"] if "mean" in adata.layers else adata.X
        qc["features never active"] = int((np.asarray(mean).max(axis=0) <= 0).sum())
    if catalog is not None and "captured" in catalog.columns:
        qc["catalogue features with a captured concept"] = int(
            catalog["captured"].fillna(False).astype(bool).sum())
    paths = {"biomarkers": out / "biomarkers.csv", "loci": out / "biomarker_loci.csv",
             "report": out / html_name}
    write_table(biomarkers, paths["biomarkers"])
    write_table(loci if loci is not None else pd.DataFrame(), paths["loci"])
    text = render_report(biomarkers=biomarkers, loci=loci, locus_table=locus_table, qc=qc,
                         baselines=baselines,
                         calibration=calibration, sae_metrics=sae_metrics, config=config,
                         design_summary=design_summary, versions=_versions(), alpha=alpha,
                         known_motifs=known_motifs, known_motif_biomarkers=known_motif_biomarkers)
    with atomic_path(paths["report"]) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return paths


def write_html(path: str | Path, **kwargs: Any) -> Path:
    """Write only the HTML (``render_report`` arguments) atomically; used by ``genosae report``."""
    from genosae.biomarkers.profiles import versions as _versions

    kwargs.setdefault("versions", _versions())
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(render_report(**kwargs), encoding="utf-8")
    return path
