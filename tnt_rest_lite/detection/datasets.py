"""The detection splits: synthetic scenes as a COCO-style dataset."""

from __future__ import annotations

from typing import Any

from ..data.synthetic import SyntheticShapes
from ..reference import COCO_SIZE_SHARES
from .coco import CocoFiles, area_scale_for, size_bin_ranges

__all__ = ["DETECTION_IMAGE_SIZE", "OBJECT_SIZES", "coco_size_mixture", "detection_dataset"]


# ----------------------------------------------------------------------------------------------
# Data and evaluation
# ----------------------------------------------------------------------------------------------

DETECTION_IMAGE_SIZE = 64  # twice the classifiers' 32 px: several objects per image, each about as large as there
CLASSIFIER_IMAGE_SIZE = 32  # the side of the images the small classifiers (the backbones' initialisation) saw
# "coco": object sizes spread over COCO's three size bins with COCO's shares; "classifier": every object
# as large as the classifiers saw objects at 32 px (the scenes before the mixture: all "large")
OBJECT_SIZES = ("coco", "classifier")
_SMALLEST_RADIUS = 0.75  # px: a smaller object covers under half of any pixel and is not drawn at all
_LARGEST_RADIUS = 0.40 * CLASSIFIER_IMAGE_SIZE  # px: the standard difficulty's largest object at 32 px


def coco_size_mixture(image_size: int = DETECTION_IMAGE_SIZE) -> tuple[tuple[float, float, float], ...]:
    """``SyntheticShapes``' ``object_radii`` rows ``(share, low, high)`` for COCO's size bins at ``image_size``.

    One row per bin of :func:`~tnt_rest_lite.detection.coco.size_bin_ranges` scaled from COCO's image
    side to ``image_size`` (as the evaluation scales them), its share COCO's
    (:data:`~tnt_rest_lite.reference.COCO_SIZE_SHARES`), its radii half the bin's box sides (a
    box is about twice an object's radius wide), from :data:`_SMALLEST_RADIUS` to
    :data:`_LARGEST_RADIUS`. A test measures the shares of the boxes drawn.
    """
    bins = size_bin_ranges(area_scale_for(image_size))
    rows = []
    for name, (low, high) in bins.items():
        low_radius = max(_SMALLEST_RADIUS, low**0.5 / 2)
        high_radius = min(_LARGEST_RADIUS, high**0.5 / 2)
        rows.append((COCO_SIZE_SHARES[name], low_radius, high_radius))
    return tuple(rows)


def detection_dataset(
    source: str,
    split: str,
    num_samples: int | None = None,
    *,
    image_size: int = DETECTION_IMAGE_SIZE,
    seed: int = 0,
    label_offset: int = 1,
    difficulty: str = "standard",
    distractors: int = 3,
    categories: str = "class",
    object_sizes: str = "coco",
    root: str | None = None,
    annotation_file: str | None = None,
) -> Any:
    """A detection split, torchvision style: ``(image float (3, H, W) in [0, 1], {"boxes", "labels"})``.

    ``source="synthetic"``: the detection view of ``SyntheticShapes`` (``difficulty``'s clutter, up to
    ``distractors`` other objects of 0.8-1x the main one's size beside it, each drawn as large as
    the classifiers saw objects at 32 px, every visible object boxed and labelled;
    train / val / test are independent random streams). ``source="coco"``: a COCO-format dataset
    on disk (:class:`CocoFiles`, ``root`` and ``annotation_file``; a clear error when missing).
    ``label_offset``: the detector's (:func:`build_detector` sets ``model.label_offset``).
    ``categories``: synthetic objects labelled by class (20, shape x texture) or by shape (5).
    ``object_sizes``: ``"coco"`` draws every object's size from COCO's three size bins with COCO's
    shares (:func:`coco_size_mixture`), ``"classifier"`` every object as large as the classifiers
    saw objects at 32 px (all of them "large").
    """
    if source == "synthetic":
        if num_samples is None:
            raise ValueError("the synthetic detection data needs num_samples")
        if object_sizes not in OBJECT_SIZES:
            raise ValueError(f"Unknown object_sizes '{object_sizes}'; expected one of {', '.join(OBJECT_SIZES)}")
        shapes = SyntheticShapes(
            num_samples,
            image_size=image_size,
            split=split,
            seed=seed,
            difficulty=difficulty,
            distractors=distractors,
            # every object as large, in pixels, as the classifiers saw objects at 32 px: the
            # scene is several legible objects, not one object with illegible specks beside it
            object_scale=min(1.0, CLASSIFIER_IMAGE_SIZE / image_size),
            distractor_scale=(0.8, 1.0),
            object_radii=coco_size_mixture(image_size) if object_sizes == "coco" else None,
        )
        return shapes.detection_view(label_offset=label_offset, categories=categories)
    if source == "coco":
        if root is None or annotation_file is None:
            raise ValueError("source='coco' needs root (the image folder) and annotation_file (the COCO json)")
        return CocoFiles(root, annotation_file, label_offset=label_offset)
    raise ValueError(f"Unknown detection source '{source}'; expected 'synthetic' or 'coco'")
