"""Model registry: ``create_model(name)`` here, and ``timm.create_model(name)`` after import.

Each architecture module decorates its entry points with :func:`register_model`, which records
them here and in timm's registry (with the module's ``default_cfgs``, so timm knows each entry's
``pretrained_cfg``). Every entry point builds through timm's ``build_model_with_cfg``
(:func:`tnt_rest_lite.interface.build`), so pretrained weights, ``features_only`` and the other
factory options behave the same through both doors.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from torch import nn

__all__ = ["ModelInfo", "register_model", "create_model", "list_models", "model_info", "configure"]

C = TypeVar("C")


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about one model name."""

    name: str
    builder: Callable[..., nn.Module]
    description: str

    @property
    def pretrained_source(self) -> str | None:
        """Where ``pretrained=True`` fetches weights from (a Hugging Face hub id), or ``None``."""
        from timm.models import get_pretrained_cfg

        cfg = get_pretrained_cfg(self.name)
        return None if cfg is None else (cfg.hf_hub_id or cfg.url or None)


_REGISTRY: dict[str, ModelInfo] = {}


def configure(config: C, overrides: dict[str, Any]) -> C:
    """Return ``config`` with ``overrides`` applied; an unknown field is a clear error."""
    fields = {f.name for f in dataclasses.fields(config)}  # type: ignore[arg-type]
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise TypeError(f"{type(config).__name__} has no field(s) {unknown}; valid overrides are {sorted(fields)}")
    return dataclasses.replace(config, **overrides)  # type: ignore[type-var]


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register an entry point ``fn(pretrained=False, **kwargs)`` under its name, here and in timm."""
    from timm.models import register_model as timm_register

    doc = (fn.__doc__ or "").strip().splitlines()
    _REGISTRY[fn.__name__] = ModelInfo(fn.__name__, fn, doc[0] if doc else "")
    return timm_register(fn)


def list_models() -> list[str]:
    """Names of every registered model, sorted."""
    _import_model_modules()
    return sorted(_REGISTRY)


def model_info(name: str) -> ModelInfo:
    """The registry entry of ``name``; an unknown name lists the known ones."""
    _import_model_modules()
    if name not in _REGISTRY:
        raise ValueError(f"Unknown model '{name}'. Known models: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def create_model(name: str, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """Build a registered model (the same entry point ``timm.create_model(name)`` calls).

    Args:
        name: a name from :func:`list_models`.
        pretrained: load published ImageNet weights (timm's, converted); needs network access.
        **kwargs: config fields to change (``num_classes=10``, ``img_size=64``, ``global_pool=''``)
            and timm's factory options (``features_only=True``, ``out_indices``, ``feature_cls``,
            ``pretrained_cfg_overlay``).
    """
    return model_info(name).builder(pretrained=pretrained, **kwargs)


def _import_model_modules() -> None:
    # Importing the architecture modules runs their @register_model decorators.
    from . import models  # noqa: F401
