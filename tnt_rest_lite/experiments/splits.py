"""The train/validation/test splits of the training tables, built once per profile."""

from __future__ import annotations

from typing import Any

from torch.utils.data import Dataset

from ..data.datasets import build_dataset
from ..profiles import Profile, get_profile

__all__ = ["load_splits"]


def load_splits(
    dataset: str = "synthetic", profile: Profile | None = None, download: bool = False
) -> tuple[Dataset, Dataset, Dataset]:
    """Train, validation and test sets of ``dataset`` sized by the profile.

    Every choice (learning rate, epochs, difficulty) is made on the validation split; the tables
    and verdicts read the test split only. The synthetic dataset is generated at the profile's
    ``data_difficulty``; real data holds validation out of its published training split and tests
    on its published test split (:func:`tnt_rest_lite.data.datasets.build_dataset`).
    """
    p = profile or get_profile()
    sizes = {"train": p.train_samples, "val": p.val_samples, "test": p.test_samples}
    key = (dataset, p.image_size, p.data_difficulty, tuple(sizes.values()))
    if key not in _SPLITS:  # generated (or read) once per process: a notebook's chapters share them
        kwargs = dict(seed=0, download=download, difficulty=p.data_difficulty)
        _SPLITS[key] = tuple(
            build_dataset(dataset, split, p.image_size, num_samples=n, **kwargs) for split, n in sizes.items()
        )
    return _SPLITS[key]


# load_splits' datasets, by what defines them (they are read, never modified, by the runs)
_SPLITS: dict[tuple[Any, ...], tuple[Dataset, Dataset, Dataset]] = {}
