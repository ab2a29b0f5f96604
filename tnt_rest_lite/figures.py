"""The supplements' figures, measured: attention between patches, class-token attention, EMSA heads.

Each figure of the supplements makes a qualitative claim; this module turns it into numbers and
draws the figure from the same tensors, so the picture and the number cannot disagree:

* **TNT Fig. 1** (attention between patches, DeiT vs TNT): :func:`outer_attention` captures the
  outer (patch-level) attention of every block; :func:`attention_measures` gives the mean attention
  distance and the entropy of every head; :func:`plot_patch_attention` draws the maps.
* **TNT Fig. 2** (class token to the image): :func:`class_token_maps` (last block and attention
  rollout) and :func:`mask_share`, the share of the class token's attention inside the object;
  :func:`plot_class_attention` overlays the maps on the images.
* **ResT Fig. 1** (diversity of EMSA heads): :func:`emsa_head_similarity` compares heads before
  the 1x1 convolution, after it and after IN(softmax(.)); :func:`plot_head_similarity` draws them.

The attention maps come from :func:`tnt_rest_lite.layers.capture_attention` (one attention
implementation for every model) and the measures from :mod:`tnt_rest_lite.explain`.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .explain import (
    attention_entropy,
    attention_rollout,
    deletion_insertion,
    energy_pointing_game,
    grad_cam,
    group_cam,
    head_similarity,
    mean_attention_distance,
    mean_off_diagonal,
    pointing_game,
)
from .layers import capture_attention

__all__ = [
    "block_indices",
    "on_compute_device",
    "outer_attention",
    "attention_measures",
    "class_token_maps",
    "mask_share",
    "emsa_head_similarity",
    "attention_study",
    "cam_study",
    "CAM_METHODS",
    "denormalise",
    "plot_patch_attention",
    "plot_class_attention",
    "plot_cam_overlays",
    "plot_head_similarity",
    "plot_block_similarity",
    "plot_attention_measures",
    "plot_mask_share",
    "head_means",
    "attention_measures_markdown",
    "uniform_attention_measures",
    "depth_verdicts",
    "class_token_shares",
    "mask_share_verdicts",
    "mask_share_markdown",
    "CAM_METRICS",
    "seed_means",
    "cam_rows",
    "cam_verdicts",
    "DIVERSITY_STEPS",
    "head_similarity_study",
    "diversity_verdicts",
    "similarity_rows",
]

# the outer (patch-level) attention of a block: DeiT's blocks.{i}.attn, TNT's blocks.{i}.outer.attn
_OUTER = re.compile(r"^blocks\.(\d+)\.(?:outer\.)?attn$")


def block_indices(depth: int, count: int = 3) -> list[int]:
    """Shallow, middle and deep blocks (0-based): 1, 6, 12 of 12 blocks; evenly spaced for others.

    ``count`` blocks from the first to the last; the middle one rounds down, as 6 of 1-12 does.
    """
    if count < 2 or depth < count:
        return list(range(depth))
    step = (depth - 1) / (count - 1)
    # the middle of 12 blocks is index 5.5: the supplement shows block 6 (index 5), so halves round down
    return [math.floor(i * step + 0.5 - 1e-9) for i in range(count)]


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@contextlib.contextmanager
def on_compute_device(model: nn.Module) -> Iterator[torch.device]:
    """Run ``model`` on the GPU when there is one, inside the block; it goes back where it was after.

    The figure studies explain one model at a time (Group-CAM runs ``groups + 2`` forwards per
    image), so only one model is on the GPU at once; inputs follow the model (:func:`_device_of`).
    """
    home = _device_of(model)
    device = torch.device("cuda") if torch.cuda.is_available() else home
    model.to(device)
    try:
        yield device
    finally:
        model.to(home)


@torch.no_grad()
def outer_attention(model: nn.Module, images: torch.Tensor) -> list[torch.Tensor]:
    """The outer attention probabilities of every block of a DeiT or TNT: ``(B, heads, N, N)`` each.

    ``N`` counts the class token first, then the patches in raster order.
    """
    with capture_attention(model) as maps:
        model(images.to(_device_of(model)))  # the model's device: a GPU when the chapter put it there
    found = {int(m.group(1)): maps[name]["attn"].cpu() for name in maps if (m := _OUTER.match(name))}
    if not found:
        raise ValueError(f"{type(model).__name__} has no outer attention 'blocks.<i>.attn' / 'blocks.<i>.outer.attn'")
    return [found[i] for i in sorted(found)]


def attention_measures(maps: Sequence[torch.Tensor], patch_size: float) -> dict[str, list[list[float]]]:
    """Per block and head: mean attention distance (pixels, patch-to-patch) and entropy (nats).

    ``maps`` are :func:`outer_attention`'s; the distance uses the patch centres (ViT's Fig. 7),
    the entropy the full rows (class token included). Returns ``{"distance", "entropy"}``, each a
    list over blocks of per-head values.
    """
    return {
        "distance": [mean_attention_distance(a, patch_size).tolist() for a in maps],
        "entropy": [attention_entropy(a).tolist() for a in maps],
    }


def class_token_maps(maps: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
    """The class token's attention to the patches, ``(B, g, g)``, heads averaged, rows summing to 1.

    ``"block<k>"`` for every block (1-based) and ``"rollout"``: attention rollout through all the
    blocks (Abnar & Zuidema: ``0.5 A + 0.5 I``, rows renormalised, multiplied in order).
    """
    out = {}
    n = maps[0].shape[-1] - 1
    grid = int(round(n**0.5))
    for k, attn in enumerate(maps, start=1):
        row = attn.mean(1)[:, 0, 1:]
        out[f"block{k}"] = (row / row.sum(-1, keepdim=True)).reshape(-1, grid, grid)
    rolled = attention_rollout(list(maps))[:, 0, 1:]
    out["rollout"] = (rolled / rolled.sum(-1, keepdim=True)).reshape(-1, grid, grid)
    return out


def mask_share(patch_maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Share of each map's mass that falls inside the object: ``(B, g, g)``, ``(B, H, W)`` -> ``(B,)``.

    Each patch counts with the fraction of its pixels inside the mask, so a map spread evenly over
    the image scores the object's area fraction (:func:`mask_share` of a uniform map), the baseline.
    """
    grid = patch_maps.shape[-1]
    cover = F.adaptive_avg_pool2d(masks.float()[:, None], grid)[:, 0]  # fraction of each patch inside
    mass = patch_maps.flatten(1)
    return (mass * cover.flatten(1)).sum(1) / mass.sum(1)


def attention_study(
    models: Mapping[str, Sequence[nn.Module]], images: torch.Tensor, masks: torch.Tensor, patch_size: float
) -> dict[str, list[dict[str, Any]]]:
    """TNT's Figs. 1-2 as numbers, for every model label and every seed's model.

    Per model: the mean attention distance and the entropy of every head of every block
    (:func:`attention_measures`), and the share of the class token's attention inside the object
    for every block and for the rollout (:func:`mask_share`, mean over ``images``). Returns
    ``{label: [per-seed {"distance", "entropy", "mask_share"}]}``, JSON-ready.
    """
    out: dict[str, list[dict[str, Any]]] = {}
    for label, seeds in models.items():
        out[label] = []
        for model in seeds:
            maps = outer_attention(model, images)
            measures = attention_measures(maps, patch_size)
            shares = {k: float(mask_share(v, masks).mean()) for k, v in class_token_maps(maps).items()}
            out[label].append({**measures, "mask_share": shares})
    return out


def head_means(study: Mapping[str, Sequence[Mapping[str, Any]]], key: str) -> dict[str, list[list[float]]]:
    """``{label: [per seed: [per block: mean over heads]]}`` of :func:`attention_study`'s ``key``."""
    return {label: [[sum(h) / len(h) for h in run[key]] for run in runs] for label, runs in study.items()}


def uniform_attention_measures(grid: int, patch_size: float) -> dict[str, float]:
    """Mean attention distance and entropy of a head that attends evenly to every token (the reference).

    A ``grid x grid`` patch map plus the class token: the distance is the mean distance between
    patch centres, the entropy ``log(grid**2 + 1)``, the largest a head can have.
    """
    n = grid * grid + 1
    uniform = torch.full((1, 1, n, n), 1.0 / n)
    return {
        "distance": float(mean_attention_distance(uniform, patch_size)[0]),
        "entropy": float(attention_entropy(uniform)[0]),
    }


def attention_measures_markdown(
    study: Mapping[str, Sequence[Mapping[str, Any]]], grid: int | None = None, patch_size: float | None = None
) -> str:
    """Mean attention distance and entropy per block (heads averaged; mean ± std over seeds), a table.

    With ``grid`` and ``patch_size`` a last row gives the values of an even spread over all keys
    (:func:`uniform_attention_measures`): a block that scores them has not learnt where to look.
    """
    from .experiments import format_mean_std, mean_std
    from .tables import markdown_table

    means = {key: head_means(study, key) for key in ("distance", "entropy")}
    labels = list(study)
    depth = len(means["distance"][labels[0]][0])
    rows = []
    for b in range(depth):
        row: list[Any] = [b + 1]
        for key, digits in (("distance", 1), ("entropy", 2)):
            row += [format_mean_std(*mean_std([run[b] for run in means[key][label]]), digits) for label in labels]
        rows.append(row)
    if grid is not None and patch_size is not None:
        even = uniform_attention_measures(grid, patch_size)
        rows.append(
            ["even spread", *[f"{even['distance']:.1f}"] * len(labels), *[f"{even['entropy']:.2f}"] * len(labels)]
        )
    headers = ["block", *(f"{k}: {label}" for k in ("distance (px)", "entropy (nats)") for label in labels)]
    return markdown_table(headers, rows)


def depth_verdicts(
    study: Mapping[str, Sequence[Mapping[str, Any]]], accuracy: Mapping[str, Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Per model: does the deepest block attend farther (mean attention distance) than the first?

    Both distances are measured on the same seed's model, so the verdict is the paired t interval
    of the per-seed differences (:func:`tnt_rest_lite.tables.verdict` with ``paired=True``);
    ``accuracy``: label -> ``{"test_top1", "chance_top1"}`` (testability).
    """
    from .tables import verdict

    out = []
    for label, runs in head_means(study, "distance").items():
        depth = len(runs[0])
        deep = {**accuracy.get(label, {}), "distance": [run[-1] for run in runs]}
        first = {**accuracy.get(label, {}), "distance": [run[0] for run in runs]}
        out.append(
            verdict(
                f"{label}: block {depth} attends farther than block 1",
                f"block {depth}",
                "block 1",
                deep,
                first,
                metric="distance",
                unit="px",
                paired=True,
            )
        )
    return out


def class_token_shares(study: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, dict[str, list[float]]]:
    """``{label: {"block<k>" | "rollout": [% of the class token's attention on the object, per seed]}}``."""
    return {
        label: {k: [100 * run["mask_share"][k] for run in runs] for k in runs[0]["mask_share"]}
        for label, runs in study.items()
    }


def mask_share_markdown(shares: Mapping[str, Mapping[str, Sequence[float]]]) -> str:
    """The share of the class token's attention on the object per block and rollout (mean ± std over seeds)."""
    from .experiments import format_mean_std, mean_std
    from .tables import markdown_table

    labels = list(shares)
    rows = [[k, *(format_mean_std(*mean_std(shares[label][k])) for label in labels)] for k in shares[labels[0]]]
    return markdown_table(["class token attention", *(f"% on the object: {label}" for label in labels)], rows)


def mask_share_verdicts(
    shares: Mapping[str, Mapping[str, Sequence[float]]],
    better: str,
    worse: str,
    accuracy: Mapping[str, Mapping[str, Any]],
    keys: Sequence[str],
) -> list[dict[str, Any]]:
    """Does ``better``'s class token put more of its attention on the object than ``worse``'s? Per key."""
    from .tables import verdict

    return [
        verdict(
            f"{better}'s class token puts more attention on the object than {worse}'s ({k})",
            better,
            worse,
            {**accuracy.get(better, {}), "share": list(shares[better][k])},
            {**accuracy.get(worse, {}), "share": list(shares[worse][k])},
            metric="share",
        )
        for k in keys
    ]


CAM_METHODS = ("group_cam", "grad_cam")


def cam_study(
    models: Mapping[str, Sequence[tuple[nn.Module, nn.Module]]],
    images: torch.Tensor,
    labels: torch.Tensor,
    masks: torch.Tensor,
    methods: Sequence[str] = CAM_METHODS,
    steps: int = 16,
    progress: bool = True,
) -> tuple[dict[str, dict[str, dict[str, list[list[float]]]]], dict[str, dict[str, torch.Tensor]]]:
    """ResT's Fig. 2 as numbers: saliency maps of every model, seed and method, scored on every image.

    ``models``: label -> one ``(model, target_layer)`` per seed. Each image is explained for its
    true class by Group-CAM (:func:`tnt_rest_lite.explain.group_cam`) and Grad-CAM (the
    ``grad-cam`` package), and each map scored by deletion and insertion AUC (``steps`` steps),
    the pointing game and the energy-based pointing game against the object mask. Returns the
    scores ``{label: {method: {"deletion" | "insertion" | "pointing" | "energy": [per seed: [per
    image]]}}}`` and the first seed's maps ``{label: {method: (B, H, W)}}``.
    """
    from .progress import progress_bar

    explainers = {"group_cam": group_cam, "grad_cam": grad_cam}
    unknown = [m for m in methods if m not in explainers]
    if unknown:
        raise ValueError(f"Unknown saliency method(s) {unknown}; expected some of {', '.join(explainers)}")
    scores: dict[str, dict[str, dict[str, list[list[float]]]]] = {}
    saliency: dict[str, dict[str, torch.Tensor]] = {}
    jobs = [(label, seed, method) for label in models for seed in range(len(models[label])) for method in methods]
    for label, seed, method in progress_bar(jobs, desc="saliency maps", disable=not progress):
        model, layer = models[label][seed]
        record = {"deletion": [], "insertion": [], "pointing": [], "energy": []}
        maps = []
        with on_compute_device(model) as device:
            for i in range(len(images)):
                x, c, mask = images[i : i + 1].to(device), int(labels[i]), masks[i]
                s = explainers[method](model, x, layer, class_idx=c)
                maps.append(s.cpu())
                record["deletion"].append(deletion_insertion(model, x, s, c, "deletion", steps)[0])
                record["insertion"].append(deletion_insertion(model, x, s, c, "insertion", steps)[0])
                record["pointing"].append(float(pointing_game(s.cpu(), mask)))
                record["energy"].append(energy_pointing_game(s.cpu(), mask))
        per_metric = scores.setdefault(label, {}).setdefault(method, {k: [] for k in record})
        for k, values in record.items():
            per_metric[k].append(values)
        if seed == 0:
            saliency.setdefault(label, {})[method] = torch.stack(maps)
    return scores, saliency


CAM_METRICS = {
    "deletion": "deletion AUC ↓",
    "insertion": "insertion AUC ↑",
    "pointing": "pointing game ↑",
    "energy": "energy on the object ↑",
}


def seed_means(per_seed: Sequence[Sequence[float]]) -> list[float]:
    """The mean over images of each seed's values: ``[[per image] per seed]`` -> ``[per seed]``."""
    return [sum(values) / len(values) for values in per_seed]


def cam_rows(scores: Mapping[str, Mapping[str, Mapping[str, Sequence[Sequence[float]]]]]) -> list[list[str]]:
    """Table rows ``[model, method, *metrics]`` of :func:`cam_study`'s scores: mean ± std over seeds."""
    from .experiments import format_mean_std, mean_std

    rows = []
    for label, methods in scores.items():
        for method, record in methods.items():
            cells = [format_mean_std(*mean_std(seed_means(record[k])), 3) for k in CAM_METRICS]
            rows.append([label, method.replace("_", "-"), *cells])
    return rows


def cam_verdicts(
    scores: Mapping[str, Mapping[str, Mapping[str, Sequence[Sequence[float]]]]],
    better: str,
    worse: str,
    accuracy: Mapping[str, Mapping[str, Any]],
    method: str = "group_cam",
) -> list[dict[str, Any]]:
    """Does ``better``'s ``method`` map localise and explain better than ``worse``'s? One verdict per metric.

    The per-seed means over the images are compared as the tables' claims are
    (:func:`tnt_rest_lite.tables.verdict`); deletion AUC is better when lower, so its claim is
    stated the other way round. ``accuracy``: label -> ``{"test_top1", "chance_top1"}`` (a model
    below twice chance makes the claim not testable).
    """
    from .tables import verdict

    out = []
    for key, label in CAM_METRICS.items():
        a = {**accuracy.get(better, {}), key: seed_means(scores[better][method][key])}
        b = {**accuracy.get(worse, {}), key: seed_means(scores[worse][method][key])}
        what = label.rstrip(" ↑↓")
        if key == "deletion":  # lower is better: the claim is that `worse` deletes more slowly
            out.append(
                verdict(
                    f"{better}'s {method} has a lower {what} than {worse}'s", worse, better, b, a, metric=key, unit=""
                )
            )
        else:
            out.append(
                verdict(
                    f"{better}'s {method} has a higher {what} than {worse}'s", better, worse, a, b, metric=key, unit=""
                )
            )
    return out


@torch.no_grad()
def emsa_head_similarity(model: nn.Module, images: torch.Tensor) -> dict[str, dict[str, torch.Tensor]]:
    """Head-by-head cosine similarity of every EMSA block with more than one head.

    For each such block (``stage<s>.<i>.attn``) the three maps of the authors' order, scores
    :math:`QK^T/\\sqrt{d_k}` (``"scores"``), after the 1x1 convolution across heads
    (``"transformed"``) and after instance norm of the softmax (``"attn"``), each head's map
    flattened and compared with every other head's, averaged over ``images``:
    ``{block: {"scores" | "transformed" | "attn": (heads, heads)}}``.
    """
    with capture_attention(model) as maps:
        model(images)
    out = {}
    for name, block_maps in maps.items():
        if "transformed" not in block_maps or block_maps["scores"].shape[1] < 2:
            continue
        out[name.removesuffix(".attn")] = {k: head_similarity(block_maps[k]) for k in ("scores", "transformed", "attn")}
    return out


DIVERSITY_STEPS = ("scores", "transformed", "attn")


def head_similarity_study(
    models: Sequence[nn.Module], images: torch.Tensor
) -> tuple[dict[str, dict[str, list[float]]], dict[str, dict[str, torch.Tensor]]]:
    """ResT's Fig. 1 over seeds: ``{block: {step: [mean off-diagonal similarity per seed]}}``.

    :func:`emsa_head_similarity` of every seed's model, each matrix summarised by its mean
    off-diagonal cosine similarity; also returns the first seed's matrices for drawing.
    """
    per_seed = [emsa_head_similarity(m, images) for m in models]
    summary = {
        block: {step: [mean_off_diagonal(run[block][step]) for run in per_seed] for step in DIVERSITY_STEPS}
        for block in per_seed[0]
    }
    return summary, per_seed[0]


def diversity_verdicts(
    block: str,
    similarity: Mapping[str, Mapping[str, Mapping[str, Sequence[float]]]],
    accuracy: Mapping[str, Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """ResT's Fig. 1 claims on ``block``, for each weight state of ``similarity`` (e.g. trained, untrained).

    Two verdicts each (:func:`tnt_rest_lite.tables.verdict` on the seeds' mean off-diagonal
    similarity, paired: the three steps are one model's): the 1x1 convolution makes the heads **more** alike than the raw scores, and
    IN(softmax) makes them **less** alike than after the convolution. ``accuracy``: state ->
    ``{"test_top1", "chance_top1"}`` where the models' accuracy decides testability.
    """
    from .tables import verdict

    claims = (
        ("the 1×1 conv makes the heads of {block} more alike ({state})", "scores", "scores"),
        ("IN(softmax) makes them less alike again ({state})", "after IN", "attn"),
    )
    out = []
    for state, sim in similarity.items():
        at = {s: {**accuracy.get(state, {}), "similarity": list(sim[block][s])} for s in DIVERSITY_STEPS}
        for claim, worse, step in claims:
            # each claim compares the map after the conv with the step before (scores) or after (IN)
            out.append(
                verdict(
                    claim.format(block=block, state=state),
                    "after the conv",
                    worse,
                    at["transformed"],
                    at[step],
                    metric="similarity",
                    unit="",
                    paired=True,
                )
            )
    return out


def similarity_rows(similarity: Mapping[str, Mapping[str, Mapping[str, Sequence[float]]]]) -> list[list[Any]]:
    """Rows ``[block, state, scores, after conv, after IN]`` (mean ± std over seeds) for every block."""
    from .experiments import format_mean_std, mean_std

    states = list(similarity)
    blocks = list(similarity[states[0]])
    return [
        [b, state, *(format_mean_std(*mean_std(similarity[state][b][s]), 2) for s in DIVERSITY_STEPS)]
        for b in blocks
        for state in states
    ]


def denormalise(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Normalised ``(B, 3, H, W)`` images back to ``[0, 1]`` ``(B, H, W, 3)`` for drawing."""
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    return (images * s + m).clamp(0, 1).permute(0, 2, 3, 1)


# ---- drawing (the conventions live in tnt_rest_lite.viz) -------------------------------------


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

    from . import viz

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

    ``images`` are ``(B, H, W, 3)`` in ``[0, 1]`` (:func:`denormalise`); the first column shows
    them in colour, the others greyscaled and dimmed under the map (nearest, token boundaries
    drawn), so heat and texture cannot be confused. All maps share one colour scale, 0 to their
    max (or ``vmax``), with one colour bar; the object's outline is drawn when ``masks`` are given.
    """
    import matplotlib.pyplot as plt

    from . import viz

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

    from . import viz

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

    from . import viz

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

    from . import viz

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

    from . import viz

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
