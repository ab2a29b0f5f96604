"""Regenerated tables: our measured numbers beside the published ones, and what they say.

Nothing here measures anything: the inputs are summaries from :func:`experiments.run_model`
(read back from the results store) and the published values of :mod:`tnt_rest_lite.reference`.
Verdicts on the papers' trends are computed from the numbers, never written by hand.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from .experiments import format_mean_std

__all__ = ["markdown_table", "accuracy_rows", "trend_verdict", "load_runs", "NEAR_CHANCE_POINTS"]

# Within this many points of chance a model has learnt (almost) nothing: comparisons say nothing.
NEAR_CHANCE_POINTS = 5.0


def load_runs(prefix: str, names: Sequence[str]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Read the stored summaries ``<prefix>_<name>`` back from the results store.

    Returns the summaries by name and one provenance line per run (profile, device, commit, date),
    so a table is built from what is on disk, not from whatever a notebook holds in memory.
    """
    from . import results

    summaries, lines = {}, []
    for name in names:
        record = results.load_json(f"{prefix}_{name}")
        summaries[name] = record["data"]
        prov = record["provenance"]
        lines.append(
            f"{name}: profile {prov['profile']}, {prov['device']}, commit {prov['git_commit']}, {prov['date']}"
        )
    return summaries, lines


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table (render it with ``IPython.display.Markdown``)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _difference(ours: float, paper: float | None) -> str:
    return "–" if paper is None else f"{ours - paper:+.1f}"


def accuracy_rows(
    summaries: Mapping[str, Mapping[str, Any]],
    reference: Mapping[str, Mapping[str, float]],
    labels: Mapping[str, str],
    paper_keys: Mapping[str, str | None],
) -> tuple[list[str], list[list[str]]]:
    """Headers and rows: model | params | top-1 ours | paper | diff | top-5 ours | paper | diff | img/s.

    Args:
        summaries: ``run_model`` summaries by our model name.
        reference: published numbers by paper key (``reference.TNT_TABLE1`` ...).
        labels: display name of each of our models.
        paper_keys: the paper key each of our models is compared with (``None``: not in the table).
    """
    headers = [
        "model",
        "params (ours)",
        "top-1 ours",
        "top-1 paper",
        "Δ top-1",
        "top-5 ours",
        "top-5 paper",
        "Δ top-5",
        "train img/s",
    ]
    rows = []
    for name, s in summaries.items():
        paper = reference.get(paper_keys.get(name) or "", {})
        top1_paper, top5_paper = paper.get("top1"), paper.get("top5")
        rows.append(
            [
                labels.get(name, name),
                f"{s['params'] / 1e6:.2f}M",
                format_mean_std(s["top1_mean"], s["top1_std"]),
                "–" if top1_paper is None else f"{top1_paper:.2f}",
                _difference(s["top1_mean"], top1_paper),
                format_mean_std(s["top5_mean"], s["top5_std"]),
                "–" if top5_paper is None else f"{top5_paper:.2f}",
                _difference(s["top5_mean"], top5_paper),
                f"{s['train_images_per_s']:.0f}",
            ]
        )
    return headers, rows


def trend_verdict(claim: str, better: Mapping[str, Any], worse: Mapping[str, Any]) -> str:
    """Does ``better`` beat ``worse`` in top-1 at our scale, as the paper claims? One sentence.

    With several seeds, a difference counts only beyond two standard errors of the difference of
    the means; with one seed there is no spread to judge it by, and the sentence says so. Both
    models within :data:`NEAR_CHANCE_POINTS` of chance: the comparison is uninformative.
    """
    diff = better["top1_mean"] - worse["top1_mean"]
    chance = better.get("chance_top1", 0.0)
    if max(better["top1_mean"], worse["top1_mean"]) < chance + NEAR_CHANCE_POINTS:
        return (
            f"{claim}: **not testable at this scale**: both models are within {NEAR_CHANCE_POINTS:.0f} points of "
            f"chance ({chance:.1f}%), so the difference ({diff:+.1f} points) is noise."
        )
    n_a, n_b = len(better["top1"]), len(worse["top1"])
    if n_a > 1 and n_b > 1:
        se = math.sqrt(better["top1_std"] ** 2 / n_a + worse["top1_std"] ** 2 / n_b)
        if diff > 2 * se:
            return f"{claim}: **holds** at our scale ({diff:+.1f} points, more than twice the standard error {se:.1f})."
        if diff < -2 * se:
            return f"{claim}: **reversed** at our scale ({diff:+.1f} points, beyond twice the standard error {se:.1f})."
        return f"{claim}: **not resolved** at our scale ({diff:+.1f} points, within twice the standard error {se:.1f})."
    verdict = "holds" if diff > 0 else "does not hold"
    return f"{claim}: **{verdict}** in our single-seed run ({diff:+.1f} points; one seed gives no spread to judge this by)."
