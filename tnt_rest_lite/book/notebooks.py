"""The book's machinery: the set-up cell every notebook starts with, and the notebook runner.

The repository URL is set here, once (:data:`REPOSITORY_URL`); ``_config.yml`` carries the same
URL for the book's launch buttons and a test checks that the two agree and that every notebook
starts with :func:`setup_cell_source`.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
from pathlib import Path
from typing import Any

from ..core.paths import repo_root
from ..core.progress import TEXT_PROGRESS_ENV_VAR
from ..core.store import device_name, git_commit, stopwatch
from ..profiles import ENV_VAR, get_profile

__all__ = [
    "REPOSITORY_URL",
    "setup_cell_source",
    "stamped_commit",
    "run_report",
    "notebook_paths",
    "execute_notebook",
    "sync_setup_cells",
    "SETUP_CELL_TAGS",
    "finish_progress_widgets",
]


# The one thing to set when the book moves: where Colab installs the package from.
REPOSITORY_URL = "https://github.com/tnt-rest-lite/tnt_rest_lite"


# The set-up cell names the commit Colab installs: the one its notebook's outputs were computed at
# (``execute_notebook`` writes it before each run), or a later one when the package moved on without a
# re-run and the notebook's code follows it (``python -m tnt_rest_lite sync-setup --commit HEAD``); the
# run report always names the commit of the outputs.
_COMMIT_LINE = re.compile(r'^BOOK_COMMIT = (None|"[^"\n]*")', re.MULTILINE)


def setup_cell_source(commit: str | None = None) -> str:
    """Source of the first code cell of every notebook; ``commit`` is the one Colab installs."""
    stamped = "None" if commit is None else f'"{commit}"'
    return f'''# Set-up. On Colab: install tnt_rest_lite at the commit this notebook's code is written for (torch
# stays as installed); the run report below names the commit its stored outputs come from. Elsewhere:
# nothing to install; `pip install -e .` in the repository root comes first.
import importlib.util
import os
import subprocess
import sys

REPOSITORY_URL = "{REPOSITORY_URL}"
BOOK_COMMIT = {stamped}
# On Colab, a folder of your Google Drive keeps checkpoints and results across disconnects, e.g.
# "/content/drive/MyDrive/tnt_rest_lite"; None keeps them in the runtime (lost when it is recycled).
PERSISTENT_DIR = None
if importlib.util.find_spec("tnt_rest_lite") is None:
    if "google.colab" not in sys.modules:
        raise ModuleNotFoundError("tnt_rest_lite is not installed: run `pip install -e .` in the repository root")
    ref = f"@{{BOOK_COMMIT}}" if BOOK_COMMIT else ""
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", f"git+{{REPOSITORY_URL}}{{ref}}"], check=True)
    importlib.invalidate_caches()  # let this running kernel see the package pip just installed
if PERSISTENT_DIR and "google.colab" in sys.modules:
    from google.colab import drive

    drive.mount("/content/drive")
    os.environ.setdefault("TNT_REST_CHECKPOINTS", os.path.join(PERSISTENT_DIR, "checkpoints"))
    os.environ.setdefault("TNT_REST_RESULTS", os.path.join(PERSISTENT_DIR, "results"))

from tnt_rest_lite.book.notebooks import run_report

run_report()'''


def stamped_commit(source: str) -> str | None:
    """The ``BOOK_COMMIT`` a set-up cell's ``source`` names (``None`` when unset or absent)."""
    match = _COMMIT_LINE.search(source)
    return None if match is None or match.group(1) == "None" else match.group(1).strip('"')


# The set-up cell's tag: the rendered book shows its output (the run's provenance) but not its code, which
# only Colab needs; run_report's first line says where the code is.
SETUP_CELL_TAGS = ["remove-input"]


def run_report() -> None:
    """Print the run's profile, device, commit, versions and date (the first output of every notebook)."""
    import timm
    import torch

    profile = get_profile()
    print("set-up  : the notebook's first cell (code hidden in the book) installs tnt_rest_lite on Colab")
    print(f"profile : {profile.name} ({profile.description})")
    print(f"commit  : {git_commit()}")
    print(f"device  : {device_name()}")
    print(f"versions: torch {torch.__version__}, timm {timm.__version__}")
    print(f"date    : {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M UTC}")


_WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
_WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def _progress_text(state: dict, model_id: str) -> str | None:
    """The finished text of a tqdm notebook bar (an HBox of HTML, FloatProgress, HTML) from its saved state."""
    import html

    box = state.get(model_id, {})
    children = [c.removeprefix("IPY_MODEL_") for c in box.get("state", {}).get("children", [])]
    models = [state.get(c, {}) for c in children]
    if [m.get("model_name") for m in models] != ["HTMLModel", "FloatProgressModel", "HTMLModel"]:
        return None
    left, bar, right = (m["state"] for m in models)
    done = bar.get("value", 0) / bar["max"] if bar.get("max") else 0.0
    filled = min(10, int(round(10 * done)))
    text = f"{left.get('value', '')}|{'█' * filled}{' ' * (10 - filled)}|{right.get('value', '')}"
    return html.unescape(text).replace("\u2007", " ") + "\n"


def _interactive_outputs(state: dict, model_id: str) -> list[dict] | None:
    """An ``ipywidgets.interact`` box (controls, then an Output) as what its Output last showed, with a note."""
    box = state.get(model_id, {})
    children = [state.get(c.removeprefix("IPY_MODEL_"), {}) for c in box.get("state", {}).get("children", [])]
    if not children or children[-1].get("model_name") != "OutputModel":
        return None
    controls = []
    for child in children[:-1]:
        s = child.get("state", {})
        labels = s.get("_options_labels")  # a dropdown stores its choice as an index into its labels
        value = labels[s["index"]] if labels and s.get("index") is not None else s.get("value")
        controls.append(f"{s.get('description', '?')}={value}")
    note = {
        "output_type": "stream",
        "name": "stdout",
        "text": f"Interactive in Jupyter or Colab (controls: {', '.join(controls)}); the picture at these settings:\n",
    }
    return [note, *children[-1].get("state", {}).get("outputs", [])]


def finish_progress_widgets(nb: Any) -> int:
    """Replace stored widgets by static outputs a reader without a kernel can see; returns how many.

    A stored widget shows its first state (a tqdm bar's ``0%| 0/512``) to anyone without its live
    state, and makes the rendered page load the widget manager from a CDN (console errors offline).
    The notebook's saved widget state holds what the widget last showed: a tqdm bar becomes the stdout
    line of its final values (steps, time, rate, postfix); an ``interact`` box becomes its Output's last
    picture, after a line naming the controls' values. The widget state is dropped once no view uses it.
    """
    import nbformat

    state = nb.metadata.get("widgets", {}).get(_WIDGET_STATE, {}).get("state", {})
    replaced, remaining = 0, 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        outputs = []
        for output in cell.get("outputs", []):
            view = output.get("data", {}).get(_WIDGET_VIEW)
            if view is None:
                outputs.append(output)
                continue
            text = _progress_text(state, view["model_id"])
            static = [{"output_type": "stream", "name": "stdout", "text": text}] if text else None
            static = static or _interactive_outputs(state, view["model_id"])
            if static is None:
                remaining += 1
                outputs.append(output)
            else:
                replaced += 1
                outputs += static
        cell.outputs = [nbformat.from_dict(o) for o in outputs]
    if not remaining:
        nb.metadata.pop("widgets", None)
    return replaced


def notebook_paths(root: Path | None = None) -> list[Path]:
    """The book's notebooks in reading order (their file names start with a number)."""
    return sorted((root or repo_root()).joinpath("notebooks").glob("[0-9][0-9]_*.ipynb"))


def sync_setup_cells(paths: list[Path] | None = None, commit: str | None = None) -> list[Path]:
    """Make the first code cell of each notebook the standard set-up cell; return those changed.

    Each cell keeps the commit it names, unless ``commit`` is given (``execute_notebook`` stamps the
    commit it runs at).
    """
    import nbformat

    changed = []
    for path in paths or notebook_paths():
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        kept = commit if commit is not None else (stamped_commit(code[0].source) if code else None)
        source = setup_cell_source(kept)
        if code and code[0].source == source and code[0].metadata.get("tags") == SETUP_CELL_TAGS:
            continue
        cell = nbformat.v4.new_code_cell(source, metadata={"tags": list(SETUP_CELL_TAGS)})
        if code and "REPOSITORY_URL" in code[0].source:
            code[0].source = cell.source
            code[0].metadata["tags"] = list(SETUP_CELL_TAGS)
        else:
            first_code = nb.cells.index(code[0]) if code else len(nb.cells)
            nb.cells.insert(first_code, cell)
        nbformat.write(nb, path)
        changed.append(path)
    return changed


# nbclient's limit per cell: a training chapter's table cell trains every model and seed (the cpu
# profile's budget is an hour for all of it), and a slower machine than ours must not be cut off
CELL_TIMEOUT_S = 4 * 3600


def execute_notebook(
    path: Path, *, profile: str | None = None, write_back: bool = True, timeout: int = CELL_TIMEOUT_S
) -> float:
    """Run a notebook top to bottom in its own folder; store the outputs unless ``write_back=False``.

    Returns the wall time in seconds. A cell error raises (nbclient's ``CellExecutionError``).
    """
    import nbformat
    from nbclient import NotebookClient

    path = Path(path)
    name = get_profile(profile).name  # validates the name before a kernel starts
    nb = nbformat.read(path, as_version=4)
    setup = next((c for c in nb.cells if c.cell_type == "code"), None)
    if write_back and setup is not None and "REPOSITORY_URL" in setup.source:
        # the set-up cell names the commit whose code computes these outputs: Colab installs it
        setup.source = setup_cell_source(git_commit())
    # the kernel inherits the environment: the profile, and text progress bars (a stored widget shows 0 %)
    settings = {ENV_VAR: name, TEXT_PROGRESS_ENV_VAR: "1"}
    old = {key: os.environ.get(key) for key in settings}
    os.environ.update(settings)
    with stopwatch() as clock:
        try:
            NotebookClient(
                nb,
                timeout=timeout,
                kernel_name="python3",
                resources={"metadata": {"path": str(path.parent)}},
                coalesce_streams=True,  # a text bar's carriage-return updates collapse to its final state
            ).execute()
        finally:
            for key, value in old.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        if write_back:
            finish_progress_widgets(nb)  # any widget bar a cell drew itself: its final text, no CDN manager
            nbformat.write(nb, path)
    return clock["s"]
