"""Every registered model is a full timm model: pretrained cfgs, the model interface, features, fx."""

from __future__ import annotations

import pytest
import timm
import torch
from timm.data import create_transform, resolve_model_data_config
from timm.models import get_graph_node_names

from tnt_rest_lite import create_model, list_models

NAMES = list_models()
TOKEN_MODELS = [n for n in NAMES if n.startswith(("deit", "tnt"))]


def _small(name: str) -> tuple[dict, int]:
    """Overrides and image side that keep the full-size models quick on CPU (same architecture)."""
    if name.endswith("_mini"):
        return {}, 32
    return ({"img_size": 64} if name in TOKEN_MODELS else {}), 64


@pytest.mark.parametrize("name", NAMES)
def test_pretrained_cfg_and_data_config(name: str) -> None:
    model = timm.create_model(name)
    cfg = model.pretrained_cfg
    assert model.default_cfg is cfg and cfg["architecture"] == name
    for key in ("input_size", "mean", "std", "interpolation", "crop_pct", "first_conv", "classifier"):
        assert key in cfg, key
    assert (
        model.get_submodule(cfg["first_conv"]) is not None
        and model.get_submodule(cfg["classifier"]) is model.get_classifier()
    )
    data = resolve_model_data_config(model)
    assert data["input_size"] == cfg["input_size"] and data["mean"] == cfg["mean"]
    if name.startswith("tnt") and not name.endswith("_mini"):
        assert data["mean"] == data["std"] == (0.5, 0.5, 0.5)  # TNT normalises with mean = std = 0.5
    transform = create_transform(**data)
    from PIL import Image

    image = transform(Image.new("RGB", (300, 240), (120, 60, 200)))
    assert tuple(image.shape) == cfg["input_size"]
    overlaid = timm.create_model(name, pretrained_cfg_overlay=dict(mean=(0.0, 0.0, 0.0)))
    assert overlaid.pretrained_cfg["mean"] == (0.0, 0.0, 0.0)


@pytest.mark.parametrize("name", NAMES)
def test_model_interface(name: str) -> None:
    overrides, size = _small(name)
    model = timm.create_model(name, num_classes=7, **overrides)
    x = torch.randn(2, 3, size, size)
    logits = model(x)
    assert logits.shape == (2, 7) and model.num_classes == 7
    logits.logsumexp(1).sum().backward()  # backward reaches the input layer
    assert model.get_submodule(model.pretrained_cfg["first_conv"]).weight.grad is not None
    model.eval()
    with torch.no_grad():
        features = model.forward_features(x)
        pooled = model.forward_head(features, pre_logits=True)
        assert pooled.shape == (2, model.num_features) and model.head_hidden_size == model.num_features
        torch.testing.assert_close(model.forward_head(features), model.get_classifier()(pooled))
        model.reset_classifier(0)
        assert model(x).shape == (2, model.num_features)
        model.reset_classifier(0, "")
        torch.testing.assert_close(model(x), features)  # unpooled: the features themselves
        model.reset_classifier(3, "avg")
        assert model(x).shape == (2, 3) and model.num_classes == 3


@pytest.mark.parametrize("name", NAMES)
def test_creation_options_through_both_doors(name: str) -> None:
    overrides, size = _small(name)
    x = torch.randn(1, 1, size, size)
    for factory in (timm.create_model, create_model):
        model = factory(name, num_classes=0, global_pool="", in_chans=1, **overrides).eval()
        with torch.no_grad():
            assert model(x).shape == model.forward_features(x).shape  # no head, no pooling
    with pytest.raises(TypeError, match="has no field"):
        timm.create_model(name, widht=3)


@pytest.mark.parametrize("feature_cls", ["getter", "fx"])
@pytest.mark.parametrize("name", NAMES)
def test_features_only(name: str, feature_cls: str) -> None:
    overrides, size = _small(name)
    model = timm.create_model(name, features_only=True, out_indices=(1, 2), feature_cls=feature_cls, **overrides)
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        features = model.eval()(x)
    info = model.feature_info
    assert len(features) == 2
    for f, channels, reduction in zip(features, info.channels(), info.reduction(), strict=True):
        if f.ndim == 3:  # fx on a plain transformer: the block's tokens (class token first), as timm's ViTs
            grid = size // reduction
            assert f.shape == (2, 1 + grid * grid, channels)
        else:
            assert f.shape == (2, channels, size // reduction, size // reduction)


@pytest.mark.parametrize("name", NAMES)
def test_forward_intermediates_and_pruning(name: str) -> None:
    overrides, size = _small(name)
    model = timm.create_model(name, **overrides).eval()
    x = torch.randn(2, 3, size, size)
    n = len(model.feature_info)
    # the second format: NLC for the transformers, NHWC for ResT; timm's ResNet has only NCHW
    tokens_fmt = "NLC" if name in TOKEN_MODELS else ("NHWC" if name.startswith("rest") else None)
    with torch.no_grad():
        final, maps = model.forward_intermediates(x)
        assert len(maps) == n
        torch.testing.assert_close(final, model.forward_features(x))
        last_two = model.forward_intermediates(x, indices=2, intermediates_only=True)
        torch.testing.assert_close(last_two[-1], maps[-1])
        if tokens_fmt is not None:
            other = model.forward_intermediates(x, indices=[0, -1], output_fmt=tokens_fmt, intermediates_only=True)
            if tokens_fmt == "NLC":
                torch.testing.assert_close(other[0], maps[0].flatten(2).transpose(1, 2))
            else:
                torch.testing.assert_close(other[0], maps[0].permute(0, 2, 3, 1))
        for m, info in zip(maps, model.feature_info, strict=True):
            assert m.shape[1] == info["num_chs"] and m.shape[-1] == size // info["reduction"]
        kept = model.prune_intermediate_layers([1])
        assert kept == [1]
        torch.testing.assert_close(model.forward_intermediates(x, indices=[1], intermediates_only=True)[0], maps[1])


@pytest.mark.parametrize("name", NAMES)
def test_fx_tracing(name: str) -> None:
    overrides, _ = _small(name)
    train_nodes, eval_nodes = get_graph_node_names(timm.create_model(name, **overrides))
    assert len(eval_nodes) > 10 and eval_nodes[-1].startswith(("head", "fc"))


@pytest.mark.parametrize("name", ["deit_s_mini", "tnt_s_mini", "rest_lite_mini"])
def test_grad_checkpointing_changes_nothing_but_memory(name: str) -> None:
    torch.manual_seed(0)
    plain = create_model(name)
    checkpointed = create_model(name)
    checkpointed.load_state_dict(plain.state_dict())
    checkpointed.set_grad_checkpointing(True)
    x = torch.randn(2, 3, 32, 32)
    for model in (plain, checkpointed):
        model.eval()(x).sum().backward()
    torch.testing.assert_close(plain(x), checkpointed(x))
    for (k, a), (_, b) in zip(plain.named_parameters(), checkpointed.named_parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, msg=k)
