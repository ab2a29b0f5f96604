"""Run profiles: one switch, ``TNT_REST_PROFILE``, decides how big every run is.

``ci``     2 CPU cores, each notebook within 3 minutes; small images, small models, few images.
``colab``  one T4/L4-class GPU, each notebook within 25 minutes.
``full``   one A100/H100-class GPU, the largest runs we offer.

Without the variable, the profile is ``colab`` when CUDA is available and ``ci`` otherwise.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
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

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


PROFILES: dict[str, Profile] = {
    "ci": Profile(
        name="ci",
        description="2 CPU cores; every notebook within 3 minutes",
        image_size=32,
        train_samples=2000,
        val_samples=500,
        epochs=3,
        batch_size=64,
        num_seeds=1,
        figure_images=2,
        diversity_images=8,
        bench_repeats=3,
        bench_batch=8,
        num_workers=0,
    ),
    "colab": Profile(
        name="colab",
        description="one T4/L4-class GPU; every notebook within 25 minutes",
        image_size=64,
        train_samples=20000,
        val_samples=4000,
        epochs=30,
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
