"""timm's registry conventions: module keys of our own, a pool_size in every cfg, features_only defaults."""

from __future__ import annotations

import importlib.util

import pytest
import timm
import torch

import tnt_rest_lite
from tnt_rest_lite import list_models
from tnt_rest_lite.models import trl_deit, trl_resnet, trl_rest, trl_tnt

NAMES = list_models()
OUR_MODULES = (trl_deit, trl_tnt, trl_rest, trl_resnet)


def _entry_points(module) -> set[str]:
    """The registered names a model file defines (its entry points, in its ``__all__``)."""
    return {n for n in module.__all__ if n in NAMES}


@pytest.mark.parametrize("module", OUR_MODULES, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_each_module_key_lists_exactly_its_own_models(module) -> None:
    key = module.__name__.rsplit(".", 1)[-1]  # timm keys a model by the last part of fn.__module__
    assert set(timm.list_models(module=key)) == _entry_points(module) != set()


def test_our_module_keys_are_not_timm_modules() -> None:
    """No key of ours names a module of timm itself (timm.models.<key>), now or by accident."""
    for module in OUR_MODULES:
        key = module.__name__.rsplit(".", 1)[-1]
        assert importlib.util.find_spec(f"timm.models.{key}") is None, key


@pytest.mark.parametrize("key", ["deit", "tnt", "resnet", "vision_transformer"])
def test_timm_module_keys_hold_none_of_ours(key: str) -> None:
    assert timm.list_models(module=key), key  # timm's own models are still there
    assert set(timm.list_models(module=key)).isdisjoint(NAMES)


def test_every_model_is_in_one_module_and_listed() -> None:
    files = [_entry_points(m) for m in OUR_MODULES]
    assert sorted(set().union(*files)) == NAMES == tnt_rest_lite.list_models()
    assert sum(len(f) for f in files) == len(NAMES)  # no name in two files


# timm's own cfgs of the architectures our plain transformers reproduce
TIMM_TWINS = {"deit": "deit_small_patch16_224.fb_in1k", "tnt": "tnt_s_patch16_224.in1k"}


@pytest.mark.parametrize("name", NAMES)
def test_pool_size_is_the_final_map_at_the_input_size(name: str) -> None:
    with torch.device("meta"):  # shapes only: the full-size models at 224 px stay quick
        model = timm.create_model(name).eval()
        cfg = model.pretrained_cfg
        features = model.forward_features(torch.zeros(1, *cfg["input_size"]))
    assert "pool_size" in cfg
    if features.ndim == 4:  # a pyramid (ResT, ResNet): the map global pooling reduces
        assert cfg["pool_size"] == tuple(features.shape[-2:]), cfg["pool_size"]
    else:  # tokens (DeiT, TNT): no map to pool, and timm's deit and tnt cfgs leave it None too
        twin = timm.models.get_pretrained_cfg(TIMM_TWINS[name.split("_")[0]])
        assert cfg["pool_size"] is twin.pool_size is None


def _small(name: str) -> tuple[dict, int]:
    """Overrides and image side that keep the full-size models quick on CPU (as test_timm_interface)."""
    if name.endswith("_mini"):
        return {}, 32
    return ({"img_size": 64} if name.startswith(("deit", "tnt")) else {}), 64


@pytest.mark.parametrize("name", NAMES)
def test_features_only_with_its_default_out_indices(name: str) -> None:
    """The defaults are timm's: the last three blocks of a ViT-style model, every stage of a pyramid."""
    overrides, size = _small(name)
    with torch.device("meta"):
        blocks = len(timm.create_model(name, **overrides).feature_info)
    model = timm.create_model(name, features_only=True, **overrides).eval()
    info = model.feature_info
    if name.startswith(("deit", "tnt")):
        assert tuple(info.out_indices) == tuple(range(blocks - min(3, blocks), blocks))
    else:
        assert tuple(info.out_indices) == tuple(range(blocks))
    with torch.no_grad():
        features = model(torch.randn(1, 3, size, size))
    assert len(features) == len(info.out_indices)
    for f, channels, reduction in zip(features, info.channels(), info.reduction(), strict=True):
        assert f.shape == (1, channels, -(-size // reduction), -(-size // reduction))
