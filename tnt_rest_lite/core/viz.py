"""One visualisation module for every attention, CAM and curve figure of the book.

Why one module: a figure's conventions decide what a reader can read off it, so they are made
once here and every figure inherits them:

* **one colour scale per figure** (:func:`shared_norm`) and **one colour bar** (:func:`colorbar`):
  panels drawn on their own autoscale make an even spread look as structured as a peaked map;
  on a shared scale from 0 a uniform map is one flat colour;
* **token resolution** (:func:`token_heatmaps`, :func:`token_overlay`): ``interpolation="nearest"``
  and thin lines at the token boundaries, so each cell is one token and nothing is invented
  between them; a perceptually uniform colormap (:data:`CMAP`), whose lightness follows the value
  (``jet`` puts false edges at its yellow and cyan bands);
* **overlays** show the image greyscaled and dimmed under a half-transparent map, so heat (colour)
  and image texture (grey) cannot be confused;
* **curves** (:func:`seed_curves`): one colour per model, every seed a thin line, the seeds' mean
  bold, one legend entry per model outside the data area (:func:`legend_outside`), integer epochs;
* **bars** (:func:`bars_with_spread`): every bar of a measured quantity carries the seeds' spread.

Matplotlib is imported inside the functions: the package imports without it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "CMAP",
    "SIMILARITY_CMAP",
    "shared_norm",
    "draw_token_grid",
    "token_heatmaps",
    "token_overlay",
    "colorbar",
    "legend_outside",
    "integer_epochs",
    "model_colours",
    "seed_curves",
    "bars_with_spread",
    "greyscale",
    "spread_label",
]


CMAP = "viridis"  # perceptually uniform: lightness grows with the value
SIMILARITY_CMAP = "cividis"  # for signed quantities in [-1, 1] (cosine similarity), also uniform


def _array(x: Any) -> np.ndarray:
    """A tensor or array as a float numpy array (CPU, detached)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=float)


def shared_norm(maps: Sequence[Any], vmin: float | None = 0.0, vmax: float | None = None) -> Any:
    """One :class:`matplotlib.colors.Normalize` for all ``maps`` of a figure: ``vmin`` to the figure's max.

    ``vmin=None`` takes the figure's min; ``vmax=None`` the figure's max (a flat figure of all
    zeros gets ``vmax = vmin + 1`` so the norm stays valid). Pass ``vmin=0, vmax=1`` for maps
    normalised to ``[0, 1]`` (CAMs), so two figures compare too.
    """
    from matplotlib.colors import Normalize

    values = [_array(m) for m in maps]
    lo = min(float(v.min()) for v in values) if vmin is None else vmin
    hi = max(float(v.max()) for v in values) if vmax is None else vmax
    if hi <= lo:
        hi = lo + 1.0
    return Normalize(vmin=lo, vmax=hi)


def draw_token_grid(
    ax: Any,
    rows: int,
    cols: int,
    extent: tuple[float, float, float, float] | None = None,
    color: str = "white",
    linewidth: float = 0.4,
    alpha: float = 0.5,
) -> None:
    """Thin lines at the token boundaries of a ``rows x cols`` map drawn with ``extent``.

    ``extent`` is imshow's ``(left, right, bottom, top)``; by default the map's own pixel
    coordinates (cell ``k`` spans ``k - 0.5`` to ``k + 0.5``). A reader can then count tokens.
    """
    left, right, bottom, top = extent if extent is not None else (-0.5, cols - 0.5, rows - 0.5, -0.5)
    for x in np.linspace(left, right, cols + 1)[1:-1]:
        ax.axvline(x, color=color, linewidth=linewidth, alpha=alpha)
    for y in np.linspace(top, bottom, rows + 1)[1:-1]:
        ax.axhline(y, color=color, linewidth=linewidth, alpha=alpha)


def _clean(ax: Any) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def token_heatmaps(
    axes: Sequence[Any] | np.ndarray,
    maps: Sequence[Any],
    titles: Sequence[str] | None = None,
    norm: Any = None,
    cmap: str = CMAP,
    grid: bool | int = True,
) -> list[Any]:
    """Draw each 2-D map on its axes, all on one ``norm``, at token resolution; returns the images.

    ``axes`` and ``maps`` pair up in order (``axes`` may be a 2-D array, read row by row).
    ``norm`` defaults to :func:`shared_norm` of the maps (0 to their max), so a uniform map is
    flat. ``grid=True`` draws a line at every token boundary (maps up to 64 cells a side);
    ``grid=g`` draws them every ``g`` cells (e.g. the patch-grid rows of an ``N x N`` attention).
    """
    flat = list(np.ravel(np.asarray(axes, dtype=object)))
    arrays = [_array(m) for m in maps]
    norm = norm if norm is not None else shared_norm(arrays)
    images = []
    for i, (ax, a) in enumerate(zip(flat, arrays, strict=False)):
        images.append(ax.imshow(a, cmap=cmap, norm=norm, interpolation="nearest"))
        rows, cols = a.shape
        if grid is True and max(rows, cols) <= 64:
            draw_token_grid(ax, rows, cols)
        elif isinstance(grid, int) and not isinstance(grid, bool) and grid > 0:
            draw_token_grid(ax, rows // grid, cols // grid, extent=(-0.5, cols - 0.5, rows - 0.5, -0.5))
        _clean(ax)
        if titles is not None:
            ax.set_title(titles[i], fontsize=8)
    return images


def greyscale(image: Any, dim: float = 0.6) -> np.ndarray:
    """An ``(H, W, 3)`` image in ``[0, 1]`` as luminance times ``dim``: texture stays, colour is left to the map."""
    rgb = _array(image)
    grey = rgb[..., :3] @ np.array([0.299, 0.587, 0.114]) if rgb.ndim == 3 else rgb
    return np.clip(grey * dim, 0, 1)


def token_overlay(
    ax: Any,
    image: Any,
    heat: Any,
    norm: Any,
    cmap: str = CMAP,
    alpha: float = 0.75,
    grid: int | None = None,
    mask: Any = None,
) -> Any:
    """The image greyscaled and dimmed, the map over it at token resolution (nearest, ``alpha``).

    ``heat`` is ``(g, g)`` (one cell per token, stretched over the image) or ``(H, W)``; ``grid``
    draws token boundaries for a pixel-resolution map (e.g. the CAM layer's cells). ``mask``
    outlines the object in white. Returns the map's image (for :func:`colorbar`).
    """
    img = _array(image)
    h, w = img.shape[:2]
    extent = (0, w, h, 0)
    ax.imshow(greyscale(img), cmap="gray", vmin=0, vmax=1, extent=extent, interpolation="nearest")
    a = _array(heat)
    shown = ax.imshow(a, cmap=cmap, norm=norm, alpha=alpha, extent=extent, interpolation="nearest")
    cells = a.shape[0] if a.shape[0] < h else grid
    if cells:
        draw_token_grid(ax, cells, cells, extent=extent)
    if mask is not None:
        # pixel i's centre is i + 0.5 in the image's extent
        ax.contour(_array(mask), levels=[0.5], colors="white", linewidths=0.8, extent=(0.5, w - 0.5, 0.5, h - 0.5))
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    _clean(ax)
    return shown


def colorbar(fig: Any, image: Any, axes: Any, label: str) -> Any:
    """The figure's single colour bar, beside all of ``axes`` (they share ``image``'s norm).

    Drawn from the norm and colormap alone (opaque), so a half-transparent overlay does not fade it.
    """
    from matplotlib.cm import ScalarMappable

    mappable = ScalarMappable(norm=image.norm, cmap=image.get_cmap())
    return fig.colorbar(mappable, ax=axes, shrink=0.85, label=label)


def legend_outside(ax: Any, where: str = "right", **kwargs: Any) -> Any:
    """The axes' legend outside its data area (``"right"`` or ``"below"``), so it hides no data."""
    if where == "below":
        return ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=3, fontsize=7, frameon=False, **kwargs)
    return ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=7, frameon=False, **kwargs)


def integer_epochs(ax: Any) -> None:
    """Integer ticks on the x axis: epochs are counted, there is no epoch 2.5."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def model_colours(labels: Sequence[str]) -> dict[str, str]:
    """One colour per model (matplotlib's cycle), the same across seeds and panels."""
    return {label: f"C{i % 10}" for i, label in enumerate(labels)}


def seed_curves(
    ax: Any,
    series: Mapping[str, Sequence[tuple[Sequence[float], Sequence[float]]]],
    colours: Mapping[str, str] | None = None,
    linestyle: str = "-",
    label_suffix: str = "",
    legend: bool = True,
) -> dict[str, str]:
    """Per model (one colour) every seed's ``(x, y)`` as a thin line, and their mean bold.

    ``series``: model -> one ``(epochs, values)`` per seed. The mean is taken over the epochs all
    seeds have; a single seed is drawn bold only (it is its own mean). One legend entry per model
    (the bold line). Returns the colours used.
    """
    colours = dict(colours) if colours is not None else model_colours(list(series))
    for label, runs in series.items():
        colour = colours[label]
        if len(runs) > 1:
            for x, y in runs:
                ax.plot(list(x), list(y), color=colour, linewidth=0.8, alpha=0.45, linestyle=linestyle)
        length = min(len(y) for _, y in runs)
        x = list(runs[0][0])[:length]
        mean = np.mean([list(y)[:length] for _, y in runs], axis=0)
        seeds = f" (mean of {len(runs)} seeds)" if len(runs) > 1 else ""
        ax.plot(x, mean, color=colour, linewidth=2.4, linestyle=linestyle, label=f"{label}{label_suffix}{seeds}")
    integer_epochs(ax)
    ax.grid(alpha=0.3)
    if legend:
        legend_outside(ax)
    return colours


def bars_with_spread(
    ax: Any,
    groups: Sequence[str],
    series: Mapping[str, Sequence[Sequence[float]]],
    spread: str = "std",
    colours: Mapping[str, str] | None = None,
    show_seeds: bool = True,
) -> Any:
    """Grouped bars: per series (one colour) the seeds' mean in every group, with the seeds' spread.

    ``series``: name -> per group the per-seed values. ``spread="std"`` draws ± the standard
    deviation over seeds (0 for one seed), ``"minmax"`` the min-to-max range; the seeds themselves
    are dots on the bars. Returns the last :class:`~matplotlib.container.ErrorbarContainer`.
    """
    colours = dict(colours) if colours is not None else model_colours(list(series))
    n = len(series)
    width = 0.8 / max(n, 1)
    x = np.arange(len(groups), dtype=float)
    container = None
    for k, (name, per_group) in enumerate(series.items()):
        pos = x + (k - (n - 1) / 2) * width
        values = [np.asarray(list(v), dtype=float) for v in per_group]
        means = np.array([v.mean() for v in values])
        if spread == "minmax":
            err = np.array(
                [
                    [m - v.min() for m, v in zip(means, values, strict=True)],
                    [v.max() - m for m, v in zip(means, values, strict=True)],
                ]
            )
        else:
            err = np.array([v.std(ddof=1) if len(v) > 1 else 0.0 for v in values])
        ax.bar(pos, means, width=width * 0.95, color=colours[name], label=name, alpha=0.85)
        container = ax.errorbar(pos, means, yerr=err, fmt="none", ecolor="black", elinewidth=1, capsize=3)
        if show_seeds:
            for p, v in zip(pos, values, strict=True):
                ax.scatter([p] * len(v), v, s=8, color="black", zorder=3)
    ax.set_xticks(x, list(groups))
    ax.grid(axis="y", alpha=0.3)
    return container


def spread_label(spread: str, seeds: int) -> str:
    """What the error bars show, for an axis label or title."""
    what = "min to max" if spread == "minmax" else "± std"
    return f"bars: mean over {seeds} seed(s), error bars {what} over seeds"
