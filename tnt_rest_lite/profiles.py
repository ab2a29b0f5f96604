"""Run profiles: one switch, ``TNT_REST_PROFILE``, decides how big every run is.

``ci``     2 CPU cores, each notebook within 3 minutes; small images, small models, few images.
``colab``  one T4/L4-class GPU, each notebook within 25 minutes.
``full``   one A100/H100-class GPU, the largest runs we offer.

Without the variable, the profile is ``colab`` when CUDA is available and ``ci`` otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

__all__ = ["Profile", "PROFILES", "get_profile", "default_profile_name", "ENV_VAR"]

ENV_VAR = "TNT_REST_PROFILE"


@dataclass(frozen=True)
class Profile:
    """Settings of one run profile. Read it with :func:`get_profile`."""

    name: str
    description: str
    image_size: int  # side of the images the trained (small-scale) models see
    train_samples: int  # training-set size of the synthetic dataset
    val_samples: int  # validation-set size
    epochs: int
    batch_size: int
    num_seeds: int  # seeds per trained model (mean and std are reported when > 1)
    figure_images: int  # how many images a figure shows
    diversity_images: int  # images averaged for the ResT head-diversity figure
    bench_repeats: int  # timed repeats of a throughput benchmark (median is reported)
    bench_batch: int  # batch size of throughput benchmarks
    num_workers: int  # DataLoader workers
    # config overrides of the small models trained in this profile (ci shrinks them to fit 2 CPU cores)
    model_overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    train_mixup: bool = False  # mixup/cutmix in the DeiT recipe: only long runs profit from it
    train_budget_s: float | None = None  # training + evaluation budget of one model (one seed), checked by train_bench
    # clutter level of the synthetic dataset (data.DIFFICULTIES): ci trains for a few CPU minutes, too
    # short to learn the standard level, so it uses "easy"; colab and full use the book's "standard"
    data_difficulty: str = "standard"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# ci's TNT: 8x8 patches (4x4 pixel tokens each), outer width 96, inner 12, 4 blocks
_CI_TNT = dict(patch_size=8, outer_dim=96, inner_dim=12, depth=4, outer_heads=3, inner_heads=2)

PROFILES: dict[str, Profile] = {
    "ci": Profile(
        name="ci",
        description="2 CPU cores; every notebook within 3 minutes",
        image_size=32,
        train_samples=4096,
        val_samples=512,
        epochs=4,
        batch_size=32,  # 512 optimizer steps in 4 epochs: short runs learn more from more, smaller steps
        num_seeds=1,
        figure_images=2,
        diversity_images=8,
        bench_repeats=3,
        bench_batch=8,
        num_workers=0,
        model_overrides={
            # 8x8 patches (a 4x4 grid; TNT: 4x4 pixel tokens per patch), width 96, 4 blocks
            "deit_s_mini": {"patch_size": 8, "embed_dim": 96, "depth": 4, "num_heads": 3},
            "tnt_s_mini": _CI_TNT,
            "tnt_s_se_mini": _CI_TNT,
        },
        train_budget_s=60.0,
        data_difficulty="easy",
    ),
    "colab": Profile(
        name="colab",
        description="one T4/L4-class GPU; every notebook within 25 minutes",
        image_size=32,
        train_samples=10000,
        val_samples=4000,
        epochs=20,
        batch_size=128,
        num_seeds=3,
        figure_images=6,
        diversity_images=200,
        bench_repeats=10,
        bench_batch=64,
        num_workers=2,
    ),
    "full": Profile(
        name="full",
        description="one A100/H100-class GPU; the largest runs we offer",
        image_size=64,
        train_samples=100000,
        val_samples=10000,
        epochs=100,
        batch_size=256,
        num_seeds=3,
        figure_images=6,
        diversity_images=1000,
        bench_repeats=20,
        bench_batch=128,
        num_workers=8,
        train_mixup=True,
    ),
}


def default_profile_name() -> str:
    """``colab`` when a CUDA device is present, ``ci`` otherwise."""
    return "colab" if torch.cuda.is_available() else "ci"


def get_profile(name: str | None = None) -> Profile:
    """The active profile: ``name`` if given, else ``$TNT_REST_PROFILE``, else the default.

    An unknown name is a ``ValueError`` that lists the valid ones.
    """
    chosen = name or os.environ.get(ENV_VAR) or default_profile_name()
    key = chosen.strip().lower()
    if key not in PROFILES:
        source = "argument" if name else f"${ENV_VAR}"
        raise ValueError(f"Unknown profile '{chosen}' (from {source}). Valid profiles: {', '.join(PROFILES)}")
    return PROFILES[key]
