"""report.html is self-contained (no network, no external files) and every image really loads.

The browser test renders the page in Debian's headless Chromium, with the network off. Where
/usr/bin/chromium is absent it skips on a developer's machine and fails on CI (see browser.py).
"""
from __future__ import annotations

import base64
import json
import re
from pathlib import Path

from refinery.report import build_report, render_html

from .browser import chromium

# Written into the DOM on `load`, when every <img> has either decoded or failed.
PROBE = ('<script>window.addEventListener("load", function () {'
         'var out = document.createElement("pre"); out.id = "img-check";'
         'out.textContent = JSON.stringify(Array.from(document.images).map(function (i) {'
         'return {complete: i.complete, width: i.naturalWidth, height: i.naturalHeight}; }));'
         'document.body.appendChild(out); });</script>')
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_html_has_no_external_references(rendered):
    _, page = rendered
    refs = re.findall(r'\b(?:src|href)\s*=\s*["\']([^"\']*)["\']', page, flags=re.I)
    assert refs, "expected embedded images"
    assert all(ref.startswith("data:image/png;base64,") for ref in refs)
    assert not re.search(r'(?:src|href)\s*=\s*["\']?\s*(?:https?:)?//', page, flags=re.I)
    assert "<script" not in page and "<link" not in page and "@import" not in page


def test_every_figure_is_an_embedded_png(rendered):
    _, page = rendered
    images = re.findall(r'<img [^>]*src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 5  # training, experts, reliability, unlearning, frontier
    assert all(base64.b64decode(data).startswith(PNG_SIGNATURE) for data in images)


def test_html_sections_match_markdown(rendered):
    markdown, page = rendered
    for title in re.findall(r"^## (.+)$", markdown, flags=re.M):
        assert f"<h2>{title}</h2>" in page
    assert "<code>abc1234</code>" in page


def test_missing_figure_becomes_a_note_not_a_broken_image(inputs):
    page = render_html(build_report(inputs), figures={})
    assert "<img" not in page and "not available" in page


def test_text_is_escaped(inputs):
    inputs.provenance["data"] = "<script>alert(1)</script>"
    page = render_html(build_report(inputs), figures={})
    assert "<script>" not in page and "&lt;script&gt;" in page


def image_results(page: str, tmp_path: Path) -> list[dict]:
    """Load `page` in headless Chromium and return each image's load state."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", PROBE + "</body>"))
    proc = chromium(tmp_path / "profile", "--virtual-time-budget=10000", "--dump-dom", probe.as_uri())
    found = re.search(r'<pre id="img-check">(.*?)</pre>', proc.stdout, flags=re.S)
    assert found, f"chromium printed no probe result (rc {proc.returncode}): {proc.stderr[-2000:]}"
    return json.loads(found.group(1).replace("&quot;", '"'))


def test_every_image_loads_in_headless_chromium(rendered, tmp_path):
    _, page = rendered
    results = image_results(page, tmp_path)
    assert len(results) == 5
    assert all(r["complete"] and r["width"] > 0 and r["height"] > 0 for r in results), results
    # The probe itself must be able to see a failure: a corrupt PNG reports naturalWidth 0.
    broken = page.replace("data:image/png;base64,", "data:image/png;base64,AAAA", 1)
    assert min(r["width"] for r in image_results(broken, tmp_path / "broken")) == 0
