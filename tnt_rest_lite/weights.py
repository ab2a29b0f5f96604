"""timm state dicts converted to our parameter names, with strict checks.

Each architecture class converts timm's keys to ours with a static method
``convert_timm_state_dict``; the checks (strict keys, shapes) live here, once. Pretrained
weights are fetched by timm's builder (each entry point's ``pretrained_cfg`` and checkpoint
filter, see :mod:`tnt_rest_lite.interface`); :func:`load_timm` converts a timm model's state dict
that is already in memory (the equivalence tests and chapters compare our models with timm's).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["load_timm", "check_state_dict"]


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
