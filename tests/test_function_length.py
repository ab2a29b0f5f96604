"""No function of the package is longer than :data:`MAX_LINES` lines (its ``def`` to its last line,
docstring included): a longer one is split into named phases. Read from the source with ``ast``."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent / "tnt_rest_lite"
MAX_LINES = 60


def long_functions(root: Path = PACKAGE_DIR, limit: int = MAX_LINES) -> list[tuple[str, str, int]]:
    """``(file, function, lines)`` of every function (or method) of ``root`` over ``limit`` lines."""
    found = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > limit:
                    found.append((path.relative_to(root).as_posix(), node.name, length))
    return found


def test_no_function_over_the_limit():
    offenders = [f"{file}: {name} ({n} lines)" for file, name, n in long_functions()]
    assert not offenders, f"functions over {MAX_LINES} lines (split them into named phases): {offenders}"


def test_long_functions_finds_a_long_one(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))
    (tmp_path / "m.py").write_text(f"def short():\n    return 1\n\n\ndef long():\n{body}\n")
    assert long_functions(tmp_path) == [("m.py", "long", MAX_LINES + 1)]
