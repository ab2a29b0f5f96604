"""Progress bars that read well both live and in a stored notebook.

In an interactive Jupyter front end (Colab, JupyterLab) :func:`progress_bar` is ``tqdm.auto``'s widget.
A widget's stored text fallback is the bar as it was drawn first (``0%| 0/512``), so a reader of the
rendered book, who has no live kernel, would see every training cell stalled at zero. When a notebook
is executed to be stored (:func:`tnt_rest_lite.book.execute_notebook` sets ``TNT_REST_TEXT_PROGRESS``),
the bar is tqdm's plain text bar on stdout instead, and the executor collapses its carriage-return
updates, so the stored output is the finished bar: steps done, time taken and rate.
"""

from __future__ import annotations

import os
import sys
from typing import Any

__all__ = ["TEXT_PROGRESS_ENV_VAR", "progress_bar"]


TEXT_PROGRESS_ENV_VAR = "TNT_REST_TEXT_PROGRESS"


def progress_bar(iterable: Any = None, **kwargs: Any) -> Any:
    """A ``tqdm`` bar: the notebook widget live, plain text on stdout when the notebook is being stored."""
    if os.environ.get(TEXT_PROGRESS_ENV_VAR):
        from tqdm.std import tqdm

        kwargs.setdefault("file", sys.stdout)  # stdout, not stderr: the book styles stderr as a warning
        kwargs.setdefault("mininterval", 1.0)
    else:
        from tqdm.auto import tqdm
    return tqdm(iterable, **kwargs)
