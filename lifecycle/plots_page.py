"""The HTML template `dvc plots show` and `dvc plots diff` fill: a page that renders offline.

DVC's own page loads Vega, Vega-Lite and vega-embed from a CDN, so without internet it is
blank. This template carries the three libraries inline instead, as the bundle that the
pinned PyPI package `vl-convert-python` ships (`vl_convert.javascript_bundle`). It keeps
DVC's `{plot_divs}` and `{refresh_tag}` placeholders and leaves out `{scripts}`, where DVC
would put its CDN `<script>` tags.

    python -m lifecycle.plots_page     # `make install` runs it; writes PLOTS_TEMPLATE

`.dvc/config` names the file (`plots.html_template`), so the plain commands use it. It is
generated, not committed: about 0.9 MB of minified JavaScript, derived from a pinned package.
It is built once at install, not by the evaluate stage: the bundle takes seconds and some
150 MB to build, which every evaluate run (each retrain of the loop) would pay again.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable
from pathlib import Path

from core.io import write_text
from core.paths import PLOTS_TEMPLATE
from pipelines.edges.runtime import configure_logging

logger = logging.getLogger(__name__)

# DVC replaces these, by plain text substitution (dvc_render.html.HTML.embed).
PLOT_DIVS = "{plot_divs}"
REFRESH_TAG = "{refresh_tag}"
SCRIPTS = "{scripts}"
_SCHEMA_MAJOR = re.compile(r"/vega-lite/v(\d+)(?:\.\d+)*\.json$")

PAGE = """<!DOCTYPE html>
<html>
<head>
    <meta charset="utf-8">
    {refresh_tag}
    <title>DVC Plot</title>
    <!-- Vega {vega}, Vega-Lite {vega_lite}, vega-embed {vega_embed}: inlined from
         vl-convert-python {vl_convert}, so this page needs no network -->
    <script type="text/javascript">
(function () {
"use strict";
@BUNDLE@
})();
    </script>
    <style>
        table {
            border-spacing: 15px;
        }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


class PlotsPageError(RuntimeError):
    """The offline plots template cannot be built; the message says why and what to do."""


def vega_lite_major(schemas: Iterable[str]) -> int:
    """The one Vega-Lite major version that DVC's plot templates declare in `$schema`."""
    majors = set()
    for schema in schemas:
        match = _SCHEMA_MAJOR.search(schema)
        if match is None:
            raise PlotsPageError(f"DVC plot template $schema {schema!r} is not a Vega-Lite schema")
        majors.add(int(match.group(1)))
    if len(majors) != 1:
        raise PlotsPageError(
            f"DVC's plot templates declare Vega-Lite majors {sorted(majors)}; expected one"
        )
    return majors.pop()


def choose_vega_lite(major: int, available: Iterable[str]) -> str:
    """The newest Vega-Lite version (e.g. '5.21') of `major` among those `available`."""
    same = [v for v in available if v.split(".")[0] == str(major)]
    if not same:
        raise PlotsPageError(
            f"vl-convert-python bundles Vega-Lite {', '.join(available)}, none of them "
            f"v{major} as DVC's plot templates need; pin a vl-convert-python that has it"
        )
    return max(same, key=lambda v: tuple(int(part) for part in v.split(".")))


def plots_template(bundle: str, versions: dict[str, str]) -> str:
    """The page template around `bundle`, the JavaScript that defines `window.vegaEmbed`.

    The bundle runs inside a function, so none of its top-level names can clash with the
    `var spec` of DVC's plot scripts; it must not close the inline `<script>` itself.
    """
    if re.search(r"</script", bundle, re.IGNORECASE):
        raise PlotsPageError("the JavaScript bundle contains '</script': it cannot be inlined")
    if "window.vegaEmbed" not in bundle:
        raise PlotsPageError("the JavaScript bundle does not define window.vegaEmbed")
    for placeholder in (PLOT_DIVS, REFRESH_TAG, SCRIPTS):
        if placeholder in bundle:
            raise PlotsPageError(f"the JavaScript bundle contains DVC's placeholder {placeholder}")
    page = PAGE
    for name in ("vega", "vega_lite", "vega_embed", "vl_convert"):
        page = page.replace(f"{{{name}}}", versions[name])
    return page.replace("@BUNDLE@", bundle)


def build_plots_template() -> str:
    """The template, with the libraries from the installed vl-convert-python."""
    try:
        import vl_convert
    except ImportError:
        raise PlotsPageError(
            "vl-convert-python is not installed (it is pinned in requirements.lock): "
            "run `make install`"
        ) from None
    from dvc_render.vega_templates import TEMPLATES

    major = vega_lite_major(t.DEFAULT_CONTENT["$schema"] for t in TEMPLATES)
    vega_lite = choose_vega_lite(major, vl_convert.get_vegalite_versions())
    bundle = vl_convert.javascript_bundle(vl_version=vega_lite)
    versions = {
        "vega": vl_convert.get_vega_version(),
        "vega_lite": vega_lite,
        "vega_embed": vl_convert.get_vega_embed_version(),
        "vl_convert": vl_convert.__version__,
    }
    return plots_template(bundle, versions)


def write_plots_template(path: Path = PLOTS_TEMPLATE) -> Path:
    """Write the template to `path` (in a DVC project's `.dvc/` folder by default)."""
    if not path.parent.is_dir():
        raise PlotsPageError(f"{path.parent}/: no such folder (run this in the project root)")
    write_text(build_plots_template(), path)
    return path


def main() -> None:
    configure_logging()
    try:
        path = write_plots_template()
    except PlotsPageError as exc:
        logger.error("%s", exc)
        sys.exit(1)
    size = path.stat().st_size // 1000
    logger.info("offline template for `dvc plots show`: %s (%d kB)", path, size)


if __name__ == "__main__":
    main()
