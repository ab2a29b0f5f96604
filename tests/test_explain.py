"""Attention measures, rollout, head diversity, Group-CAM and faithfulness metrics on hand-made cases."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from tnt_rest_lite import create_model
from tnt_rest_lite.explain.maps import (
    attention_entropy,
    attention_rollout,
    deletion_insertion,
    energy_pointing_game,
    gaussian_blur,
    group_cam,
    head_similarity,
    layer_map,
    mean_attention_distance,
    mean_off_diagonal,
    patch_distances,
    pointing_game,
    tokens_to_map,
)
from tnt_rest_lite.layers.attention import capture_attention


def test_captured_maps_equal_a_manual_recomputation() -> None:
    model = create_model("deit_s_mini").eval()
    x = torch.randn(2, 3, 32, 32)
    block = model.blocks[0]
    with torch.no_grad(), capture_attention(model) as maps:
        model(x)
        tokens = block.norm1(model.embed(x))
        attn = block.attn
        q = attn._split_heads(attn.q(tokens))
        k, _ = attn.keys_values(tokens, None)
        manual = ((q @ k.transpose(-2, -1)) * attn.scale).softmax(dim=-1)
    torch.testing.assert_close(maps["blocks.0.attn"]["attn"], manual)
    torch.testing.assert_close(manual.sum(-1), torch.ones_like(manual.sum(-1)))  # rows sum to 1


def test_attention_distance_and_entropy_on_hand_made_maps() -> None:
    n = 4  # a 2x2 grid of 16 px patches, no class token
    dist = patch_distances(2, 16.0)
    assert dist[0, 3] == pytest.approx(16 * math.sqrt(2)) and dist[0, 1] == 16
    diagonal = torch.eye(n)[None, None]  # every patch attends to itself: distance 0, entropy 0
    uniform = torch.full((1, 1, n, n), 1 / n)  # evenly: entropy log 4
    assert mean_attention_distance(diagonal, 16.0, num_prefix=0).item() == pytest.approx(0.0)
    expected = dist.mean().item()  # uniform weights: the mean distance to every patch
    assert mean_attention_distance(uniform, 16.0, num_prefix=0).item() == pytest.approx(expected)
    assert attention_entropy(diagonal).item() == pytest.approx(0.0, abs=1e-6)
    assert attention_entropy(uniform).item() == pytest.approx(math.log(n))


def test_rollout_on_a_hand_made_case() -> None:
    a = torch.tensor([[0.0, 1.0], [1.0, 0.0]])  # two tokens that swap
    rolled = attention_rollout([a[None, None]])
    torch.testing.assert_close(rolled[0], torch.full((2, 2), 0.5))  # (A + I) / 2, rows sum to 1
    two = attention_rollout([a[None, None], a[None, None]])
    torch.testing.assert_close(two[0], torch.full((2, 2), 0.5))
    identity = attention_rollout([torch.eye(3)[None, None]] * 4)
    torch.testing.assert_close(identity[0], torch.eye(3))
    with pytest.raises(ValueError, match="at least one"):
        attention_rollout([])


def test_head_similarity_identical_and_orthogonal() -> None:
    same = torch.rand(1, 1, 5, 5).expand(2, 3, 5, 5)  # 2 images, 3 identical heads
    torch.testing.assert_close(head_similarity(same), torch.ones(3, 3))
    orthogonal = torch.zeros(1, 2, 2, 2)
    orthogonal[0, 0, 0, 0] = orthogonal[0, 1, 1, 1] = 1.0
    sim = head_similarity(orthogonal)
    torch.testing.assert_close(sim, torch.eye(2))
    assert mean_off_diagonal(sim) == pytest.approx(0.0) and mean_off_diagonal(head_similarity(same)) == pytest.approx(
        1.0
    )


def test_tokens_to_map_and_blur() -> None:
    tokens = torch.arange(2 * 5 * 3, dtype=torch.float32).reshape(2, 5, 3)  # class token + 2x2
    grid = tokens_to_map(tokens)
    assert grid.shape == (2, 3, 2, 2) and grid[0, :, 0, 1].tolist() == tokens[0, 2].tolist()
    with pytest.raises(ValueError, match="square grid"):
        tokens_to_map(torch.zeros(1, 4, 3))
    flat = torch.full((1, 3, 20, 20), 0.7)
    torch.testing.assert_close(gaussian_blur(flat, 51, 50.0), flat)  # a constant image stays constant
    spike = torch.zeros(1, 1, 21, 21)
    spike[..., 10, 10] = 1.0
    blurred = gaussian_blur(spike, 7, 1.0)
    assert blurred.shape == spike.shape and blurred[..., 10, 10] < 1 and blurred.sum() == pytest.approx(1.0, abs=1e-4)


class _Quadrants(nn.Module):
    """Four feature channels, each the image's brightness in one quadrant (top-left first)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        masks = torch.zeros(4, h, w)
        masks[0, : h // 2, : w // 2] = masks[1, : h // 2, w // 2 :] = 1
        masks[2, h // 2 :, : w // 2] = masks[3, h // 2 :, w // 2 :] = 1
        return x.mean(dim=1, keepdim=True) * masks


class _Spot(nn.Module):
    """A tiny classifier whose class 0 is the brightness of the image's top-left quarter."""

    def __init__(self) -> None:
        super().__init__()
        self.features = _Quadrants()
        self.scale = nn.Parameter(torch.tensor(8.0))
        self.num_classes = 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top_left = self.features(x)[:, 0].mean(dim=(1, 2)) * 4  # mean over the quarter
        return torch.stack([self.scale * top_left, torch.full_like(top_left, 2.0)], dim=1)


def test_group_cam_finds_what_the_class_looks_at() -> None:
    torch.manual_seed(0)
    model = _Spot()
    image = torch.rand(1, 3, 32, 32)
    saliency = group_cam(model, image, model.features, class_idx=0, groups=4, blur_kernel=9, blur_sigma=4.0)
    assert saliency.shape == (32, 32) and float(saliency.min()) == 0.0 and float(saliency.max()) == pytest.approx(1.0)
    assert saliency[:14, :14].min() > saliency[18:, 18:].max()  # the class reads the top-left quarter only
    # deleting the top-scored region lowers the class score more than deleting a random region of the same size
    k = 16 * 16
    top = saliency.flatten().argsort(descending=True)[:k]
    random = torch.randperm(32 * 32, generator=torch.Generator().manual_seed(1))[:k]
    scores = []
    for idx in (top, random):
        erased = image.clone().flatten(2)
        erased[..., idx] = 0.0
        with torch.no_grad():
            scores.append(float(model(erased.view_as(image))[0, 0]))
    assert scores[0] < scores[1]
    with pytest.raises(ValueError, match="one image"):
        group_cam(model, torch.rand(2, 3, 32, 32), model.features)


def test_group_cam_on_a_token_model() -> None:
    model = create_model("deit_s_mini")
    saliency = group_cam(model, torch.randn(1, 3, 32, 32), model.norm, groups=8, blur_kernel=9, blur_sigma=4.0)
    assert saliency.shape == (32, 32) and 0.0 <= float(saliency.min()) and float(saliency.max()) <= 1.0


def test_layer_map_is_the_grid_a_cam_explains() -> None:
    model = create_model("deit_s_mini").train()
    image = torch.randn(2, 3, 32, 32)
    tokens = layer_map(model, model.norm, image)
    grid = 32 // model.patch_embed.proj.stride[0]
    assert tokens.shape == (2, model.num_features, grid, grid)  # the class token dropped, patches on their grid
    assert model.training  # the mode is restored
    conv = _Spot()
    assert (
        layer_map(conv, conv.features, torch.rand(1, 3, 32, 32)).shape == conv.features(torch.rand(1, 3, 32, 32)).shape
    )
    with pytest.raises(ValueError, match="not called"):
        layer_map(conv, torch.nn.Identity(), torch.rand(1, 3, 32, 32))


def test_deletion_and_insertion_auc_of_perfect_and_reversed_maps() -> None:
    model = _Spot()
    image = torch.ones(1, 3, 16, 16)
    perfect = torch.zeros(16, 16)
    perfect[:8, :8] = 1.0 + torch.rand(8, 8)  # exactly the pixels class 0 reads, first
    reversed_ = 1.0 - perfect / perfect.max()
    deletion_good, curve = deletion_insertion(
        model, image, perfect, 0, "deletion", steps=16, blur_kernel=5, blur_sigma=2.0
    )
    deletion_bad, _ = deletion_insertion(
        model, image, reversed_, 0, "deletion", steps=16, blur_kernel=5, blur_sigma=2.0
    )
    insertion_good, _ = deletion_insertion(
        model, image, perfect, 0, "insertion", steps=16, blur_kernel=5, blur_sigma=2.0
    )
    insertion_bad, _ = deletion_insertion(
        model, image, reversed_, 0, "insertion", steps=16, blur_kernel=5, blur_sigma=2.0
    )
    assert len(curve) == 17 and 0.0 <= deletion_good <= 1.0
    assert deletion_good < deletion_bad and insertion_good >= insertion_bad
    with pytest.raises(ValueError, match="deletion' or 'insertion"):
        deletion_insertion(model, image, perfect, 0, "both")


def test_pointing_games() -> None:
    mask = torch.zeros(8, 8, dtype=torch.bool)
    mask[2:4, 2:4] = True
    inside = torch.zeros(8, 8)
    inside[3, 3] = 1.0
    assert pointing_game(inside, mask) and energy_pointing_game(inside, mask) == pytest.approx(1.0)
    outside = torch.zeros(8, 8)
    outside[7, 7] = 1.0
    assert not pointing_game(outside, mask) and energy_pointing_game(outside, mask) == 0.0
    assert energy_pointing_game(torch.ones(8, 8), mask) == pytest.approx(4 / 64)


def test_grad_cam_from_the_package_finds_the_same_quarter() -> None:
    from tnt_rest_lite.explain.maps import grad_cam

    torch.manual_seed(0)
    model = _Spot()
    saliency = grad_cam(model, torch.rand(1, 3, 32, 32), model.features, class_idx=0)
    assert saliency.shape == (32, 32) and float(saliency.min()) >= 0.0 and float(saliency.max()) <= 1.0 + 1e-6
    assert saliency[:14, :14].min() > saliency[18:, 18:].max()


def test_cam_study_scores_every_model_seed_method_and_image() -> None:
    from tnt_rest_lite.experiments.figures import cam_rows, cam_study

    torch.manual_seed(0)
    seeds = [_Spot(), _Spot()]
    seeds[1].scale.data.fill_(4.0)
    images = torch.rand(3, 3, 32, 32)
    masks = torch.zeros(3, 32, 32, dtype=torch.bool)
    masks[:, :16, :16] = True  # the "object" is the quarter the class reads
    models = {"spot": [(m, m.features) for m in seeds]}
    scores, maps = cam_study(models, images, torch.zeros(3, dtype=torch.long), masks, steps=8, progress=False)
    for method in ("group_cam", "grad_cam"):
        record = scores["spot"][method]
        assert maps["spot"][method].shape == (3, 32, 32)  # the first seed's maps
        assert record["pointing"] == [[1.0, 1.0, 1.0]] * 2  # every seed's maps peak in the quarter
        assert all(e > 0.9 for seed in record["energy"] for e in seed)
        for deletion, insertion in zip(record["deletion"], record["insertion"], strict=True):
            assert all(d < i for d, i in zip(deletion, insertion, strict=True))
    rows = cam_rows(scores)
    assert [r[:2] for r in rows] == [["spot", "group-cam"], ["spot", "grad-cam"]] and rows[0][4].startswith("1.000 ±")
    with pytest.raises(ValueError, match="Unknown saliency method"):
        cam_study(models, images, torch.zeros(3, dtype=torch.long), masks, methods=["rise"])


def test_batched_deletion_curve_equals_the_step_by_step_protocol() -> None:
    # the curve is computed in one batch; the RISE protocol replaces pixels step by step
    torch.manual_seed(0)
    model = create_model("resnet18_mini", num_classes=5).eval()
    image, saliency = torch.randn(1, 3, 32, 32), torch.rand(32, 32)
    for mode in ("deletion", "insertion"):
        auc, curve = deletion_insertion(model, image, saliency, 3, mode, steps=10, blur_kernel=9, blur_sigma=4.0)
        order = saliency.flatten().argsort(descending=True)
        if mode == "deletion":
            current, finish = image.clone(), torch.zeros_like(image)
        else:
            from tnt_rest_lite.explain.maps import gaussian_blur

            current, finish = gaussian_blur(image, 9, 4.0), image
        expected = []
        per_step = -(-32 * 32 // 10)
        with torch.no_grad():
            for step in range(11):
                expected.append(float(model(current).softmax(1)[0, 3]))
                idx = order[step * per_step : (step + 1) * per_step]
                current[..., idx // 32, idx % 32] = finish[..., idx // 32, idx % 32]
        assert torch.allclose(curve, torch.tensor(expected), atol=1e-5)
        assert auc == pytest.approx(float(torch.trapezoid(torch.tensor(expected), dx=0.1)), abs=1e-5)
