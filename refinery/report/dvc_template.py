"""The page template `dvc plots show` renders into, with Vega, Vega-Lite and vega-embed inlined.

DVC's own page loads those three libraries from a CDN, so offline (or behind a firewall) it is a
blank page. This template carries them inside the page, so the HTML that `dvc plots show`
writes draws its plots anywhere, with no network. The libraries come from the
`vl-convert-python` package (its `javascript_bundle`), installed by `make setup`, which also
writes the template:

    .venv/bin/python -m refinery.report.dvc_template          # writes .dvc/plots-offline.html

`.dvc/config` names it (`plots.html_template`), so a bare `dvc plots show` uses it. The
template has DVC's `{plot_divs}` placeholder and no `{scripts}` one: DVC puts its CDN <script>
tags only where `{scripts}` stands, so they never reach the page.
"""
from __future__ import annotations

import sys
from pathlib import Path

# Relative to the project root; .dvc/config names it relative to .dvc/ (plots-offline.html).
TEMPLATE = Path(".dvc") / "plots-offline.html"
# Placeholders DVC fills by plain text replacement: the bundle must contain none of them.
PLACEHOLDERS = ("{plot_divs}", "{scripts}", "{refresh_tag}")
# DVC's plot templates declare Vega-Lite v5 specs, so the bundle compiles them with Vega-Lite 5.
VEGA_LITE_MAJOR = "5"

PAGE = """<!DOCTYPE html>
<html>
<head>
    <meta charset="utf-8">
    {refresh_tag}
    <title>DVC Plot</title>
    <!-- Vega {vega}, Vega-Lite {vega_lite} and vega-embed {vega_embed}, inlined from vl-convert-python
         {vl_convert}, so this page needs no network. -->
    <script>
{bundle}
    </script>
    <style>
        table {{ border-spacing: 15px; }}
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def vega_lite_version(available: list[str]) -> str:
    """The newest Vega-Lite 5.x that the bundler offers (DVC's specs are v5)."""
    fives = [v for v in available if v.split(".")[0] == VEGA_LITE_MAJOR]
    if not fives:
        raise RuntimeError(f"vl-convert offers no Vega-Lite {VEGA_LITE_MAJOR}.x (it has {', '.join(available)})")
    return max(fives, key=lambda v: tuple(int(p) for p in v.split(".")))


def render_template() -> str:
    """The template text: DVC's page layout with the three libraries in one inline <script>."""
    import vl_convert

    vl = vega_lite_version(list(vl_convert.get_vegalite_versions()))
    # The bundle is a plain script; the snippet exposes vegaEmbed as the global DVC's plot divs call.
    bundle = vl_convert.javascript_bundle("window.vegaEmbed = vegaEmbed;", vl_version=vl)
    bundle = bundle.replace("</script", "<\\/script")  # cannot close the <script> element early
    found = [p for p in PLACEHOLDERS if p in bundle]
    if found:
        raise RuntimeError(f"the Vega bundle contains DVC's placeholder(s) {', '.join(found)}")
    page = PAGE.replace("{{", "{").replace("}}", "}")
    versions = {"vega": vl_convert.get_vega_version(), "vega_lite": vl,
                "vega_embed": vl_convert.get_vega_embed_version(), "vl_convert": vl_convert.__version__}
    for key, value in versions.items():
        page = page.replace("{" + key + "}", str(value))
    return page.replace("{bundle}", bundle)


def write_template(dest: Path | str) -> Path:
    """Write the template to `dest` (atomically) and return its path."""
    from ..store import write_text

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    write_text(dest, render_template())
    return dest


def main(argv: list[str]) -> int:
    dest = write_template(argv[0] if argv else TEMPLATE)
    print(f"{dest}: dvc plots show template with Vega inlined ({dest.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
