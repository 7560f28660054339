"""The biomarker report and the feature dashboards, rendered by headless Chromium.

Each page is loaded from ``file://`` by a real browser (scripts run, layout happens) and the DOM it
ends with is checked: every image is an embedded PNG or a file that exists (and Chromium decoded it),
every link is an in-page anchor that exists or a relative file that exists, no table is empty and
nothing refers to the network. Without Chromium the tests skip (they fail when
``GENOSAE_REQUIRE_BROWSER=1``).
"""

from __future__ import annotations

import base64
import binascii
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest

TESTS = Path(__file__).resolve().parents[1]
APT = "apt-get install -y chromium"
TIMEOUT_S = 60
#: Added to a copy of the page: after load, each <img> records whether Chromium decoded it.
_PROBE = ("<script>window.addEventListener('load',function(){var a=document.images;"
          "for(var i=0;i<a.length;i++){a[i].setAttribute('data-probe-width',"
          "a[i].complete?String(a[i].naturalWidth):'pending');}"
          "document.documentElement.setAttribute('data-probe-loaded','1');});</script>")
_PROBE_ATTRS = ("data-probe-width", "data-probe-loaded")
_URL_ATTRS = {"src", "href", "srcset", "action", "formaction", "poster", "data", "background",
              "xlink:href", "cite", "longdesc", "manifest", "ping"}
_EXTERNAL = re.compile(r"(?i)\b(?:https?|ftp|wss?):|(?:^|[\s\"'(=])//[a-z0-9]")


# ---------------------------------------------------------------- the checker


class _Dom(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.imgs: list[dict[str, str | None]] = []
        self.links: list[str | None] = []
        self.ids: set[str] = set()
        self.url_attrs: list[tuple[str, str, str]] = []
        self.css: list[str] = []
        self.tables: list[int] = []  # <td> count of each finished table
        self._open: list[int] = []  # <td> counts of the tables being read (nested tables)
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("id", "name") if tag == "a" else ("id",):
            if a.get(key):
                self.ids.add(a[key])
        for k, v in attrs:
            if v and (k in _URL_ATTRS or k == "style"):
                self.url_attrs.append((tag, k, v))
        if tag == "img":
            self.imgs.append(a)
        elif tag == "a" and "href" in a:
            self.links.append(a["href"])
        elif tag == "table":
            self._open.append(0)
        elif tag == "td" and self._open:
            self._open[-1] += 1
        elif tag == "style":
            self._in_style = True

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag):
        if tag == "table" and self._open:
            self.tables.append(self._open.pop())
        elif tag == "style":
            self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.css.append(data)

    def close(self):
        super().close()
        self.tables.extend(self._open)  # a table never closed still counts
        self._open = []


def _local_file(ref: str, page_dir: Path) -> Path | None:
    """The file a relative URL points at, or None when it is not a plain relative path."""
    parts = urlsplit(ref)
    if parts.scheme or parts.netloc or not parts.path or parts.path.startswith("/"):
        return None
    return page_dir / unquote(parts.path)


def check_page(dom: str, page_dir: str | os.PathLike[str]) -> list[str]:
    """Problems of a (browser-dumped) page: images, links, tables, network references; [] when none."""
    page_dir = Path(page_dir)
    p = _Dom()
    p.feed(dom)
    p.close()
    problems: list[str] = []
    for i, img in enumerate(p.imgs):
        src = (img.get("src") or "").strip()
        if not src:
            problems.append(f"image {i}: no src")
            continue
        if src.startswith("data:"):
            head, _, payload = src.partition(",")
            if not head.endswith(";base64"):
                problems.append(f"image {i}: data URI is not base64 ({head[:40]})")
                continue
            try:
                raw = base64.b64decode(payload, validate=True)
            except (binascii.Error, ValueError):
                problems.append(f"image {i}: data URI does not decode as base64")
                continue
            if not raw.startswith(b"\x89PNG\r\n\x1a\n"):
                problems.append(f"image {i}: data URI is not a PNG")
        else:
            f = _local_file(src, page_dir)
            if f is None:
                problems.append(f"image {i}: src is not a data URI or local file: {src[:80]}")
            elif not f.is_file():
                problems.append(f"image {i}: missing file {src}")
        width = img.get("data-probe-width")
        if width is not None and width in ("0", "pending"):
            problems.append(f"image {i}: the browser did not decode it ({src[:60]})")
    for href in p.links:
        href = (href or "").strip()
        if not href or href == "#":
            problems.append(f"empty link {href!r}")
        elif href.startswith("#"):
            if unquote(href[1:]) not in p.ids:
                problems.append(f"broken anchor {href}")
        else:
            f = _local_file(href, page_dir)
            if f is None:
                problems.append(f"external or non-file link {href[:80]}")
            elif not f.is_file():
                problems.append(f"broken link {href}")
    for tag, attr, value in p.url_attrs:
        if _EXTERNAL.search(value if attr != "src" or not value.startswith("data:") else value[:64]):
            problems.append(f"network reference <{tag} {attr}={value[:80]!r}>")
    for css in p.css:
        if re.search(r"(?i)url\(\s*['\"]?(?:https?:)?//|@import\s+['\"]?(?:https?:)?//", css):
            problems.append("network reference in <style>")
    for i, n_td in enumerate(p.tables):
        if n_td == 0:
            problems.append(f"table {i}: no <td> row")
    return problems


# ---------------------------------------------------------------- the browser


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        why = f"headless Chromium not found (install it: {APT})"
        if os.environ.get("GENOSAE_REQUIRE_BROWSER") == "1":
            pytest.fail(why + "; GENOSAE_REQUIRE_BROWSER=1")
        pytest.skip(why)
    return exe


#: (page, what, seconds) of every Chromium call, printed at the end (pytest -s / -rA).
TIMINGS: list[tuple[str, str, float]] = []


def _run_chromium(exe: str, page: Path, tmp: Path, *extra: str) -> subprocess.CompletedProcess:
    profile = tmp / f"chromium-profile-{len(TIMINGS)}"
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", "--virtual-time-budget=5000", *extra, page.resolve().as_uri()]
    t0 = time.perf_counter()
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail(f"Chromium took over {TIMEOUT_S} s on {page.name}")
    TIMINGS.append((page.name, extra[0].split("=")[0], time.perf_counter() - t0))
    shutil.rmtree(profile, ignore_errors=True)
    assert res.returncode == 0, f"Chromium failed on {page.name}:\n{res.stderr[-2000:]}"
    return res


def browser_dom(exe: str, page: Path, tmp: Path) -> str:
    """The DOM Chromium ends with after loading ``page`` (from a probed copy beside it)."""
    text = page.read_text(encoding="utf-8")
    probed = page.with_name(f".probe-{page.name}")
    i = text.lower().rfind("</body>")
    probed.write_text(text[:i] + _PROBE + text[i:] if i >= 0 else text + _PROBE, encoding="utf-8")
    try:
        dom = _run_chromium(exe, probed, tmp, "--dump-dom").stdout
    finally:
        probed.unlink()
    assert 'data-probe-loaded="1"' in dom, f"{page.name}: the page did not finish loading in the browser"
    return dom


def _pixel_std(png: Path) -> float:
    import matplotlib.image as mpimg

    img = mpimg.imread(png)[..., :3]
    return float(np.asarray(img, dtype=float).reshape(-1, 3).std(0).max())


@pytest.fixture(scope="module", autouse=True)
def _print_timings():
    yield
    for page, what, s in TIMINGS:
        sys.stdout.write(f"\nchromium {what} {page}: {s:.2f} s")


# ---------------------------------------------------------------- the pages


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # its dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def chromium() -> str:
    return _chromium()


@pytest.fixture(scope="module")
def results(chromium, tmp_path_factory):  # needs the browser first: no build when it will skip
    """results/biomarkers/synthetic/report.html (as tests/report/test_report.py builds it) and
    results/features (as tests/features/test_pipeline.py::test_run_features_end_to_end builds it)."""
    from genosae.biomarkers import run_biomarkers, synthetic_activations
    from genosae.features.pipeline import run_features
    from genosae.genome.motifs import Motif
    from genosae.report import write_report

    root = tmp_path_factory.mktemp("results")
    c = synthetic_activations(seed=1)
    run = run_biomarkers(c.codes, c.tokens, c.windows,
                         design={"kind": "cohort", "case_label": "case", "control_label": "control"},
                         params={"permutations": 20, "cv_folds": 3, "kmer_k": 2, "covariates": []},
                         feature_names=c.feature_names)
    report = write_report(root / "biomarkers" / "synthetic", biomarkers=run.biomarkers, loci=run.loci,
                          locus_table=run.locus_table, adata=run.adata, catalog=None,
                          baselines=run.baselines, calibration=run.permutation.summary(),
                          sae_metrics={"l0": 32.0}, config={"seed": 0},
                          design_summary=run.design_summary)["report"]

    planted = _load("_browser_features_conftest", TESTS / "features" / "conftest.py").make_planted()
    pipe = _load("_browser_features_pipeline", TESTS / "features" / "test_pipeline.py")
    rng = np.random.default_rng(1)
    decoys = [Motif(f"D{i}", f"decoy{i}", rng.dirichlet(np.ones(4) * 0.4, size=8)) for i in range(25)]
    onehot = np.eye(4)[["ACGT".index(b) for b in planted.motif]] * 0.97 + 0.0075
    paths = run_features(
        pipe.PlantedStore(planted), pipe.ReluSAE(), root / "features", concepts=pipe._concepts(planted),
        motifs=[*decoys, Motif("P1", "PLANTED", onehot)],
        window_sequences=lambda w: [planted.sequences[i] for i in w.index],
        sae_replicate=pipe.ReluSAE((1, 0, 2, 3)), top_examples=15, flank=8, n_random=3, make_logos=True,
        n_null=100)
    return {"report": report, "dashboards": paths["dashboards"], "root": root}


def test_report_in_browser(chromium, results, tmp_path):
    exe = chromium
    report = results["report"]
    dom = browser_dom(exe, report, tmp_path)
    dashboards = results["dashboards"].parent
    built = {p.name for p in dashboards.glob("feature_*.html")}
    # The report links each feature to ../../features/dashboards/feature_<id>.html. Here the features
    # run is a different (planted) model, so only the ids it has resolve; every other problem counts.
    link = re.compile(r"broken link \.\./\.\./features/dashboards/(feature_[^/]+\.html)$")
    problems = check_page(dom, report.parent)
    unmatched = [m.group(1) for m in map(link.match, problems) if m]
    assert [q for q in problems if not link.match(q)] == []
    assert not set(unmatched) & built
    resolved = {h for h in re.findall(r'href="\.\./\.\./features/dashboards/(feature_[^"/]+\.html)"', dom)}
    assert resolved & built, "no dashboard link of the report resolves against a features run beside it"
    assert dom.count("<img") >= 4 and dom.count('data-probe-width="0"') == 0

    shot = tmp_path / "report.png"
    _run_chromium(exe, report, tmp_path, f"--screenshot={shot}", "--window-size=1280,2000",
                  "--hide-scrollbars")
    assert shot.is_file() and shot.stat().st_size > 1000
    assert _pixel_std(shot) > 0.02, "the screenshot of the report is blank"


def test_dashboards_in_browser(chromium, results, tmp_path):
    exe = chromium
    index = results["dashboards"]
    dom = browser_dom(exe, index, tmp_path)
    assert check_page(dom, index.parent) == []
    pages = set(re.findall(r'href="(feature_[^"]+\.html)"', dom))
    assert pages == {p.name for p in index.parent.glob("feature_*.html")} and "feature_f0.html" in pages
    page = index.parent / "feature_f0.html"
    dom = browser_dom(exe, page, tmp_path)
    assert check_page(dom, page.parent) == []
    assert "data-probe-width" in dom and 'href="index.html"' in dom


BAD_PAGE = """<!DOCTYPE html><html><head><style>body{background:url(https://cdn.example/x.png)}</style>
<link rel="stylesheet" href="https://cdn.example/s.css"></head><body>
<h2 id="top">t</h2>
<img src="missing.png"><img src="data:image/png;base64,R0lGODlhAQABAAAAACw="><img src="data:image/png;base64,@@">
<img src="http://example.org/a.png"><img>
<a href="#top">ok</a><a href="#nowhere">anchor</a><a href="https://example.org">out</a>
<a href="missing.html">gone</a><a href="mailto:x@example.org">mail</a><a href="present.html">here</a>
<table><tr><th>a</th></tr></table>
<table><tr><td>1</td></tr></table>
<script src="//cdn.example/x.js"></script></body></html>"""


def test_checker_reports_each_problem(tmp_path):
    (tmp_path / "present.html").write_text("<p>x</p>")
    problems = check_page(BAD_PAGE, tmp_path)
    text = "\n".join(problems)
    for want in ("image 0: missing file missing.png", "image 1: data URI is not a PNG",
                 "image 2: data URI does not decode", "image 3: src is not a data URI or local file",
                 "image 4: no src", "broken anchor #nowhere", "external or non-file link https://example.org",
                 "broken link missing.html", "external or non-file link mailto:",
                 "network reference <img src='http://example.org/a.png'>",
                 "network reference <a href='https://example.org'>",
                 "network reference <link href='https://cdn.example/s.css'>",
                 "network reference <script src='//cdn.example/x.js'>", "network reference in <style>",
                 "table 0: no <td> row"):
        assert want in text, f"{want!r} not reported:\n{text}"
    assert "#top" not in text and "present.html" not in text and "table 1" not in text
    assert len(problems) == 15  # the two external URLs also count as network references
    assert check_page('<h1 id="a"></h1><a href="#a">a</a><table><tr><td>1</td></tr></table>', tmp_path) == []


def test_checker_catches_an_image_the_browser_cannot_decode(chromium, tmp_path):
    """A data URI that claims PNG but is truncated: the signature passes, Chromium does not decode it."""
    exe = chromium
    real = base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")
    page = tmp_path / "page.html"
    page.write_text("<html><body><img src='data:image/png;base64,"
                    f"{base64.b64encode(real).decode()}'><img src='data:image/png;base64,"
                    f"{base64.b64encode(real[:20]).decode()}'></body></html>")
    problems = check_page(browser_dom(exe, page, tmp_path), tmp_path)
    assert len(problems) == 1 and problems[0].startswith("image 1: the browser did not decode it")
