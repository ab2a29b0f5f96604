"""Claims and verdicts: each published claim judged on the held-out test split."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..core import store
from ..core.format import digits, format_mean_std, markdown_table
from ..measure.stats import CONFIDENCE, paired_interval, welch_interval

__all__ = [
    "Claim",
    "accuracy_rows",
    "load_runs",
    "verdict",
    "verdict_sentence",
    "verdict_rows",
    "verdicts_markdown",
    "VERDICTS",
]


# ----------------------------------------------------------------------------------------------
# The tables of notebooks 04-06: one spec each, one function that runs any of them
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """A published ordering: ``better`` beats ``worse`` in top-1 (our model names)."""

    better: str
    worse: str


def load_runs(prefix: str, names: Sequence[str]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Read the stored summaries ``<prefix>_<name>`` back from the results store.

    Returns the summaries by name and one provenance line per run (profile, device, commit, date),
    so a table is built from what is on disk, not from whatever a notebook holds in memory.
    """

    summaries, lines = {}, []
    for name in names:
        record = store.load_json(f"{prefix}_{name}")
        summaries[name] = record["data"]
        prov = record["provenance"]
        lines.append(
            f"{name}: profile {prov['profile']}, {prov['device']}, commit {prov['git_commit']}, {prov['date']}"
        )
    return summaries, lines


def _difference(ours: float, paper: float | None) -> str:
    return "–" if paper is None else f"{ours - paper:+.1f}"


def accuracy_rows(
    summaries: Mapping[str, Mapping[str, Any]],
    reference: Mapping[str, Mapping[str, float]],
    labels: Mapping[str, str],
    paper_keys: Mapping[str, str | None],
) -> tuple[list[str], list[list[str]]]:
    """Headers and rows: model | params | top-1 ours | paper | diff | top-5 ours | paper | diff | img/s.

    Ours are the test split's (mean ± std over the seeds).

    Args:
        summaries: ``run_model`` summaries by our model name.
        reference: published numbers by paper key (``reference.TNT_TABLE1`` ...).
        labels: display name of each of our models.
        paper_keys: the paper key each of our models is compared with (``None``: not in the table).
    """
    headers = [
        "model",
        "params (ours)",
        "test top-1 ours",
        "top-1 paper",
        "Δ top-1",
        "test top-5 ours",
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
                format_mean_std(s["test_top1_mean"], s["test_top1_std"]),
                "–" if top1_paper is None else f"{top1_paper:.2f}",
                _difference(s["test_top1_mean"], top1_paper),
                format_mean_std(s["test_top5_mean"], s["test_top5_std"]),
                "–" if top5_paper is None else f"{top5_paper:.2f}",
                _difference(s["test_top5_mean"], top5_paper),
                f"{s['train_images_per_s']:.0f}",
            ]
        )
    return headers, rows


VERDICTS = ("holds", "reversed", "undecided", "not testable")


def verdict(
    claim: str,
    better: str,
    worse: str,
    better_summary: Mapping[str, Any],
    worse_summary: Mapping[str, Any],
    metric: str = "test_top1",
    unit: str = "points",
    paired: bool = False,
    floor: tuple[str, float] | None = None,
) -> dict[str, Any]:
    """Does ``better`` beat ``worse`` in test top-1 at our scale, as the paper claims? A record.

    From the seeds' test top-1 (``summary["test_top1"]``): the difference of the means and its 95 %
    Welch-t interval, and one of :data:`VERDICTS`. Another per-seed measurement of the same models (e.g.
    the share of attention on the object) is judged the same way with ``metric`` naming its key (``unit``
    its unit in the sentence); testability still reads the models' test top-1. ``paired=True`` when both
    sides measure the same seeds' models (e.g. two blocks of one network): the interval is then the
    paired t interval of the per-seed differences (:func:`paired_interval`). ``floor=(key, value)`` adds
    a testability rule for models without a top-1 (e.g. detectors: ``("test_AP50", 10.0)``).

    * ``not testable``: either model below twice chance (or ``floor``): it has learnt too little to compare;
    * ``holds``: the interval above 0; ``reversed``: below 0; ``undecided``: it spans 0, or one seed (no interval).

    The record's keys: ``claim, better, worse, diff, ci_low, ci_high, n_seeds, verdict`` (plus ``better_top1,
    worse_top1, chance_top1, confidence, method, note``); :func:`verdict_sentence` renders it.
    """
    a, b = list(better_summary[metric]), list(worse_summary[metric])
    chance = float(better_summary.get("chance_top1", 0.0))
    diff = sum(a) / len(a) - sum(b) / len(b)
    low = high = None
    untestable = _untestable(better_summary, worse_summary, chance, floor)
    if untestable:
        outcome, note = "not testable", untestable
    elif min(len(a), len(b)) < 2:
        outcome, note = "undecided", "one seed: not decided"
    else:
        diff, low, high = paired_interval(a, b) if paired else welch_interval(a, b)
        outcome = "holds" if low > 0 else "reversed" if high < 0 else "undecided"
        note = "the interval spans 0" if outcome == "undecided" else ""
    return {
        "claim": claim,
        "better": better,
        "worse": worse,
        "diff": diff,
        "ci_low": low,
        "ci_high": high,
        "n_seeds": min(len(a), len(b)),
        "verdict": outcome,
        "better_top1": a,
        "worse_top1": b,
        "chance_top1": chance,
        "confidence": CONFIDENCE,
        "metric": metric,
        "unit": unit,
        "paired": paired,
        "method": ("paired t on the seeds' differences in " if paired else "Welch's t on the seeds' ")
        + ("test top-1" if metric == "test_top1" else metric),
        "note": note,
    }


def _untestable(
    better_summary: Mapping[str, Any], worse_summary: Mapping[str, Any], chance: float, floor: tuple[str, float] | None
) -> str:
    """Why a claim about these two models cannot be tested (the :func:`verdict` note), or ``""``.

    Below ``floor`` (``(key, value)``, e.g. the detectors' test AP50) where given, or below twice
    chance in test top-1 (models without a top-1 are never below it).
    """
    pair = (better_summary, worse_summary)
    if floor is not None and min(statistics.fmean(s[floor[0]]) for s in pair) < floor[1]:
        return f"a model's {floor[0].removeprefix('test_')} is below {floor[1]:g}"
    top1 = [statistics.fmean(s["test_top1"]) for s in pair if "test_top1" in s]
    if top1 and min(top1) < 2 * chance:
        return f"a model is below twice chance ({2 * chance:.0f} %)"
    return ""


def verdict_sentence(record: Mapping[str, Any]) -> str:
    """The sentence a chapter prints for a :func:`verdict` record (markdown)."""
    unit = record.get("unit", "points")
    d = digits(unit)
    diff = f"{record['diff']:+.{d}f}" + (f" {unit}" if unit else "")
    if record["ci_low"] is not None:
        interval = f", {record['confidence']:.0%} CI [{record['ci_low']:+.{d}f}, {record['ci_high']:+.{d}f}]"
    else:
        interval = ""
    note = f"; {record['note']}" if record.get("note") else ""
    return (
        f"{record['claim']}: **{record['verdict']}** at our scale "
        f"({diff}{interval}, {record['n_seeds']} seed{'s' if record['n_seeds'] != 1 else ''} each, test split{note})."
    )


def verdict_rows(records: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of a verdict table: claim | seeds | difference | 95 % CI | verdict.

    The difference is named by the records' metric and unit (test top-1 in points unless a record
    says otherwise), each row to its unit's precision.
    """
    measured = {(r.get("metric", "test_top1"), r.get("unit", "points")) for r in records}
    if len(measured) == 1:
        metric, unit = measured.pop()
        name = "test top-1" if metric == "test_top1" else metric
        difference = f"Δ {name}" + (f" ({unit})" if unit else "")
    else:
        difference = "Δ (each claim's measure)"
    tests = {bool(r.get("paired", False)) for r in records}
    interval_name = "95 % CI" + (" (paired t)" if tests == {True} else " (Welch)" if tests == {False} else "")
    headers = ["claim", "seeds", difference, interval_name, "verdict"]
    rows = []
    for r in records:
        d = digits(r.get("unit", "points"))
        interval = "–" if r["ci_low"] is None else f"[{r['ci_low']:+.{d}f}, {r['ci_high']:+.{d}f}]"
        rows.append([r["claim"], str(r["n_seeds"]), f"{r['diff']:+.{d}f}", interval, f"**{r['verdict']}**"])
    return headers, rows


def verdicts_markdown(records: Sequence[Mapping[str, Any]]) -> str:
    """The verdict table and one rendered sentence per record (markdown), as the chapters show them."""
    headers, rows = verdict_rows(records)
    return markdown_table(headers, rows) + "\n\n" + "\n".join(f"* {verdict_sentence(r)}" for r in records)
