"""Sphinx extension: the book's MathJax is a local copy, fetched from npm when missing.

``_config.yml`` points Sphinx's ``mathjax_path`` at ``mathjax/tex-chtml.js`` under ``book/_static`` so that
equations typeset offline and in the browser test, with no CDN. That copy is not committed (it is 2 MB of
vendored JavaScript). Before this extension, a plain ``jupyter-book build .`` without ``make html`` wrote
pages whose script tag pointed at a missing file: no equation rendered, and nothing said why. Now the build
uses the copy when it is there, fetches it with ``npm pack mathjax@VERSION`` when npm is available, and
otherwise stops with an error that says how to fetch it.
"""

from __future__ import annotations

import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from sphinx.errors import ConfigError

MATHJAX_VERSION = "3.2.2"


def fetch_mathjax(target: Path, version: str = MATHJAX_VERSION) -> None:
    """Unpack MathJax's ``es5`` build from the npm registry into ``target`` (the folder of tex-chtml.js)."""
    npm = shutil.which("npm")
    if npm is None:
        raise FileNotFoundError("npm is not installed")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([npm, "pack", "--silent", f"mathjax@{version}"], cwd=tmp, check=True, capture_output=True)
        with tarfile.open(Path(tmp) / f"mathjax-{version}.tgz") as archive:
            archive.extractall(tmp, filter="data")
        target.mkdir(parents=True, exist_ok=True)
        shutil.copytree(Path(tmp) / "package" / "es5", target, dirs_exist_ok=True)


def _ensure_mathjax(app: Any, config: Any) -> None:
    path = config.mathjax_path
    if not path or "://" in path or path.startswith("/"):
        return  # a CDN or absolute URL: not ours to provide
    candidates = [Path(app.confdir) / static / path for static in config.html_static_path]
    if any(c.is_file() for c in candidates):
        return
    target = candidates[0] if candidates else Path(app.confdir) / "book" / "_static" / path
    try:
        fetch_mathjax(target.parent)
    except (FileNotFoundError, subprocess.CalledProcessError, OSError) as error:
        raise ConfigError(
            f"MathJax is not at {target} and could not be fetched ({error}). The book ships its own copy so that "
            f"equations typeset offline: run `make html`, or fetch it once by hand with `npm pack mathjax@"
            f"{MATHJAX_VERSION}`, unpacking the tarball's package/es5/ into {target.parent}/."
        ) from error
    if not target.is_file():
        raise ConfigError(f"npm fetched MathJax {MATHJAX_VERSION}, but {target} is still missing")


def setup(app: Any) -> dict[str, Any]:
    app.connect("config-inited", _ensure_mathjax)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
