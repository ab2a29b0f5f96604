"""The detection splits: synthetic scenes as a COCO-style dataset."""

from __future__ import annotations

from typing import Any

from ..data.synthetic import SyntheticShapes
from .coco import CocoFiles

__all__ = ["DETECTION_IMAGE_SIZE", "detection_dataset"]


# ----------------------------------------------------------------------------------------------
# Data and evaluation
# ----------------------------------------------------------------------------------------------

DETECTION_IMAGE_SIZE = 64  # twice the classifiers' 32 px: several objects per image, each about as large as there
CLASSIFIER_IMAGE_SIZE = 32  # the side of the images the small classifiers (the backbones' initialisation) saw


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
    """
    if source == "synthetic":
        if num_samples is None:
            raise ValueError("the synthetic detection data needs num_samples")
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
        )
        return shapes.detection_view(label_offset=label_offset, categories=categories)
    if source == "coco":
        if root is None or annotation_file is None:
            raise ValueError("source='coco' needs root (the image folder) and annotation_file (the COCO json)")
        return CocoFiles(root, annotation_file, label_offset=label_offset)
    raise ValueError(f"Unknown detection source '{source}'; expected 'synthetic' or 'coco'")
