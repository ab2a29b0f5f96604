"""TNT: shapes of every component, timm equivalence, exact parameter counts, SE, gradients, errors."""

from __future__ import annotations

import pytest
import timm
import torch

from tnt_rest_lite.layers.attention import Attention, capture_attention
from tnt_rest_lite.layers.blocks import TransformerBlock
from tnt_rest_lite.measure.complexity import count_flops, count_params
from tnt_rest_lite.measure.conventions import COMPONENTS, complexity_breakdown, se_extra_params
from tnt_rest_lite.models._registry import create_model
from tnt_rest_lite.models._weights import load_timm
from tnt_rest_lite.models.trl_tnt import TNT, PixelEmbed, PixelToPatch, SqueezeExcite, TNTBlock, TNTConfig


def _perturb(model: torch.nn.Module, std: float = 0.05) -> None:
    # timm initialises LayerNorms to (1, 0) and biases to 0; random offsets make a swapped or
    # dropped LayerNorm/bias in the conversion visible in the logits.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * std)


# --- components, full-size shapes (no forward through the whole model) ------------------------


def test_pixel_embed_shapes_tnt_s() -> None:
    c = TNTConfig()
    assert (c.pixels_per_side, c.num_pixels, c.grid_size, c.num_patches) == (4, 16, 14, 196)
    embed = PixelEmbed(c)
    x = torch.randn(2, 3, 224, 224)
    patches = embed.patchify(x)
    assert patches.shape == (2 * 196, 3, 16, 16)
    # patch (row 1, col 2) of image 1 is the image's pixels [16:32, 32:48], row-major order
    assert torch.equal(patches[196 + 1 * 14 + 2], x[1, :, 16:32, 32:48])
    assert embed(x).shape == (2 * 196, 16, 24)
    assert embed.pos_embed.shape == (1, 16, 24)


def test_pixel_embed_convolves_each_patch_on_its_own() -> None:
    c = TNTConfig(img_size=32)
    embed = PixelEmbed(c).eval()
    x = torch.randn(1, 3, 32, 32)
    y = torch.randn(1, 3, 32, 32)
    y[..., :16, :16] = x[..., :16, :16]  # same first patch, different neighbours
    with torch.no_grad():
        assert torch.equal(embed(x)[0], embed(y)[0])  # padding is at the patch border
        assert not torch.allclose(embed(x)[1], embed(y)[1])


def test_pixel_to_patch_and_blocks_shapes() -> None:
    c = TNTConfig(img_size=32)  # 2x2 patches of 16x16, widths of TNT-S
    b, n = 3, c.num_patches
    pixels = torch.randn(b * n, 16, 24)
    p2p = PixelToPatch(16, 24, 384, bias=False)
    assert p2p(pixels, b).shape == (b, n, 384)
    assert p2p.norm_pixels.normalized_shape == (16 * 24,) and p2p.proj.bias is None

    inner = TransformerBlock(24, 4)
    assert inner(pixels).shape == pixels.shape
    outer = TransformerBlock(384, 6)
    patches = torch.randn(b, 1 + n, 384)
    assert outer(patches).shape == patches.shape

    block = TNTBlock(c)
    new_pixels, new_patches = block(pixels, patches)
    assert new_pixels.shape == pixels.shape and new_patches.shape == patches.shape


def test_tnt_block_class_token_gets_no_pixels() -> None:
    # Only the outer transformer touches the class token, so with the outer block switched off
    # (identity) the class token passes unchanged while every patch token moves.
    c = TNTConfig(img_size=32)
    block = TNTBlock(c).eval()
    block.outer = torch.nn.Identity()
    pixels, patches = torch.randn(2 * 4, 16, 24), torch.randn(2, 5, 384)
    with torch.no_grad():
        _, out = block(pixels, patches)
    assert torch.equal(out[:, 0], patches[:, 0])
    assert not torch.allclose(out[:, 1:], patches[:, 1:])


def test_model_stage_shapes_mini() -> None:
    model = create_model("tnt_s_mini").eval()
    c = model.config
    assert (c.num_pixels, c.num_patches, c.outer_dim, c.inner_dim) == (16, 16, 96, 6)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        pixels, patches = model.embed(x)
        assert pixels.shape == (2 * 16, 16, 6)
        assert patches.shape == (2, 17, 96)
        assert model.forward_features(x).shape == (2, 17, 96)
        assert model(x).shape == (2, 20)


def test_mini_accepts_overrides() -> None:
    model = create_model("tnt_s_mini", img_size=64, num_classes=7)
    assert model.config.num_patches == 64
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 7)


def test_mini_matches_deit_mini_outer_shape() -> None:
    deit, tnt = create_model("deit_s_mini"), create_model("tnt_s_mini")
    d, t = deit.config, tnt.config
    assert (d.embed_dim, d.depth, d.num_heads, d.patch_size, d.img_size) == (
        t.outer_dim,
        t.depth,
        t.outer_heads,
        t.patch_size,
        t.img_size,
    )


def test_forward_intermediates_shapes() -> None:
    model = create_model("tnt_s_mini").eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        final, maps = model.forward_intermediates(x, indices=(1, 2, 3))
        feats = model.forward_features(x)
        tokens = model.forward_intermediates(x, indices=[-1], output_fmt="NLC", intermediates_only=True)
    assert [m.shape for m in maps] == [(2, 96, 4, 4)] * 3 and tokens[0].shape == (2, 16, 96)
    # the last map is the last block's patch tokens (before the final norm), in grid layout
    with torch.no_grad():
        pixels, patches = model.embed(x)
        for block in model.blocks:
            pixels, patches = block(pixels, patches)
    assert torch.allclose(maps[-1].flatten(2).transpose(1, 2), patches[:, 1:])
    assert torch.allclose(tokens[0], patches[:, 1:])
    assert torch.allclose(model.norm(patches), feats) and torch.allclose(final, feats)
    with pytest.raises(AssertionError, match="out of range"):
        model.forward_intermediates(x, indices=(4,))


def test_forward_intermediates_tnt_s_detection_blocks() -> None:
    model = create_model("tnt_s", img_size=64).eval()  # TNT-S widths on a 4x4 patch grid
    with torch.no_grad():
        maps = model.forward_intermediates(torch.randn(1, 3, 64, 64), indices=(2, 5, 8, 11), intermediates_only=True)
    assert [m.shape for m in maps] == [(1, 384, 4, 4)] * 4  # blocks 3, 6, 9, 12 (TNT supplement, section 3)


def test_attention_goes_through_the_shared_module() -> None:
    model = create_model("tnt_s_mini").eval()
    attns = [name for name, m in model.named_modules() if isinstance(m, Attention)]
    assert len(attns) == 2 * model.config.depth
    with torch.no_grad(), capture_attention(model) as maps:
        model(torch.randn(2, 3, 32, 32))
    assert maps["blocks.0.inner.attn"]["attn"].shape == (2 * 16, 2, 16, 16)  # pixels of each patch
    assert maps["blocks.0.outer.attn"]["attn"].shape == (2, 3, 17, 17)  # patches + class token


# --- gradients -------------------------------------------------------------------------------


def test_gradients_reach_inner_and_outer_parameters() -> None:
    model = create_model("tnt_s_se_mini")
    model(torch.randn(2, 3, 32, 32)).logsumexp(dim=1).sum().backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert no_grad == []
    for name in ("pixel_embed.proj.weight", "pixel_embed.pos_embed", "blocks.0.inner.attn.q.weight"):
        assert model.get_parameter(name).grad.abs().sum() > 0
    for name in ("blocks.3.outer.attn.kv.weight", "blocks.3.outer.se.fc2.weight", "pos_embed", "cls_token"):
        assert model.get_parameter(name).grad.abs().sum() > 0


# --- timm equivalence and parameter counts ---------------------------------------------------


@pytest.mark.parametrize(
    ("ours", "theirs", "expected_params"),
    [("tnt_s", "tnt_s_patch16_224", 23_768_584), ("tnt_b", "tnt_b_patch16_224", 65_428_680)],
)
def test_timm_equivalence(ours: str, theirs: str, expected_params: int) -> None:
    reference = timm.create_model(theirs, pretrained=False).eval()
    _perturb(reference)
    model = create_model(ours).eval()
    assert count_params(model) == count_params(reference) == expected_params
    load_timm(model, reference.state_dict())
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        diff = (model(x) - reference(x)).abs().max().item()
    assert diff < 1e-4


def test_parameter_count_by_hand_tnt_s() -> None:
    # Derive TNT-S's 23,768,584 parameters from the architecture, term by term.
    d, e, n_pix, n_patch, depth = 24, 384, 16, 196, 12

    def linear(i: int, o: int, bias: bool = True) -> int:
        return i * o + (o if bias else 0)

    def ln(n: int) -> int:
        return 2 * n

    def block(dim: int) -> int:  # pre-norm block without q/k/v bias
        attn = linear(dim, dim, False) + linear(dim, 2 * dim, False) + linear(dim, dim)
        return ln(dim) + attn + ln(dim) + linear(dim, 4 * dim) + linear(4 * dim, dim)

    pixel_embed = 3 * d * 7 * 7 + d + n_pix * d
    patch_embed = ln(n_pix * d) + linear(n_pix * d, e) + ln(e)
    per_block = block(d) + ln(n_pix * d) + linear(n_pix * d, e, False) + ln(e) + block(e)
    total = pixel_embed + patch_embed + e + (n_patch + 1) * e + depth * per_block + ln(e) + linear(e, 1000)
    with torch.device("meta"):  # counting needs no memory or initialisation
        assert total == 23_768_584 == count_params(create_model("tnt_s"))


def test_se_adds_exactly_the_formula() -> None:
    c = 384
    per_block = 2 * c + (c * c // 4 + c // 4) + (c // 4 * c + c)  # LN, Linear(C, C/4), Linear(C/4, C)
    assert se_extra_params(c) == per_block == count_params(SqueezeExcite(c))
    with torch.device("meta"):
        extra = count_params(create_model("tnt_s_se")) - count_params(create_model("tnt_s"))
    assert extra == 12 * per_block
    assert 0.85e6 < extra < 0.95e6  # the supplement's "about 0.9M" (23.8M -> 24.7M)


def test_se_changes_the_output() -> None:
    torch.manual_seed(0)
    plain = create_model("tnt_s_mini").eval()
    with_se = create_model("tnt_s_se_mini").eval()
    # Same weights everywhere except the SE modules, which only the SE model has.
    missing, unexpected = with_se.load_state_dict(plain.state_dict(), strict=False)
    assert unexpected == [] and all(".outer.se." in k for k in missing) and len(missing) == 4 * 6
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        diff = (with_se(x) - plain(x)).abs().max().item()
        # the SE path is the only difference: with its gate at zero (fc2 = 0 -> tanh 0) the outputs agree
        for block in with_se.blocks:
            torch.nn.init.zeros_(block.outer.se.fc2.weight)
            torch.nn.init.zeros_(block.outer.se.fc2.bias)
        same = (with_se(x) - plain(x)).abs().max().item()
    assert diff > 1e-4
    assert same < 1e-6


def test_squeeze_excite_gate() -> None:
    se = SqueezeExcite(8)
    m = torch.randn(2, 5, 8)
    out = se(m)
    ratio = out / m  # one factor per (image, channel), shared by every token, in (-1, 1)
    assert torch.allclose(ratio, ratio[:, :1].expand_as(ratio), atol=1e-5)
    assert ratio.abs().max() < 1


def test_complexity_breakdown_partitions_the_model() -> None:
    model = create_model("tnt_s_se_mini")
    report = count_flops(model, image_size=32)
    parts = complexity_breakdown(model, report)
    assert list(parts) == list(COMPONENTS)
    assert sum(p["params"] for p in parts.values()) == count_params(model)
    assert sum(p["flops"] for p in parts.values()) == report.total
    assert parts["SE"]["params"] == 4 * se_extra_params(96)
    assert all(p["params"] > 0 and p["flops"] > 0 for p in parts.values())
    plain = complexity_breakdown(create_model("tnt_s_mini"))
    assert plain["SE"]["params"] == 0 and "flops" not in plain["SE"]


# --- bad input and pretrained weights --------------------------------------------------------


def test_wrong_image_size_is_clear_error() -> None:
    model = create_model("tnt_s_mini")
    with pytest.raises(ValueError, match=r"expects images of shape \(B, 3, 32, 32\), got \(1, 3, 48, 48\)"):
        model(torch.randn(1, 3, 48, 48))
    with pytest.raises(ValueError, match=r"expects images of shape \(B, 3, 32, 32\)"):
        model(torch.randn(1, 3, 30, 30))


def test_img_size_not_multiple_of_patch_is_clear_error() -> None:
    with pytest.raises(ValueError, match="img_size=30 must be a multiple of patch_size=8"):
        create_model("tnt_s_mini", img_size=30)


def test_unknown_override_is_clear_error() -> None:
    with pytest.raises(TypeError, match="TNTConfig has no field"):
        create_model("tnt_s", embed_dim=10)


@pytest.mark.parametrize(("ours", "theirs"), [("tnt_s", "tnt_s_patch16_224"), ("deit_s", "deit_small_patch16_224")])
def test_pretrained_path_converts_timm_weights(monkeypatch: pytest.MonkeyPatch, ours: str, theirs: str) -> None:
    # Stand in for the hub: timm's builder must ask it for the entry's published weights and our
    # checkpoint filter must convert them (what happens on Colab), keeping our own head for other
    # class counts; through both timm.create_model and ours.
    import timm.models._builder as builder

    asked: list[str] = []
    source = timm.create_model(theirs, pretrained=False)
    _perturb(source)

    def fake_hub(hub_id: str, *args: object, **kwargs: object) -> dict:
        asked.append(hub_id)
        return {k: v.clone() for k, v in source.state_dict().items()}

    monkeypatch.setattr(builder, "load_state_dict_from_hf", fake_hub)
    expected = type(create_model(ours)).convert_timm_state_dict(source.state_dict())
    for model in (create_model(ours, pretrained=True, num_classes=10), timm.create_model(ours, pretrained=True)):
        state = model.state_dict()
        assert all(torch.equal(state[k], v) for k, v in expected.items() if not k.startswith("head."))
    assert asked == [f"timm/{theirs}.{'in1k' if ours.startswith('tnt') else 'fb_in1k'}"] * 2
    assert state["head.weight"].shape[0] == 1000 and torch.equal(state["head.weight"], expected["head.weight"])
    assert create_model(ours, pretrained=True, num_classes=10).head.weight.shape[0] == 10


def test_no_published_weights_for_se() -> None:
    with pytest.raises(ValueError, match="No pretrained weights are published for 'tnt_s_se'"):
        create_model("tnt_s_se", pretrained=True)


def test_timm_sees_our_entry_points() -> None:
    model = timm.create_model("tnt_s_mini", num_classes=3)
    assert isinstance(model, TNT) and model.num_classes == 3
