"""Drawing detections onto their images (``torchvision.utils.draw_bounding_boxes``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torchvision.utils import draw_bounding_boxes

__all__ = ["draw_detections", "plot_detections"]


def draw_detections(
    image: torch.Tensor,
    target: Mapping[str, torch.Tensor],
    prediction: Mapping[str, torch.Tensor],
    score_threshold: float = 0.5,
    labelled: bool = True,
) -> torch.Tensor:
    """``image`` (``(3, H, W)`` floats in [0, 1]) as uint8 with the ground-truth boxes drawn in white and the
    predictions scoring at least ``score_threshold`` in red, each labelled ``"<label> <score>"`` unless
    ``labelled=False`` (a caller that writes smaller labels over a plot of it)."""
    pixels = (image.detach().cpu().clamp(0, 1) * 255).round().to(torch.uint8)
    pixels = draw_bounding_boxes(pixels, target["boxes"].detach().cpu().float(), colors="white", width=1)
    keep = prediction["scores"] >= score_threshold
    boxes = prediction["boxes"][keep].detach().cpu().float()
    if len(boxes) and not labelled:
        pixels = draw_bounding_boxes(pixels, boxes, colors="red", width=1)
    elif len(boxes):
        labels = [
            f"{label} {score:.2f}"
            for label, score in zip(
                prediction["labels"][keep].tolist(), prediction["scores"][keep].tolist(), strict=True
            )
        ]
        pixels = draw_bounding_boxes(pixels, boxes, labels=labels, colors="red", width=1)
    return pixels


def plot_detections(
    dataset: Any,
    predictions: Sequence[Mapping[str, torch.Tensor]],
    indices: Sequence[int],
    score_threshold: float = 0.5,
    title: str = "",
) -> Any:
    """Predicted boxes (red, with class and score) against the ground truth (white) on a few images."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(indices), figsize=(2.4 * len(indices), 2.6), squeeze=False)
    for ax, i in zip(axes[0], indices, strict=True):
        image, target = dataset[i]
        ax.imshow(draw_detections(image, target, predictions[i], score_threshold).permute(1, 2, 0).numpy())
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title or f"predictions (red, score ≥ {score_threshold}) against the ground truth (white)", fontsize=9)
    fig.tight_layout()
    return fig
