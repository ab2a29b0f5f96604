"""timm's ``Mlp``, ``DropPath`` and ``LayerNorm2d`` in place of the package's former own: the same
state-dict keys and, for the same weights, the same outputs as the former implementations (kept here)."""

from __future__ import annotations

import torch
from torch import nn

from tnt_rest_lite.detection.backbones import SimplePyramid
from tnt_rest_lite.layers.blocks import DropPath, Mlp, TransformerBlock


class FormerMlp(nn.Module):
    def __init__(self, in_features, hidden_features, out_features=None, drop=0.0):
        super().__init__()
        out_features = out_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, out_features)
        self.drop = nn.Dropout(drop)

    def forward(self, x):
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


def former_drop_path(x, drop_prob=0.0, training=False):
    if drop_prob == 0.0 or not training:
        return x
    keep = 1.0 - drop_prob
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * mask / keep


class FormerLayerNorm2d(nn.LayerNorm):
    def forward(self, x):
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def test_mlp_keys_and_outputs_equal_the_former_one():
    torch.manual_seed(0)
    former, ours = FormerMlp(24, 96, drop=0.1), Mlp(24, 96, drop=0.1)
    assert list(ours.state_dict()) == list(former.state_dict()) == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    ours.load_state_dict(former.state_dict())
    x = torch.randn(3, 7, 24)
    assert torch.equal(ours.eval()(x), former.eval()(x))
    # training: the same dropout masks from the same random numbers
    torch.manual_seed(1)
    a = former.train()(x)
    torch.manual_seed(1)
    assert torch.equal(ours.train()(x), a)


def test_drop_path_equals_the_former_one():
    x = torch.randn(64, 5, 8)
    for p in (0.0, 0.1, 0.5, 0.8):
        torch.manual_seed(2)
        a = former_drop_path(x, p, training=True)
        torch.manual_seed(2)
        b = DropPath(p).train()(x)
        torch.testing.assert_close(b, a, rtol=1e-6, atol=0)  # x * (m / keep) vs (x * m) / keep: an ulp at most
        assert torch.equal(b == 0, a == 0)  # the same samples dropped
        assert torch.equal(DropPath(p).eval()(x), x)


def test_layernorm2d_keys_and_outputs_equal_the_former_one():
    torch.manual_seed(3)
    pyramid = SimplePyramid(16)
    norm = pyramid.up4[1]
    former = FormerLayerNorm2d(16)
    former.weight.data.normal_()
    former.bias.data.normal_()
    assert norm.eps == former.eps == 1e-5
    assert list(norm.state_dict()) == list(former.state_dict()) == ["weight", "bias"]
    norm.load_state_dict(former.state_dict())
    x = torch.randn(2, 16, 5, 6)
    torch.testing.assert_close(norm(x), former(x), rtol=0, atol=1e-6)


def test_transformer_block_keeps_its_state_dict_keys():
    keys = list(TransformerBlock(32, 4, qkv_bias=True).state_dict())
    assert [k for k in keys if k.startswith("mlp.")] == [
        "mlp.fc1.weight",
        "mlp.fc1.bias",
        "mlp.fc2.weight",
        "mlp.fc2.bias",
    ]
