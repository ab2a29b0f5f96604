"""Run profiles: one switch, ``TNT_REST_PROFILE``, decides how big every run is.

``ci``     CI's smoke run: 2 CPU cores, each notebook within 3 minutes, one seed (verdicts undecided).
``cpu``    the book's run when no GPU is lent: 2 CPU cores, 3 seeds, each training notebook within
           60 minutes; the committed outputs of the book come from it.
``colab``  one T4/L4-class GPU, each notebook within 25 minutes.
``full``   one A100/H100-class GPU, the largest runs we offer.

Without the variable, the profile is ``colab`` when CUDA is available and ``ci`` otherwise.

``TNT_REST_SCALE=smoke`` shrinks any profile to a few steps of every run (:func:`smoke_scale`) and
keeps every other setting, so that CI can execute the ``colab`` and ``full`` paths on a CPU; its
results and checkpoints are kept apart (``<profile>-smoke``) from the profile's own.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch

__all__ = ["Profile", "PROFILES", "get_profile", "default_profile_name", "smoke_scale", "ENV_VAR", "SCALE_ENV_VAR"]

ENV_VAR = "TNT_REST_PROFILE"
SCALE_ENV_VAR = "TNT_REST_SCALE"
SMOKE_MAX_BATCH_ENV_VAR = "TNT_REST_SMOKE_MAX_BATCH"
SCALES = ("book", "smoke")  # "book": the profile as defined; "smoke": smoke_scale of it


@dataclass(frozen=True)
class Profile:
    """Settings of one run profile. Read it with :func:`get_profile`."""

    name: str
    description: str
    image_size: int  # side of the images the trained (small-scale) models see
    train_samples: int  # training-set size (distinct generated images for the synthetic dataset)
    val_samples: int  # validation-set size: every choice (rate, epochs, difficulty) is made on it
    test_samples: int  # held-out test-set size: tables and verdicts read this split only
    epochs: int
    batch_size: int
    num_seeds: int  # seeds per trained model (verdicts need at least 2; the book shows 3)
    figure_images: int  # how many images a figure shows
    diversity_images: int  # images averaged for the ResT head-diversity figure
    bench_repeats: int  # timed repeats of a throughput benchmark (median is reported)
    bench_batch: int  # batch size of throughput benchmarks
    num_workers: int  # DataLoader workers
    # config overrides of the small models trained in this profile (e.g. the stem stride that keeps
    # ResT's stage maps 16-8-4-2 tokens wide at this image size); the registered *_mini configs are
    # the 32 px ones
    model_overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # recipe settings of one table (keys: experiments.TABLES names; values: "epochs", "batch_size",
    # "lr": one rate, or a {model: rate} mapping) where its models need another budget than the
    # profile's default, chosen on validation
    table_recipe: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    train_mixup: bool = False  # mixup/cutmix in the DeiT recipe: only long runs profit from it
    # wall-time budget of one training notebook (all its models and seeds), checked by train_bench
    notebook_budget_s: float | None = None
    # clutter level of the synthetic dataset (data.DIFFICULTIES), chosen on the validation split
    data_difficulty: str = "standard"
    # the detection chapters (detection_experiments): "categories" of the synthetic objects ("shape":
    # 5, chosen on validation over "class": 20), split sizes ("train_samples", "val_samples",
    # "test_samples"), "epochs", "batch_size", "lr", and the small detectors' widths ("fpn_channels",
    # "box_head_width") and Faster R-CNN's sampling ("faster_rcnn_options", torchvision's arguments);
    # "tables": per-table overrides of any of these ({"rest_table2": {"train_samples": ...}})
    detection: Mapping[str, Any] = field(default_factory=dict)
    scale: str = "book"  # "smoke": shrunk by smoke_scale ($TNT_REST_SCALE)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def store_name(self) -> str:
        """The folder of this profile's results and checkpoints: a smoke run never mixes with the real run."""
        return self.name if self.scale == "book" else f"{self.name}-{self.scale}"

    def epochs_for(self, table: str | None) -> int:
        """Epochs of the models of ``table`` (its ``table_recipe`` where set, else ``epochs``)."""
        return int(self.table_recipe.get(table or "", {}).get("epochs", self.epochs))

    def batch_size_for(self, table: str | None) -> int:
        """Batch size of the models of ``table`` (its ``table_recipe`` where set, else ``batch_size``)."""
        return int(self.table_recipe.get(table or "", {}).get("batch_size", self.batch_size))


# Faster R-CNN's sampling scaled to 64 px images with 1-4 objects (torchvision's defaults are set for
# COCO at 800 px: 2000 proposals kept, 512 RoIs sampled per image for the box head).
_SMALL_RCNN = {
    "rpn_pre_nms_top_n_train": 600,
    "rpn_post_nms_top_n_train": 300,
    "rpn_pre_nms_top_n_test": 300,
    "rpn_post_nms_top_n_test": 150,
    "rpn_batch_size_per_image": 64,
    "box_batch_size_per_image": 64,
}

# full trains at 112 px, where the registered *_mini configs have the papers' token geometry at 224 px:
# DeiT and TNT a 14x14 patch grid (8 px patches), ResT stage maps of 56, 28, 14 and 7 tokens with 7x7
# EMSA keys in every stage (stem stride 2, reductions 8-4-2-1), ResNet the same stage widths. At 64 px
# with 16 px patches the grid was 4x4, as at 32 px: TNT Fig. 1's "more patches related as depth
# grows" cannot show on 16 patches.
FULL_IMAGE_SIZE = 112

# The ResNet recipe's per-model SGD rates of the ablation, chosen on validation in the cpu profile at
# batch 64 (results/cpu/recipe_search_<model>.json; a test checks them): ResT-Lite learns only at low
# rates under SGD (at ResNet's 0.1 x batch / 256 it stays at chance), ResNet-18 at high ones.
_CPU_ABLATION_RATES = {"rest_lite_mini": 0.01, "resnet18_mini": 0.2}


def _linearly_scaled(rates: Mapping[str, float], from_batch: int, to_batch: int) -> dict[str, float]:
    """``rates`` moved from batch ``from_batch`` to ``to_batch`` by the linear scaling rule."""
    return {model: lr * to_batch / from_batch for model, lr in rates.items()}


PROFILES: dict[str, Profile] = {
    "ci": Profile(
        name="ci",
        description="CI's smoke run on 2 CPU cores: every notebook within 3 minutes, one seed",
        image_size=32,
        train_samples=2048,
        val_samples=512,
        test_samples=512,
        epochs=4,
        batch_size=32,  # 256 optimizer steps in 4 epochs: short runs learn more from more, smaller steps
        num_seeds=1,
        figure_images=2,
        diversity_images=8,
        bench_repeats=3,
        bench_batch=8,
        num_workers=0,
        notebook_budget_s=180.0,
        data_difficulty="easy",
        detection={
            "categories": "shape",
            "tables": {"rest_table2": {"init_epochs": 1}},
            "train_samples": 96,  # 10 took 174 s of its 180 in a fresh clone's CI run with 128
            "val_samples": 32,
            "test_samples": 48,
            "epochs": 2,
            "batch_size": 8,
            "lr": 4e-4,
            "fpn_channels": 64,
            "box_head_width": 256,
            "faster_rcnn_options": _SMALL_RCNN,
        },
    ),
    "cpu": Profile(
        name="cpu",
        description="the book's run on 2 CPU cores (no GPU): 3 seeds, each training notebook within 60 minutes",
        image_size=32,
        train_samples=24576,
        val_samples=2048,
        test_samples=2048,
        epochs=4,
        # chosen on validation: results/cpu/recipe_search_tnt_s_mini.json (shown in chapters 03 and 04) has
        # batch 32 at lr 5e-4 ahead of batch 32 at 1e-3 and batch 128 at 1e-3; batch 32 is slower per
        # image, so the budget holds 4 epochs of it
        batch_size=32,
        num_seeds=3,
        figure_images=6,
        diversity_images=64,
        bench_repeats=5,
        bench_batch=16,
        num_workers=0,
        # Every table trains for as many epochs as its chapter's 60 minutes hold on an idle 2-core CPU
        # (3 seeds, at the img/s of train-bench; the slowest models per image are TNT-S-SE-mini, the
        # slim ResNet-50 and ResT-Lite with MSA): the plateau searches on validation
        # (results/cpu/recipe_search_<model>.json, seed 0, shown in chapters 04-06) still rose over
        # the last quarter of 6-8 epochs, so more epochs is the one change that helps, and the
        # chapters' verdicts say where a model is still learning. The ResT tables train at batch 64.
        # Under the ResNet recipe (SGD, no warm-up, no clipping) the rate is per model, each its best
        # in the stored validation search (shown in chapter 06; a test checks it): ResT-Lite learns
        # only at low rates under SGD, ResNet-18 at high ones.
        table_recipe={
            "tnt_table1": {"epochs": 5},
            "rest_table1": {"epochs": 7, "batch_size": 64},
            "rest_ablation": {"epochs": 8, "batch_size": 64, "lr": _CPU_ABLATION_RATES},
        },
        notebook_budget_s=60 * 60.0,
        data_difficulty="easy",
        # Both detection chapters within 60 minutes: RetinaNet on ResT trained at 18-27 img/s here,
        # Faster R-CNN (with the CPU's separable RoIAlign) at 26-32 img/s on the ViTs (the 45-minute
        # runs of the scenes before the COCO size mixture took 27 and 14 minutes of detector training).
        # The Faster R-CNN recipe was chosen on validation on those scenes (ResNet-50, seed 0, one
        # throwaway run each, not stored; val AP50 of the last epoch): box head 1024 over 256 (43.0 vs
        # 41.8 at 2 epochs; 47.3 vs 43.8 at 4 epochs at lr 1e-3), lr 1e-3 over 4e-4 (43.0 vs 41.8 at
        # 2 epochs); 4 epochs gave 47.3, 6 gave 48.8: more epochs helped, so the hour's budget goes to
        # epochs (5 for Faster R-CNN; RetinaNet twice the images for 3). Pooling from coarser FPN levels
        # was worse (RoI canonical scale 28: 38.3, 18: 29.3, against torchvision's 224: 41.8). The
        # mixture's scenes are harder (a third of the objects are a few pixels wide): not searched again.
        detection={
            "categories": "shape",
            "train_samples": 1280,
            "val_samples": 96,
            "test_samples": 256,
            "epochs": 2,
            "batch_size": 8,
            "lr": 4e-4,
            "warmup_epochs": 0.25,
            "tables": {
                "tnt_table2": {"epochs": 5, "lr": 1e-3},
                "rest_table2": {"epochs": 3, "init_epochs": 1},
            },
            "fpn_channels": 64,
            "box_head_width": 1024,
            "faster_rcnn_options": _SMALL_RCNN,
        },
    ),
    "colab": Profile(
        name="colab",
        description="one T4/L4-class GPU; every notebook within 25 minutes",
        image_size=32,
        train_samples=50000,
        val_samples=5000,
        test_samples=5000,
        epochs=15,
        batch_size=128,
        num_seeds=3,
        figure_images=6,
        diversity_images=200,
        bench_repeats=10,
        bench_batch=64,
        num_workers=2,
        # the same 32 px data as cpu: the ablation's per-model rates are cpu's, linearly scaled to batch
        # 128 (not searched at this scale: no GPU has run a recipe search yet)
        table_recipe={"rest_ablation": {"lr": _linearly_scaled(_CPU_ABLATION_RATES, 64, 128)}},
        notebook_budget_s=25 * 60.0,
        data_difficulty="easy",
        detection={
            "categories": "shape",
            "train_samples": 4096,
            "val_samples": 512,
            "test_samples": 1024,
            "epochs": 5,
            "batch_size": 16,
            "lr": 4e-4,
            "fpn_channels": 128,
            "box_head_width": 512,
            "faster_rcnn_options": {**_SMALL_RCNN, "box_batch_size_per_image": 128},
        },
    ),
    "full": Profile(
        name="full",
        description="one A100/H100-class GPU; the largest runs we offer, at the papers' token geometry (112 px)",
        image_size=FULL_IMAGE_SIZE,
        train_samples=100000,
        val_samples=10000,
        test_samples=10000,
        epochs=60,
        batch_size=256,
        num_seeds=3,
        figure_images=6,
        diversity_images=1000,
        bench_repeats=20,
        bench_batch=128,
        num_workers=8,
        # cpu's searched ablation rates linearly scaled to batch 256 (ResNet's rule, 0.1 x batch / 256, is
        # where cpu's search left ResT-Lite at chance); 112 px standard-difficulty data is another task than
        # cpu's 32 px: a GPU session should search them (recipe-search) before they are trusted
        table_recipe={"rest_ablation": {"lr": _linearly_scaled(_CPU_ABLATION_RATES, 64, 256)}},
        train_mixup=True,
        data_difficulty="standard",
        # the published detector widths (FPN 256, box head 1024) on the small backbones
        detection={
            "categories": "shape",
            "train_samples": 32768,
            "val_samples": 2048,
            "test_samples": 4096,
            "epochs": 12,
            "batch_size": 32,
            "lr": 4e-4,
            "fpn_channels": 256,
            "box_head_width": 1024,
            "faster_rcnn_options": {**_SMALL_RCNN, "box_batch_size_per_image": 128},
        },
    ),
}


SMOKE_EVAL_SAMPLES = 8  # validation and test images of a smoke run: one evaluation batch, enough for the figures


def _capped(settings: Mapping[str, Any], cap: int | None) -> dict[str, Any]:
    """``settings`` with its ``batch_size`` (where it has one) at most ``cap``."""
    out = dict(settings)
    if cap is not None and "batch_size" in out:
        out["batch_size"] = min(int(out["batch_size"]), cap)
    return out


def smoke_scale(profile: Profile, max_batch: int | None = None) -> Profile:
    """``profile`` shrunk to one optimizer step per epoch of every run, every other setting kept.

    One epoch (classifier initialisations too) of one training step at the largest of the profile's
    batch sizes (a table that trains at a smaller batch takes a few steps), :data:`SMOKE_EVAL_SAMPLES`
    validation and test images (one evaluation batch), two figure images, a few diversity images and
    one benchmark repeat of a small batch; detectors train one step of their batch and are scored on
    4 images. The models, image size, recipes, training batch sizes, workers, seeds, mixed precision
    and detector settings stay the profile's. Numbers from it mean nothing: it checks that the
    profile's code path runs.

    ``max_batch`` (``$TNT_REST_SMOKE_MAX_BATCH``) caps every training batch size, the one setting a
    smoke run may change: ``full``'s batches of 256 images at 112 px take minutes per step on two CPU
    cores, so ``make test`` runs ``full`` at batch 16 and ``make smoke`` both profiles as they are.
    """
    batch_size = profile.batch_size if max_batch is None else min(profile.batch_size, max_batch)
    tables = {name: {**_capped(recipe, max_batch), "epochs": 1} for name, recipe in profile.table_recipe.items()}
    batch = max([batch_size, *(r.get("batch_size", batch_size) for r in tables.values())])
    detection = _capped(profile.detection, max_batch)
    if detection:
        detection["tables"] = {k: _capped(t, max_batch) for k, t in detection.get("tables", {}).items()}
        det_batch = max(
            [detection.get("batch_size", 1), *(t.get("batch_size", 1) for t in detection.get("tables", {}).values())]
        )
        shrink = {"train_samples": det_batch, "val_samples": 4, "test_samples": 4, "epochs": 1}
        detection.update(shrink)
        detection["tables"] = {
            name: {
                **t,
                **{k: v for k, v in shrink.items() if k in t},
                **({"init_epochs": 1} if "init_epochs" in t else {}),
            }
            for name, t in detection.get("tables", {}).items()
        }
    return replace(
        profile,
        description=f"{profile.description} (smoke scale: a few steps of every run, numbers meaningless)",
        batch_size=batch_size,
        train_samples=batch,
        val_samples=SMOKE_EVAL_SAMPLES,
        test_samples=SMOKE_EVAL_SAMPLES,
        epochs=1,
        table_recipe=tables,
        figure_images=2,
        diversity_images=min(profile.diversity_images, 2),
        bench_repeats=1,
        bench_batch=min(profile.bench_batch, 4),  # 02 times full-size models at 224 px: the path, not the speed
        detection=detection,
        scale="smoke",
    )


def default_profile_name() -> str:
    """``colab`` when a CUDA device is present, ``ci`` otherwise."""
    return "colab" if torch.cuda.is_available() else "ci"


def get_profile(name: str | None = None) -> Profile:
    """The active profile: ``name`` if given, else ``$TNT_REST_PROFILE``, else the default, at the
    scale ``$TNT_REST_SCALE`` sets (``smoke``: :func:`smoke_scale`).

    An unknown name or scale is a ``ValueError`` that lists the valid ones.
    """
    chosen = name or os.environ.get(ENV_VAR) or default_profile_name()
    key = chosen.strip().lower()
    if key not in PROFILES:
        source = "argument" if name else f"${ENV_VAR}"
        raise ValueError(f"Unknown profile '{chosen}' (from {source}). Valid profiles: {', '.join(PROFILES)}")
    scale = (os.environ.get(SCALE_ENV_VAR) or "book").strip().lower()
    if scale not in SCALES:
        raise ValueError(f"Unknown scale '{scale}' (from ${SCALE_ENV_VAR}). Valid scales: {', '.join(SCALES)}")
    if scale == "book":
        return PROFILES[key]
    cap = os.environ.get(SMOKE_MAX_BATCH_ENV_VAR)
    if cap is not None and not (cap.strip().isdigit() and int(cap) > 0):
        raise ValueError(f"${SMOKE_MAX_BATCH_ENV_VAR} must be a positive batch size, got {cap!r}")
    return smoke_scale(PROFILES[key], int(cap) if cap else None)
