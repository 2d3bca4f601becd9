"""Headless Chromium for the browser tests: Debian's /usr/bin/chromium (`.ci/run` installs it).

Where it is absent a browser test skips on a developer's machine, and fails on CI (CI=true),
so CI can never pass without having run it.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# No network at all: every host name fails to resolve, and any proxied request goes to a closed port.
OFFLINE = ["--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>"]


def require_chromium() -> Path:
    """The browser, or a failure naming how to install it: the report and plot pages are checked
    in a real browser, and a check that skips proves nothing (`.ci/run` installs it)."""
    if CHROMIUM.exists() and shutil.which(str(CHROMIUM)):
        return CHROMIUM
    pytest.fail("needs Debian's chromium at /usr/bin/chromium: `apt-get install -y chromium` (.ci/run does it)")


def chromium(profile: Path, *args: str, offline: bool = True, timeout: int = 120) -> subprocess.CompletedProcess:
    """Run headless Chromium with a fresh profile (and, by default, no network)."""
    browser = require_chromium()
    return subprocess.run([str(browser), *FLAGS, *(OFFLINE if offline else []), f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=timeout)


# Written into the DOM once every plot <div> of a `dvc plots show` page shows ink, or after 10 s
# (virtual time): one row per plot: the data marks vega-embed drew as SVG paths (lines, bars,
# points; not axes or legends), or, had it drawn a canvas, how many pixels are ink (not white).
PLOT_PROBE = """<script>(function () {
  function rows() {
    return Array.from(document.querySelectorAll("body > div[id]")).map(function (div) {
      var c = div.querySelector("canvas"), ink = 0;
      if (c && c.width && c.height) {
        var d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
        for (var i = 0; i < d.length; i += 4)
          if (d[i + 3] > 0 && (d[i] < 240 || d[i + 1] < 240 || d[i + 2] < 240)) ink++;
      }
      var marks = Array.from(div.querySelectorAll("svg .role-mark path")).filter(function (p) {
        return (p.getAttribute("d") || "").length > 2; }).length;
      return {id: div.id, canvas: !!c, ink: ink, marks: marks};
    });
  }
  var tries = 0, timer = setInterval(function () {
    var now = rows();
    tries += 1;
    if (tries < 100 && !(now.length && now.every(function (r) { return r.ink > 0 || r.marks > 0; }))) return;
    clearInterval(timer);
    var out = document.createElement("pre"); out.id = "plot-check"; out.textContent = JSON.stringify(now);
    document.body.appendChild(out);
  }, 100);
})();</script>"""


def drawn_plots(page: Path, workdir: Path) -> list[dict]:
    """Open a `dvc plots show` page offline and report, per plot, what was drawn (see PLOT_PROBE)."""
    import json
    import re

    workdir.mkdir(parents=True, exist_ok=True)
    probe = workdir / "probe.html"
    head, body_end, tail = page.read_text().rpartition("</body>")  # the last one: the inlined bundle has some
    probe.write_text(head + PLOT_PROBE + body_end + tail)
    proc = chromium(workdir / "profile", "--virtual-time-budget=20000", "--dump-dom", probe.as_uri())
    found = re.search(r'<pre id="plot-check">(.*?)</pre>', proc.stdout, flags=re.S)
    assert found, f"chromium printed no probe result (rc {proc.returncode}): {proc.stderr[-2000:]}"
    return json.loads(found.group(1).replace("&quot;", '"'))


def screenshot(page: Path, png: Path, size: str = "1200,4000") -> Path:
    """A full-size screenshot of `page`, taken offline."""
    proc = chromium(png.parent / "profile-shot", f"--window-size={size}", "--virtual-time-budget=20000",
                    f"--screenshot={png}", page.as_uri())
    assert png.exists(), f"chromium took no screenshot (rc {proc.returncode}): {proc.stderr[-2000:]}"
    return png


def ink_fraction(png: Path) -> float:
    """The share of a screenshot's pixels that are not white: 0 for a blank page."""
    import numpy as np
    from PIL import Image

    with Image.open(png) as img:
        pixels = np.asarray(img.convert("RGB"))
    return float((pixels < 240).any(axis=2).mean())
