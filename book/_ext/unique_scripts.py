"""Sphinx extension: each script tag once per page.

sphinx-thebe registers its inline configuration (``const THEBE_JS_URL = ...``) on every
``env-before-read-docs`` event, which Jupyter Book's build fires twice, so every page declared the
constant twice and the browser logged "Identifier 'THEBE_JS_URL' has already been declared" (the
browser test in ``make test`` fails on console errors). This drops exact repeats before a page is
written.
"""

from __future__ import annotations

from typing import Any


def _unique_scripts(app: Any, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for script in scripts:
        # an inline script is registered once with filename None and once with "": the same script
        key = (getattr(script, "filename", None) or "", repr(sorted(getattr(script, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    scripts[:] = unique


def setup(app: Any) -> dict[str, Any]:
    app.connect("html-page-context", _unique_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
