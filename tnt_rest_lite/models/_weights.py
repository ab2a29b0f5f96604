"""Weights into our models: checked state dicts, timm's published weights, the ResT authors' checkpoints.

:func:`check_state_dict` names every missing, unexpected or mis-shaped key before anything loads;
:func:`load_timm` converts a timm model's weights through each architecture's checkpoint filter;
:func:`unwrap_state_dict` and :func:`load_authors_checkpoint` accept the authors' ResT checkpoints as a
raw state dict, under ``model`` or ``state_dict``, with or without DataParallel's ``module.`` prefix.
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
