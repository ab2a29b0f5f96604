"""Real photographs that ship inside installed packages, so every figure works offline."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..core.normalization import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["SAMPLE_IMAGES", "sample_image", "to_tensor", "model_input", "photo_batch"]


# name -> (package, loader). scikit-image ships these files in its wheel (no download needed).
SAMPLE_IMAGES: dict[str, str] = {
    "chelsea": "a tabby cat (scikit-image)",
    "astronaut": "astronaut Eileen Collins (scikit-image)",
    "coffee": "a cup of coffee (scikit-image)",
    "rocket": "a rocket on its launch pad (scikit-image)",
    "hubble_deep_field": "the Hubble Deep Field (scikit-image)",
    "coins": "Greek coins, greyscale (scikit-image)",
    "grace_hopper": "Rear Admiral Grace Hopper (matplotlib)",
}


def sample_image(name: str = "chelsea") -> np.ndarray:
    """An ``(H, W, 3)`` uint8 RGB photograph from :data:`SAMPLE_IMAGES` (a greyscale one repeated to 3 channels)."""
    if name not in SAMPLE_IMAGES:
        raise ValueError(f"Unknown sample image '{name}'. Available: {', '.join(SAMPLE_IMAGES)}")
    if name == "grace_hopper":
        import matplotlib.cbook as cbook
        import matplotlib.image as mpimg

        with cbook.get_sample_data("grace_hopper.jpg") as f:
            return np.asarray(mpimg.imread(f, format="jpg"))[..., :3].copy()
    import skimage.data

    image = np.asarray(getattr(skimage.data, name)())
    if image.ndim == 2:  # greyscale (coins): the models take three channels
        image = np.repeat(image[..., None], 3, axis=-1)
    return image[..., :3].copy()


def to_tensor(
    image: np.ndarray,
    size: int = 224,
    normalize: bool = True,
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
) -> torch.Tensor:
    """Centre-crop to a square, resize to ``size``, scale to [0, 1], optionally normalise.

    ``mean``/``std`` default to ImageNet's statistics; timm's TNT weights, for instance, expect
    ``mean = std = (0.5, 0.5, 0.5)``, i.e. inputs in [-1, 1].

    Returns a ``(1, 3, size, size)`` float tensor.
    """
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    crop = image[top : top + side, left : left + side]
    x = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1)[None].float() / 255.0
    x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    if normalize:
        x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    return x


def model_input(
    image: np.ndarray, model: torch.nn.Module, crop_pct: float | None = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``image`` prepared as ``model`` expects it, by timm's data config of the model.

    ``timm.data.resolve_model_data_config(model)`` gives the input size, interpolation and
    normalisation of the model's ``pretrained_cfg`` (TNT: mean = std = 0.5; DeiT and ResT:
    ImageNet's statistics); ``timm.data.create_transform`` builds the evaluation transform.
    ``crop_pct=1.0`` (default) keeps the whole centre square, so a figure's patch grid covers
    the photograph; ``None`` uses the model's own evaluation crop.

    Returns ``(x, rgb)``: the normalised ``(1, 3, H, W)`` input and the same crop in [0, 1] for plotting.
    """
    from PIL import Image
    from timm.data import create_transform, resolve_model_data_config
    from torchvision import transforms as T

    config = resolve_model_data_config(model)
    if crop_pct is not None:
        config["crop_pct"] = crop_pct
    transform = create_transform(**config)
    pil = Image.fromarray(np.ascontiguousarray(image))
    plain = T.Compose([t for t in transform.transforms if not isinstance(t, T.Normalize)])
    return transform(pil)[None], plain(pil)[None]


def photo_batch(
    names: list[str] | tuple[str, ...], model: torch.nn.Module, crop_pct: float | None = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Photographs of :data:`SAMPLE_IMAGES`, prepared for ``model`` by its own data config (:func:`model_input`).

    Returns ``(x, rgb)``: the normalised ``(B, 3, H, W)`` batch and the same crops as ``(B, H, W, 3)``
    in ``[0, 1]``, the layout the figure functions draw. Each model gets its own normalisation
    (TNT's weights expect mean = std = 0.5, DeiT's and ResT's ImageNet's statistics).
    """
    if not names:
        raise ValueError("photo_batch needs at least one photograph name")
    inputs = [model_input(sample_image(name), model, crop_pct) for name in names]
    x = torch.cat([xi for xi, _ in inputs])
    rgb = torch.cat([r for _, r in inputs]).permute(0, 2, 3, 1).float()
    return x, rgb
