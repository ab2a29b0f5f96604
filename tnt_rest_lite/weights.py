"""Loading weights: timm state dicts converted to our parameter names, and pretrained models.

Each architecture class converts timm's keys to ours with a static method
``convert_timm_state_dict``; the checks (strict keys, shapes) live here, once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from .registry import ModelInfo

__all__ = ["load_timm", "load_pretrained", "check_state_dict"]


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


def load_pretrained(model: nn.Module, info: ModelInfo) -> nn.Module:
    """Download timm's pretrained weights for ``info`` (timm/Hugging Face) and load them.

    Needs network access (it works on Colab). Offline, or when the hub cannot be reached, it
    raises a ``RuntimeError`` that says so and how to proceed.
    """
    if info.timm_pretrained is None:
        raise ValueError(f"No pretrained weights are published for '{info.name}'; use pretrained=False")
    import timm

    try:
        source = timm.create_model(info.timm_pretrained, pretrained=True)
    except Exception as err:  # hub errors differ by version: report them all the same way
        raise RuntimeError(
            f"Could not download the pretrained weights of '{info.name}' (timm model "
            f"'{info.timm_pretrained}' from Hugging Face): {type(err).__name__}: {err}. "
            "Pretrained weights need network access (they download on Colab); offline, "
            "create the model with pretrained=False."
        ) from err
    num_classes = getattr(model, "num_classes", 1000)
    return load_timm(model, source.state_dict(), skip_head=num_classes != 1000)
