"""Layer 3, the models: one module per architecture, the registry, timm's builder and weight loading.

Importing this package imports the four architecture modules, so that their entry points register with
timm; the registry itself never imports a model.
"""

from __future__ import annotations

from . import deit, resnet, rest, tnt
from ._registry import create_model, create_pretrained_or_random, list_models, model_info

__all__ = ["deit", "resnet", "rest", "tnt", "create_model", "create_pretrained_or_random", "list_models", "model_info"]
