"""Formatting numbers and tables: markdown tables, mean ± std over seeds, significant digits."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

__all__ = ["mean_std", "format_mean_std", "markdown_table"]


def mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (``None`` for a single value); NaN where a value is NaN
    (a COCO size bin without objects: ``statistics.stdev`` cannot take a NaN)."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, None
    return mean, (math.nan if any(math.isnan(v) for v in values) else statistics.stdev(values))


def format_mean_std(mean: float, std: float | None, digits: int = 1) -> str:
    """``"72.9 ± 0.4"``, or ``"72.9"`` for one seed; ``"—"`` where there is nothing measured (a NaN mean,
    e.g. a COCO size bin without objects)."""
    if math.isnan(mean):
        return "—"
    if std is None or math.isnan(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table (render it with ``IPython.display.Markdown``)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def digits(unit: str) -> int:
    return (
        1 if unit in ("points", "px", "AP points") else 3
    )  # percentages and pixels to 0.1; similarities and AUCs to 0.001
