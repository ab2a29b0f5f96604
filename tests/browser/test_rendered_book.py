"""The built book in headless Chromium, as a reader sees it (``make test`` runs this after ``make html``).

Every page: the title renders, every image loads, every table its source holds (a stored cell output
included) is an HTML table, the mathematics is typeset by the MathJax the book ships, the console has no
errors and every internal link (and anchor) resolves. The other tests break a copy of the build in the
ways a reader would notice, or build a page with the old markdown setting, and check that each is reported.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tnt_rest_lite.book.browser import check_book, html_pages, source_tables

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "_build" / "html"
SCREENSHOTS = ROOT / "_build" / "screenshots"
CHAPTER = "notebooks/02_rest.html"  # images, many equations and links


@pytest.fixture(scope="module")
def build() -> Path:
    if not (BUILD / "index.html").is_file():
        pytest.fail(f"no built book at {BUILD}: `make html` comes before the browser test")
    return BUILD


@pytest.fixture
def broken_copy(build: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "html"
    shutil.copytree(build, copy)
    return copy


def test_every_page_renders_for_a_reader(build: Path) -> None:
    shots = {"book/summary.html": SCREENSHOTS / "summary.png", CHAPTER: SCREENSHOTS / "02_rest.png"}
    reports = check_book(build, screenshots=shots, source_root=ROOT)
    assert {r.path for r in reports} == set(html_pages(build))
    assert len(reports) >= 15  # intro, how to run, 11 chapters, summary, coverage, conventions, references
    problems = {r.path: r.problems for r in reports if r.problems}
    assert not problems, problems
    by_path = {r.path: r for r in reports}
    # the checks saw what they check: pictures on the summary, typeset equations in the chapters
    assert by_path["book/summary.html"].images >= 8
    assert by_path[CHAPTER].math_typeset > 20 and by_path["notebooks/01_tnt.html"].math_typeset > 5
    assert all(r.links_checked > 0 for r in reports)
    # the regenerated tables (printed by cells, stored as markdown outputs) are HTML tables
    for chapter in ("04_tnt_table1", "05_rest_table1", "09_tnt_table2"):
        expected = source_tables(ROOT / "notebooks" / f"{chapter}.ipynb")
        assert expected >= 3 and by_path[f"notebooks/{chapter}.html"].tables == expected
    assert all(path.is_file() and path.stat().st_size > 10_000 for path in shots.values())


def test_a_missing_image_is_reported(broken_copy: Path) -> None:
    page = broken_copy / CHAPTER
    source = re.search(r'<img[^>]+src="([^"]+)"', page.read_text()).group(1)
    if not source.startswith("data:"):
        (page.parent / source).unlink()
    else:  # an embedded picture: break its data
        page.write_text(page.read_text().replace(source, "data:image/png;base64,AAAA", 1))
    (report,) = check_book(broken_copy, pages=[CHAPTER])
    assert any(p.startswith("image did not load") for p in report.problems), report.problems


def test_a_broken_link_and_anchor_are_reported(broken_copy: Path) -> None:
    page = broken_copy / CHAPTER
    html = page.read_text().replace(
        "</article>",
        '<a href="no_such_chapter.html">gone</a> <a href="01_tnt.html#no-such-section">gone</a></article>',
        1,
    )
    page.write_text(html)
    (report,) = check_book(broken_copy, pages=[CHAPTER])
    assert "broken link to notebooks/no_such_chapter.html" in report.problems
    assert "broken anchor notebooks/01_tnt.html#no-such-section" in report.problems


def test_mathematics_without_mathjax_is_reported(broken_copy: Path) -> None:
    shutil.rmtree(broken_copy / "_static" / "mathjax")
    (report,) = check_book(broken_copy, pages=[CHAPTER])
    assert any("none typeset by MathJax" in p for p in report.problems), report.problems
    assert any("tex-chtml.js" in p for p in report.problems)  # the console names the missing script


def test_launch_buttons_open_the_right_notebook_on_colab(build: Path) -> None:
    import yaml

    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    repo = config["repository"]["url"].removeprefix("https://github.com/")
    prefix = config["repository"].get("path_to_book", "")
    pages = [p for p in html_pages(build) if p.startswith("notebooks/")]
    assert len(pages) == len(list((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")))
    for page in pages:
        stem = Path(page).stem
        expected = (
            f"{config['launch_buttons']['colab_url']}/github/{repo}/blob/{config['repository']['branch']}/"
            f"{prefix}notebooks/{stem}.ipynb"
        )
        links = set(re.findall(r'href="(https://colab\.research\.google\.com/[^"]+)"', (build / page).read_text()))
        assert links == {expected}, page
        assert (ROOT / "notebooks" / f"{stem}.ipynb").is_file()


TABLE_OUTPUT = "| model | top-1 (%) |\n|---|---|\n| TNT-S (small) | 41.0 |\n| DeiT-S (small) | 42.6 |\n"


def _build_one_notebook(tmp_path: Path, markdown_format: str) -> tuple[Path, Path]:
    """A one-page book (Sphinx + myst-nb, as Jupyter Book runs them) whose notebook stored a markdown table."""
    source = tmp_path / f"src_{markdown_format}"
    source.mkdir()
    (source / "conf.py").write_text(
        "extensions = ['myst_nb']\nnb_execution_mode = 'off'\n"
        f"nb_render_markdown_format = {markdown_format!r}\nhtml_theme = 'sphinx_book_theme'\n"
    )
    notebook = {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "cells": [
            {"cell_type": "markdown", "id": "a", "metadata": {}, "source": "# A regenerated table"},
            {
                "cell_type": "code",
                "id": "b",
                "metadata": {},
                "execution_count": 1,
                "source": "display(Markdown(table))",
                "outputs": [
                    {
                        "output_type": "display_data",
                        "metadata": {},
                        "data": {"text/markdown": TABLE_OUTPUT, "text/plain": "<IPython.core.display.Markdown object>"},
                    }
                ],
            },
        ],
    }
    (source / "index.ipynb").write_text(json.dumps(notebook))
    html = tmp_path / f"html_{markdown_format}"
    subprocess.run([sys.executable, "-m", "sphinx", "-q", "-b", "html", str(source), str(html)], check=True)
    return html, source


def test_a_table_left_as_raw_text_is_reported(tmp_path: Path) -> None:
    # CommonMark, myst-nb's default for markdown outputs, has no tables: the old setting of this book
    old, source = _build_one_notebook(tmp_path, "commonmark")
    (report,) = check_book(old, pages=["index.html"], source_root=source)
    assert report.tables == 0
    assert any(p.startswith("raw table text: |") for p in report.problems), report.problems
    assert "0 tables shown, 1 in index.ipynb" in report.problems
    # the book's setting (_config.yml: nb_render_markdown_format: myst) renders it
    new, source = _build_one_notebook(tmp_path, "myst")
    (report,) = check_book(new, pages=["index.html"], source_root=source)
    assert report.tables == 1
    assert not [p for p in report.problems if "table" in p], report.problems


def test_the_book_renders_markdown_outputs_as_myst() -> None:
    import yaml

    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["sphinx"]["config"]["nb_render_markdown_format"] == "myst"
