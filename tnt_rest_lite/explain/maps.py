"""Explanations and the numbers that make them measurable: attention measures, Group-CAM, faithfulness.

The figure chapters draw attention maps and class-activation maps; every qualitative claim of the
supplements is turned into a number here, once:

* attention measures (:func:`mean_attention_distance`, :func:`attention_entropy`,
  :func:`attention_rollout`, :func:`head_similarity`) on maps captured by
  :func:`tnt_rest_lite.layers.capture_attention`;
* :func:`group_cam`, Group-CAM as the authors' code computes it (ResT supplement, Fig. 2);
* faithfulness and localisation of a saliency map: :func:`deletion_insertion` (the RISE protocol
  the Group-CAM paper uses, trapezoid AUC), :func:`pointing_game` and :func:`energy_pointing_game`.

Models stay untouched: explanations hook a named module from outside, and token models' outputs
``(B, 1 + N, C)`` become maps ``(B, C, g, g)`` in one place, :func:`tokens_to_map`.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "tokens_to_map",
    "patch_distances",
    "mean_attention_distance",
    "attention_entropy",
    "attention_rollout",
    "head_similarity",
    "mean_off_diagonal",
    "gaussian_blur",
    "layer_map",
    "group_cam",
    "grad_cam",
    "deletion_insertion",
    "pointing_game",
    "energy_pointing_game",
]


def tokens_to_map(tokens: torch.Tensor, num_prefix: int = 1) -> torch.Tensor:
    """``(B, prefix + g*g, C)`` tokens -> ``(B, C, g, g)`` map (the prefix, e.g. the class token, dropped)."""
    b, n, c = tokens.shape
    g = math.isqrt(n - num_prefix)
    if g * g != n - num_prefix:
        raise ValueError(f"{n - num_prefix} patch tokens do not form a square grid (tokens {tuple(tokens.shape)})")
    return tokens[:, num_prefix:].transpose(1, 2).reshape(b, c, g, g)


def patch_distances(grid: int, patch_size: float) -> torch.Tensor:
    """``(g*g, g*g)`` Euclidean distances in pixels between the centres of the patches of a ``g x g`` grid."""
    rows, cols = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    centres = torch.stack([rows.flatten(), cols.flatten()], dim=1).float() * patch_size
    return torch.cdist(centres, centres)


def _patch_block(attn: torch.Tensor, num_prefix: int) -> torch.Tensor:
    """Patch-to-patch part of ``(..., N, N)`` maps, rows renormalised to sum to 1."""
    block = attn[..., num_prefix:, num_prefix:]
    return block / block.sum(dim=-1, keepdim=True).clamp_min(1e-12)


def mean_attention_distance(attn: torch.Tensor, patch_size: float, num_prefix: int = 1) -> torch.Tensor:
    """Attention-weighted query-key distance in pixels, per head (the ViT paper's Fig. 7).

    ``attn``: ``(B, heads, N, N)`` probabilities with ``num_prefix`` leading tokens (class token).
    Over the patch tokens, each query's distance is ``sum_j a_ij * d(i, j)`` with its weights on the
    patches renormalised; the result is the mean over queries and images, shape ``(heads,)``.
    """
    block = _patch_block(attn, num_prefix)
    grid = math.isqrt(block.shape[-1])
    dist = patch_distances(grid, patch_size).to(block)
    return (block * dist).sum(dim=-1).mean(dim=(0, 2))


def attention_entropy(attn: torch.Tensor) -> torch.Tensor:
    """Mean entropy (nats) of the attention rows, per head: ``(B, heads, N, N') -> (heads,)``.

    0 when every query attends to one key; ``log N'`` when it spreads evenly over all of them.
    """
    p = attn.clamp_min(1e-12)
    return -(attn * p.log()).sum(dim=-1).mean(dim=(0, 2))


def attention_rollout(maps: list[torch.Tensor]) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema, 2020) through the blocks, in order.

    Each block's map ``(B, heads, N, N)`` is averaged over heads, mixed with the identity for the
    residual connection, ``A_hat = A/2 + I/2``, its rows renormalised, and the blocks' matrices
    are multiplied: ``R = A_hat_L ... A_hat_1``. Returns ``(B, N, N)``; row 0 is the class token's
    attention to every token through the whole network.
    """
    rollout = None
    for attn in maps:
        a = attn.mean(dim=1)
        eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
        a = 0.5 * a + 0.5 * eye
        a = a / a.sum(dim=-1, keepdim=True)
        rollout = a if rollout is None else a @ rollout
    if rollout is None:
        raise ValueError("attention_rollout needs at least one attention map")
    return rollout


def head_similarity(maps: torch.Tensor) -> torch.Tensor:
    """Cosine similarity between heads: ``(B, heads, ...) -> (heads, heads)``, averaged over images.

    Each head's map is flattened; two heads that attend the same way score 1, orthogonal maps 0
    (ResT supplement Fig. 1: the diversity of EMSA's heads).
    """
    flat = F.normalize(maps.flatten(2).double(), dim=-1)  # (B, heads, N*N')
    return (flat @ flat.transpose(1, 2)).mean(dim=0).to(maps.dtype)


def mean_off_diagonal(matrix: torch.Tensor) -> float:
    """Mean of a square matrix without its diagonal (a summary of :func:`head_similarity`)."""
    k = matrix.shape[0]
    if k < 2:
        raise ValueError("a similarity matrix needs at least two heads")
    return float((matrix.sum() - matrix.diagonal().sum()) / (k * (k - 1)))


def gaussian_blur(x: torch.Tensor, kernel: int = 51, sigma: float = 50.0) -> torch.Tensor:
    """Separable Gaussian blur of ``(B, C, H, W)`` with reflect padding (Group-CAM: kernel 51, sigma 50)."""
    half = kernel // 2
    t = torch.arange(kernel, dtype=x.dtype, device=x.device) - half
    w = torch.exp(-(t**2) / (2 * sigma**2))
    w = w / w.sum()
    c = x.shape[1]
    pad_h, pad_w = min(half, x.shape[-2] - 1), min(half, x.shape[-1] - 1)
    # reflect padding cannot exceed the image; beyond it, replicate
    y = F.pad(x, (pad_w, pad_w, 0, 0), mode="reflect") if pad_w > 0 else x
    y = F.pad(y, (half - pad_w, half - pad_w, 0, 0), mode="replicate")
    y = F.conv2d(y, w.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    y = F.pad(y, (0, 0, pad_h, pad_h), mode="reflect") if pad_h > 0 else y
    y = F.pad(y, (0, 0, half - pad_h, half - pad_h), mode="replicate")
    return F.conv2d(y, w.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def _capture(model: nn.Module, layer: nn.Module, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of ``model(image)`` and the output of ``layer`` (its gradient kept after a backward)."""
    store: dict[str, torch.Tensor] = {}

    def hook(module: nn.Module, inputs: Any, output: Any) -> None:
        output = output[0] if isinstance(output, tuple) else output
        output.retain_grad()
        store["a"] = output

    handle = layer.register_forward_hook(hook)
    try:
        logits = model(image.detach().requires_grad_(True))  # every layer's output is then in the graph
    finally:
        handle.remove()
    return logits, store["a"]


def _as_map(t: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """A layer output as a ``(B, C, h, w)`` map: token outputs ``(B, 1 + N, C)`` are reshaped."""
    return tokens_to_map(t, num_prefix=getattr(model, "num_prefix_tokens", 1)) if t.ndim == 3 else t


@torch.no_grad()
def layer_map(model: nn.Module, layer: nn.Module, image: torch.Tensor) -> torch.Tensor:
    """The output of ``layer`` when ``model`` sees ``image``, as the ``(B, C, h, w)`` map a CAM explains.

    Token outputs ``(B, prefix + h*w, C)`` are reshaped by :func:`tokens_to_map`. Its ``h x w`` is
    the resolution of every CAM of that layer: the saliency is constant on each of its cells.
    """
    store: dict[str, torch.Tensor] = {}

    def hook(module: nn.Module, inputs: Any, output: Any) -> None:
        store["a"] = output[0] if isinstance(output, tuple) else output

    handle = layer.register_forward_hook(hook)
    was_training = model.training
    model.eval()
    try:
        model(image)
    finally:
        handle.remove()
        model.train(was_training)
    if "a" not in store:
        raise ValueError(f"{type(layer).__name__} is not called in {type(model).__name__}'s forward: no map to explain")
    return _as_map(store["a"], model)


def _normalise(x: torch.Tensor) -> torch.Tensor:
    lo, hi = x.amin(dim=(-2, -1), keepdim=True), x.amax(dim=(-2, -1), keepdim=True)
    return (x - lo) / (hi - lo).clamp_min(1e-12)


def group_cam(
    model: nn.Module,
    image: torch.Tensor,
    target_layer: nn.Module,
    class_idx: int | None = None,
    groups: int = 32,
    blur_kernel: int = 51,
    blur_sigma: float = 50.0,
) -> torch.Tensor:
    """Group-CAM saliency of ``image`` ``(1, 3, H, W)`` for ``class_idx``: an ``(H, W)`` map in [0, 1].

    As the authors' code computes it: the gradient of the class **logit** at ``target_layer``
    (``(1, C, h, w)``; token outputs are reshaped by :func:`tokens_to_map`); channel weights are the
    gradients' spatial means; the weighted activations are split into ``groups`` contiguous
    channel groups, each summed to one map, ReLU'd and upsampled to the input. Each group map,
    min-max normalised, is a mask ``m``; the image is blended with its blur,
    ``x * m + blur(x) * (1 - m)`` (Gaussian, kernel 51, sigma 50); the group's score is
    ``ReLU(p_c(blend) - p_c(blur(x)))`` with ``p`` the softmax; the saliency is the score-weighted
    sum of the un-normalised group maps, min-max normalised. ``class_idx=None``: the predicted class.
    """
    if image.ndim != 4 or image.shape[0] != 1:
        raise ValueError(f"group_cam explains one image of shape (1, C, H, W), got {tuple(image.shape)}")
    was_training = model.training
    model.eval()
    try:
        logits, activations = _capture(model, target_layer, image)
        if class_idx is None:
            class_idx = int(logits.argmax(dim=1))
        model.zero_grad(set_to_none=True)
        logits[0, class_idx].backward()
        gradients = _as_map(activations.grad, model)
        with torch.no_grad():
            activations = _as_map(activations.detach(), model)
            weights = gradients.mean(dim=(2, 3), keepdim=True)  # (1, C, 1, 1)
            weighted = (weights * activations)[0]  # (C, h, w)
            c = weighted.shape[0]
            groups = min(groups, c)
            maps = torch.stack([chunk.sum(dim=0) for chunk in weighted.chunk(groups, dim=0)])  # (G, h, w)
            maps = F.interpolate(F.relu(maps)[:, None], size=image.shape[-2:], mode="bilinear", align_corners=False)
            masks = _normalise(maps)  # (G, 1, H, W)
            blurred = gaussian_blur(image, blur_kernel, blur_sigma)
            blends = image * masks + blurred * (1 - masks)  # (G, 3, H, W)
            base = model(blurred).softmax(dim=1)[0, class_idx]
            # the model is in eval mode (batch norm reads its running statistics), so scoring every
            # blend in one batch gives what one forward per blend gives, at a fraction of the calls
            probs = model(blends).softmax(dim=1)[:, class_idx]
            scores = F.relu(probs - base)  # (G,)
            saliency = (scores.view(-1, 1, 1, 1) * maps).sum(dim=0)[0]
            return _normalise(saliency)
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)


def grad_cam(model: nn.Module, image: torch.Tensor, target_layer: nn.Module, class_idx: int) -> torch.Tensor:
    """Grad-CAM of ``image`` ``(1, 3, H, W)`` for ``class_idx`` from the ``grad-cam`` package: ``(H, W)`` in [0, 1].

    The reference implementation Group-CAM is compared with (``pytorch_grad_cam.GradCAM`` on a
    ``(B, C, h, w)`` layer, its output upsampled to the input and min-max normalised by the package).
    """
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    was_training = model.training
    model.eval()
    try:
        with GradCAM(model=model, target_layers=[target_layer]) as cam:
            # an input that requires grad lets the hook see gradients even at a parameter-free layer
            out = cam(
                input_tensor=image.detach().clone().requires_grad_(True), targets=[ClassifierOutputTarget(class_idx)]
            )
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return torch.from_numpy(out[0]).float()


@torch.no_grad()
def deletion_insertion(
    model: nn.Module,
    image: torch.Tensor,
    saliency: torch.Tensor,
    class_idx: int,
    mode: str = "deletion",
    steps: int = 32,
    blur_kernel: int = 51,
    blur_sigma: float = 50.0,
) -> tuple[float, torch.Tensor]:
    """The RISE faithfulness curve of ``saliency`` and its area (trapezoid rule, x from 0 to 1).

    ``deletion``: pixels are removed most salient first, set to zero (the mean colour of a
    normalised image); a faithful map makes the class probability fall fast (low AUC).
    ``insertion``: pixels are copied most salient first into the blurred image; a faithful map
    makes it rise fast (high AUC). Returns ``(auc, probabilities)`` with ``steps + 1`` points.
    """
    if mode not in ("deletion", "insertion"):
        raise ValueError(f"mode must be 'deletion' or 'insertion', got '{mode}'")
    h, w = image.shape[-2:]
    order = saliency.to(image.device).flatten().argsort(descending=True)
    if mode == "deletion":
        start, finish = image.clone(), torch.zeros_like(image)
    else:
        start, finish = gaussian_blur(image, blur_kernel, blur_sigma), image
    # every step's image in one batch: step k has the k * per_step most salient pixels replaced
    per_step = math.ceil(h * w / steps)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel(), device=order.device)
    thresholds = torch.arange(steps + 1, device=order.device) * per_step
    replaced = rank.view(1, 1, h, w) < thresholds.view(-1, 1, 1, 1)  # (steps+1, 1, H, W)
    batch = torch.where(replaced, finish, start)  # (steps+1, C, H, W)
    was_training = model.training
    model.eval()
    try:
        probs = model(batch).softmax(dim=1)[:, class_idx]
    finally:
        model.train(was_training)
    curve = probs.float().cpu()
    auc = float(torch.trapezoid(curve, dx=1.0 / steps))
    return auc, curve


def pointing_game(saliency: torch.Tensor, mask: torch.Tensor) -> bool:
    """Does the saliency map's maximum fall inside the object ``mask`` (same ``(H, W)``)?"""
    index = int(saliency.flatten().argmax())
    return bool(mask.flatten()[index])


def energy_pointing_game(saliency: torch.Tensor, mask: torch.Tensor) -> float:
    """Share of the saliency map's mass inside the object ``mask`` (energy-based pointing game)."""
    s = saliency.clamp_min(0)
    total = float(s.sum())
    return float(s[mask.bool()].sum()) / total if total > 0 else 0.0
