"""COCO I/O and evaluation: our targets and detections as COCO JSON, AP with pycocotools."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

__all__ = [
    "COCO_METRICS",
    "SIZE_BINS",
    "size_bin_ranges",
    "COCO_IMAGE_SIDE",
    "area_scale_for",
    "objects_per_bin",
    "to_coco",
    "detections_to_coco",
    "coco_evaluate",
    "CocoFiles",
]


# ----------------------------------------------------------------------------------------------
# COCO format and pycocotools evaluation
# ----------------------------------------------------------------------------------------------

COCO_METRICS = ("AP", "AP50", "AP75", "APS", "APM", "APL")  # the columns of TNT's Table 2

# COCO's object size bins and the metric of each: small < 32², medium 32²-96², large > 96² pixels of
# box area at COCO's image size (about 640 px wide); scaled by ``area_scale`` for other image sizes.
SIZE_BINS = {"small": "APS", "medium": "APM", "large": "APL"}
COCO_IMAGE_SIDE = 640.0  # px: the side the bins are set for; other image sides scale them by (side / 640)²


def area_scale_for(side: float, reference_side: float = COCO_IMAGE_SIDE) -> float:
    """The size bins' ``area_scale`` for images ``side`` px wide: ``(side / reference_side)²``.

    The one rule by which the synthetic scenes draw their sizes and the evaluation bins them.
    """
    return (side / reference_side) ** 2


def size_bin_ranges(area_scale: float = 1.0) -> dict[str, tuple[float, float]]:
    """``{"small": (0, 32² s), "medium": (32² s, 96² s), "large": (96² s, inf)}`` for ``area_scale`` s."""
    small, large = 32**2 * area_scale, 96**2 * area_scale
    return {"small": (0.0, small), "medium": (small, large), "large": (large, float("inf"))}


def objects_per_bin(ground_truth: Mapping[str, Any], area_scale: float = 1.0) -> dict[str, int]:
    """How many ground-truth objects fall in each size bin (pycocotools' rule: ``lo <= area < hi``)."""
    areas = [a["area"] for a in ground_truth["annotations"] if not a.get("iscrowd")]
    return {name: sum(lo <= a < hi for a in areas) for name, (lo, hi) in size_bin_ranges(area_scale).items()}


def _quiet() -> Any:
    """pycocotools prints its progress; the chapters show the numbers instead."""
    import contextlib
    import io

    return contextlib.redirect_stdout(io.StringIO())


def to_coco(dataset: Any, class_names: Sequence[str] | None = None, label_offset: int = 1) -> dict[str, Any]:
    """Ground truth of a detection dataset as a COCO json dict (``images``, ``annotations``, ``categories``).

    ``dataset[i]`` is ``(image (3, H, W), {"boxes" (N, 4) xyxy, "labels" (N,)})`` as torchvision's
    detectors take it, labels starting at ``label_offset``; COCO category ids are ``label -
    label_offset + 1`` and boxes ``[x, y, w, h]``. Image ids are the dataset indices.
    """
    images, annotations = [], []
    num_classes = 0
    for index in range(len(dataset)):
        image, target = dataset[index]
        h, w = int(image.shape[-2]), int(image.shape[-1])
        images.append({"id": index, "width": w, "height": h, "file_name": f"{index:06d}.png"})
        for box, label in zip(target["boxes"].tolist(), target["labels"].tolist(), strict=True):
            x0, y0, x1, y1 = box
            category = int(label) - label_offset + 1
            num_classes = max(num_classes, category)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": index,
                    "category_id": category,
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": (x1 - x0) * (y1 - y0),
                    "iscrowd": 0,
                }
            )
    if class_names is None:
        class_names = [str(c) for c in range(1, num_classes + 1)]
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(class_names)]
    return {"images": images, "annotations": annotations, "categories": categories}


def detections_to_coco(
    predictions: Sequence[Mapping[str, torch.Tensor]], image_ids: Sequence[int], label_offset: int = 1
) -> list[dict[str, Any]]:
    """A detector's outputs (``boxes`` xyxy, ``scores``, ``labels``) as COCO result records."""
    records = []
    for image_id, pred in zip(image_ids, predictions, strict=True):
        for box, score, label in zip(
            pred["boxes"].tolist(), pred["scores"].tolist(), pred["labels"].tolist(), strict=True
        ):
            x0, y0, x1, y1 = box
            records.append(
                {
                    "image_id": int(image_id),
                    "category_id": int(label) - label_offset + 1,
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "score": float(score),
                }
            )
    return records


def coco_evaluate(
    ground_truth: Mapping[str, Any], detections: Sequence[Mapping[str, Any]], area_scale: float = 1.0
) -> dict[str, float]:
    """COCO box AP with pycocotools: ``AP, AP50, AP75, APS, APM, APL`` in percent.

    ``area_scale`` multiplies COCO's size thresholds (small < 32², large > 96² pixels, set for
    images about 640 px wide): for small images pass ``(side / 640)**2`` so "small", "medium" and
    "large" keep their share of the image. A size bin without objects gives ``nan`` (COCO's -1): there
    is nothing to measure, which a table shows as "—", never as 0.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with _quiet():
        gt = COCO()
        gt.dataset = {k: list(v) for k, v in ground_truth.items()}
        gt.createIndex()
        if not detections:
            empty = {SIZE_BINS[b] for b, n in objects_per_bin(ground_truth, area_scale).items() if n == 0}
            return {k: float("nan") if k in empty else 0.0 for k in COCO_METRICS}
        dt = gt.loadRes([dict(d) for d in detections])
        evaluator = COCOeval(gt, dt, iouType="bbox")
        bins = size_bin_ranges(area_scale)
        evaluator.params.areaRng = [[0, 1e10], *([lo, min(hi, 1e10)] for lo, hi in bins.values())]
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = evaluator.stats[:6]
    return {k: (float("nan") if v < 0 else 100.0 * float(v)) for k, v in zip(COCO_METRICS, stats, strict=True)}


class CocoFiles(torch.utils.data.Dataset):
    """A COCO-format dataset on disk (COCO itself, or any COCO json with its images), torchvision style.

    ``root`` holds the images named in ``annotation_file``'s ``file_name`` fields. Items are
    ``(image float (3, H, W) in [0, 1], {"boxes" xyxy, "labels"})`` with labels ``1..C`` in the
    order of the json's categories (``label_offset`` shifts them, e.g. 0 for RetinaNet). Missing
    files are an error that names them (no download is attempted: COCO is 20 GB).
    """

    def __init__(self, root: str, annotation_file: str, label_offset: int = 1) -> None:
        from pathlib import Path

        self.root, annotations = Path(root), Path(annotation_file)
        if not annotations.is_file() or not self.root.is_dir():
            raise FileNotFoundError(
                f"COCO-format data not found: expected the annotation file {annotations} and the image folder "
                f"{self.root}. Download COCO 2017 (https://cocodataset.org: val2017 images and "
                f"annotations_trainval2017) or point these at any COCO-json dataset; nothing is downloaded here."
            )
        from pycocotools.coco import COCO

        with _quiet():
            self.coco = COCO(str(annotations))
        self.ids = sorted(self.coco.imgs)
        self.category_ids = sorted(self.coco.cats)
        self.classes = [self.coco.cats[c]["name"] for c in self.category_ids]
        self._label = {c: i + label_offset for i, c in enumerate(self.category_ids)}
        self.label_offset = label_offset

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        import numpy as np
        from PIL import Image

        info = self.coco.imgs[self.ids[index]]
        path = self.root / info["file_name"]
        if not path.is_file():
            raise FileNotFoundError(f"image {path} named in the annotations is missing")
        image = torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1).float() / 255
        anns = [a for a in self.coco.imgToAnns[self.ids[index]] if not a.get("iscrowd", 0)]
        boxes = torch.tensor(
            [[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]] for a in anns],
            dtype=torch.float32,
        ).reshape(-1, 4)
        labels = torch.tensor([self._label[a["category_id"]] for a in anns], dtype=torch.int64)
        return image, {"boxes": boxes, "labels": labels}
