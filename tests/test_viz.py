"""The figures' conventions (tnt_rest_lite.core.viz): one scale, token resolution, readable curves and bars."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.container import ErrorbarContainer
from matplotlib.image import AxesImage

from tnt_rest_lite.core import viz
from tnt_rest_lite.experiments.detection import DetectionExperiment
from tnt_rest_lite.experiments.recipe_search import plot_search
from tnt_rest_lite.experiments.runner import plot_curves
from tnt_rest_lite.explain import plots
from tnt_rest_lite.train.curves import plot_history

PERCEPTUAL = {"viridis", "magma", "inferno", "cividis", "plasma"}


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def _attention(n: int, uniform: bool, seed: int = 0) -> torch.Tensor:
    if uniform:
        return torch.full((1, 2, n, n), 1.0 / n)
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(3 * torch.randn(1, 2, n, n, generator=g), -1)


def _images(fig) -> list[AxesImage]:
    return [im for ax in fig.axes for im in ax.get_images()]


def _colorbars(fig) -> int:
    return sum(1 for ax in fig.axes if ax.get_label() == "<colorbar>")


def _panel_pixels(fig, ax) -> np.ndarray:
    """The RGBA pixels inside ``ax``'s data area, shrunk by 3 px to stay clear of the frame."""
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    x0, y0, x1, y1 = ax.get_window_extent().extents
    h = rgba.shape[0]
    return rgba[int(h - y1) + 3 : int(h - y0) - 3, int(x0) + 3 : int(x1) - 3]


def _patch_maps():
    n = 17  # class token + a 4x4 patch grid
    return {
        "A": [_attention(n, uniform=True), _attention(n, False, 1), _attention(n, False, 2)],
        "B": [_attention(n, False, 3), _attention(n, False, 4), _attention(n, False, 5)],
    }


def test_patch_attention_one_scale_one_colorbar_uniform_is_flat():
    fig = plots.plot_patch_attention(_patch_maps(), [0, 1, 2])
    images = _images(fig)
    assert len(images) == 6
    assert len({(im.norm.vmin, im.norm.vmax) for im in images}) == 1  # one shared norm
    assert images[0].norm.vmin == 0
    peak = max(float(np.max(im.get_array())) for im in images)
    assert images[0].norm.vmax == pytest.approx(peak)  # the scale spans the figure's max, not the panel's
    assert _colorbars(fig) == 1
    for im in images:
        assert im.get_interpolation() == "nearest"
        assert im.get_cmap().name in PERCEPTUAL and im.get_cmap().name != "jet"
    ax_uniform = images[0].axes
    # the grid lines are drawn over the map: hide them to compare the map's own pixels
    for line in ax_uniform.lines:
        line.set_visible(False)
    pixels = _panel_pixels(fig, ax_uniform).reshape(-1, 4)
    assert len(np.unique(pixels, axis=0)) == 1  # an even spread is one flat colour
    other = _panel_pixels(fig, images[1].axes).reshape(-1, 4)
    assert len(np.unique(other, axis=0)) > 1
    assert "block 1" in ax_uniform.get_title() and "4×4 patch grid" in ax_uniform.get_title()


def test_patch_attention_draws_token_grid():
    fig = plots.plot_patch_attention(_patch_maps(), [0])
    ax = _images(fig)[0].axes
    assert len(ax.lines) == 2 * (16 - 1)  # one line at every inner token boundary, both directions


def test_class_attention_overlay_token_resolution_shared_scale():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(2, 32, 32, 3, generator=g)
    masks = torch.zeros(2, 32, 32)
    masks[:, 8:20, 8:20] = 1
    peaked = torch.softmax(3 * torch.randn(2, 16, generator=g), -1).reshape(2, 4, 4)
    overlays = {"peaked": peaked, "even": torch.full((2, 4, 4), 1 / 16)}
    fig = plots.plot_class_attention(images, overlays, masks)
    heat = [im for im in _images(fig) if im.get_alpha() is not None]
    assert len(heat) == 4  # 2 images x 2 maps, drawn over the images
    assert len({(im.norm.vmin, im.norm.vmax) for im in heat}) == 1
    assert heat[0].norm.vmax == pytest.approx(float(peaked.max()))
    assert all(im.get_interpolation() == "nearest" and im.get_cmap().name in PERCEPTUAL for im in heat)
    assert all(im.get_array().shape == (4, 4) for im in heat)  # token resolution, not upsampled
    # the image under the map is greyscale: heat is the only colour in the panel
    under = [im for im in heat[0].axes.get_images() if im.get_alpha() is None][0]
    assert under.get_array().ndim == 2 and under.get_cmap().name == "gray"
    assert _colorbars(fig) == 1
    assert "4×4 tokens" in heat[0].axes.get_title()


def test_cam_overlays_fixed_unit_scale():
    images = torch.rand(1, 32, 32, 3)
    fig = plots.plot_cam_overlays(images, {"cam": torch.rand(1, 32, 32) * 0.5}, grid=4)
    heat = [im for im in _images(fig) if im.get_alpha() is not None]
    assert (heat[0].norm.vmin, heat[0].norm.vmax) == (0.0, 1.0)
    assert len(heat[0].axes.lines) == 2 * 3  # the layer's 4x4 cells
    assert _colorbars(fig) == 1


def test_head_similarity_one_fixed_scale():
    sim = {k: torch.rand(4, 4) * 2 - 1 for k in plots.DIVERSITY_STEPS}
    fig = plots.plot_head_similarity(sim, "block")
    images = _images(fig)
    assert {(im.norm.vmin, im.norm.vmax) for im in images} == {(-1.0, 1.0)}
    assert _colorbars(fig) == 1
    assert all(im.get_interpolation() == "nearest" and im.get_cmap().name != "jet" for im in images)


def _errorbars(ax) -> list[ErrorbarContainer]:
    return [c for c in ax.containers if isinstance(c, ErrorbarContainer)]


def test_block_similarity_bars_carry_seed_spread():
    summaries = {
        state: {f"stage{s}.0": {k: [0.1 * s, 0.2 * s, 0.15 * s] for k in plots.DIVERSITY_STEPS} for s in (2, 3)}
        for state in ("trained", "untrained")
    }
    fig = plots.plot_block_similarity(summaries)
    for ax in fig.axes:
        bars = [c for c in ax.containers if not isinstance(c, ErrorbarContainer)]
        errs = _errorbars(ax)
        assert len(errs) == len(bars) == 3  # one error-bar set per step
        spread = errs[0].lines[2][0].get_segments()
        assert all(abs(seg[1][1] - seg[0][1]) > 0 for seg in spread)  # non-zero spread drawn
    assert "std" in fig.axes[0].get_ylabel()


def test_mask_share_bars_with_error_bars_and_outside_legend():
    shares = {m: {k: [20.0 + i, 30.0 + i, 40.0] for i, k in enumerate(("block1", "rollout"))} for m in ("A", "B")}
    fig = plots.plot_mask_share(shares, 25.0)
    ax = fig.axes[0]
    assert len(_errorbars(ax)) == 2
    _assert_legend_outside(fig, ax)
    assert "std" in ax.get_title()


def test_bars_with_spread_minmax():
    fig, ax = plt.subplots()
    container = viz.bars_with_spread(ax, ["g"], {"s": [[1.0, 2.0, 4.0]]}, spread="minmax", show_seeds=False)
    (seg,) = container.lines[2][0].get_segments()
    assert sorted(p[1] for p in seg) == pytest.approx([1.0, 4.0])


def _assert_legend_outside(fig, ax):
    fig.canvas.draw()
    legend = ax.get_legend() or fig.axes[-1].get_legend()
    assert legend is not None
    box = legend.get_window_extent()
    data = ax.get_window_extent()
    overlap_x = min(box.x1, data.x1) - max(box.x0, data.x0)
    overlap_y = min(box.y1, data.y1) - max(box.y0, data.y0)
    assert overlap_x <= 0 or overlap_y <= 0


def _history(seed: int, epochs: int = 4) -> dict:
    rng = np.random.default_rng(seed)
    e = list(range(1, epochs + 1))
    return {
        "epoch": e,
        "train_loss": list(3 - 0.3 * np.array(e) + rng.random(epochs)),
        "val_loss": list(3.2 - 0.3 * np.array(e) + rng.random(epochs)),
        "val_top1": list(10.0 * np.array(e) + rng.random(epochs)),
    }


def test_history_seed_curves():
    fig = plot_history({f"{m} s{s}": _history(s + 10 * i) for i, m in enumerate(("A", "B")) for s in range(3)})
    ax = fig.axes[1]
    lines = ax.get_lines()
    assert len(lines) == 2 * (3 + 1)  # per model: three seeds and the mean
    by_colour: dict = {}
    for line in lines:
        by_colour.setdefault(line.get_color(), []).append(line)
    assert len(by_colour) == 2  # one colour per model, equal across its seeds
    for group in by_colour.values():
        widths = sorted(line.get_linewidth() for line in group)
        assert widths[-1] > widths[0] and widths[:-1] == [widths[0]] * 3  # the mean is the thick one
        mean = max(group, key=lambda line: line.get_linewidth())
        seeds = np.array([line.get_ydata() for line in group if line is not mean])
        assert np.allclose(mean.get_ydata(), seeds.mean(0))
    legend = ax.get_legend()
    assert len(legend.get_texts()) == 2  # one entry per model, not per run
    _assert_legend_outside(fig, ax)
    fig.canvas.draw()
    for label in ax.get_xticklabels():
        text = label.get_text().replace("−", "-")
        if text:
            assert float(text) == int(float(text))
    assert all(float(t) == int(t) for t in ax.get_xticks())


def test_history_single_run_still_works():
    fig = plot_history(_history(0))
    assert len(fig.axes) == 2 and len(fig.axes[1].lines) == 1


def test_detection_curves_seed_curves():
    class Spec:
        title = "detectors"
        labels = {"a": "Det A", "b": "Det B"}

    def hist(seed):
        h = _history(seed)
        return {"epoch": h["epoch"], "train_loss": h["train_loss"], "val_AP50": h["val_top1"]}

    summaries = {k: {"seeds": [0, 1], "histories": [hist(0), hist(1)]} for k in Spec.labels}
    table = {"experiment": DetectionExperiment(spec=Spec), "spec": Spec, "summaries": summaries}
    fig = plot_curves(table)
    ax = fig.axes[1]
    assert len(ax.get_legend().get_texts()) == 2
    assert len({line.get_color() for line in ax.get_lines()}) == 2
    _assert_legend_outside(fig, ax)


def test_search_curves_integer_epochs_legend_outside():
    rows = [{"model": "m", "batch_size": b, "lr": 1e-3, "val_top1": [1.0, 4.0, 9.0]} for b in (32, 64)]
    fig = plot_search(rows)
    ax = fig.axes[0]
    _assert_legend_outside(fig, ax)
    assert all(float(t) == int(t) for t in ax.get_xticks())


def test_shared_norm_flat_figure_is_valid():
    norm = viz.shared_norm([np.zeros((2, 2))])
    assert norm.vmax > norm.vmin
