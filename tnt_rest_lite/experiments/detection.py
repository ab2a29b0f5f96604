"""The two detection tables at small scale: TNT's Table 2 (Faster R-CNN) and ResT's Table 2 (RetinaNet).

One spec per table (:data:`DETECTION_TABLES`) says which detectors it trains, from which trained
classifiers their backbones start, what the paper published and which orderings it claims. One
task object runs any of them through the shared runner (:class:`DetectionExperiment` in
:func:`tnt_rest_lite.experiments.runner.run_table`, as the classification tables): every detector over the profile's seeds
through :func:`tnt_rest_lite.train.loop.train` with :class:`~tnt_rest_lite.detection.task.DetectionTask`
(progress bars, atomic checkpoints, exact resume, AMP on CUDA), COCO AP with pycocotools on the
held-out test split, results stored with provenance, verdicts with confidence intervals.

The small detectors are the published ones scaled down with their backbones: the same torchvision
``FasterRCNN`` / ``RetinaNet`` on the same feature levels, with a narrower FPN, a narrower box head
and fewer sampled proposals (the profile's ``detection`` settings; a synthetic 64 px image has 1 to
4 objects, not COCO's 7 on average at 800 px). The full-size detectors are built too, for the
parameter columns (:func:`full_size_rows`).
"""

from __future__ import annotations

import dataclasses
import shutil
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..core.format import format_mean_std, markdown_table, mean_std
from ..core.normalization import SYNTHETIC_MEAN, SYNTHETIC_STD
from ..detection.coco import COCO_METRICS, SIZE_BINS, area_scale_for, size_bin_ranges
from ..detection.datasets import DETECTION_IMAGE_SIZE, detection_dataset
from ..detection.detectors import build_detector, parameter_breakdown
from ..detection.evaluate import dataset_objects_per_bin, evaluate_detector, predict
from ..detection.plots import draw_detections
from ..detection.task import DetectionTask
from ..measure.complexity import count_params
from ..profiles import Profile, get_profile
from ..train.config import TrainConfig, seed_everything
from ..train.loop import train
from .runner import Experiment, ExperimentSpec
from .tables import trained_model, trained_record
from .verdicts import LEARNING_RULE, Claim, learning_cells, verdict
from .weights import weights_path

__all__ = [
    "Detector",
    "DetectionTableSpec",
    "DETECTION_TABLES",
    "detection_settings",
    "detection_table_spec",
    "detection_recipe",
    "detection_splits",
    "build_small_detector",
    "classifier_weights",
    "DetectionExperiment",
    "detection_experiment",
    "describe_detection_table",
    "full_size_rows",
    "full_size_markdown",
    "detection_rows",
    "plot_stored_predictions",
    "describe_detection_targets",
    "AP50_FLOOR",
    "TARGET_AP50",
]


# Below this test AP50 a detector has learnt too little to be compared ("not testable"): it finds
# fewer than one object in ten at the loosest overlap COCO scores.
AP50_FLOOR = 10.0
# The book's target for the best detector's test AP50 (runner.describe_targets reports it).
TARGET_AP50 = 50.0
# Anchors 4 x the level's stride (torchvision's are 8 x): the 64 px scenes' objects span COCO's three
# size bins, the smallest 1-3 px wide. Chosen on validation (cpu profile, seed 0, classifiers of one
# epoch, two detector epochs; one throwaway run each, not stored): Faster R-CNN on DeiT-S-mini val AP
# 3.0 / 4.5 / 4.0 at 8 / 4 / 2 x stride, RetinaNet on ResT-Small-mini 0.0 / 0.3 at 8 / 4 x stride.
SCENE_ANCHOR_SCALE = 4.0


@dataclass(frozen=True)
class Detector:
    """One row of a detection table: a detector kind on a backbone, started from a trained classifier.

    ``init_table`` names the classification table (``experiments.TABLES``) whose recipe trained
    the backbone's weights (:func:`tnt_rest_lite.experiments.tables.trained_model`: read from the
    checkpoints, or trained when absent). Detector seed ``s`` starts from classifier seed ``s``,
    or, with ``init_seeds=k``, from classifier seed ``s mod k`` (classifiers that no chapter
    trains are trained once, not once per detector seed).
    """

    key: str  # the results name and row key, e.g. "rest_small_mini_ln"
    backbone: str  # a name of detection.BACKBONES (a small counterpart)
    init_table: str
    stage_norm: bool = False
    init_seeds: int | None = None

    def init_seed(self, seed: int) -> int:
        """The classifier seed detector seed ``seed`` starts from."""
        return seed if self.init_seeds is None else seed % self.init_seeds


@dataclass(frozen=True, kw_only=True)
class DetectionTableSpec(ExperimentSpec):
    """A regenerated detection table: detectors, the published rows and the claimed orderings.

    ``paper`` maps each detector key to ``(row of the reference table, {our metric: its column})``;
    ``full_size`` lists the published detectors ``(label, backbone, stage_norm, reference row)``
    whose parameters are counted at full size; ``paired`` claims compare detectors whose seeds
    share the classifier initialisation and the data order (judged on the per-seed differences).
    """

    kind: str
    detectors: tuple[Detector, ...]
    paper: Mapping[str, tuple[str, Mapping[str, str]]]
    full_size: tuple[tuple[str, str, bool, str], ...]
    metrics: tuple[str, ...] = COCO_METRICS
    paired: bool = False

    def paper_value(self, key: str, metric: str) -> float | None:
        row, columns = self.paper[key]
        column = columns.get(metric)
        return None if column is None else self.reference()[row].get(column)


_TNT_COLUMNS = {"AP": "ap", "AP50": "ap50", "AP75": "ap75", "APS": "aps", "APM": "apm", "APL": "apl"}

DETECTION_TABLES: dict[str, DetectionTableSpec] = {
    "tnt_table2": DetectionTableSpec(
        prefix="tnt_table2",
        title="TNT supplement, Table 2: Faster R-CNN + FPN on ResNet-50, DeiT-S and TNT-S",
        kind="faster_rcnn",
        detectors=(
            # three backbones of about one size (ResNet-50 the largest, as published), all three initialised
            # from classifiers chapter 04 trains with one recipe and budget (tnt_table1)
            Detector("resnet50_slim_mini", "resnet50_slim_mini", "tnt_table1"),
            Detector("deit_s_mini", "deit_s_mini", "tnt_table1"),
            Detector("tnt_s_mini", "tnt_s_mini", "tnt_table1"),
        ),
        labels={
            "resnet50_slim_mini": "ResNet-50, slim (small)",
            "deit_s_mini": "DeiT-S (small)",
            "tnt_s_mini": "TNT-S (small)",
        },
        reference_table="TNT_TABLE2",
        paper={
            "resnet50_slim_mini": ("resnet50", _TNT_COLUMNS),
            "deit_s_mini": ("deit_s", _TNT_COLUMNS),
            "tnt_s_mini": ("tnt_s", _TNT_COLUMNS),
        },
        claims=(
            Claim("tnt_s_mini", "deit_s_mini"),
            Claim("deit_s_mini", "resnet50_slim_mini"),
            Claim("tnt_s_mini", "resnet50_slim_mini"),
        ),
        full_size=(
            ("ResNet-50", "resnet50", False, "resnet50"),
            ("DeiT-S", "deit_s", False, "deit_s"),
            ("TNT-S", "tnt_s", False, "tnt_s"),
        ),
        source="TNT supplement §3, Table 2 (COCO val2017, 12 epochs, mmdetection)",
    ),
    "rest_table2": DetectionTableSpec(
        prefix="rest_table2",
        title="ResT supplement, Table 2: RetinaNet + FPN on ResT, with and without LayerNorm on the stage outputs",
        kind="retinanet",
        detectors=(
            Detector("rest_small_mini", "rest_small_mini", "rest_table1", init_seeds=1),
            Detector("rest_small_mini_ln", "rest_small_mini", "rest_table1", stage_norm=True, init_seeds=1),
            Detector("rest_base_mini", "rest_base_mini", "rest_table1", init_seeds=1),
            Detector("rest_base_mini_ln", "rest_base_mini", "rest_table1", stage_norm=True, init_seeds=1),
        ),
        labels={
            "rest_small_mini": "ResT-Small (small), w/o LN",
            "rest_small_mini_ln": "ResT-Small (small), w LN",
            "rest_base_mini": "ResT-Base (small), w/o LN",
            "rest_base_mini_ln": "ResT-Base (small), w LN",
        },
        reference_table="REST_TABLE2",
        paper={
            "rest_small_mini": ("rest_small", {"AP": "ap_without_ln"}),
            "rest_small_mini_ln": ("rest_small", {"AP": "ap_with_ln"}),
            "rest_base_mini": ("rest_base", {"AP": "ap_without_ln"}),
            "rest_base_mini_ln": ("rest_base", {"AP": "ap_with_ln"}),
        },
        claims=(Claim("rest_small_mini_ln", "rest_small_mini"), Claim("rest_base_mini_ln", "rest_base_mini")),
        full_size=(
            ("ResT-Small w/o LN", "rest_small", False, "rest_small"),
            ("ResT-Small w LN", "rest_small", True, "rest_small"),
            ("ResT-Base w/o LN", "rest_base", False, "rest_base"),
            ("ResT-Base w LN", "rest_base", True, "rest_base"),
        ),
        source="ResT supplement A.3, Table 2 (COCO val2017, RetinaNet 1x, mmdetection; AP only)",
        metrics=("AP", "AP50", "AP75", "APS", "APM", "APL"),
        paired=True,
    ),
}


def detection_table_spec(name: str) -> DetectionTableSpec:
    """The spec of detection table ``name``; an unknown name lists the known ones."""
    if name not in DETECTION_TABLES:
        raise ValueError(f"Unknown detection table '{name}'; expected one of {', '.join(DETECTION_TABLES)}")
    return DETECTION_TABLES[name]


def detection_settings(profile: Profile, table: str | None = None) -> dict[str, Any]:
    """The profile's detection settings, with table ``table``'s own (``detection["tables"]``) applied."""
    if not profile.detection:
        raise ValueError(f"profile '{profile.name}' has no detection settings")
    settings = {k: v for k, v in profile.detection.items() if k != "tables"}
    settings.update(profile.detection.get("tables", {}).get(table or "", {}))
    return settings


def detection_recipe(profile: Profile | None = None, seed: int = 0, table: str | None = None) -> TrainConfig:
    """The detection recipe of ``profile``: AdamW, warm-up then cosine, weight decay 0.05, clipping.

    The ResT authors' RetinaNet recipe is AdamW at 1e-4 with weight decay 0.05 (mmdetection's 1x
    schedule: 12 epochs of COCO's 118k images); ours keeps the optimizer and decay and takes the
    profile's rate, epochs and batch (runs of minutes need a higher rate). No label smoothing or
    mixup: they are classification's.
    """
    p = profile or get_profile()
    d = detection_settings(p, table)
    return TrainConfig(
        epochs=int(d["epochs"]),
        batch_size=int(d["batch_size"]),
        lr=float(d["lr"]),
        weight_decay=0.05,
        optimizer="adamw",
        schedule="cosine",
        warmup_epochs=float(d.get("warmup_epochs", 0.5)),
        min_lr=float(d["lr"]) / 100,
        label_smoothing=0.0,
        clip_grad=float(d.get("clip_grad", 10.0)),
        seed=seed,
        num_workers=p.num_workers,
        eval_batch_size=int(d["batch_size"]) * 2,
    )


def detection_splits(
    profile: Profile | None = None, label_offset: int = 1, table: str | None = None
) -> tuple[Any, Any, Any]:
    """Train / validation / test detection splits of the synthetic shapes, sized by the profile.

    64 px images of the profile's difficulty with up to three distractors beside the main object:
    every visible object is boxed and labelled. Choices are made on validation; the tables read test.
    """
    p = profile or get_profile()
    d = detection_settings(p, table)
    return tuple(
        detection_dataset(
            "synthetic",
            split,
            int(d[f"{split}_samples"]),
            image_size=DETECTION_IMAGE_SIZE,
            seed=0,
            label_offset=label_offset,
            difficulty=p.data_difficulty,
            categories=d.get("categories", "class"),
            object_sizes=d.get("object_sizes", "coco"),
        )
        for split in ("train", "val", "test")
    )


def build_small_detector(
    kind: str, detector: Detector, num_classes: int, profile: Profile | None = None, weights: Any = None
) -> nn.Module:
    """The small detector of ``detector`` as ``profile`` trains it (FPN, box head and sampling sizes).

    Its images are normalised as the classifiers' were (the synthetic data's mean and std, not
    torchvision's ImageNet defaults), so the initialisation sees the inputs it was trained on.
    """

    p = profile or get_profile()
    d = detection_settings(p)
    options: dict[str, Any] = {
        "fpn_channels": int(d["fpn_channels"]),
        "anchor_scale": float(d.get("anchor_scale", SCENE_ANCHOR_SCALE)),
        "image_mean": list(SYNTHETIC_MEAN),
        "image_std": list(SYNTHETIC_STD),
    }
    if kind == "faster_rcnn":
        options["box_head_width"] = int(d["box_head_width"])
        options.update(d.get("faster_rcnn_options", {}))
    return build_detector(
        kind,
        detector.backbone,
        num_classes,
        stage_norm=detector.stage_norm,
        image_size=DETECTION_IMAGE_SIZE,
        weights=weights,
        backbone_options=p.model_overrides.get(detector.backbone, {}),
        **options,
    )


def _init_epochs(profile: Profile, table: str | None) -> int | None:
    """The epochs a detection table's initialisation classifiers train for (``None``: their table's own)."""
    return detection_settings(profile, table).get("init_epochs")


def classifier_weights(
    detector: Detector, seed: int, profile: Profile, table: str | None = None, progress: bool = True
) -> dict[str, torch.Tensor]:
    """The trained classifier's weights for detector seed ``seed`` (trained now if absent).

    Table ``table``'s ``init_epochs`` setting, where the profile has one, shortens the classifier's
    recipe to that many epochs (classifiers that no chapter trains, trained here within the budget).
    """
    init = detector.init_seed(seed)
    epochs = _init_epochs(profile, table)
    classifier = trained_model(detector.init_table, detector.backbone, init, profile, progress=progress, epochs=epochs)
    return classifier.state_dict()


@dataclass(frozen=True)
class DetectionExperiment(Experiment):
    """The detection task of the shared runner (:mod:`tnt_rest_lite.experiments.runner`): COCO AP.

    Each seed ``s``: the backbone starts from classifier seed ``s`` (``s mod init_seeds`` where the
    detector sets ``init_seeds``; 10's detectors: seed 0 for every ``s``), the detector trains through the
    engine (checkpoint after every epoch under the checkpoints folder, resumed if interrupted,
    removed when the seed ends) with the validation AP per epoch, then is evaluated once on the
    test split (COCO AP, AP50, AP75, APS, APM, APL) and timed. The first seed's predictions on
    ``show_images`` test images are kept for the drawings. Claims are judged on the seeds' test AP,
    not testable below :data:`AP50_FLOOR`.
    """

    spec: DetectionTableSpec
    show_images: int = 4
    metric: str = "test_AP"
    curve: str = "val_AP50"
    curve_label: str = "validation AP50"

    def detector(self, key: str) -> Detector:
        return next(d for d in self.spec.detectors if d.key == key)

    def units(self) -> tuple[str, ...]:
        return tuple(d.key for d in self.spec.detectors)

    def splits(self, profile: Profile, dataset: str = "synthetic", download: bool = False) -> tuple[Any, Any, Any]:
        """The synthetic detection scenes (``dataset`` and ``download`` are classification's)."""
        offset = 1 if self.spec.kind == "faster_rcnn" else 0
        return detection_splits(profile, label_offset=offset, table=self.spec.prefix)

    def train_seed(self, unit: str, seed: int, splits: tuple[Any, Any, Any], profile: Profile, progress: bool) -> Any:
        spec, detector = self.spec, self.detector(unit)
        train_set, val_set, test_set = splits
        weights = classifier_weights(detector, seed, profile, spec.prefix, progress)
        seed_everything(seed)
        model = build_small_detector(spec.kind, detector, len(train_set.classes), profile, weights)
        folder = weights_path(spec.prefix, detector.key, seed, profile).with_suffix("")
        config = dataclasses.replace(
            detection_recipe(profile, seed, spec.prefix), progress=progress, checkpoint_dir=str(folder)
        )
        desc = f"{spec.labels[detector.key]} seed {seed}"
        result = train(model, train_set, val_set, config, task=DetectionTask(), desc=desc)
        start = time.perf_counter()
        test = evaluate_detector(model, test_set, batch_size=config.eval_batch_size or 16)
        eval_rate = len(test_set) / (time.perf_counter() - start)
        shutil.rmtree(folder, ignore_errors=True)  # the run is complete: its resume state is not needed
        epochs = _init_epochs(profile, spec.prefix)
        init = trained_record(detector.init_table, detector.backbone, detector.init_seed(seed), profile, epochs)
        init_top1 = None if init is None else init["test_top1"]  # the classifier's, on its own test split
        return {"model": model, "result": result, "test": test, "eval_rate": eval_rate, "init_test_top1": init_top1}

    def summarise(
        self, unit: str, seeds: list[int], runs: list[Any], splits: tuple[Any, Any, Any], profile: Profile
    ) -> dict[str, Any]:
        spec, detector = self.spec, self.detector(unit)
        train_set, val_set, test_set = splits
        model = runs[-1]["model"]
        histories = [r["result"].history for r in runs]
        predictions = predict(runs[0]["model"], [test_set[i] for i in range(self.show_images)])
        init_epochs = _init_epochs(profile, spec.prefix)
        summary: dict[str, Any] = {
            "detector": detector.key,
            "kind": spec.kind,
            "backbone": detector.backbone,
            "stage_norm": detector.stage_norm,
            "init": f"{detector.init_table} classifier weights, seeds {[detector.init_seed(s) for s in seeds]}"
            + (f", {init_epochs} epoch(s)" if init_epochs else ""),
            # the initialisation's test top-1 per detector seed (None: weights saved without it)
            "init_test_top1": [r["init_test_top1"] for r in runs],
            "seeds": seeds,
            "params": count_params(model),
            "parameter_breakdown": parameter_breakdown(model),
            "train_images_per_s": statistics.fmean(r["result"].train_images_per_s for r in runs),
            "test_images_per_s": statistics.fmean(r["eval_rate"] for r in runs),
            "wall_time_s": [r["result"].wall_time_s for r in runs],
            "train_samples": len(train_set),
            "val_samples": len(val_set),
            "test_samples": len(test_set),
            "image_size": DETECTION_IMAGE_SIZE,
            "train_config": detection_recipe(profile, table=spec.prefix).as_dict(),
            "detector_settings": detection_settings(profile, spec.prefix),
            "histories": histories,
            "predictions": [{k: v.tolist() for k, v in pred.items()} for pred in predictions],
            # how many test objects each COCO size bin holds: an empty bin's AP is not measured ("—")
            "test_objects_per_bin": dataset_objects_per_bin(test_set),
        }
        for metric in COCO_METRICS:
            values = [r["test"][metric] for r in runs]
            summary[f"test_{metric}"] = values
            summary[f"test_{metric}_mean"], summary[f"test_{metric}_std"] = mean_std(values)
            summary[f"val_{metric}"] = [h[f"val_{metric}"][-1] for h in histories]
        return summary

    def rows(self, summaries: Mapping[str, Mapping[str, Any]]) -> tuple[list[str], list[list[str]]]:
        return detection_rows(self.spec, summaries)

    def claim_text(self, claim: Claim) -> str:
        spec = self.spec
        better, worse = spec.paper_value(claim.better, "AP"), spec.paper_value(claim.worse, "AP")
        return f"{spec.labels[claim.better]} beats {spec.labels[claim.worse]} in box AP (paper: {better} vs {worse})"

    def judge(self, claim: Claim, summaries: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        """Paired when the table says its detectors share each seed's initialisation and data (ResT's LN switch)."""
        return verdict(
            self.claim_text(claim),
            claim.better,
            claim.worse,
            summaries[claim.better],
            summaries[claim.worse],
            metric=self.metric,
            unit="AP points",
            paired=self.spec.paired,
            floor=("test_AP50", AP50_FLOOR),
            curve=self.curve,
        )

    def target_state(self, summary: Mapping[str, Any]) -> dict[str, Any]:
        """Test AP50 (mean over the seeds) against :data:`TARGET_AP50`."""
        value = summary["test_AP50_mean"]
        return {"metric": "test_AP50", "target": TARGET_AP50, "value": value, "met": value >= TARGET_AP50}

    def summary_line(self, unit: str, summary: Mapping[str, Any]) -> str:
        s = summary
        return (
            f"{unit:20s} test AP {format_mean_std(s['test_AP_mean'], s['test_AP_std'])}, "
            f"AP50 {format_mean_std(s['test_AP50_mean'], s['test_AP50_std'])} "
            f"(seeds AP50: {', '.join(f'{v:.1f}' for v in s['test_AP50'])}), "
            f"train {s['train_images_per_s']:.1f} img/s, test {s['test_images_per_s']:.1f} img/s, "
            f"{sum(s['wall_time_s']) / 60:.1f} min for {len(s['seeds'])} seed(s)"
        )

    def targets(self, table: Mapping[str, Any]) -> str:
        """The best detector's test AP50 against :data:`TARGET_AP50`, every detector's last-epoch gain."""
        return describe_detection_targets(table)


def detection_experiment(name: str) -> DetectionExperiment:
    """The shared runner's task object of detection table ``name`` (:func:`tnt_rest_lite.experiments.runner.run_table`)."""
    return DetectionExperiment(spec=detection_table_spec(name))


def detection_rows(
    spec: DetectionTableSpec, summaries: Mapping[str, Mapping[str, Any]]
) -> tuple[list[str], list[list[str]]]:
    """Headers and rows: detector | params | per metric: ours (mean ± std, test) / paper / difference | img/s.

    A metric the paper does not publish for any detector (ResT's table has AP only) gets our column alone,
    without an empty paper column and its difference.
    """
    published = {m: any(spec.paper_value(d.key, m) is not None for d in spec.detectors) for m in spec.metrics}
    headers = ["detector", "init classifier test top-1", "params (ours, small)"]
    for metric in spec.metrics:
        headers += [f"{metric} ours", f"{metric} paper", "Δ"] if published[metric] else [f"{metric} ours"]
    headers += ["train img/s", "test img/s"]
    rows = []
    for detector in spec.detectors:
        s = summaries[detector.key]
        row = [spec.labels[detector.key], _init_cell(s), f"{s['params'] / 1e6:.2f} M"]
        for metric in spec.metrics:
            ours = s[f"test_{metric}_mean"]
            paper = spec.paper_value(detector.key, metric)
            row.append(format_mean_std(ours, s[f"test_{metric}_std"]))
            if published[metric]:
                row += [
                    "–" if paper is None else f"{paper:.1f}",
                    "—" if ours != ours else "–" if paper is None else f"{ours - paper:+.1f}",  # "—": no objects
                ]
        row += [f"{s['train_images_per_s']:.1f}", f"{s['test_images_per_s']:.1f}"]
        rows.append(row)
    return headers, rows


def _init_cell(summary: Mapping[str, Any]) -> str:
    """The initialisation classifiers' test top-1 (mean ± std over the detector seeds), or why not shown."""
    values = summary.get("init_test_top1")
    if not values or any(v is None for v in values):
        return "not recorded"
    return format_mean_std(*mean_std(values))


def full_size_rows(name: str, num_classes: int = 80) -> dict[str, Any]:
    """Parameters of the published detectors (80 COCO classes), by part, beside the paper's column.

    Built with :func:`tnt_rest_lite.detection.build_detector` at full size: torchvision's heads
    (Faster R-CNN: RPN with one 3x3 conv, box head 1024-1024; RetinaNet: four 3x3 convs per
    branch, 9 anchors per place) on our backbones.
    """

    spec = detection_table_spec(name)
    reference = spec.reference()
    rows = []
    for label, backbone, stage_norm, row in spec.full_size:
        detector = build_detector(spec.kind, backbone, num_classes, stage_norm=stage_norm)
        parts = parameter_breakdown(detector)
        paper = reference[row].get("params_m")
        rows.append(
            {
                "label": label,
                "backbone": backbone,
                "stage_norm": stage_norm,
                **parts,
                "trainable": count_params(detector, trainable_only=True),
                "paper_m": paper,
            }
        )
        del detector
    return {"num_classes": num_classes, "kind": spec.kind, "rows": rows}


def full_size_markdown(params: Mapping[str, Any]) -> str:
    """The parameter columns of :func:`full_size_rows` as a markdown table (millions), paper beside ours."""

    headers = [
        "detector",
        "backbone",
        "pyramid adapter",
        "FPN",
        "heads",
        "total",
        "trainable",
        "paper",
        "Δ (trainable − paper)",
    ]
    rows = []
    for r in params["rows"]:
        paper = r["paper_m"]
        rows.append(
            [r["label"]]
            + [f"{r[k] / 1e6:.2f}" for k in ("backbone", "pyramid adapter", "FPN", "heads", "total", "trainable")]
            + [
                "–" if paper is None else f"{paper:.1f}",
                "–" if paper is None else f"{r['trainable'] / 1e6 - paper:+.2f}",
            ]
        )
    text = (
        markdown_table(headers, rows)
        + f"\n\nMillions of parameters, {params['num_classes']} classes, torchvision's heads."
    )
    return text + _parameter_gap(params["rows"])


def _parameter_gap(rows: Sequence[Mapping[str, Any]]) -> str:
    """Where the ViT detectors' gap to the paper lies, read from the counts (empty if no pair to compare)."""
    vits = [r for r in rows if r["pyramid adapter"] > 0 and r["paper_m"] is not None]
    if len(vits) < 2:
        return ""
    gaps = [r["trainable"] / 1e6 - r["paper_m"] for r in vits]
    first, last = vits[0], vits[-1]
    ours_pair = (last["trainable"] - first["trainable"]) / 1e6
    paper_pair = last["paper_m"] - first["paper_m"]
    labels = " and ".join(r["label"] for r in vits)
    return (
        f"\n\nThe {labels} detectors differ from the paper's by {', '.join(f'{g:+.2f}' for g in gaps)} M, "
        f"while {last['label']} − {first['label']} is {ours_pair:.2f} M here and {paper_pair:.1f} M in the paper: "
        f"the backbones account for the same difference, so the gap lies in what the ViT detectors share, the "
        f"pyramid adapter (ours {first['pyramid adapter'] / 1e6:.2f} M) beside the FPN and heads."
    )


def _init_rule(spec: DetectionTableSpec) -> str:
    """Which classifier seed each detector seed starts from, said once if every detector shares it."""

    def rule(x: Detector) -> str:
        if x.init_seeds is None:
            return "detector seed s from classifier seed s"
        if x.init_seeds == 1:
            return "every detector seed from classifier seed 0: these classifiers are trained once, here"
        return f"detector seed s from classifier seed s mod {x.init_seeds}"

    rules = {x.key: rule(x) for x in spec.detectors}
    if len(set(rules.values())) == 1:
        return f"({next(iter(rules.values()))})"
    return "(" + "; ".join(f"{spec.labels[k]}: {r}" for k, r in rules.items()) + ")"


def _object_sizes_text(scenes: Any) -> str:
    """How the scenes' objects are sized, read from the mixture ``scenes`` draw (generated, never typed)."""
    mixture = scenes.source.object_radii
    if mixture is None:
        return "each object as large as the classifiers saw objects at 32 px, so every one is COCO-large"
    bins = size_bin_ranges(area_scale_for(scenes.source.image_size))
    shares = " / ".join(f"{share:.0%}" for share, _, _ in mixture)
    return (
        f"object sizes drawn with COCO's shares of small / medium / large objects, {shares}, on COCO's size "
        f"bins scaled to {scenes.source.image_size} px: box areas under {bins['small'][1]:.1f} px² are small, "
        f"over {bins['large'][0]:.1f} px² large; the table counts the test split's objects per bin"
    )


def describe_detection_table(name: str, profile: Profile | None = None) -> str:
    """Markdown: what detection table ``name`` trains in ``profile`` (data, recipe, detectors), generated."""

    spec, p = detection_table_spec(name), profile or get_profile()
    d = detection_settings(p, name)
    config = detection_recipe(p, table=name)
    offset = 1 if spec.kind == "faster_rcnn" else 0
    train_set = detection_splits(p, offset, name)[0]
    steps = config.epochs * (len(train_set) // config.batch_size)
    kind = "Faster R-CNN + FPN" if spec.kind == "faster_rcnn" else "RetinaNet + FPN"
    lines = [
        f"**Profile `{p.name}`**: {p.description}.",
        "",
        f"* **Data**: scenes of 1 to {train_set.source.distractors + 1} synthetic objects at {DETECTION_IMAGE_SIZE} px "
        f"(difficulty `{p.data_difficulty}`, {_object_sizes_text(train_set)}): "
        f"{d['train_samples']:,} training / {d['val_samples']:,} validation / {d['test_samples']:,} test "
        f"images, {len(train_set.classes)} categories ("
        + (
            "the objects' shapes: " + ", ".join(train_set.classes)
            if train_set.categories == "shape"
            else "shape × texture"
        )
        + "), every visible object boxed. Choices on validation; the table reads test.",
        f"* **Detector**: torchvision's {kind}, FPN width {d['fpn_channels']}"
        + (f", box head {d['box_head_width']}" if spec.kind == "faster_rcnn" else "")
        + f"; backbones start from the classifiers trained by `{'`, `'.join(sorted({x.init_table for x in spec.detectors}))}` "
        + _init_rule(spec)
        + (
            f", for {d['init_epochs']} epoch(s) of that table's recipe (no chapter trains them; the budget holds no more)"
            if d.get("init_epochs")
            else ""
        )
        + ".",
        f"* **Recipe**: AdamW, lr {config.lr:g}, weight decay {config.weight_decay:g}, batch {config.batch_size}, "
        f"{config.epochs} epochs ({steps:,} steps), {config.warmup_epochs:g} warm-up epoch(s) then cosine, "
        f"gradient clipping {config.clip_grad:g}; **{p.num_seeds} seed(s)** per detector.",
        "",
    ]
    rows = []
    for detector in spec.detectors:
        model = build_small_detector(spec.kind, detector, len(train_set.classes), p)
        rows.append(
            [
                spec.labels[detector.key],
                f"`{detector.backbone}`" + (" + stage LN" if detector.stage_norm else ""),
                f"{count_params(model.backbone.body.model):,}",
                f"{count_params(model):,}",
            ]
        )
    lines.append(markdown_table(["detector", "backbone", "backbone parameters", "detector parameters"], rows))
    return "\n".join(lines)


def plot_stored_predictions(table: Mapping[str, Any], max_boxes: int = 4, min_score: float = 0.1) -> Any:
    """Each detector's stored first-seed predictions (red) against the ground truth (white) on the first test images.

    Per image, the ``max_boxes`` highest-scoring detections above ``min_score`` (a RetinaNet's
    focal-loss scores stay low after short training, so a fixed 0.5 would hide what it finds).
    """
    import matplotlib.pyplot as plt

    spec, test_set = table["spec"], table["splits"][2]
    summaries = table["summaries"]
    count = min(len(s["predictions"]) for s in summaries.values())
    fig, axes = plt.subplots(len(summaries), count, figsize=(2.2 * count, 2.3 * len(summaries)), squeeze=False)
    names = getattr(test_set, "classes", None)
    for row, (key, s) in enumerate(summaries.items()):
        for col in range(count):
            ax = axes[row][col]
            image, target = test_set[col]
            pred = s["predictions"][col]
            ranked = sorted(zip(pred["scores"], pred["boxes"], pred["labels"], strict=True), reverse=True)
            best = [r for r in ranked[:max_boxes] if r[0] >= min_score]
            shown = {
                "scores": torch.tensor([r[0] for r in best]),
                "boxes": torch.tensor([r[1] for r in best]).reshape(-1, 4),
                "labels": torch.tensor([r[2] for r in best], dtype=torch.long),
            }
            # boxes drawn into the pixels by torchvision; names in a font that a 64 px image leaves room for
            ax.imshow(draw_detections(image, target, shown, min_score, labelled=False).permute(1, 2, 0).numpy())
            offset = 1 if spec.kind == "faster_rcnn" else 0
            for score, (x0, y0, _, _), label in best:
                name = names[label - offset] if names else str(label)
                ax.text(x0, y0, f"{name} {score:.2f}", color="red", fontsize=5, va="bottom")
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(spec.labels[key], fontsize=7)
    fig.suptitle(
        f"first seed's {max_boxes} best detections per image (red, score ≥ {min_score:g}) "
        "against the ground truth (white), test images",
        fontsize=9,
    )
    fig.tight_layout()
    return fig


def describe_detection_targets(table: Mapping[str, Any], target_ap50: float = TARGET_AP50) -> str:
    """Markdown: the best detector's test AP50 against the book's target, every detector's plateau state.

    The plateau state reads the validation AP50 curve over the last quarter of training
    (:data:`~tnt_rest_lite.experiments.verdicts.LEARNING_RULE`).
    """

    summaries = table["summaries"]
    best = max(summaries, key=lambda k: summaries[k]["test_AP50_mean"])
    rows = [
        [f"`{key}`" + (" (best)" if key == best else ""), f"{s['test_AP50_mean']:.1f}", *learning_cells(s, "val_AP50")]
        for key, s in summaries.items()
    ]
    text = markdown_table(["detector", "test AP50", "val AP50 gain, last quarter", "curve"], rows)
    counts = summaries[best].get("test_objects_per_bin")
    if counts:
        shown = ", ".join(f"{n} {name} ({SIZE_BINS[name]})" for name, n in counts.items())
        empty = [SIZE_BINS[name] for name, n in counts.items() if n == 0]
        text += f"\n\nTest objects per COCO size bin (scaled to the image side): {shown}." + (
            f" {', '.join(empty)}: no objects, nothing measured (—)." if empty else ""
        )
    value = summaries[best]["test_AP50_mean"]
    reached = "reaches" if value >= target_ap50 else "does not reach"
    return (
        text
        + f"\n\nThe best detector, `{best}`, {reached} the book's target of AP50 ≥ {target_ap50:g} on the test split "
        f"({value:.1f}). Rule: {LEARNING_RULE}."
    )
