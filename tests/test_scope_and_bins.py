"""Scope from the model (map sizes read from the models), at-bound verdicts, size bins, histories with weights."""

from __future__ import annotations

import math

import pytest
import torch

from tnt_rest_lite import create_model
from tnt_rest_lite.core.format import format_mean_std
from tnt_rest_lite.detection.coco import SIZE_BINS, coco_evaluate, detections_to_coco, objects_per_bin, to_coco
from tnt_rest_lite.experiments import figures
from tnt_rest_lite.experiments.verdicts import verdict_state


def test_scopes_are_read_from_the_small_and_the_full_size_models() -> None:
    x = torch.zeros(1, 3, 32, 32)
    deit = create_model("deit_s_mini", num_classes=20).eval()
    assert figures.outer_grid_scope(deit, x) == {"image_size": 32, "grid": [4, 4], "keys": 17}
    assert figures.paper_scope("outer", "tnt_s") == {"image_size": 224, "grid": [14, 14], "keys": 197}
    rest = create_model("rest_lite_mini", num_classes=20).eval()
    assert figures.emsa_scope(rest, x, "stage4.1") == {"image_size": 32, "heads": 8, "queries": 4, "keys": 4}
    assert figures.paper_scope("emsa", "rest_lite", block="stage4") == {
        "image_size": 224,
        "heads": 8,
        "queries": 49,
        "keys": 49,
    }
    assert figures.cam_scope(rest, rest.stage4_out, x) == {"image_size": 32, "map": [2, 2]}
    assert figures.paper_scope("cam", "rest_lite", layer="stage4_out")["map"] == [7, 7]
    sentence = figures.scope_sentence("cam", {"image_size": 32, "map": [2, 2]}, {"image_size": 224, "map": [7, 7]})
    assert sentence == "measured on a 2×2 target map at 32 px; the paper's models: a 7×7 target map at 224 px"
    with pytest.raises(KeyError, match="no attention 'stage9.0.attn'"):
        figures.emsa_scope(rest, x, "stage9.0")
    with pytest.raises(ValueError, match="Unknown scope kind 'grid'"):
        figures.scope_sentence("grid", {}, {})


def _study(first_entropy: float, deep_entropy: float) -> dict:
    """Three seeds of a two-block model: block 1 near, block 2 far, with the given entropies (2 heads)."""
    run = {"distance": [[4.0, 4.2], [9.0, 9.4]], "entropy": [[first_entropy] * 2, [deep_entropy] * 2]}
    return {"M": [run, {**run, "distance": [[4.1, 4.0], [8.8, 9.1]]}, {**run, "distance": [[3.9, 4.3], [9.2, 9.0]]}]}


def test_a_first_block_at_the_even_spread_is_at_its_bound() -> None:
    even = figures.uniform_attention_measures(4, 8)["entropy"]
    assert even == pytest.approx(math.log(17))
    accuracy = {"M": {"test_top1": [60.0, 61.0, 62.0], "chance_top1": 5.0}}
    [at_bound] = figures.depth_verdicts(_study(even * 0.999, 2.0), accuracy, max_entropy=even)
    assert verdict_state(at_bound) == "not testable (at its bound)" and "even spread" in at_bound["note"]
    [judged] = figures.depth_verdicts(_study(even * 0.8, 2.0), accuracy, max_entropy=even)
    assert judged["verdict"] == "holds" and judged["paired"]
    [no_bound] = figures.depth_verdicts(_study(even, 2.0), accuracy)  # no bound given: judged as before
    assert no_bound["verdict"] == "holds"


def test_an_empty_size_bin_is_not_measured_and_shows_a_dash() -> None:
    # 64 px scenes, bins scaled by (64 / 640)^2: small < 10.24 px², large > 92.16 px²
    scale = (64 / 640) ** 2
    large_only = [
        (torch.zeros(3, 64, 64), {"boxes": torch.tensor([[4.0, 4.0, 30.0, 36.0]]), "labels": torch.tensor([1])}),
        (torch.zeros(3, 64, 64), {"boxes": torch.tensor([[10.0, 12.0, 50.0, 60.0]]), "labels": torch.tensor([2])}),
    ]
    gt = to_coco(large_only, ["a", "b"])
    assert objects_per_bin(gt, scale) == {"small": 0, "medium": 0, "large": 2}
    perfect = [{**t, "scores": torch.ones(len(t["labels"]))} for _, t in large_only]
    scores = coco_evaluate(gt, detections_to_coco(perfect, [0, 1]), area_scale=scale)
    assert math.isnan(scores["APS"]) and math.isnan(scores["APM"]) and scores["APL"] == pytest.approx(100.0)
    nothing = coco_evaluate(gt, [], area_scale=scale)  # no detections: the empty bins stay unmeasured
    assert math.isnan(nothing["APS"]) and nothing["APL"] == 0.0 and nothing["AP"] == 0.0
    assert format_mean_std(float("nan"), float("nan")) == "—" and format_mean_std(0.0, 0.0) == "0.0 ± 0.0"
    mixed = [
        *large_only,
        (
            torch.zeros(3, 64, 64),
            {"boxes": torch.tensor([[1.0, 1.0, 3.0, 3.0], [20.0, 20.0, 26.0, 26.0]]), "labels": torch.tensor([1, 2])},
        ),
    ]
    assert objects_per_bin(to_coco(mixed, ["a", "b"]), scale) == {"small": 1, "medium": 1, "large": 2}
    assert set(SIZE_BINS.values()) == {"APS", "APM", "APL"}


def test_the_detection_scenes_hold_every_coco_size_bin_in_about_cocos_shares() -> None:
    from tnt_rest_lite.detection.datasets import coco_size_mixture, detection_dataset
    from tnt_rest_lite.detection.evaluate import dataset_objects_per_bin
    from tnt_rest_lite.reference import COCO_SIZE_SHARES

    # the radii rows follow the bins scaled to 64 px: box sides 3.2 and 9.6 px are the bins' edges
    rows = coco_size_mixture(64)
    assert [share for share, _, _ in rows] == list(COCO_SIZE_SHARES.values())
    assert (
        rows[0][2] == pytest.approx(1.6)
        and rows[1][1:] == pytest.approx((1.6, 4.8))
        and rows[2][1] == pytest.approx(4.8)
    )
    scenes = detection_dataset("synthetic", "val", 300, difficulty="easy", categories="shape")
    counts = dataset_objects_per_bin(scenes)
    total = sum(counts.values())
    assert total > 300  # several objects per scene
    for name, share in COCO_SIZE_SHARES.items():
        assert abs(counts[name] / total - share) < 0.07, (name, counts)
    # the scenes before the mixture: every object as large as the classifiers saw, nearly all "large"
    # (a few occluded remnants are medium)
    legacy = dataset_objects_per_bin(
        detection_dataset("synthetic", "val", 60, difficulty="easy", object_sizes="classifier")
    )
    assert legacy["small"] == 0 and legacy["large"] > 0.95 * sum(legacy.values())
    with pytest.raises(ValueError, match="Unknown object_sizes 'tiny'; expected one of coco, classifier"):
        detection_dataset("synthetic", "val", 4, object_sizes="tiny")


def test_a_size_mixture_is_checked_and_leaves_the_classification_streams_alone() -> None:
    import numpy as np

    from tnt_rest_lite.data.synthetic import SyntheticShapes

    with pytest.raises(ValueError, match="object_radii must be"):
        SyntheticShapes(4, object_radii=[(0.5, 3.0, 2.0)])
    plain = SyntheticShapes(6, image_size=64, distractors=3)
    mixed = SyntheticShapes(6, image_size=64, distractors=3, object_radii=[(1.0, 2.0, 3.0)])
    assert not np.array_equal(plain.generate(0)["image"], mixed.generate(0)["image"])
    again = SyntheticShapes(6, image_size=64, distractors=3, object_radii=[(1.0, 2.0, 3.0)])
    assert np.array_equal(mixed.generate(5)["all_boxes"], again.generate(5)["all_boxes"])  # deterministic
    sides = np.concatenate(
        [mixed.generate(i)["all_boxes"][:, 2:] - mixed.generate(i)["all_boxes"][:, :2] for i in range(6)]
    )
    assert sides.max() <= 7  # radii 2-3 px: boxes at most about 6 px wide


def test_anchor_scale_sets_the_anchor_side_per_level_stride() -> None:
    from tnt_rest_lite.detection.detectors import DEFAULT_ANCHOR_SCALE, build_detector

    assert DEFAULT_ANCHOR_SCALE == 8.0  # torchvision's 32 px anchors at stride 4
    frcnn = build_detector("faster_rcnn", "deit_s_mini", 5, fpn_channels=32, box_head_width=64, anchor_scale=2.0)
    strides = frcnn.backbone.strides
    assert frcnn.rpn.anchor_generator.sizes == tuple((2 * s,) for s in strides)
    retina = build_detector("retinanet", "rest_small_mini", 5, fpn_channels=32, anchor_scale=4.0)
    first = retina.anchor_generator.sizes[0]
    assert first == tuple(int(2 * retina.backbone.strides[0] * 2 ** (k / 3)) for k in range(3))


def test_the_cpu_recipes_train_within_the_hour_at_the_measured_loop_rates() -> None:
    """Each table's cpu training (seeds x epochs x images at the loop's img/s of the committed train-bench)
    fits the chapter's hour, with room left for evaluation and the chapter's other cells."""
    import json
    from pathlib import Path

    from tnt_rest_lite.experiments.tables import TABLES
    from tnt_rest_lite.profiles import PROFILES

    cpu = PROFILES["cpu"]
    assert cpu.notebook_budget_s == 3600.0 and "within 60 minutes" in cpu.description
    store = Path(__file__).resolve().parents[1] / "results" / "cpu" / "train_bench_steps.json"
    rows = json.loads(store.read_text())["data"]
    for table in ("tnt_table1", "rest_table1", "rest_ablation"):
        rates = {r["model"]: r["loop_after"] for r in rows if r["table"] == table}
        assert set(rates) == set(TABLES[table].models)
        assert all(r["batch_size"] == cpu.batch_size_for(table) for r in rows if r["table"] == table)
        seconds = cpu.num_seeds * cpu.epochs_for(table) * cpu.train_samples * sum(1 / v for v in rates.values())
        assert 0.7 * cpu.notebook_budget_s < seconds < 0.9 * cpu.notebook_budget_s, (table, seconds / 60)
