"""Two small helpers the chapters use to build each component in front of the reader.

* :func:`show_source` displays the package's own source of a class, method or function, taken from
  the object itself (``inspect.getsource``), so the page can never drift from the code.
* :func:`check_shape` prints a tensor's shape and checks it (d2l's ``check_shape``, with wildcards).
"""

from __future__ import annotations

import inspect
import textwrap
from typing import Any

import torch

__all__ = ["source_of", "show_source", "check_shape"]


def _excerpt(obj: Any, start: str | None, end: str | None) -> tuple[str, int]:
    """The dedented source of ``obj`` (or its ``start``..``end`` excerpt) and the excerpt's first line offset."""
    obj = inspect.unwrap(obj)
    source = textwrap.dedent(inspect.getsource(obj))
    if start is None and end is None:
        return source, 0
    lines = source.splitlines(keepends=True)
    first = 0
    if start is not None:
        hits = [i for i, line in enumerate(lines) if start in line]
        if not hits:
            raise ValueError(f"{start!r} does not occur in the source of {getattr(obj, '__qualname__', obj)}")
        first = hits[0]
    last = len(lines) - 1
    if end is not None:
        hits = [i for i, line in enumerate(lines) if i >= first and end in line]
        if not hits:
            raise ValueError(f"{end!r} does not occur after {start!r} in the source of {obj}")
        last = hits[0]
    return textwrap.dedent("".join(lines[first : last + 1])), first


def source_of(obj: Any, *, start: str | None = None, end: str | None = None) -> str:
    """``inspect.getsource(obj)``, dedented; optionally only from the first line containing ``start``
    up to (and including) the first later line containing ``end``."""
    return _excerpt(obj, start, end)[0]


def show_source(obj: Any, *, start: str | None = None, end: str | None = None) -> None:
    """Display the source of ``obj`` (a class, a method such as ``Attention.forward``, a function)
    as a highlighted Python code block, with the file and line it comes from.

    ``start``/``end`` select an excerpt: from the first line containing ``start`` to the first
    later line containing ``end``. Outside IPython the source is printed.
    """
    source, offset = _excerpt(obj, start, end)
    target = inspect.unwrap(obj)
    try:
        module = inspect.getmodule(target).__name__  # type: ignore[union-attr]
        line = inspect.getsourcelines(target)[1] + offset  # the excerpt's first line, not the object's
        where = f"`{module}.{target.__qualname__}` (line {line} of `{module.replace('.', '/')}.py`)"
    except (AttributeError, OSError, TypeError):
        where = f"`{getattr(target, '__qualname__', target)}`"
    try:
        from IPython import get_ipython
        from IPython.display import Markdown, display
    except ImportError:  # pragma: no cover - IPython ships with the book's dependencies
        print(source)
        return
    if get_ipython() is None:
        print(source)
        return
    fence = "````" if "```" in source else "```"
    display(Markdown(f"{where}:\n\n{fence}python\n{source.rstrip()}\n{fence}"))


def check_shape(tensor: torch.Tensor, expected: tuple[int | None, ...], name: str = "tensor") -> torch.Tensor:
    """Print ``name: (shape)`` and check it against ``expected`` (``None`` or ``-1``: any size).

    Returns the tensor, so it can be used inline. Raises an ``AssertionError`` naming the expected
    and the actual shape on a mismatch.
    """
    got = tuple(tensor.shape)
    want = tuple(expected)
    ok = len(got) == len(want) and all(w is None or w == -1 or w == g for w, g in zip(want, got, strict=False))
    if not ok:
        shown = tuple("*" if w is None or w == -1 else w for w in want)
        raise AssertionError(f"{name}: expected shape {shown}, got {got}")
    print(f"{name}: {got}")
    return tensor
