"""Claims and verdicts: each published claim judged on the held-out test split."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..core import store
from ..core.format import digits, format_mean_std, markdown_table
from ..measure.stats import CONFIDENCE, paired_interval, welch_interval

__all__ = [
    "Claim",
    "STILL_LEARNING_GAIN",
    "LEARNING_RULE",
    "AT_BOUND_TOLERANCE",
    "learning_state",
    "model_learning",
    "learning_cells",
    "learning_note",
    "verdict_state",
    "VERDICT_STATES",
    "count_states",
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

# Why a claim is not testable (the verdict record's ``reason``), each shown and counted as its own state.
NOT_TESTABLE_REASONS = ("still learning", "at its bound", "learnt too little")
VERDICT_STATES = ("holds", "reversed", "undecided", *(f"not testable ({r})" for r in NOT_TESTABLE_REASONS))

# The plateau rule. A model is still learning when its seeds' mean validation gain over the last
# quarter of training (the last ceil(E/4) of its E epochs, at least one) is above this many points of
# its curve (top-1 or AP50): its final accuracy would still move, so a comparison with it measures
# speed of learning, not where the paper's models end. One epoch has no curve to read: still learning.
STILL_LEARNING_GAIN = 1.0
LEARNING_RULE = (
    f"still learning: the seeds' mean validation gain over the last quarter of training (the last ⌈E/4⌉ "
    f"of E epochs) is above {STILL_LEARNING_GAIN:g} point"
)

# A measure sits at its bound when its baseline is within this share of the bound's value (e.g. the
# attention entropy of an even spread over all keys, log N): it cannot rise further, so "it grows" cannot show.
AT_BOUND_TOLERANCE = 0.01


def learning_state(
    histories: Sequence[Mapping[str, Sequence[float]]], curve: str = "val_top1", threshold: float = STILL_LEARNING_GAIN
) -> dict[str, Any]:
    """Whether a model whose seeds trained with ``histories`` is still learning (:data:`LEARNING_RULE`).

    Returns ``{"curve", "epochs", "window_epochs", "gain_per_seed", "mean_gain", "still_learning", "rule"}``:
    each seed's gain of ``curve`` over its last ``window_epochs`` epochs (the last quarter), their mean,
    and the verdict of the rule.
    """
    if not histories:
        raise ValueError("learning_state needs at least one seed's history")
    missing = [i for i, h in enumerate(histories) if curve not in h]
    if missing:
        raise KeyError(f"histories {missing} have no '{curve}' curve; they have {sorted(histories[missing[0]])}")
    epochs = min(len(h[curve]) for h in histories)
    window = max(1, math.ceil(epochs / 4))
    if epochs < 2:
        gains, mean_gain, still = [], None, True
    else:
        gains = [float(h[curve][epochs - 1] - h[curve][epochs - 1 - window]) for h in histories]
        mean_gain = statistics.fmean(gains)
        still = mean_gain > threshold
    return {
        "curve": curve,
        "epochs": epochs,
        "window_epochs": window,
        "gain_per_seed": gains,
        "mean_gain": mean_gain,
        "still_learning": still,
        "rule": LEARNING_RULE,
    }


def model_learning(summary: Mapping[str, Any], curve: str) -> dict[str, Any] | None:
    """A summary's stored learning state, else the one its histories give, else ``None`` (not known)."""
    if summary.get("learning") is not None:
        return dict(summary["learning"])
    histories = summary.get("histories")
    if histories and all(curve in h for h in histories):
        return learning_state(histories, curve)
    return None


def learning_note(state: Mapping[str, Any] | None) -> str:
    """A :func:`learning_state` in words: "plateau: val gain +0.3 over the last 2 of 8 epochs" (or why not known)."""
    if state is None:
        return "its training curves are not known"
    if state["mean_gain"] is None:
        return "still learning: one epoch, no curve to read a plateau from"
    word = "still learning" if state["still_learning"] else "plateau"
    return (
        f"{word}: val gain {state['mean_gain']:+.1f} over the last {state['window_epochs']} of {state['epochs']} epochs"
    )


def learning_cells(summary: Mapping[str, Any], curve: str = "val_top1") -> list[str]:
    """Two table cells of a model's summary: its last-quarter validation gain and "still learning" / "plateau"."""
    state = model_learning(summary, curve)
    if state is None:
        return ["–", "not known"]
    if state["mean_gain"] is None:
        return ["– (one epoch)", "still learning"]
    window = state["window_epochs"]
    gain = f"{state['mean_gain']:+.1f} (last {window} of {state['epochs']} epochs)"
    return [gain, "**still learning**" if state["still_learning"] else "plateau"]


def verdict_state(record: Mapping[str, Any]) -> str:
    """The state a verdict record is shown and counted as: one of :data:`VERDICT_STATES`.

    Records stored before reasons were kept name theirs only in the note (below twice chance, or a
    floor): those read as "learnt too little".
    """
    if record["verdict"] != "not testable":
        return record["verdict"]
    reason = record.get("reason") or "learnt too little"
    return f"not testable ({reason})"


def count_states(records: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """How many of ``records`` are in each of :data:`VERDICT_STATES` (states with none left out)."""
    states = [verdict_state(r) for r in records]
    return {s: states.count(s) for s in VERDICT_STATES if states.count(s)}


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
    curve: str = "val_top1",
    at_bound: str = "",
) -> dict[str, Any]:
    """Does ``better`` beat ``worse`` in test top-1 at our scale, as the paper claims? A record.

    From the seeds' test top-1 (``summary["test_top1"]``): the difference of the means and its 95 %
    Welch-t interval, and one of :data:`VERDICTS`. Another per-seed measurement of the same models (e.g.
    the share of attention on the object) is judged the same way with ``metric`` naming its key (``unit``
    its unit in the sentence); testability still reads the models' test top-1. ``paired=True`` when both
    sides measure the same seeds' models (e.g. two blocks of one network): the interval is then the
    paired t interval of the per-seed differences (:func:`paired_interval`). ``floor=(key, value)`` adds
    a testability rule for models without a top-1 (e.g. detectors: ``("test_AP50", 10.0)``). ``curve`` is
    the validation curve the plateau rule reads (:func:`learning_state`, from a summary's ``learning`` or
    its ``histories``); ``at_bound`` names why the baseline sits at its measure's bound (the caller knows
    the bound), e.g. "block 1's entropy is already that of an even spread".

    * ``not testable``, with its ``reason``: **still learning** (either model, :data:`LEARNING_RULE`);
      **at its bound** (``at_bound`` given); **learnt too little** (either model below twice chance, or
      below ``floor``);
    * ``holds``: the interval above 0; ``reversed``: below 0; ``undecided``: it spans 0, or one seed (no interval).

    The record's keys: ``claim, better, worse, diff, ci_low, ci_high, n_seeds, verdict`` (plus ``better_top1,
    worse_top1, chance_top1, confidence, method, note``); :func:`verdict_sentence` renders it.
    """
    a, b = list(better_summary[metric]), list(worse_summary[metric])
    chance = float(better_summary.get("chance_top1", 0.0))
    diff = sum(a) / len(a) - sum(b) / len(b)
    low = high = None
    learning = {side: model_learning(s, curve) for side, s in (("better", better_summary), ("worse", worse_summary))}
    reason, untestable = _untestable(better_summary, worse_summary, chance, floor, learning, at_bound)
    if untestable:
        outcome, note = "not testable", untestable
    elif min(len(a), len(b)) < 2:
        outcome, note = "undecided", "one seed: not decided"
    else:
        diff, low, high = paired_interval(a, b) if paired else welch_interval(a, b)
        outcome = "holds" if low > 0 else "reversed" if high < 0 else "undecided"
        note = "the interval spans 0" if outcome == "undecided" else ""
    method = ("paired t on the seeds' differences in " if paired else "Welch's t on the seeds' ") + (
        "test top-1" if metric == "test_top1" else metric
    )
    return {
        **{"claim": claim, "better": better, "worse": worse, "diff": diff, "ci_low": low, "ci_high": high},
        **{"n_seeds": min(len(a), len(b)), "verdict": outcome, "better_top1": a, "worse_top1": b},
        **{"chance_top1": chance, "confidence": CONFIDENCE, "metric": metric, "unit": unit, "paired": paired},
        **{"method": method, "note": note, "reason": reason, "learning": learning},
    }


def _untestable(
    better_summary: Mapping[str, Any],
    worse_summary: Mapping[str, Any],
    chance: float,
    floor: tuple[str, float] | None,
    learning: Mapping[str, Mapping[str, Any] | None],
    at_bound: str,
) -> tuple[str, str]:
    """``(reason, note)``: why a claim about these two models cannot be tested, or ``("", "")``.

    Still learning (either side's :func:`learning_state`), then at its bound (``at_bound``), then
    below ``floor`` (``(key, value)``, e.g. the detectors' test AP50) where given, or below twice
    chance in test top-1 (models without a top-1 are never below it).
    """
    rising = [
        f"{side} " + ("(one epoch)" if state["mean_gain"] is None else f"{state['mean_gain']:+.1f}")
        for side, state in learning.items()
        if state is not None and state["still_learning"]
    ]
    if rising:
        return "still learning", (
            f"still learning: last-quarter validation gain {', '.join(rising)} "
            f"(rule: above {STILL_LEARNING_GAIN:g} point)"
        )
    if at_bound:
        return "at its bound", f"at its bound: {at_bound}"
    pair = (better_summary, worse_summary)
    if floor is not None and min(statistics.fmean(s[floor[0]]) for s in pair) < floor[1]:
        return "learnt too little", f"a model's {floor[0].removeprefix('test_')} is below {floor[1]:g}"
    top1 = [statistics.fmean(s["test_top1"]) for s in pair if "test_top1" in s]
    if top1 and min(top1) < 2 * chance:
        return "learnt too little", f"a model is below twice chance ({2 * chance:.0f} %)"
    return "", ""


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
        f"{record['claim']}: **{verdict_state(record)}** at our scale "
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
        rows.append([r["claim"], str(r["n_seeds"]), f"{r['diff']:+.{d}f}", interval, f"**{verdict_state(r)}**"])
    return headers, rows


def verdicts_markdown(records: Sequence[Mapping[str, Any]]) -> str:
    """The verdict table and one rendered sentence per record (markdown), as the chapters show them."""
    headers, rows = verdict_rows(records)
    return markdown_table(headers, rows) + "\n\n" + "\n".join(f"* {verdict_sentence(r)}" for r in records)
