"""The rendered book, looked at in a real browser: headless Chromium driven by Playwright.

:func:`check_book` serves the built HTML on 127.0.0.1 and opens every page, as a reader would, and
reports for each page what a reader would notice: a missing title, an image that does not load,
mathematics left as raw TeX (or never typeset by MathJax), errors in the browser console, and
internal links to pages or anchors that do not exist. ``make test`` runs it on the fresh build
(``tests/browser``), which also keeps screenshots of the summary page and one chapter.

Chromium is Debian's ``chromium`` package (``make browser`` installs it where it can); Playwright,
a Python dependency of the ``dev`` extra, drives it through :data:`CHROMIUM` rather than downloading
a browser of its own, so the check works offline.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import re
import shutil
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urldefrag, urljoin, urlparse

__all__ = [
    "CHROMIUM",
    "PageReport",
    "chromium_path",
    "serve",
    "check_book",
    "html_pages",
    "source_tables",
    "raw_tables",
]


# Where Debian's package puts the browser; TNT_REST_CHROMIUM overrides it.
CHROMIUM = "/usr/bin/chromium"

# Run in the page: everything the checks need, in one round trip.
_PAGE_STATE = """() => {
  const visible = (root) => {
    // the text a reader sees, without code listings (where a literal \\( or $$ is legitimate)
    const clone = root.cloneNode(true);
    clone.querySelectorAll('pre, code, script, style, mjx-container, .MathJax').forEach(e => e.remove());
    return clone.innerText;
  };
  const main = document.querySelector('main') || document.body;
  return {
    title: document.title,
    heading: (document.querySelector('main h1, article h1, h1') || {innerText: ''}).innerText.trim(),
    images: [...document.images].map(img => ({src: img.currentSrc || img.src, complete: img.complete,
                                               width: img.naturalWidth})),
    text: visible(main),
    mathSources: document.querySelectorAll('.math, span.math, div.math').length,
    mathTypeset: document.querySelectorAll('mjx-container').length,
    links: [...document.querySelectorAll('a[href]')].map(a => a.href),
    ids: [...document.querySelectorAll('[id]')].map(e => e.id),
    tables: main.querySelectorAll('table').length,
  };
}"""


@dataclass
class PageReport:
    """What a reader would notice on one page; ``problems`` is empty when the page is fine."""

    path: str
    title: str = ""
    images: int = 0
    math_typeset: int = 0
    tables: int = 0
    links_checked: int = 0
    problems: list[str] = field(default_factory=list)


def chromium_path() -> str:
    """The Chromium executable, or a clear error saying how to install it."""
    path = os.environ.get("TNT_REST_CHROMIUM") or shutil.which("chromium") or CHROMIUM
    if not Path(path).is_file():
        raise RuntimeError(
            f"Chromium not found (looked for $TNT_REST_CHROMIUM, `chromium` on PATH and {CHROMIUM}). "
            "Install Debian's package with `make browser` (runs `apt-get install -y chromium`, needs root), "
            "or set TNT_REST_CHROMIUM to a Chromium/Chrome executable."
        )
    return path


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base class's name)
        pass


@contextlib.contextmanager
def serve(folder: Path) -> Iterator[str]:
    """Serve ``folder`` over HTTP on 127.0.0.1 (a free port) for the duration; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def html_pages(folder: Path) -> list[str]:
    """The book's pages (relative paths), without Sphinx's own search and index pages."""
    skip = {"search.html", "genindex.html", "py-modindex.html"}
    return sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*.html")
        if p.name not in skip and not p.relative_to(folder).parts[0].startswith("_")
    )


def _raw_math(text: str) -> list[str]:
    """Raw TeX delimiters left in a page's visible text (MathJax replaces them when it runs)."""
    found = []
    for delimiter in ("\\(", "\\[", "$$"):
        index = text.find(delimiter)
        if index >= 0:
            found.append(text[max(0, index - 30) : index + 40].replace("\n", " "))
    return found


# A pipe table's delimiter row left as text: `| --- | :---: |`, or `| — | — |` once Sphinx's smartquotes
# turned the dashes into em/en dashes.
_RAW_TABLE = re.compile(r"\|\s*:?(?:-{3,}|[—–]+)\s*:?\s*\|")


def source_tables(source: Path) -> int:
    """Tables a reader should see on the page built from ``source`` (a ``.md`` page or an ``.ipynb`` notebook).

    Markdown text (a page, a notebook's markdown cells and the ``text/markdown`` outputs its cells stored) is
    parsed with markdown-it, MyST's parser, with pipe tables on; a stored ``text/html`` output, which the
    book shows in preference to its markdown, counts its ``<table>`` tags.
    """
    from markdown_it import MarkdownIt

    parser = MarkdownIt("commonmark").enable("table")

    def count(markdown: str) -> int:
        return sum(token.type == "table_open" for token in parser.parse(markdown))

    source = Path(source)
    if source.suffix != ".ipynb":
        return count(source.read_text())
    import json

    total = 0
    for cell in json.loads(source.read_text())["cells"]:
        if cell["cell_type"] == "markdown":
            total += count("".join(cell["source"]))
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if "text/html" in data:
                total += "".join(data["text/html"]).count("<table")
            elif "text/markdown" in data:
                total += count("".join(data["text/markdown"]))
    return total


def raw_tables(text: str) -> list[str]:
    """Lines of a page's visible text that are a pipe table's delimiter row: a table left unrendered."""
    return [line.strip()[:80] for line in text.splitlines() if _RAW_TABLE.search(line)]


def _page_source(root: Path, page: str) -> Path | None:
    """The source file (``.ipynb`` or ``.md``) a page was built from, under the book's root; None if none."""
    stem = Path(page).with_suffix("")
    for suffix in (".ipynb", ".md"):
        if (root / stem.with_suffix(suffix)).is_file():
            return root / stem.with_suffix(suffix)
    return None


def _collect_errors(page: Any) -> list[str]:
    """Listen to ``page``'s console errors, page errors, failed requests and HTTP errors; the list they fill."""
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("requestfailed", lambda req: errors.append(f"request failed: {req.url}"))
    page.on("response", lambda res: errors.append(f"HTTP {res.status}: {res.url}") if res.status >= 400 else None)
    return errors


def _page_state(page: Any, url: str, errors: list[str], timeout_ms: int) -> dict:
    """Load ``url`` (clearing ``errors`` first), wait for MathJax where there is math; the page's state."""
    errors.clear()
    page.goto(url, wait_until="load", timeout=timeout_ms)
    # MathJax typesets after load; wait for it where the page has math (bounded by the timeout)
    with contextlib.suppress(Exception):
        page.wait_for_function(
            "() => !document.querySelector('.math') || document.querySelector('mjx-container')",
            timeout=10_000,
        )
    return page.evaluate(_PAGE_STATE)


def _content_problems(s: dict, path: str, source_root: Path | None) -> list[str]:
    """What is wrong with a loaded page's content: title, images, raw TeX or tables, table count, MathJax."""
    problems: list[str] = []
    if not s["title"].strip() or not s["heading"]:
        problems.append(f"no title or heading (title {s['title']!r})")
    for img in s["images"]:
        if not img["complete"] or img["width"] == 0:
            problems.append(f"image did not load: {img['src']}")
    for raw in _raw_math(s["text"]):
        problems.append(f"raw TeX in the text: …{raw}…")
    for raw in raw_tables(s["text"]):
        problems.append(f"raw table text: {raw}")
    source = _page_source(Path(source_root), path) if source_root is not None else None
    if source is not None and (expected := source_tables(source)) != s["tables"]:
        problems.append(f"{s['tables']} tables shown, {expected} in {source.name}")
    if s["mathSources"] and not s["mathTypeset"]:
        problems.append(f"{s['mathSources']} math elements, none typeset by MathJax")
    return problems


@dataclass
class _Visit:
    """What checking one page needs: the build, the server's base URL, the browser page and its error log."""

    folder: Path
    base: str
    page: Any
    errors: list[str]
    timeout_ms: int
    source_root: Path | None
    screenshots: dict[str, Path] | None
    ids_cache: dict[str, set[str]] = field(default_factory=dict)


def _check_page(visit: _Visit, path: str) -> PageReport:
    """One page's report: a redirect's target checked, or the page loaded, its content, errors and links checked."""
    folder, base = visit.folder, visit.base
    redirect = _meta_refresh(folder / path)
    if redirect is not None:
        # a redirect page (Jupyter Book's index.html) has no content of its own: its target must exist
        target = urljoin(urljoin(base, path), redirect)
        report = PageReport(path, title=f"redirect to {redirect}")
        report.links_checked, report.problems = _check_links(folder, base, path, [target], visit.ids_cache)
        return report
    s = _page_state(visit.page, urljoin(base, path), visit.errors, visit.timeout_ms)
    report = PageReport(
        path, title=s["title"], images=len(s["images"]), math_typeset=s["mathTypeset"], tables=s["tables"]
    )
    report.problems += _content_problems(s, path, visit.source_root)
    report.problems += [f"console: {e}" for e in visit.errors]
    if visit.screenshots and path in visit.screenshots:
        visit.screenshots[path].parent.mkdir(parents=True, exist_ok=True)
        visit.page.screenshot(path=str(visit.screenshots[path]), full_page=True)
    report.links_checked, broken = _check_links(folder, base, path, s["links"], visit.ids_cache)
    report.problems += broken
    return report


def check_book(
    folder: Path,
    pages: Sequence[str] | None = None,
    screenshots: dict[str, Path] | None = None,
    timeout_ms: int = 30_000,
    source_root: Path | None = None,
) -> list[PageReport]:
    """Open every page of the built book ``folder`` in headless Chromium; one report per page.

    Args:
        folder: the HTML build (``_build/html``).
        pages: relative paths to check (default: :func:`html_pages`). Links are checked on these pages,
            to any page of the build.
        screenshots: ``{page: png path}`` of full-page screenshots to save.
        source_root: the book's sources (the repository root). When given, each page must show as many
            ``<table>`` elements as its source holds tables (:func:`source_tables`), so a table printed by a
            cell and stored in its outputs cannot reach the reader as raw text.
    """
    from playwright.sync_api import sync_playwright

    folder = Path(folder)
    if not (folder / "index.html").is_file():
        raise FileNotFoundError(f"No built book at {folder} (index.html missing): run `make html` first")
    pages = list(pages) if pages is not None else html_pages(folder)
    with serve(folder) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            page = context.new_page()
            visit = _Visit(folder, base, page, _collect_errors(page), timeout_ms, source_root, screenshots)
            return [_check_page(visit, path) for path in pages]
        finally:
            browser.close()


def _meta_refresh(file: Path) -> str | None:
    """The target of an HTML redirect page (``<meta http-equiv="refresh" content="0; url=...">``), else None."""
    match = re.search(
        r'<meta[^>]+http-equiv="refresh"[^>]+content="\d+;\s*url=([^"]+)"', file.read_text(errors="replace"), re.I
    )
    return match.group(1) if match else None


def _check_links(
    folder: Path, base: str, path: str, links: list[str], ids_cache: dict[str, set[str]]
) -> tuple[int, list[str]]:
    """Internal links of one page: the target file exists and, for ``#anchor``, the anchor does too."""
    problems, checked = [], 0
    host = urlparse(base).netloc
    for link in links:
        url, anchor = urldefrag(link)
        parsed = urlparse(url)
        if parsed.netloc != host or parsed.scheme not in ("http", "https"):
            continue  # external (GitHub, Colab) or mailto: not ours to check offline
        checked += 1
        target = unquote(parsed.path.lstrip("/")) or "index.html"
        if target.endswith("/"):
            target += "index.html"
        file = folder / target
        if not file.is_file():
            problems.append(f"broken link to {target}")
            continue
        if anchor and file.suffix == ".html":
            if target not in ids_cache:
                ids_cache[target] = set(re.findall(r'\bid="([^"]+)"', file.read_text(errors="replace")))
            if unquote(anchor) not in ids_cache[target]:
                problems.append(f"broken anchor {target}#{anchor}")
    return checked, problems
