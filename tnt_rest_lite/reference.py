"""Published numbers, transcribed once from the two supplements and the papers they cite.

This is reference data: it is shown beside our measured values (with the difference), never
instead of them. Units: parameters in millions, FLOPs in billions (G) as the papers print them,
throughput in images/s, accuracies and APs in percent.

Sources:
    ``tnt_supp``  TNT supplementary material (NeurIPS 2021), Tables 1-2.
    ``rest_supp`` ResT supplementary material (NeurIPS 2021), Tables 1-2 and A.4.
    ``tnt_paper`` TNT main paper (TNT-B).  ``deit_paper`` DeiT (ICML 2021).
    ``rest_readme`` the official ResT repository's README (wofmanaf/ResT).
    ``coco_eval``  COCO's detection evaluation page (cocodataset.org/#detection-eval).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "TNT_TABLE1",
    "TNT_TABLE2",
    "REST_TABLE1",
    "REST_TABLE2",
    "REST_ABLATION",
    "MODELS",
    "COCO_SIZE_SHARES",
    "published",
]

# fmt: off
# TNT supplement, Table 1: exploring SE in TNT (224 x 224).
TNT_TABLE1: dict[str, dict[str, float]] = {
    "tnt_s": {"params_m": 23.8, "flops_g": 5.2, "top1": 81.5, "top5": 95.7},
    "tnt_s_se": {"params_m": 24.7, "flops_g": 5.2, "top1": 81.7, "top5": 95.7},
}

# TNT supplement, Table 2: Faster R-CNN + FPN, 12 epochs, COCO val2017.
TNT_TABLE2: dict[str, dict[str, float]] = {
    "resnet50": {"params_m": 41.5, "epochs": 12, "ap": 37.4, "ap50": 58.1, "ap75": 40.4, "aps": 21.2, "apm": 41.0, "apl": 48.1},
    "deit_s": {"params_m": 46.4, "epochs": 12, "ap": 39.9, "ap50": 62.8, "ap75": 42.6, "aps": 23.4, "apm": 42.5, "apl": 54.0},
    "tnt_s": {"params_m": 48.1, "epochs": 12, "ap": 41.5, "ap50": 64.1, "ap75": 44.5, "aps": 25.7, "apm": 44.6, "apl": 55.4},
}

# COCO's objects per size bin (coco_eval: "approximately 41% of objects are small (area < 32²), 34%
# are medium (32² < area < 96²), and 24% are large (area > 96²)"); the synthetic detection scenes draw
# their objects' sizes with these shares.
COCO_SIZE_SHARES: dict[str, float] = {"small": 0.41, "medium": 0.34, "large": 0.24}

# ResT supplement, Table 1: ResT-Lite with MSA vs EMSA (V100; MSA at batch 64 per GPU).
REST_TABLE1: dict[str, dict[str, float]] = {
    "rest_lite_msa": {"params_m": 10.48, "flops_g": 1.6, "throughput": 512, "top1": 72.68, "top5": 90.46},
    "rest_lite": {"params_m": 10.49, "flops_g": 1.4, "throughput": 1246, "top1": 72.88, "top5": 90.62},
}

# ResT supplement, Table 2: RetinaNet + FPN box AP, with and without LN on the stage outputs.
REST_TABLE2: dict[str, dict[str, float]] = {
    "rest_small": {"ap_without_ln": 39.5, "ap_with_ln": 40.3},
    "rest_base": {"ap_without_ln": 41.2, "ap_with_ln": 42.0},
}

# ResT supplement, A.4: the ResNet-style recipe of the ablation study (top-1).
REST_ABLATION: dict[str, dict[str, float]] = {
    "rest_lite": {"top1": 72.88},
    "resnet18": {"top1": 69.76},
}

# Whole-model numbers from the main papers and the official ResT README (ImageNet-1k, 224 px).
MODELS: dict[str, dict[str, Any]] = {
    "deit_s": {"params_m": 22.1, "flops_g": 4.6, "top1": 79.8, "source": "deit_paper"},
    "tnt_s": {"params_m": 23.8, "flops_g": 5.2, "top1": 81.5, "top5": 95.7, "source": "tnt_supp"},
    "tnt_s_se": {"params_m": 24.7, "flops_g": 5.2, "top1": 81.7, "top5": 95.7, "source": "tnt_supp"},
    "tnt_b": {"params_m": 65.6, "flops_g": 14.1, "top1": 82.9, "source": "tnt_paper"},
    "rest_lite_msa": {"params_m": 10.48, "flops_g": 1.6, "throughput": 512, "source": "rest_supp"},
    "rest_lite": {"params_m": 11.0, "flops_g": 1.4, "throughput": 1246, "top1": 77.2, "source": "rest_readme"},
    "rest_small": {"params_m": 14.0, "flops_g": 1.9, "throughput": 1043, "top1": 79.6, "source": "rest_readme"},
    "rest_base": {"params_m": 30.0, "flops_g": 4.3, "throughput": 673, "top1": 81.6, "source": "rest_readme"},
    "rest_large": {"params_m": 52.0, "flops_g": 7.9, "throughput": 429, "top1": 83.6, "source": "rest_readme"},
}

# fmt: on


def published(model: str, column: str) -> float | None:
    """The published value of ``column`` for ``model`` in :data:`MODELS`, or ``None``."""
    value = MODELS.get(model, {}).get(column)
    return None if value is None else float(value)
