"""The book's MathJax (book/_ext/local_mathjax.py): used when present, else fetched, else a clear error."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from sphinx.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "book" / "_ext"))
import local_mathjax  # noqa: E402


def _app_config(tmp_path: Path) -> tuple[SimpleNamespace, SimpleNamespace]:
    app = SimpleNamespace(confdir=str(tmp_path))
    config = SimpleNamespace(mathjax_path="mathjax/tex-chtml.js", html_static_path=["book/_static"])
    return app, config


def test_a_present_copy_is_used_without_fetching(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = tmp_path / "book" / "_static" / "mathjax" / "tex-chtml.js"
    script.parent.mkdir(parents=True)
    script.write_text("// MathJax")
    monkeypatch.setattr(local_mathjax, "fetch_mathjax", lambda *a: pytest.fail("fetched although present"))
    local_mathjax._ensure_mathjax(*_app_config(tmp_path))


def test_without_npm_the_build_stops_and_says_how_to_fetch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_mathjax.shutil, "which", lambda name: None)
    with pytest.raises(ConfigError) as error:
        local_mathjax._ensure_mathjax(*_app_config(tmp_path))
    message = str(error.value)
    assert "npm is not installed" in message and "make html" in message
    assert f"npm pack mathjax@{local_mathjax.MATHJAX_VERSION}" in message
    assert str(tmp_path / "book" / "_static" / "mathjax") in message


def test_the_book_config_points_at_the_local_copy() -> None:
    import yaml

    config = yaml.safe_load((ROOT / "_config.yml").read_text())["sphinx"]
    assert config["local_extensions"]["local_mathjax"] == "book/_ext"
    assert config["config"]["mathjax_path"] == "mathjax/tex-chtml.js"
