"""Drawing detections over their images."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

__all__ = ["plot_detections"]


def plot_detections(
    dataset: Any,
    predictions: Sequence[Mapping[str, torch.Tensor]],
    indices: Sequence[int],
    score_threshold: float = 0.5,
    title: str = "",
) -> Any:
    """Predicted boxes (solid, with class and score) against the ground truth (dashed white) on a few images."""
    import matplotlib.patches as patches
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(indices), figsize=(2.4 * len(indices), 2.6), squeeze=False)
    for ax, i in zip(axes[0], indices, strict=True):
        image, target = dataset[i]
        ax.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy())
        for x0, y0, x1, y1 in target["boxes"].tolist():
            ax.add_patch(
                patches.Rectangle(
                    (x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor="white", linestyle="--", linewidth=1
                )
            )
        pred = predictions[i]
        keep = pred["scores"] >= score_threshold
        for (x0, y0, x1, y1), label, score in zip(
            pred["boxes"][keep].tolist(), pred["labels"][keep].tolist(), pred["scores"][keep].tolist(), strict=True
        ):
            ax.add_patch(patches.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor="red", linewidth=1.2))
            ax.text(x0, y0, f"{label} {score:.2f}", color="red", fontsize=6, va="bottom")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title or f"predictions (red, score ≥ {score_threshold}) against the ground truth (dashed)", fontsize=9)
    fig.tight_layout()
    return fig
