"""Model registry: ``create_model(name)`` here, and ``timm.create_model(name)`` after import.

Each architecture module decorates its entry points with :func:`register_model`, which records
them here and in timm's registry (with the module's ``default_cfgs``, so timm knows each entry's
``pretrained_cfg``). Every entry point builds through timm's ``build_model_with_cfg``
(:func:`tnt_rest_lite.models._builder.build`), so pretrained weights, ``features_only`` and the other
factory options behave the same through both doors.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from torch import nn

__all__ = [
    "ModelInfo",
    "register_model",
    "create_model",
    "create_pretrained_or_random",
    "list_models",
    "model_info",
    "configure",
]


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
    return sorted(_REGISTRY)


def model_info(name: str) -> ModelInfo:
    """The registry entry of ``name``; an unknown name lists the known ones."""
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


def _hub_reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the hub opens within ``timeout`` seconds (no retries)."""
    import socket

    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def create_pretrained_or_random(name: str, **kwargs: Any) -> tuple[nn.Module, bool]:
    """``create_model(name, pretrained=True)``, or random weights when the hub cannot be reached.

    Returns ``(model, pretrained)``. Offline it fails fast (one short connection test, no hub
    retries) and prints exactly one line naming the hub id and saying random weights are used;
    the hub's and urllib3's retry messages and warnings are silenced during the attempt.
    """
    import contextlib
    import io
    import logging
    import warnings

    source = model_info(name).pretrained_source or name
    if _hub_reachable():
        loggers = [logging.getLogger(n) for n in ("huggingface_hub", "urllib3", "timm")]
        levels = [lg.level for lg in loggers]
        try:
            for lg in loggers:
                lg.setLevel(logging.CRITICAL + 1)
            with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
                warnings.simplefilter("ignore")
                return create_model(name, pretrained=True, **kwargs), True
        except RuntimeError:
            pass
        finally:
            for lg, level in zip(loggers, levels, strict=True):
                lg.setLevel(level)
    print(f"Pretrained weights {source} not reachable from the Hugging Face hub: using random weights.")
    return create_model(name, **kwargs), False
