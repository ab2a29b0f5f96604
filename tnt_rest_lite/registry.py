"""Model registry: ``create_model(name)`` here, and ``timm.create_model(name)`` after import.

Each architecture module decorates its entry points with :func:`register_model`. An entry point
takes keyword overrides of its config and returns a randomly initialised model; pretrained
weights are loaded here, by name, so every entry point stays a two-liner.
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
    timm_pretrained: str | None  # timm model name whose pretrained weights convert into ours
    description: str


_REGISTRY: dict[str, ModelInfo] = {}


def configure(config: C, overrides: dict[str, Any]) -> C:
    """Return ``config`` with ``overrides`` applied; an unknown field is a clear error."""
    fields = {f.name for f in dataclasses.fields(config)}  # type: ignore[arg-type]
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise TypeError(f"{type(config).__name__} has no field(s) {unknown}; valid overrides are {sorted(fields)}")
    return dataclasses.replace(config, **overrides)  # type: ignore[type-var]


def register_model(fn: Callable[..., nn.Module] | None = None, *, timm_pretrained: str | None = None) -> Any:
    """Register an entry point under its function name, here and in timm's registry."""

    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        name = builder.__name__
        doc = (builder.__doc__ or "").strip().splitlines()
        _REGISTRY[name] = ModelInfo(name, builder, timm_pretrained, doc[0] if doc else "")
        _register_with_timm(name, builder)
        return builder

    return decorate(fn) if fn is not None else decorate


def _register_with_timm(name: str, builder: Callable[..., nn.Module]) -> None:
    """Expose ``name`` to ``timm.create_model`` with timm's calling convention."""
    try:
        from timm.models import register_model as timm_register
    except ImportError:  # timm is a dependency, but the registry itself does not need it
        return

    def entry(pretrained: bool = False, **kwargs: Any) -> nn.Module:
        # timm passes its own factory options; our models take none of them.
        for key in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):
            kwargs.pop(key, None)
        return create_model(name, pretrained=pretrained, **kwargs)

    entry.__name__ = name
    entry.__qualname__ = name
    entry.__module__ = builder.__module__
    entry.__doc__ = builder.__doc__
    timm_register(entry)


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


def create_model(name: str, pretrained: bool = False, **overrides: Any) -> nn.Module:
    """Build a registered model.

    Args:
        name: a name from :func:`list_models`.
        pretrained: load published ImageNet weights (converted from timm); needs network access.
        **overrides: config fields to change, e.g. ``num_classes=10`` or ``img_size=64``.
    """
    info = model_info(name)
    model = info.builder(**overrides)
    if pretrained:
        from .weights import load_pretrained

        load_pretrained(model, info)
    return model


def _import_model_modules() -> None:
    # Importing the architecture modules runs their @register_model decorators.
    from . import models  # noqa: F401
