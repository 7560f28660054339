"""Static HTML dashboards: one page per feature and a sortable index, no network, no frameworks.

Each page shows the top examples with the activating bases shaded by intensity, the logo (embedded
PNG), the concept table and the motif match. ``index.html`` is a plain table with a few lines of
inline JavaScript to sort by a column.
"""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from genosae._io import atomic_path
from genosae.features.activations import FeatureSource

__all__ = ["feature_page", "write_dashboards"]

_CSS = """body{font-family:system-ui,sans-serif;margin:1.5em;max-width:70em}
table{border-collapse:collapse;font-size:90%}td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}
th{background:#eee;cursor:pointer}.seq{font-family:monospace;font-size:110%;white-space:pre}
.seq span{padding:0 1px}.muted{color:#777}"""

_SORT_JS = """<script>
document.querySelectorAll('th').forEach(function(th,i){th.onclick=function(){
var tb=th.closest('table').tBodies[0],rows=Array.from(tb.rows),asc=th.dataset.asc!=='1';
rows.sort(function(a,b){var x=a.cells[i].dataset.v||a.cells[i].textContent,y=b.cells[i].dataset.v||b.cells[i].textContent;
var nx=parseFloat(x),ny=parseFloat(y);var c=(!isNaN(nx)&&!isNaN(ny))?nx-ny:x.localeCompare(y);return asc?c:-c;});
rows.forEach(function(r){tb.appendChild(r);});th.dataset.asc=asc?'1':'0';};});
</script>"""


def _fmt(v: object) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return ""
    if isinstance(v, (float, np.floating)):
        return f"{v:.3g}"
    return html.escape(str(v))


def _table(df: pd.DataFrame, *, link: str | None = None) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = []
    for rec in df.itertuples(index=False):
        cells = []
        for c, v in zip(df.columns, rec, strict=True):
            text = _fmt(v)
            if link is not None and c == link:
                text = f'<a href="feature_{html.escape(str(v))}.html">{text}</a>'
            dv = f' data-v="{v:.6g}"' if isinstance(v, (float, np.floating)) and not np.isnan(v) else ""
            cells.append(f"<td{dv}>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _highlight(seq: str, intensity: np.ndarray) -> str:
    spans = []
    for b, x in zip(seq, np.clip(intensity, 0, 1), strict=True):
        spans.append(f'<span style="background:rgba(220,40,40,{x:.2f})">{html.escape(b)}</span>')
    return '<span class="seq">' + "".join(spans) + "</span>"


def feature_page(
    name: str,
    row: pd.Series,
    examples: Sequence[tuple[str, str, np.ndarray, float]],
    concepts: pd.DataFrame,
    *,
    logo_png: Path | None = None,
) -> str:
    """HTML of one feature's page.

    ``examples`` are ``(locus, sequence, per-base activation / max, activation)`` tuples.
    """
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(name)}</title>",
             f"<style>{_CSS}</style></head><body>",
             "<p><a href='index.html'>&larr; all features</a></p>",
             f"<h1>{html.escape(name)}: {html.escape(str(row.get('label', '')))}</h1>"]
    keys = ["frequency", "max_activation", "best_concept", "f1", "mcc", "trivial_f1", "q", "motif_label",
            "motif_label_source", "motif_name", "motif_status", "motif_site_f1", "motif_name_flagged",
            "best_motif", "motif_q", "motif_shuffle_p", "motif_null_p", "motif_strand", "motif_n_sites",
            "motif_query_ic", "frame_pref", "frame_share", "replicates", "top_loci"]
    summary = pd.DataFrame({"field": [k for k in keys if k in row.index],
                            "value": [row[k] for k in keys if k in row.index]})
    parts.append(_table(summary))
    if logo_png is not None and Path(logo_png).is_file():
        b64 = base64.b64encode(Path(logo_png).read_bytes()).decode()
        parts.append("<h2>Logo (aligned peak sites)</h2><p class='muted'>best_motif is the raw best Tomtom "
                     "match, not a name; motif_label is the name that passed its tests.</p>"
                     f"<img alt='logo' src='data:image/png;base64,{b64}'>")
    parts.append("<h2>Top examples</h2><table><thead><tr><th>locus</th><th>activation</th><th>sequence</th>"
                 "</tr></thead><tbody>")
    for locus, seq, inten, act in examples:
        parts.append(f"<tr><td>{html.escape(locus)}</td><td>{act:.3g}</td><td>{_highlight(seq, inten)}</td></tr>")
    parts.append("</tbody></table>")
    if len(concepts):
        parts.append("<h2>Concepts (held-out)</h2>" + _table(concepts))
    parts.append(_SORT_JS + "</body></html>")
    return "\n".join(parts)


def site_profiles(source: FeatureSource, sites: pd.DataFrame, flank: int, *, batch_size: int = 65_536
                  ) -> np.ndarray:
    """Each site's feature activation on the ``2 * flank + 1`` tokens around it (same window; 0 outside),
    ``[n_sites, 2 * flank + 1]``, gathered in one streamed pass over the source."""
    width = 2 * flank + 1
    out = np.zeros((len(sites), width), np.float32)
    if sites.empty:
        return out
    rows, feat = sites["row"].to_numpy(np.int64), sites["feature"].to_numpy(np.int64)
    win = sites["window_index"].to_numpy(np.int64)
    offsets = np.arange(-flank, flank + 1)
    for batch in source.iter_batches(batch_size):
        bw = batch.tokens["window_index"].to_numpy(np.int64)
        sel = np.flatnonzero(np.isin(win, bw))
        if sel.size == 0:
            continue
        order = np.argsort(batch.rows, kind="stable")
        pos = order[np.searchsorted(batch.rows[order], rows[sel])]
        loc = pos[:, None] + offsets[None, :]
        inside = (loc >= 0) & (loc < len(bw))
        inside &= bw[np.clip(loc, 0, len(bw) - 1)] == win[sel][:, None]
        vals = np.asarray(batch.codes[np.clip(loc, 0, len(bw) - 1).ravel(), np.repeat(feat[sel], width)]).ravel()
        out[sel] = np.where(inside, vals.reshape(-1, width), 0)
    return out


def _examples(sites: pd.DataFrame, site_codes: np.ndarray, profiles: np.ndarray, max_of: dict[int, float]
              ) -> dict[int, list]:
    """Per feature: (locus, sequence, intensity, activation) of each top site (single-base tokens)."""
    out: dict[int, list] = {}
    for j, s in enumerate(sites.itertuples(index=False)):  # per site
        f = int(s.feature)
        seq = "".join("ACGTN"[c] for c in site_codes[j])
        out.setdefault(f, []).append((f"{s.chrom}:{s.bp_start}-{s.bp_end} ({s.window_id})", seq,
                                      profiles[j] / max(max_of.get(f, 0.0), 1e-12), float(s.activation)))
    return out


def write_dashboards(
    catalog: pd.DataFrame,
    alignment: pd.DataFrame,
    acts: FeatureSource,
    out_dir: str | os.PathLike[str],
    *,
    sites: pd.DataFrame | None = None,
    site_codes: np.ndarray | None = None,
    flank: int = 10,
    logos: dict[str, Path] | None = None,
    n_concepts: int = 8,
) -> Path:
    """Write ``feature_<name>.html`` for every catalogued feature and ``index.html`` into ``out_dir``.

    Parameters
    ----------
    sites, site_codes
        :func:`~genosae.features.motifs.top_sites` rows and their encoded sequences
        (:func:`~genosae.features.motifs.site_sequences` with the same ``flank``).
    logos
        ``{feature name: PNG path}`` embedded in the pages.

    Returns
    -------
    Path of ``index.html``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = list(catalog.index)
    examples: dict[int, list] = {}
    if sites is not None and site_codes is not None and len(sites):
        profiles = site_profiles(acts, sites, flank)
        max_of = dict(zip(catalog["index"].astype(int), catalog["max_activation"].astype(float), strict=True)) \
            if "index" in catalog else {}
        examples = _examples(sites, site_codes, profiles, max_of)
    show = ["feature", "concept", "f1", "precision", "recall", "mcc", "trivial_f1", "domain_recall", "q",
            "captured"]
    top = (alignment.sort_values("f1", ascending=False, kind="mergesort").groupby("feature", sort=False)
           .head(n_concepts))
    by_feat = dict(tuple(top.groupby("feature", sort=False)))
    index_of = {n: i for i, n in enumerate(acts.feature_names)}
    for name in names:
        page = feature_page(str(name), catalog.loc[name], examples.get(index_of.get(name, -1), []),
                            by_feat.get(name, pd.DataFrame(columns=show))[show].drop(columns="feature"),
                            logo_png=(logos or {}).get(name))
        with atomic_path(out_dir / f"feature_{name}.html") as tmp:
            tmp.write_text(page, encoding="utf-8")
    cols = [c for c in ["label", "frequency", "max_activation", "best_concept", "f1", "mcc", "trivial_f1", "q",
                        "captured", "motif_label", "motif_label_source", "best_motif", "motif_q", "replicates"]
            if c in catalog.columns]
    table = catalog[cols].reset_index().rename(columns={"index": "feature"})
    doc = (f"<!doctype html><html><head><meta charset='utf-8'><title>genosae features</title>"
           f"<style>{_CSS}</style></head><body><h1>Feature catalogue</h1>"
           f"<p class='muted'>{len(catalog)} features, {int(catalog['captured'].sum())} capture a concept. "
           f"Click a column header to sort.</p>{_table(table, link='feature')}{_SORT_JS}</body></html>")
    index = out_dir / "index.html"
    with atomic_path(index) as tmp:
        tmp.write_text(doc, encoding="utf-8")
    return index
