"""Layer 3, the models: one module per architecture, the registry, timm's builder and weight loading.

Importing this package imports the four architecture modules, so that their entry points register with
timm; the registry itself never imports a model.

The architecture modules are named ``trl_<architecture>`` (``trl``: tnt_rest_lite). timm's registry files
every model under the last component of its module's name (``timm.list_models(module="tnt")``): with the
prefix our models have keys of their own (``trl_deit``, ``trl_tnt``, ``trl_rest``, ``trl_resnet``) instead
of joining timm's ``deit``, ``tnt`` and ``resnet`` lists.
"""

from __future__ import annotations

from . import trl_deit, trl_resnet, trl_rest, trl_tnt
from ._registry import create_model, create_pretrained_or_random, list_models, model_info

__all__ = [
    "trl_deit",
    "trl_resnet",
    "trl_rest",
    "trl_tnt",
    "create_model",
    "create_pretrained_or_random",
    "list_models",
    "model_info",
]
