"""Datasets: ``SyntheticShapes`` (generated, no files) and real data (CIFAR, ImageFolder trees).

Why a synthetic dataset? TNT's claim is that an *inner* transformer over the pixels of each patch
models local structure that a plain ViT (DeiT) misses, while the *outer* transformer relates the
patches to each other. ``SyntheticShapes`` makes a classification task that needs both: each class
is a **shape** (global structure: circle, square, ...) filled with a **texture** (local structure:
stripes, dots, ...). Neither alone identifies the class. Clutter makes it hard: a textured
background, smaller distractor objects of other classes, random scale, rotation, position and
colour, and partial occlusion of the object. How much clutter is set by one knob,
``difficulty`` (``"easy"``, ``"standard"``, ``"hard"``; see :data:`DIFFICULTIES`): every level keeps
the 20 shape x texture classes, only the nuisances change.

Each sample is generated from ``numpy.random.default_rng([seed, split, index])``: any index is
reproducible on its own, without generating the others, and the train and validation splits never
share a random stream. Generated samples are cached in memory by the dataset instance.

Real data goes through torchvision with one argument: :func:`build_dataset` takes
``"synthetic"``, ``"cifar10"``, ``"cifar100"`` or ``"imagefolder:<path>"``. Nothing is downloaded
unless asked (``download=True``, for CIFAR on Colab); a dataset missing on disk is a
``FileNotFoundError`` that says how to get it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, Subset

from ..core.normalization import CIFAR_MEAN, CIFAR_STD, IMAGENET_MEAN, IMAGENET_STD
from ..core.paths import DATA_ENV_VAR, data_root
from .synthetic import SPLITS, SyntheticShapes

__all__ = ["build_dataset", "num_classes", "DATASETS"]


DATASETS = ("synthetic", "cifar10", "cifar100", "imagefolder:<path>")


# Real datasets publish a train and a test (or "val") split; our validation split is held out of
# their training split: this share of it (seeded), so the published test split stays untouched.
VAL_FRACTION = 0.1
_HOLDOUT_SEED = 20211206  # fixed: the validation images never depend on the run's seed


class _NamedSubset(Subset):
    """A ``Subset`` that keeps the class names and normalisation of the dataset it cuts."""

    def __init__(self, dataset: Dataset, indices: list[int]) -> None:
        super().__init__(dataset, indices)
        self.classes = dataset.classes
        self.mean, self.std = dataset.mean, dataset.std


def _holdout(n_total: int, split: str) -> list[int]:
    """Indices of ``split`` (``"train"`` or ``"val"``) within a real dataset's published training split."""
    order = torch.randperm(n_total, generator=torch.Generator().manual_seed(_HOLDOUT_SEED)).tolist()
    n_val = max(1, int(round(VAL_FRACTION * n_total)))
    return order[:n_val] if split == "val" else order[n_val:]


def build_dataset(
    name: str,
    split: str,
    image_size: int,
    *,
    num_samples: int | None = None,
    seed: int = 0,
    root: str | Path | None = None,
    download: bool = False,
    augment: bool | None = None,
    difficulty: str = "standard",
) -> Dataset:
    """The dataset ``name`` for ``split`` at ``image_size`` px.

    Args:
        name: ``"synthetic"``, ``"cifar10"``, ``"cifar100"`` or ``"imagefolder:<path>"`` (a folder
            with ``train/`` and ``val/`` sub-folders of one folder per class, e.g. Imagenette).
        split: ``"train"``, ``"val"`` or ``"test"``. Synthetic: three independent random streams.
            Real data: ``"test"`` is the published test split (CIFAR's test set, an ImageFolder's
            ``val/``); ``"train"`` and ``"val"`` share the published training split, with a fixed
            :data:`VAL_FRACTION` of it held out as ``"val"`` (never augmented), so choices made on
            ``"val"`` never see the test images.
        image_size: side of the images the model sees.
        num_samples: synthetic: the split's size (required); real data: keep a random subset of
            this many (seeded), or all when ``None``.
        seed: the synthetic dataset's seed and the subset's seed.
        root: folder of CIFAR's files (default :func:`data_root`).
        download: let torchvision download CIFAR (needs network; e.g. on Colab).
        augment: random crop + flip for real data; default on for ``train``. Synthetic data has
            its random placement built in and is never augmented.
        difficulty: synthetic only: the clutter level (:data:`DIFFICULTIES`; profiles set it with
            ``data_difficulty``). Ignored by real data.

    Every dataset has ``classes``, ``mean`` and ``std``. Missing data is a ``FileNotFoundError``
    that says how to get it; an unknown name a ``ValueError`` listing the valid ones.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {tuple(SPLITS)}, got '{split}'")
    key = name.strip()
    augment = split == "train" if augment is None else augment
    if key.lower() == "synthetic":
        if num_samples is None:
            raise ValueError("the synthetic dataset needs num_samples (e.g. the profile's train_samples)")
        return SyntheticShapes(num_samples, image_size, split=split, seed=seed, difficulty=difficulty)
    if key.lower() in ("cifar10", "cifar100"):
        dataset = _cifar(
            key.lower(), split, image_size, Path(root) if root else data_root(), download, augment and split == "train"
        )
    elif key.lower().startswith("imagefolder:"):
        dataset = _image_folder(
            Path(key.split(":", 1)[1]).expanduser(), split, image_size, augment and split == "train"
        )
    else:
        raise ValueError(f"Unknown dataset '{name}'; expected one of {', '.join(DATASETS)}")
    return _split_subset(dataset, split, num_samples, seed)


def _split_subset(dataset: Dataset, split: str, num_samples: int | None, seed: int) -> Dataset:
    """A real dataset's ``split`` (the held-out part of the training split for ``"val"``), cut to
    ``num_samples`` seeded samples; the dataset itself when that keeps everything."""
    indices = list(range(len(dataset))) if split == "test" else _holdout(len(dataset), split)
    if num_samples is not None and num_samples < len(indices):
        generator = torch.Generator().manual_seed(seed)
        keep = torch.randperm(len(indices), generator=generator)[:num_samples].tolist()
        indices = [indices[i] for i in keep]
    if len(indices) == len(dataset):
        return dataset
    return _NamedSubset(dataset, indices)


def _transform(
    image_size: int, augment: bool, mean: tuple[float, ...], std: tuple[float, ...], native: int | None
) -> Any:
    from torchvision import transforms as T

    steps: list[Any] = []
    if native is not None:  # small fixed-size images (CIFAR): resize, then pad-and-crop
        if image_size != native:
            steps.append(T.Resize(image_size))
        if augment:
            steps += [T.RandomCrop(image_size, padding=image_size // 8), T.RandomHorizontalFlip()]
    elif augment:  # photographs of any size (ImageFolder)
        steps += [T.RandomResizedCrop(image_size, scale=(0.35, 1.0)), T.RandomHorizontalFlip()]
    else:
        steps += [T.Resize(int(round(image_size * 1.14))), T.CenterCrop(image_size)]
    steps += [T.ToTensor(), T.Normalize(mean, std)]
    return T.Compose(steps)


def _cifar(name: str, split: str, image_size: int, root: Path, download: bool, augment: bool) -> Dataset:
    from torchvision import datasets

    cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    folder = root / cls.base_folder
    if not download and not folder.is_dir():
        raise FileNotFoundError(
            f"{name.upper()} is not on disk: expected torchvision's folder {folder}. Get it with "
            f"build_dataset('{name}', ..., download=True) (needs network, e.g. on Colab), or put the "
            f"extracted '{cls.base_folder}' folder under {root} (set ${DATA_ENV_VAR} or root= to use another folder)."
        )
    transform = _transform(image_size, augment, CIFAR_MEAN, CIFAR_STD, native=32)
    try:
        dataset = cls(str(root), train=split != "test", transform=transform, download=download)
    except RuntimeError as err:  # torchvision: "Dataset not found or corrupted"
        raise FileNotFoundError(
            f"{name.upper()} under {folder} is incomplete or corrupted ({err}); delete the folder and "
            f"download it again with build_dataset('{name}', ..., download=True)."
        ) from err
    dataset.mean, dataset.std = CIFAR_MEAN, CIFAR_STD
    return dataset


def _image_folder(path: Path, split: str, image_size: int, augment: bool) -> Dataset:
    from torchvision import datasets

    folder = path / ("val" if split == "test" else "train")  # our train/val both come from train/
    if not folder.is_dir():
        raise FileNotFoundError(
            f"No ImageFolder split at {folder}: 'imagefolder:<path>' expects <path>/train/<class>/*.jpg and "
            f"<path>/val/<class>/*.jpg (the layout of Imagenette: download and extract fast.ai's "
            f"'imagenette2-160' archive, then pass 'imagefolder:/where/it/is/imagenette2-160')."
        )
    dataset = datasets.ImageFolder(
        str(folder), transform=_transform(image_size, augment, IMAGENET_MEAN, IMAGENET_STD, native=None)
    )
    dataset.mean, dataset.std = IMAGENET_MEAN, IMAGENET_STD
    return dataset


def num_classes(dataset: Dataset) -> int:
    """Number of classes of a dataset built by :func:`build_dataset`."""
    classes = getattr(dataset, "classes", None)
    if classes is None:
        raise TypeError(f"{type(dataset).__name__} has no 'classes' attribute; build it with build_dataset()")
    return len(classes)
