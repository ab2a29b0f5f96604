"""RoIAlign computed separably (an exact, memory-light equivalent of torchvision's)."""

from __future__ import annotations

import statistics

import torch
from torchvision.ops import MultiScaleRoIAlign, roi_align
from torchvision.ops.poolers import _convert_to_roi_format, _setup_scales  # the parent's own helpers

from ..measure.bench import repeat_times

# ----------------------------------------------------------------------------------------------
# RoIAlign as two small matrix products (the CPU's fast path)
# ----------------------------------------------------------------------------------------------

# Largest (RoIs x bins x channels x width) product of one image's first matrix product: COCO-sized maps
# (800 px images) would need gigabytes, so those take torchvision's kernel.
_SEPARABLE_MAX_ELEMENTS = 2**25


def _roi_axis_weights(start: torch.Tensor, length: torch.Tensor, bins: int, samples: int, size: int) -> torch.Tensor:
    """``(K, bins, size)``: each bin's average linear-interpolation weight on each row (or column).

    RoIAlign's bilinear sample is a product of a weight along y and one along x, and so is its
    rule for samples off the map (zero beyond one cell outside, clamped to the edge inside), so
    the pooled value is ``Wy @ F @ Wx^T``. These are torchvision's kernel's rules, axis by axis.
    """
    bin_size = length / bins
    offsets = (
        torch.arange(bins, dtype=start.dtype, device=start.device)[:, None]
        + (torch.arange(samples, dtype=start.dtype, device=start.device)[None, :] + 0.5) / samples
    )
    position = start[:, None, None] + offsets[None] * bin_size[:, None, None]  # (K, bins, samples)
    inside = (position >= -1.0) & (position <= size)
    position = position.clamp(min=0)
    low = position.floor()
    at_edge = low >= size - 1
    low = torch.where(at_edge, torch.full_like(low, size - 1), low)
    fraction = torch.where(at_edge, torch.zeros_like(position), position - low)
    high = torch.where(at_edge, low, low + 1)
    grid = torch.arange(size, dtype=start.dtype, device=start.device)
    weights = (grid == low[..., None]) * (1 - fraction)[..., None] + (grid == high[..., None]) * fraction[..., None]
    return (weights * inside[..., None]).sum(2) / samples


def roi_align_separable(
    features: torch.Tensor,
    rois: torch.Tensor,
    output_size: int | tuple[int, int],
    spatial_scale: float,
    sampling_ratio: int,
) -> torch.Tensor:
    """``torchvision.ops.roi_align`` (``aligned=False``, ``sampling_ratio > 0``) as matrix products.

    ``features`` ``(N, C, H, W)``, ``rois`` ``(K, 5)`` rows ``[image, x0, y0, x1, y1]``. Same values
    and gradients as torchvision's kernel (a test checks both); on CPU its backward is several times
    faster for the small maps here, as it is two matrix products instead of scattered additions.
    Falls back to torchvision where the products would be large (COCO-sized maps) or for adaptive
    sampling (``sampling_ratio <= 0``).
    """
    out_h, out_w = (output_size, output_size) if isinstance(output_size, int) else output_size
    n, channels, height, width = features.shape
    if sampling_ratio <= 0 or len(rois) * out_h * channels * width > _SEPARABLE_MAX_ELEMENTS:
        return roi_align(features, rois, (out_h, out_w), spatial_scale, sampling_ratio)
    x0, y0, x1, y1 = (rois[:, j] * spatial_scale for j in range(1, 5))
    # the legacy (aligned=False) rule: a box is at least one cell wide
    weights_y = _roi_axis_weights(y0, (y1 - y0).clamp(min=1.0), out_h, sampling_ratio, height)
    weights_x = _roi_axis_weights(x0, (x1 - x0).clamp(min=1.0), out_w, sampling_ratio, width)
    image_index = rois[:, 0].long()
    pooled, order = [], []
    for image in range(n):
        # per image, so the feature map is never copied per RoI
        index = torch.where(image_index == image)[0]
        if len(index) == 0:
            continue
        k = len(index)
        rows = weights_y[index].reshape(k * out_h, height) @ features[image].transpose(0, 1).reshape(height, -1)
        cells = torch.bmm(rows.reshape(k, out_h * channels, width), weights_x[index].transpose(1, 2))
        pooled.append(cells.reshape(k, out_h, channels, out_w).transpose(1, 2))
        order.append(index)
    if not pooled:
        return features.new_zeros(0, channels, out_h, out_w)
    result = features.new_empty(len(rois), channels, out_h, out_w)
    return result.index_copy(0, torch.cat(order), torch.cat(pooled))


def compare_roi_align(
    features: torch.Tensor,
    rois: torch.Tensor,
    output_size: int = 7,
    spatial_scale: float = 0.25,
    sampling_ratio: int = 2,
    repeats: int = 5,
) -> dict[str, float]:
    """:func:`roi_align_separable` against ``torchvision.ops.roi_align`` on the same input, in one run.

    Returns the largest differences of the pooled values and of the gradients (for a random
    upstream gradient) and the median seconds of one forward + backward pass of each.
    """
    features = features.detach().requires_grad_(True)
    upstream = torch.randn(
        len(rois), features.shape[1], output_size, output_size, generator=torch.Generator().manual_seed(0)
    )
    implementations = {
        "torchvision": lambda: roi_align(features, rois, output_size, spatial_scale, sampling_ratio),
        "separable": lambda: roi_align_separable(features, rois, output_size, spatial_scale, sampling_ratio),
    }

    def pass_of(pool):
        def forward_backward():
            out = pool()
            (grad,) = torch.autograd.grad((out * upstream).sum(), features)
            return out, grad

        return forward_backward

    pooled, grads, seconds = {}, {}, {}
    for name, pool in implementations.items():
        run = pass_of(pool)
        out, grad = run()  # a warm-up, whose values are compared (every pass computes the same)
        pooled[name], grads[name], seconds[name] = out.detach(), grad, statistics.median(repeat_times(run, repeats))
    return {
        "max_value_difference": float((pooled["torchvision"] - pooled["separable"]).abs().max()),
        "max_gradient_difference": float((grads["torchvision"] - grads["separable"]).abs().max()),
        "torchvision_s": seconds["torchvision"],
        "separable_s": seconds["separable"],
    }


class SeparableMultiScaleRoIAlign(MultiScaleRoIAlign):
    """Faster R-CNN's RoI pooler: torchvision's ``MultiScaleRoIAlign`` (same level mapping and values)
    pooling with :func:`roi_align_separable` on the CPU; on GPUs torchvision's own kernel."""

    def forward(
        self, x: dict[str, torch.Tensor], boxes: list[torch.Tensor], image_shapes: list[tuple[int, int]]
    ) -> torch.Tensor:
        features = [x[name] for name in self.featmap_names]
        if features[0].device.type != "cpu":
            return super().forward(x, boxes, image_shapes)
        if self.scales is None or self.map_levels is None:
            self.scales, self.map_levels = _setup_scales(
                features, image_shapes, self.canonical_scale, self.canonical_level
            )
        rois = _convert_to_roi_format(boxes)
        levels = self.map_levels(boxes)
        result = features[0].new_zeros(len(rois), features[0].shape[1], *self.output_size)
        for level, (feature, scale) in enumerate(zip(features, self.scales, strict=True)):
            index = torch.where(levels == level)[0]
            if len(index):
                pooled = roi_align_separable(feature, rois[index], self.output_size, scale, self.sampling_ratio)
                result = result.index_copy(0, index, pooled)
        return result
