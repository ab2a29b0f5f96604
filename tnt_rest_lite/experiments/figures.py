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
import statistics
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..core.format import format_mean_std, markdown_table, mean_std
from ..core.progress import progress_bar
from ..explain.maps import (
    attention_entropy,
    attention_rollout,
    deletion_insertion,
    energy_pointing_game,
    grad_cam,
    group_cam,
    head_similarity,
    layer_map,
    mean_attention_distance,
    mean_off_diagonal,
    pointing_game,
)
from ..explain.plots import DIVERSITY_STEPS
from ..layers.attention import Attention, capture_attention
from ..models._registry import create_model
from .verdicts import AT_BOUND_TOLERANCE, verdict

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
    with on_compute_device(model) as device, capture_attention(model) as maps:  # the GPU when there is one
        model(images.to(device))
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
    study: Mapping[str, Sequence[Mapping[str, Any]]],
    accuracy: Mapping[str, Mapping[str, Any]],
    max_entropy: float | None = None,
) -> list[dict[str, Any]]:
    """Per model: does the deepest block attend farther (mean attention distance) than the first?

    Both distances are measured on the same seed's model, so the verdict is the paired t interval
    of the per-seed differences (:func:`tnt_rest_lite.experiments.verdicts.verdict` with ``paired=True``);
    ``accuracy``: label -> ``{"test_top1", "chance_top1"}`` and, where known, ``"learning"`` (testability).
    ``max_entropy`` is the entropy of an even spread over all keys (:func:`uniform_attention_measures`):
    a model whose first block already scores it (within
    :data:`~tnt_rest_lite.experiments.verdicts.AT_BOUND_TOLERANCE`) relates every patch from the start,
    so "more patches related as depth grows" is **not testable (at its bound)** for it.
    """

    out = []
    entropy = head_means(study, "entropy")
    for label, runs in head_means(study, "distance").items():
        depth = len(runs[0])
        deep = {**accuracy.get(label, {}), "distance": [run[-1] for run in runs]}
        first = {**accuracy.get(label, {}), "distance": [run[0] for run in runs]}
        first_entropy = statistics.fmean(run[0] for run in entropy[label])
        at_bound = ""
        if max_entropy is not None and first_entropy >= (1 - AT_BOUND_TOLERANCE) * max_entropy:
            at_bound = (
                f"block 1's attention entropy ({first_entropy:.2f} nats) is already an even spread's "
                f"({max_entropy:.2f}): it relates every patch from the first block"
            )
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
                at_bound=at_bound,
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
    true class by Group-CAM (:func:`tnt_rest_lite.explain.maps.group_cam`) and Grad-CAM (the
    ``grad-cam`` package), and each map scored by deletion and insertion AUC (``steps`` steps),
    the pointing game and the energy-based pointing game against the object mask. Returns the
    scores ``{label: {method: {"deletion" | "insertion" | "pointing" | "energy": [per seed: [per
    image]]}}}`` and the first seed's maps ``{label: {method: (B, H, W)}}``.
    """

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
    (:func:`tnt_rest_lite.experiments.verdicts.verdict`); deletion AUC is better when lower, so its claim is
    stated the other way round. ``accuracy``: label -> ``{"test_top1", "chance_top1"}`` (a model
    below twice chance makes the claim not testable).
    """

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
    with torch.no_grad(), on_compute_device(model) as device, capture_attention(model) as maps:  # the GPU if any
        model(images.to(device))
    out = {}
    for name, block_maps in maps.items():
        if "transformed" not in block_maps or block_maps["scores"].shape[1] < 2:
            continue
        steps = ("scores", "transformed", "attn")
        out[name.removesuffix(".attn")] = {k: head_similarity(block_maps[k]).cpu() for k in steps}
    return out


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

    Two verdicts each (:func:`tnt_rest_lite.experiments.verdicts.verdict` on the seeds' mean off-diagonal
    similarity, paired: the three steps are one model's): the 1x1 convolution makes the heads **more** alike than the raw scores, and
    IN(softmax) makes them **less** alike than after the convolution. ``accuracy``: state ->
    ``{"test_top1", "chance_top1"}`` where the models' accuracy decides testability.
    """

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

    states = list(similarity)
    blocks = list(similarity[states[0]])
    return [
        [b, state, *(format_mean_std(*mean_std(similarity[state][b][s]), 2) for s in DIVERSITY_STEPS)]
        for b in blocks
        for state in states
    ]


# ---- scope: the map sizes a figure claim is measured on, read from the models ------------------


def outer_grid_scope(model: nn.Module, images: torch.Tensor) -> dict[str, Any]:
    """The outer attention a TNT/DeiT figure is measured on: ``{"image_size", "grid", "keys"}``.

    Read from the captured maps (``(B, heads, N, N)``, class token first): the patch grid is
    ``sqrt(N - 1)`` on a side, every query attends over ``N`` keys.
    """
    keys = int(outer_attention(model, images[:1])[0].shape[-1])
    side = math.isqrt(keys - 1)
    return {"image_size": int(images.shape[-1]), "grid": [side, side], "keys": keys}


def emsa_scope(model: nn.Module, images: torch.Tensor, block: str) -> dict[str, Any]:
    """The EMSA score map of ``block`` (e.g. ``"stage4.1"``) per head: ``{"image_size", "heads", "queries", "keys"}``."""
    with torch.no_grad(), on_compute_device(model) as device, capture_attention(model) as maps:
        model(images[:1].to(device))
    name = f"{block}.attn"
    if name not in maps:
        raise KeyError(f"{type(model).__name__} has no attention '{name}'; it has {sorted(maps)}")
    _, heads, queries, keys = maps[name]["scores"].shape
    return {"image_size": int(images.shape[-1]), "heads": int(heads), "queries": int(queries), "keys": int(keys)}


def cam_scope(model: nn.Module, layer: nn.Module, images: torch.Tensor) -> dict[str, Any]:
    """The map a CAM of ``layer`` explains (its resolution): ``{"image_size", "map": [h, w]}``."""
    with on_compute_device(model) as device:
        h, w = layer_map(model, layer, images[:1].to(device)).shape[-2:]
    return {"image_size": int(images.shape[-1]), "map": [int(h), int(w)]}


_SCOPE_WORDS = {
    "outer": lambda s: (
        f"a {s['grid'][0]}×{s['grid'][1]} patch grid ({s['keys']} keys with the class token) at {s['image_size']} px"
    ),
    "emsa": lambda s: (
        f"{s['queries']}×{s['keys']} score maps (queries × keys) per head, {s['heads']} heads, at {s['image_size']} px"
    ),
    "cam": lambda s: f"a {s['map'][0]}×{s['map'][1]} target map at {s['image_size']} px",
}


def scope_sentence(kind: str, ours: Mapping[str, Any], paper: Mapping[str, Any]) -> str:
    """One sentence: the map sizes ``ours`` (a ``*_scope`` record) beside the full-size model's ``paper``."""
    if kind not in _SCOPE_WORDS:
        raise ValueError(f"Unknown scope kind '{kind}'; expected 'outer', 'emsa' or 'cam'")
    words = _SCOPE_WORDS[kind]
    return f"measured on {words(ours)}; the paper's models: {words(paper)}"


def paper_scope(kind: str, name: str, block: str | None = None, layer: str | None = None) -> dict[str, Any]:
    """The same scope measured on the full-size registered model ``name`` at its own input size.

    The geometry does not depend on the weights, so the model is built untrained (no download):
    ``kind="outer"`` (TNT/DeiT), ``"emsa"`` (the last attention block whose name starts with ``block``,
    e.g. ``"stage4"``), ``"cam"`` (the map of the module named ``layer``, e.g. ``"stage4_out"``).
    """
    model = create_model(name).eval()
    size = model.pretrained_cfg["input_size"][-1]
    images = torch.zeros(1, 3, size, size)
    if kind == "outer":
        return outer_grid_scope(model, images)
    if kind == "emsa":
        blocks = [n for n, m in model.named_modules() if isinstance(m, Attention) and n.startswith(f"{block}.")]
        return emsa_scope(model, images, blocks[-1].removesuffix(".attn"))
    if kind == "cam":
        return cam_scope(model, model.get_submodule(layer), images)
    raise ValueError(f"Unknown scope kind '{kind}'; expected 'outer', 'emsa' or 'cam'")
