"""Token statistics of the feature levels a detector reads."""

from __future__ import annotations

import torch

from .backbones import FeatureLevels

__all__ = ["level_token_stats"]


@torch.no_grad()
def level_token_stats(body: FeatureLevels, images: torch.Tensor) -> list[dict[str, float]]:
    """Per level: the mean over tokens of each token's channel mean and channel standard deviation.

    What ResT's stage LayerNorm changes: with it, every token of a normed level has channel mean
    ``bias`` and standard deviation ``|weight|`` (0 and 1 before any training).
    """
    was_training = body.training
    body.eval()
    try:
        levels = body(images)
    finally:
        body.train(was_training)
    stats = []
    for name, level in levels.items():
        tokens = level.flatten(2).transpose(1, 2)  # (B, H*W, C)
        stats.append(
            {
                "level": name,
                "channels": int(level.shape[1]),
                "token_mean": float(tokens.mean(-1).mean()),
                "token_std": float(tokens.std(-1, unbiased=False).mean()),
            }
        )
    return stats
