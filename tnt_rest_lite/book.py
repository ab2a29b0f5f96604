"""The book's machinery: the set-up cell every notebook starts with, and the notebook runner.

The repository URL is set here, once (:data:`REPOSITORY_URL`); ``_config.yml`` carries the same
URL for the book's launch buttons and a test checks that the two agree and that every notebook
starts with :func:`setup_cell_source`.
"""

from __future__ import annotations

import datetime as _dt
import os
import time
from pathlib import Path

__all__ = [
    "REPOSITORY_URL",
    "setup_cell_source",
    "run_report",
    "notebook_paths",
    "execute_notebook",
    "sync_setup_cells",
    "repo_root",
]

# The one thing to set when the book moves: where Colab installs the package from.
REPOSITORY_URL = "https://github.com/tnt-rest-lite/tnt_rest_lite"


def setup_cell_source() -> str:
    """Source of the first code cell of every notebook."""
    return f'''# Set-up. On Colab: install tnt_rest_lite from its repository (torch stays as installed).
# Elsewhere: nothing to install; `pip install -e .` in the repository root comes first.
import importlib.util
import subprocess
import sys

REPOSITORY_URL = "{REPOSITORY_URL}"
if importlib.util.find_spec("tnt_rest_lite") is None:
    if "google.colab" not in sys.modules:
        raise ModuleNotFoundError("tnt_rest_lite is not installed: run `pip install -e .` in the repository root")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", f"git+{{REPOSITORY_URL}}"], check=True)
    importlib.invalidate_caches()  # let this running kernel see the package pip just installed

from tnt_rest_lite.book import run_report

run_report()'''


def run_report() -> None:
    """Print the run's profile, device, versions and date (the first output of every notebook)."""
    import timm
    import torch

    from .profiles import get_profile
    from .results import device_name

    profile = get_profile()
    print(f"profile : {profile.name} ({profile.description})")
    print(f"device  : {device_name()}")
    print(f"versions: torch {torch.__version__}, timm {timm.__version__}")
    print(f"date    : {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M UTC}")


def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


def notebook_paths(root: Path | None = None) -> list[Path]:
    """The book's notebooks in reading order (their file names start with a number)."""
    return sorted((root or repo_root()).joinpath("notebooks").glob("[0-9][0-9]_*.ipynb"))


def sync_setup_cells(paths: list[Path] | None = None) -> list[Path]:
    """Make the first code cell of each notebook the standard set-up cell; return those changed."""
    import nbformat

    changed = []
    for path in paths or notebook_paths():
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        if code and code[0].source == setup_cell_source():
            continue
        cell = nbformat.v4.new_code_cell(setup_cell_source())
        if code and "REPOSITORY_URL" in code[0].source:
            code[0].source = cell.source
        else:
            first_code = nb.cells.index(code[0]) if code else len(nb.cells)
            nb.cells.insert(first_code, cell)
        nbformat.write(nb, path)
        changed.append(path)
    return changed


def execute_notebook(path: Path, *, profile: str | None = None, write_back: bool = True, timeout: int = 3600) -> float:
    """Run a notebook top to bottom in its own folder; store the outputs unless ``write_back=False``.

    Returns the wall time in seconds. A cell error raises (nbclient's ``CellExecutionError``).
    """
    import nbformat
    from nbclient import NotebookClient

    from .profiles import ENV_VAR, get_profile

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    name = get_profile(profile).name  # validates the name before a kernel starts
    old = os.environ.get(ENV_VAR)
    os.environ[ENV_VAR] = name  # the kernel inherits the environment
    start = time.perf_counter()
    try:
        NotebookClient(
            nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
        ).execute()
    finally:
        if old is None:
            os.environ.pop(ENV_VAR, None)
        else:
            os.environ[ENV_VAR] = old
    if write_back:
        nbformat.write(nb, path)
    return time.perf_counter() - start
