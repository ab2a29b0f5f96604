"""Plots of the figure chapters: patch and class attention, CAM overlays, head similarity, mask share."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..core import viz
from .maps import mean_off_diagonal

__all__ = [
    "plot_patch_attention",
    "plot_class_attention",
    "plot_cam_overlays",
    "plot_head_similarity",
    "plot_block_similarity",
    "plot_attention_measures",
    "plot_mask_share",
    "DIVERSITY_STEPS",
]


DIVERSITY_STEPS = ("scores", "transformed", "attn")


# ---- drawing (the conventions live in tnt_rest_lite.core.viz) -------------------------------------


def _grid_side(n: int) -> int:
    """The side of a square token grid of ``n`` tokens."""
    return int(round(n**0.5))


def plot_patch_attention(
    maps: Mapping[str, Sequence[torch.Tensor]], blocks: Sequence[int], image_index: int = 0, head: int | None = None
) -> Any:
    """Patch-to-patch attention, one row per model, one column per block (TNT supplement Fig. 1).

    ``maps``: model label -> :func:`outer_attention` output. Heads are averaged unless ``head`` is
    given. The class token's row and column are left out; rows are renormalised over the patches.
    Every panel shares one colour scale from 0 (one colour bar), so an even spread (every cell
    ``1/N``) is one flat colour; cells are token pairs (nearest, lines at patch-grid rows).
    """
    import matplotlib.pyplot as plt

    panels, titles = [], []
    for label, model_maps in maps.items():
        for b in blocks:
            attn = model_maps[b][image_index]
            attn = attn.mean(0) if head is None else attn[head]
            patches = attn[1:, 1:] / attn[1:, 1:].sum(-1, keepdim=True)
            g = _grid_side(patches.shape[-1])
            panels.append(patches)
            titles.append(f"{label}\nouter attention, block {b + 1},\n{g}×{g} patch grid")
    n = panels[0].shape[-1]
    fig, axes = plt.subplots(
        len(maps), len(blocks), figsize=(2.6 * len(blocks) + 1.2, 2.9 * len(maps)), squeeze=False, layout="constrained"
    )
    # one line per token pair for small maps; per patch-grid row for large ones (e.g. 196 x 196)
    images = viz.token_heatmaps(axes, panels, titles, grid=True if n <= 64 else _grid_side(n))
    for r in range(len(maps)):
        axes[r, 0].set_ylabel("query patch (raster order)", fontsize=8)
    for c in range(len(blocks)):
        axes[-1, c].set_xlabel("key patch (raster order)", fontsize=8)
    viz.colorbar(fig, images[0], axes, f"attention weight (even spread = 1/{n} = {1 / n:.3f})")
    heads = "heads averaged" if head is None else f"head {head}"
    fig.suptitle(f"Attention between patches ({heads}, class token left out), one colour scale", fontsize=10)
    return fig


def plot_class_attention(
    images: torch.Tensor,
    overlays: Mapping[str, torch.Tensor],
    masks: torch.Tensor | None = None,
    vmax: float | None = None,
    what: str = "class-token attention",
    cbar_label: str | None = None,
    grid: int | None = None,
) -> Any:
    """Each image, then every map of ``overlays`` (label -> ``(B, g, g)``) over it at token resolution (TNT Fig. 2).

    ``images`` are ``(B, H, W, 3)`` in ``[0, 1]`` (:func:`denormalize`); the first column shows
    them in colour, the others greyscaled and dimmed under the map (nearest, token boundaries
    drawn), so heat and texture cannot be confused. All maps share one colour scale, 0 to their
    max (or ``vmax``), with one colour bar; the object's outline is drawn when ``masks`` are given.
    """
    import matplotlib.pyplot as plt

    b, h = images.shape[0], images.shape[1]
    cols = 1 + len(overlays)
    norm = viz.shared_norm([m[:b] for m in overlays.values()], vmin=0.0, vmax=vmax)
    fig, axes = plt.subplots(b, cols, figsize=(2.0 * cols + 1.0, 2.0 * b + 0.6), squeeze=False, layout="constrained")
    shown = None
    for i in range(b):
        axes[i, 0].imshow(images[i].numpy(), interpolation="nearest")
        axes[i, 0].set_xticks([])
        axes[i, 0].set_yticks([])
        if masks is not None:
            axes[i, 0].contour(masks[i].float().numpy(), levels=[0.5], colors="white", linewidths=0.8)
        if i == 0:
            axes[i, 0].set_title(f"image ({h}×{h} px)", fontsize=8)
        for c, (label, maps) in enumerate(overlays.items(), start=1):
            mask = None if masks is None else masks[i].float()
            shown = viz.token_overlay(axes[i, c], images[i], maps[i], norm, grid=grid, mask=mask)
            if i == 0:
                side = maps.shape[-1]
                res = f"{side}×{side} tokens" if side < h else f"{side}×{side} px map"
                axes[i, c].set_title(f"{label}\n{what}, {res}", fontsize=7)
    label = cbar_label or f"{what}\n(share of the map, one scale)"
    viz.colorbar(fig, shown, axes, label)
    return fig


def plot_cam_overlays(
    images: torch.Tensor,
    overlays: Mapping[str, torch.Tensor],
    masks: torch.Tensor | None = None,
    grid: int | None = None,
) -> Any:
    """Saliency maps (Group-CAM, Grad-CAM; min-max normalised to ``[0, 1]``) over the images (ResT Fig. 2).

    :func:`plot_class_attention` on the fixed scale ``[0, 1]`` (the maps are normalised, so a
    fixed scale makes figures comparable); ``grid`` draws the explained layer's cells.
    """
    return plot_class_attention(
        images,
        overlays,
        masks,
        vmax=1.0,
        what="saliency",
        cbar_label="saliency, min-max normalised\n(fixed [0, 1] scale)",
        grid=grid,
    )


_STEP_LABELS = {"scores": "scores QKᵀ/√d", "transformed": "after the 1×1 conv", "attn": "after IN(softmax)"}


def plot_head_similarity(similarity: Mapping[str, torch.Tensor], title: str = "") -> Any:
    """The three head-by-head cosine-similarity matrices of one EMSA block (ResT supplement Fig. 1).

    One fixed scale ``[-1, 1]`` and one colour bar for the three panels; one cell per head pair.
    """
    import matplotlib.pyplot as plt

    keys = ("scores", "transformed", "attn")
    heads = similarity[keys[0]].shape[-1]
    fig, axes = plt.subplots(1, 3, figsize=(10.2, 4.1), layout="constrained")
    norm = viz.shared_norm([similarity[k] for k in keys], vmin=-1.0, vmax=1.0)
    titles = [
        f"{_STEP_LABELS[k]}, {heads}×{heads} heads\nmean off-diagonal {mean_off_diagonal(similarity[k]):.2f}"
        for k in keys
    ]
    images = viz.token_heatmaps(axes, [similarity[k] for k in keys], titles, norm=norm, cmap=viz.SIMILARITY_CMAP)
    for ax in axes:
        ax.set_xticks(range(heads), [str(h + 1) for h in range(heads)], fontsize=7)
        ax.set_xlabel("head", fontsize=8)
    axes[0].set_yticks(range(heads), [str(h + 1) for h in range(heads)], fontsize=7)
    axes[0].set_ylabel("head", fontsize=8)  # one label: the panels share their rows
    viz.colorbar(fig, images[0], axes, "cosine similarity of the heads' maps")
    fig.suptitle(title, fontsize=10)
    return fig


def plot_block_similarity(summaries: Mapping[str, Mapping[str, Mapping[str, float | Sequence[float]]]]) -> Any:
    """Mean off-diagonal head similarity per EMSA block at the three steps, one panel per model state.

    ``summaries``: label (e.g. "trained", "untrained") -> block -> step -> value, or the seeds'
    values (:func:`head_similarity_study`): bars are the seeds' mean, error bars ± their std.
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        1, len(summaries), figsize=(4.8 * len(summaries) + 1.6, 3.6), squeeze=False, sharey=True, layout="constrained"
    )
    seeds = 1
    for ax, (label, blocks) in zip(axes[0], summaries.items(), strict=True):
        names = list(blocks)
        series = {}
        for key in DIVERSITY_STEPS:
            values = [blocks[n][key] for n in names]
            series[_STEP_LABELS[key]] = [[v] if isinstance(v, (int, float)) else list(v) for v in values]
            seeds = max(seeds, max(len(v) for v in series[_STEP_LABELS[key]]))
        viz.bars_with_spread(ax, names, series)
        ax.tick_params(axis="x", rotation=45, labelsize=7)
        ax.set_title(f"{label}: mean off-diagonal head similarity per EMSA block", fontsize=8)
        ax.axhline(0, color="black", linewidth=0.5)
    axes[0, 0].set_ylabel(f"cosine similarity\n({viz.spread_label('std', seeds)})", fontsize=7)
    viz.legend_outside(axes[0, -1])
    return fig


def plot_attention_measures(study: Mapping[str, Sequence[Mapping[str, Any]]]) -> Any:
    """Every head's mean attention distance and entropy, per block, every seed, one colour per model."""
    import matplotlib.pyplot as plt

    labels = list(study)
    colours = viz.model_colours(labels)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), layout="constrained")
    for ax, key, unit in zip(
        axes, ("distance", "entropy"), ("mean attention distance (px)", "entropy (nats)"), strict=True
    ):
        depth = len(study[labels[0]][0][key])
        for m, label in enumerate(labels):
            offset = (m - (len(labels) - 1) / 2) * 0.24
            for s, run in enumerate(study[label]):
                for b, heads in enumerate(run[key]):
                    ax.scatter(
                        [b + 1 + offset] * len(heads),
                        heads,
                        s=12,
                        color=colours[label],
                        alpha=0.6,
                        label=label if (s == 0 and b == 0) else None,
                    )
        ax.set(xlabel="block", ylabel=unit, xticks=range(1, depth + 1), title=f"{unit.split(' (')[0]} of every head")
        ax.title.set_fontsize(9)
        ax.grid(alpha=0.3)
    viz.legend_outside(axes[-1])
    fig.suptitle("Every head of every block, every seed (test images; dots: heads)", fontsize=10)
    return fig


def plot_mask_share(shares: Mapping[str, Mapping[str, Sequence[float]]], even_percent: float) -> Any:
    """The class token's attention on the object per block and rollout: seeds' mean ± std; dashed: an even spread."""
    import matplotlib.pyplot as plt

    labels = list(shares)
    keys = list(shares[labels[0]])
    seeds = max(len(v) for s in shares.values() for v in s.values())
    fig, ax = plt.subplots(figsize=(8, 3.6), layout="constrained")
    viz.bars_with_spread(ax, keys, {label: [shares[label][k] for k in keys] for label in labels})
    ax.axhline(even_percent, color="gray", linestyle="--", label="even spread")
    ax.set_ylabel("% of the class token's attention\ninside the object", fontsize=8)
    ax.set_title(f"Class token's attention on the object ({viz.spread_label('std', seeds)}, dots: seeds)", fontsize=8)
    viz.legend_outside(ax)
    return fig
