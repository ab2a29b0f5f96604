"""Where things live: the repository root (one rule), the data root and the checkpoints root.

The repository is the folder that holds ``_config.yml`` and the ``tnt_rest_lite/`` package; it is found
by walking up from a start folder (the working directory for the results and data stores, the package's
own folder for the book's machinery). ``$TNT_REST_DATA`` and ``$TNT_REST_CHECKPOINTS`` move the data and
checkpoint roots.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "find_repo_root",
    "repo_root",
    "PACKAGE_DIR",
    "DATA_ENV_VAR",
    "data_root",
    "CHECKPOINTS_ENV_VAR",
    "checkpoints_root",
]

# the installed package's folder (tnt_rest_lite/)
PACKAGE_DIR = Path(__file__).resolve().parent.parent

DATA_ENV_VAR = "TNT_REST_DATA"
CHECKPOINTS_ENV_VAR = "TNT_REST_CHECKPOINTS"


def find_repo_root(start: Path | None = None) -> Path | None:
    """The repository holding ``start`` (default: the working directory): the first folder upwards with
    ``_config.yml`` and a ``tnt_rest_lite/`` folder; ``None`` outside a checkout."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "_config.yml").is_file() and (folder / "tnt_rest_lite").is_dir():
            return folder
    return None


def repo_root() -> Path:
    """The checkout this package is imported from (its notebooks, book and ``_config.yml``).

    The same rule as :func:`find_repo_root`, started from the package's folder; outside a checkout
    (an installed wheel) the package's parent folder, as before.
    """
    return find_repo_root(PACKAGE_DIR) or PACKAGE_DIR.parent


def data_root() -> Path:
    """Where real datasets live: ``$TNT_REST_DATA``, else ``data/`` in the repository (or cwd)."""
    if os.environ.get(DATA_ENV_VAR):
        return Path(os.environ[DATA_ENV_VAR])
    return (find_repo_root() or Path.cwd()) / "data"


def checkpoints_root() -> Path:
    """Where trained weights and run checkpoints live: ``$TNT_REST_CHECKPOINTS``, else ``checkpoints/`` in
    the repository (or cwd)."""
    return Path(os.environ.get(CHECKPOINTS_ENV_VAR) or ((find_repo_root() or Path.cwd()) / "checkpoints"))
