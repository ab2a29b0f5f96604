"""ResT (v1): an efficient multi-scale vision transformer (Zhang & Yang, NeurIPS 2021).

The network is a pyramid of four stages, like a ResNet:

* a convolutional **stem** (three 3x3 convolutions, output stride 4) followed by **PA**, the
  pixel-attention position encoding ``x * sigmoid(depthwise_conv3x3(x))``;
* four **stages** of pre-norm transformer blocks whose attention is **EMSA**: keys and values
  come from a map shrunk ``s`` times per side by a depthwise convolution (kernel ``s + 1``,
  stride ``s``) and a LayerNorm, and, with more than one head, the scaled scores are mixed
  across heads by a 1x1 convolution, soft-maxed and instance-normalised;
* between stages a **patch embedding**: a stride-2 3x3 convolution, BatchNorm and PA;
* a final LayerNorm, global average pooling and a linear classifier.

EMSA is :class:`tnt_rest_lite.layers.Attention` with ``sr_ratio=s, head_transform=True``; the
MSA baseline of the supplement's Table 1 (``rest_lite_msa``) is the same class with ``s = 1``
and no head transform. Spatial sizes are always read from the tensors, so any image of at
least 32x32 pixels works, square or not, multiple of 32 or not.

Parameter names follow the authors' code (``stem.conv1``, ``stage1.0.attn.sr``,
``patch_embed_2.pos.pa_conv``, ...), so their published checkpoints load with
``model.load_state_dict(state_dict, strict=True)``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._registry import create_model
from .trl_rest import ResT

__all__ = ["unwrap_state_dict", "load_authors_checkpoint", "AUTHORS_REPOSITORY", "load_timm", "check_state_dict"]


# The authors publish their ImageNet checkpoints in a Google Drive folder linked from this README
# (no release assets, so nothing to fetch by URL here; on Colab `gdown --folder <link>` downloads it).
AUTHORS_REPOSITORY = "https://github.com/wofmanaf/ResT"
_AUTHORS_VARIANTS = ("rest_lite", "rest_small", "rest_base", "rest_large")


def unwrap_state_dict(state: Any, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The model's state dict inside a checkpoint: raw, or under ``model`` / ``state_dict``; ``module.`` stripped.

    Training scripts save ``{"model": ...}`` or ``{"state_dict": ..., "optimizer": ...}``, and a model
    wrapped in ``DataParallel`` / ``DistributedDataParallel`` prefixes every key with ``module.``.
    """
    if isinstance(state, dict):
        for key in ("model", "state_dict"):
            if isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(
            f"{source} holds no state dict (a mapping of names to tensors, raw or under 'model' / 'state_dict')"
        )
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def load_authors_checkpoint(name: str, path: str | os.PathLike[str] | None) -> ResT:
    """ResT ``name`` with the authors' ImageNet weights read from ``path`` (their ``.pth`` file).

    The checkpoint is a raw state dict whose keys match ours, or one wrapped as the authors' training
    script saves it (under ``model`` or ``state_dict``, keys with or without DataParallel's ``module.``
    prefix: :func:`unwrap_state_dict`); it is read with ``weights_only=True`` and checked key by key. Without the file,
    the error names where to download it.
    """

    if name not in _AUTHORS_VARIANTS:
        raise ValueError(f"The authors publish checkpoints of {', '.join(_AUTHORS_VARIANTS)}; got '{name}'")
    if path is None or not Path(path).is_file():
        where = f" at {path}" if path is not None else ""
        raise FileNotFoundError(
            f"The authors' {name} checkpoint is not on disk{where}. Download it from the Google Drive folder "
            f"linked in the README of {AUTHORS_REPOSITORY} (on Colab: pip install gdown, then gdown --folder <link>) "
            "and pass the path of the .pth file"
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = unwrap_state_dict(state, f"checkpoint {path}")
    model = create_model(name)
    check_state_dict(model, state, f"checkpoint {path}")
    model.load_state_dict(state)
    return model


def check_state_dict(model: nn.Module, state_dict: dict[str, torch.Tensor], source: str) -> None:
    """Raise a ``KeyError``/``ValueError`` naming every missing, unexpected or mis-shaped key."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    if missing or unexpected:
        raise KeyError(
            f"{source} does not match {type(model).__name__}: "
            f"missing keys {missing or 'none'}; unexpected keys {unexpected or 'none'}"
        )
    mis_shaped = [
        f"{k}: expected {tuple(expected[k].shape)}, got {tuple(v.shape)}"
        for k, v in state_dict.items()
        if tuple(v.shape) != tuple(expected[k].shape)
    ]
    if mis_shaped:
        raise ValueError(f"{source} does not match {type(model).__name__}: shape mismatch for " + "; ".join(mis_shaped))


def load_timm(model: nn.Module, state_dict: dict[str, torch.Tensor], *, skip_head: bool = False) -> nn.Module:
    """Convert a timm state dict to ``model``'s names and load it strictly.

    Args:
        model: one of our models whose class defines ``convert_timm_state_dict``.
        state_dict: timm's ``model.state_dict()`` for the matching architecture.
        skip_head: keep ``model``'s own classifier (e.g. fine-tuning to another class count).

    Missing or unexpected keys are a ``KeyError`` naming them; a shape mismatch a ``ValueError``.
    """
    convert = getattr(type(model), "convert_timm_state_dict", None)
    if convert is None:
        raise TypeError(f"{type(model).__name__} has no timm converter (convert_timm_state_dict)")
    converted = convert(dict(state_dict))
    if skip_head:
        converted = {k: v for k, v in converted.items() if not k.startswith("head.")}
        converted.update({k: v for k, v in model.state_dict().items() if k.startswith("head.")})
    check_state_dict(model, converted, "timm state dict")
    model.load_state_dict(converted, strict=True)
    return model
