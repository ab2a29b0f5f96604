"""Image normalisation constants (synthetic, CIFAR, ImageNet) and the one ``denormalize``."""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["denormalize"]


# Synthetic images are normalised with these (a fixed, documented choice; see ``denormalize``).
SYNTHETIC_MEAN = (0.5, 0.5, 0.5)
SYNTHETIC_STD = (0.25, 0.25, 0.25)
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def denormalize(
    image: torch.Tensor, mean: Sequence[float], std: Sequence[float], *, channels_last: bool = False
) -> torch.Tensor:
    """Undo the normalisation of ``image`` (``(C, H, W)`` or ``(B, C, H, W)``) and clamp to [0, 1], for display.

    ``channels_last=True`` moves the channels to the last axis (``(B, H, W, C)``), as matplotlib draws them.
    """
    m = torch.tensor(mean, dtype=image.dtype).view(-1, 1, 1)
    s = torch.tensor(std, dtype=image.dtype).view(-1, 1, 1)
    out = (image * s + m).clamp(0, 1)
    return out.movedim(-3, -1) if channels_last else out
