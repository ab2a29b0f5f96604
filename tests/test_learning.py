"""Verdicts aware of learning: the plateau rule on hand-made curves, and the states a verdict is shown as."""

from __future__ import annotations

import pytest

from tnt_rest_lite.experiments.verdicts import (
    LEARNING_RULE,
    STILL_LEARNING_GAIN,
    VERDICT_STATES,
    count_states,
    learning_cells,
    learning_state,
    verdict,
    verdict_rows,
    verdict_sentence,
    verdict_state,
)


def _history(curve: list[float], key: str = "val_top1") -> dict[str, list[float]]:
    return {"epoch": list(range(1, len(curve) + 1)), key: curve}


def _model(top1: list[float], curves: list[list[float]] | None = None) -> dict:
    """A model summary: per-seed test top-1 and, when given, one validation curve per seed."""
    summary = {"test_top1": top1, "chance_top1": 5.0}
    if curves is not None:
        summary["histories"] = [_history(c) for c in curves]
    return summary


PLATEAU = [[20.0, 40.0, 55.0, 60.0, 61.0, 61.2, 61.3, 61.5]] * 3  # +0.3 over its last 2 of 8 epochs (61.2 -> 61.5)
RISING = [[10.0, 20.0, 30.0, 40.0], [12.0, 22.0, 31.0, 43.0], [11.0, 21.0, 33.0, 41.0]]  # about +9.3 in the last


def test_the_last_quarter_is_read_and_the_rule_stated() -> None:
    flat = learning_state([_history(c) for c in PLATEAU])
    assert flat["epochs"] == 8 and flat["window_epochs"] == 2
    assert flat["gain_per_seed"] == pytest.approx([0.3] * 3) and flat["still_learning"] is False
    rising = learning_state([_history(c) for c in RISING])
    assert rising["window_epochs"] == 1 and rising["gain_per_seed"] == pytest.approx([10.0, 12.0, 8.0])
    assert rising["mean_gain"] == pytest.approx(10.0) and rising["still_learning"] is True
    assert learning_state([_history([1.0, 2.0, 3.0, 4.0, 5.0])])["window_epochs"] == 2  # ceil(5 / 4)
    assert flat["rule"] == LEARNING_RULE and f"above {STILL_LEARNING_GAIN:g} point" in LEARNING_RULE


def test_the_threshold_is_strict_and_the_mean_over_seeds_decides() -> None:
    at_threshold = [[50.0, 50.0, 50.0, 50.0 + STILL_LEARNING_GAIN]]
    assert learning_state([_history(c) for c in at_threshold])["still_learning"] is False
    # one seed still climbs by 2.5, two have stopped: the mean gain (0.83) is under the threshold
    mixed = [[40.0, 45.0, 47.5, 50.0], [40.0, 45.0, 48.0, 48.0], [40.0, 45.0, 48.0, 48.0]]
    state = learning_state([_history(c) for c in mixed])
    assert state["mean_gain"] == pytest.approx(2.5 / 3) and state["still_learning"] is False


def test_one_epoch_has_no_curve_and_counts_as_still_learning() -> None:
    state = learning_state([_history([30.0])])
    assert state["still_learning"] is True and state["mean_gain"] is None and state["gain_per_seed"] == []
    assert learning_cells(_model([30.0], [[30.0]])) == ["– (one epoch)", "still learning"]


def test_a_missing_curve_is_named() -> None:
    with pytest.raises(KeyError, match="no 'val_AP50' curve"):
        learning_state([_history([1.0, 2.0])], curve="val_AP50")
    with pytest.raises(ValueError, match="at least one seed"):
        learning_state([])


def test_a_clear_gap_between_models_still_learning_is_not_testable() -> None:
    better = _model([70.0, 71.0, 72.0], RISING)
    worse = _model([50.0, 51.0, 52.0], PLATEAU)
    record = verdict("A beats B", "a", "b", better, worse)
    assert record["verdict"] == "not testable" and record["reason"] == "still learning"
    assert verdict_state(record) == "not testable (still learning)"
    assert record["ci_low"] is None and "better +10.0" in record["note"]
    assert record["learning"]["better"]["still_learning"] and not record["learning"]["worse"]["still_learning"]
    assert "**not testable (still learning)**" in verdict_sentence(record)
    assert verdict_rows([record])[1][0][-1] == "**not testable (still learning)**"
    # the same seeds, both at their plateau: the gap is judged
    judged = verdict("A beats B", "a", "b", _model([70.0, 71.0, 72.0], PLATEAU), worse)
    assert judged["verdict"] == "holds" and judged["reason"] == "" and verdict_state(judged) == "holds"


def test_a_stored_learning_state_wins_over_the_histories() -> None:
    worse = _model([50.0, 51.0, 52.0], PLATEAU)
    stored = {**_model([70.0, 71.0, 72.0], RISING), "learning": learning_state([_history(c) for c in PLATEAU])}
    assert verdict("A beats B", "a", "b", stored, worse)["verdict"] == "holds"
    # a summary without curves (e.g. published weights) does not block a verdict
    assert verdict("A beats B", "a", "b", _model([70.0, 71.0, 72.0]), _model([50.0, 51.0, 52.0]))["verdict"] == "holds"


def test_at_its_bound_and_learnt_too_little_are_their_own_states() -> None:
    far = {**_model([60.0, 61.0, 62.0], PLATEAU), "distance": [9.0, 9.1, 9.2]}
    near = {**_model([60.0, 61.0, 62.0], PLATEAU), "distance": [5.0, 5.1, 5.2]}
    bound = verdict("deeper attends farther", "deep", "first", far, near, metric="distance", paired=True, at_bound="x")
    assert verdict_state(bound) == "not testable (at its bound)" and bound["note"] == "at its bound: x"
    low = verdict("A beats B", "a", "b", _model([30.0, 31.0, 32.0], PLATEAU), _model([8.0, 9.0, 9.5], PLATEAU))
    assert verdict_state(low) == "not testable (learnt too little)" and "twice chance" in low["note"]
    # still learning is named first: a rising model at chance says "too short", not "cannot learn"
    rising_low = verdict("A beats B", "a", "b", _model([30.0, 31.0, 32.0], RISING), _model([8.0, 9.0, 9.5], PLATEAU))
    assert rising_low["reason"] == "still learning"
    assert set(map(verdict_state, (bound, low, rising_low))) <= set(VERDICT_STATES)


def test_records_stored_before_reasons_read_as_learnt_too_little_and_states_are_counted() -> None:
    old = {"verdict": "not testable", "note": "a model is below twice chance (10 %)"}
    assert verdict_state(old) == "not testable (learnt too little)"
    records = [old, {"verdict": "holds"}, {"verdict": "not testable", "reason": "still learning"}, {"verdict": "holds"}]
    assert count_states(records) == {
        "holds": 2,
        "not testable (still learning)": 1,
        "not testable (learnt too little)": 1,
    }
    assert list(count_states(records)) == [s for s in VERDICT_STATES if s in count_states(records)]


def test_the_summary_overview_counts_each_state() -> None:
    from tnt_rest_lite.report.summary import _counts

    states = ["holds", "not testable (still learning)", "not testable (still learning)", "undecided"]
    assert _counts(states) == "1 holds, 1 undecided, 2 not testable (still learning)"
    assert _counts([]) == "–"
