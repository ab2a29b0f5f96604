"""The timm model contract that every model of the package follows, written once.

timm's models share one interface: ``num_classes``, ``num_features``, ``head_hidden_size``,
``forward_features`` (unpooled), ``forward_head(x, pre_logits=False)``, ``get_classifier``,
``reset_classifier(num_classes, global_pool=None)``, ``set_grad_checkpointing``,
``forward_intermediates(x, indices, norm, output_fmt, intermediates_only)`` with
``prune_intermediate_layers``, and ``feature_info`` (channels and reduction of every block or
stage). Detection necks, explanation methods and timm's own feature wrappers
(``features_only=True``) all rely on it.

* :class:`ClassTokenModel` implements it for the two plain transformers with a class token
  (DeiT, TNT); each supplies how it embeds an image and how one block advances its state.
* :func:`build` is every entry point's body: timm's ``build_model_with_cfg`` with the entry's
  ``pretrained_cfg`` (so ``pretrained=True``, ``features_only``, ``out_indices``, ``num_classes``,
  ``global_pool``, ``in_chans`` and ``pretrained_cfg_overlay`` all work through
  ``timm.create_model`` and ``tnt_rest_lite.create_model`` alike) and our frozen configs.
* :func:`cfg` writes a ``pretrained_cfg`` entry; :func:`pool_size` its final map size.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable
from typing import Any

import torch
from timm.models import build_model_with_cfg
from timm.models._features import feature_take_indices
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..core.normalization import SYNTHETIC_MEAN, SYNTHETIC_STD
from ._registry import configure

__all__ = [
    "ClassTokenModel",
    "build",
    "cfg",
    "mini_cfg",
    "pool_size",
    "check_image",
    "POOLS",
    "OUTPUT_FORMATS",
    "CLASS_TOKEN_FEATURES",
]


POOLS = ("token", "avg", "")  # class token, mean of the patch tokens, none (the unpooled tokens)
OUTPUT_FORMATS = ("NCHW", "NLC")
# ``features_only=True`` defaults of the class-token models, timm's for its ViTs and TNT
# (``_create_vision_transformer``, ``_create_tnt``): the last three blocks (``out_indices=3``; fewer
# when the model has fewer), as NCHW maps from ``forward_intermediates``. timm's generic default,
# the first five modules of ``feature_info`` through hooks, is out of range for a 4-block mini.
CLASS_TOKEN_FEATURES: dict[str, Any] = dict(feature_cls="getter", out_indices=3)


def pool_size(input_size: tuple[int, int, int], output_stride: int) -> tuple[int, int]:
    """The final feature map's ``(H, W)`` at ``input_size`` for a network of ``output_stride``.

    timm's ``pool_size`` convention (``(7, 7)`` at 224 px for a /32 network). Every downsampling of
    our pyramids is a stride-2 conv with padding (or a stride-``s`` stem), so a side ``n`` becomes
    ``ceil(n / output_stride)``.
    """
    return tuple(-(-side // output_stride) for side in input_size[1:])  # type: ignore[return-value]


def cfg(**kwargs: Any) -> dict[str, Any]:
    """A ``pretrained_cfg`` entry: ImageNet defaults at 224 px, overridden by ``kwargs``.

    ``pool_size`` stays ``None`` for the plain transformers (DeiT, TNT), as in timm's own ``deit``
    and ``tnt`` cfgs: their final features are tokens, not a map; the pyramids (ResT, ResNet) set it
    with :func:`pool_size`.
    """
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    return {
        "url": "",
        "num_classes": 1000,
        "input_size": (3, 224, 224),
        "pool_size": None,
        "crop_pct": 0.9,
        "interpolation": "bicubic",
        "fixed_input_size": True,
        "mean": IMAGENET_DEFAULT_MEAN,
        "std": IMAGENET_DEFAULT_STD,
        "first_conv": "patch_embed.proj",
        "classifier": "head",
        **kwargs,
    }


def mini_cfg(**kwargs: Any) -> dict[str, Any]:
    """The ``pretrained_cfg`` of a small-scale (``*_mini``) entry: 32 px SyntheticShapes, 20 classes."""

    base = dict(
        num_classes=20,
        input_size=(3, 32, 32),
        crop_pct=1.0,
        interpolation="bilinear",
        mean=SYNTHETIC_MEAN,
        std=SYNTHETIC_STD,
        license="mit",
    )
    return cfg(**{**base, **kwargs})


def _square(size: Any) -> Any:
    """timm passes ``img_size`` as ``(H, W)`` from ``input_size``; our configs take one side."""
    if isinstance(size, (tuple, list)):
        if len(size) != 2 or size[0] != size[1]:
            raise ValueError(f"our models take square images: img_size must be one number, got {tuple(size)}")
        return int(size[0])
    return size


def build(
    model_cls: Callable[[Any], nn.Module],
    base_config: Any,
    variant: str,
    pretrained: bool = False,
    *,
    filter_fn: Callable[[dict[str, torch.Tensor], nn.Module], dict[str, torch.Tensor]] | None = None,
    feature_cfg: dict[str, Any] | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build ``variant`` through timm's ``build_model_with_cfg``, its config from ``base_config``.

    ``kwargs`` are config overrides (``num_classes=10``, ``img_size=64``, ...) and timm's factory
    options (``features_only``, ``out_indices``, ``feature_cls``, ``pretrained_cfg``,
    ``pretrained_cfg_overlay``, ``cache_dir``). An unknown override is our ``TypeError`` listing
    the config's fields. With ``pretrained=True`` the weights of the entry's ``pretrained_cfg``
    are downloaded and passed through ``filter_fn`` (timm's layout -> ours); without network that
    is a ``RuntimeError`` naming what it tried to fetch.
    """

    fields = {f.name for f in dataclasses.fields(base_config)}

    def instantiate(**overrides: Any) -> nn.Module:
        if "img_size" in overrides:
            overrides["img_size"] = _square(overrides["img_size"])
        if "img_size" not in fields:
            overrides.pop("img_size", None)  # size-agnostic models (ResT) take any input
        return model_cls(configure(base_config, overrides))

    options = dict(pretrained_filter_fn=filter_fn, feature_cfg=dict(feature_cfg or {}), **kwargs)
    if not pretrained:
        return build_model_with_cfg(instantiate, variant, False, **options)
    from timm.models import get_pretrained_cfg

    source = get_pretrained_cfg(variant)
    where = (source.hf_hub_id or source.url) if source is not None else None
    if not where:  # timm would only warn and return random weights
        raise ValueError(f"No pretrained weights are published for '{variant}'; use pretrained=False")
    try:
        return build_model_with_cfg(instantiate, variant, True, **options)
    except (TypeError, KeyError, ValueError):  # our config errors and mismatched checkpoints speak for themselves
        raise
    except Exception as err:  # hub errors differ by version and by what is missing: one message for all
        raise RuntimeError(
            f"Could not fetch the pretrained weights of '{variant}' ({where} from the Hugging Face hub): "
            f"{type(err).__name__}: {err}. Pretrained weights need network access (they download on Colab); "
            "offline, create the model with pretrained=False."
        ) from err


@torch.fx.wrap  # a shape check: fx (timm's feature extraction) keeps it as one leaf call
def check_image(x: torch.Tensor, in_chans: int, img_size: int, model: str) -> None:
    """Raise a clear error unless ``x`` is ``(B, in_chans, img_size, img_size)``."""
    if x.ndim != 4 or x.shape[1] != in_chans or tuple(x.shape[-2:]) != (img_size, img_size):
        raise ValueError(
            f"{model} expects images of shape (B, {in_chans}, {img_size}, {img_size}), got {tuple(x.shape)}; "
            f"resize the input or build the model with img_size={x.shape[-1] if x.ndim == 4 else '...'}"
        )


class ClassTokenModel(nn.Module, abc.ABC):
    """timm's interface for a transformer with a class token and ``blocks`` (DeiT, TNT).

    A subclass sets ``config`` (with ``num_classes`` and ``global_pool``), ``blocks``, ``norm``
    and ``head``, calls :meth:`init_interface`, and implements three small methods: ``embed``
    (image -> the state the blocks advance), ``run_block`` (one block on that state) and
    ``tokens`` (the state's patch-level tokens ``(B, 1 + N, C)``, class token first).
    """

    num_prefix_tokens = 1  # the class token
    # False: only images of the config's img_size (a clear error otherwise). True (a detection
    # backbone): any height and width that are multiples of the patch size, the position
    # embeddings interpolated from the trained grid to the input's (as timm's dynamic_img_size)
    dynamic_img_size = False

    def patch_grid(self, x: torch.Tensor, model: str) -> tuple[int, int] | None:
        """The patch grid ``(rows, cols)`` of ``x`` for the position embeddings, or a clear error.

        ``None`` (the trained grid) for a fixed-size model, after checking ``x`` is
        ``(B, in_chans, img_size, img_size)``; with ``dynamic_img_size`` any height and width that
        are multiples of the patch size.
        """
        c = self.config
        if not self.dynamic_img_size:
            check_image(x, c.in_chans, c.img_size, model)
            return None
        p = c.patch_size
        if x.ndim != 4 or x.shape[1] != c.in_chans or x.shape[-2] % p or x.shape[-1] % p:
            raise ValueError(
                f"{model} (dynamic_img_size) expects images of shape (B, {c.in_chans}, H, W) with H and W "
                f"multiples of the patch size {p}, got {tuple(x.shape)}"
            )
        return x.shape[-2] // p, x.shape[-1] // p

    def resized_pos_embed(self, grid: tuple[int, int] | None) -> torch.Tensor:
        """The position embeddings for a ``grid`` of patches (``None``: the trained grid, unchanged).

        The patch positions are resampled bicubically from the trained ``grid_size x grid_size``
        (timm's ``resample_abs_pos_embed``); the class token's position stays as it is.
        """
        if grid is None or tuple(grid) == (self.grid_size, self.grid_size):
            return self.pos_embed
        from timm.layers import resample_abs_pos_embed

        return resample_abs_pos_embed(
            self.pos_embed, list(grid), old_size=[self.grid_size] * 2, num_prefix_tokens=self.num_prefix_tokens
        )

    def init_interface(self, width: int, reduction: int, grid: int, block_module: str = "blocks.{i}") -> None:
        if self.config.global_pool not in POOLS:
            raise ValueError(f"global_pool must be one of {POOLS}, got '{self.config.global_pool}'")
        self.num_classes = self.config.num_classes
        self.num_features = self.head_hidden_size = width
        self.global_pool = self.config.global_pool
        self.grad_checkpointing = False
        self.grid_size = grid
        self.feature_info = [
            dict(num_chs=width, reduction=reduction, module=block_module.format(i=i)) for i in range(len(self.blocks))
        ]

    # -- what each model supplies ---------------------------------------------------------------

    @abc.abstractmethod
    def embed(self, x: torch.Tensor) -> Any:
        """Image -> the state the blocks advance."""

    @abc.abstractmethod
    def run_block(self, block: nn.Module, state: Any) -> Any:
        """One block on the state."""

    @abc.abstractmethod
    def tokens(self, state: Any) -> torch.Tensor:
        """The state's patch-level tokens ``(B, 1 + N, C)``, class token first."""

    # -- the contract ---------------------------------------------------------------------------

    def _advance(self, block: nn.Module, state: Any) -> Any:
        if self.grad_checkpointing and torch.is_grad_enabled():
            return checkpoint(self.run_block, block, state, use_reentrant=False)
        return self.run_block(block, state)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens after the final norm, unpooled: ``(B, 1 + N, C)`` (class token first)."""
        state = self.embed(x)
        for block in self.blocks:
            state = self._advance(block, state)
        return self.norm(self.tokens(state))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool the tokens (``global_pool``: class token, mean of the patches, or none), then classify."""
        if self.global_pool == "token":
            x = x[:, 0]
        elif self.global_pool == "avg":
            x = x[:, self.num_prefix_tokens :].mean(dim=1)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A new head for ``num_classes`` (0: none, ``forward`` returns features); ``''`` leaves the tokens unpooled."""
        if global_pool is not None:
            if global_pool not in POOLS:
                raise ValueError(f"global_pool must be one of {POOLS}, got '{global_pool}'")
            self.global_pool = global_pool
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self.config = dataclasses.replace(self.config, num_classes=num_classes, global_pool=self.global_pool)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block in the backward pass instead of storing its activations."""
        self.grad_checkpointing = enable

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | tuple[int, ...] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """Patch tokens after the blocks ``indices`` (timm's convention), and the final features.

        Args:
            indices: ``None`` every block, an int the last n, a sequence those blocks (negative
                from the end).
            norm: apply the final norm to every intermediate.
            stop_early: stop after the last wanted block (only with ``intermediates_only``).
            output_fmt: ``"NCHW"`` maps ``(B, C, g, g)`` or ``"NLC"`` tokens ``(B, N, C)``; the
                class token is dropped either way.
            intermediates_only: return only the list.

        Returns:
            the list of intermediates, or ``(forward_features(x), intermediates)``.
        """
        if output_fmt not in OUTPUT_FORMATS:
            raise ValueError(f"output_fmt must be one of {OUTPUT_FORMATS}, got '{output_fmt}'")
        take, last = feature_take_indices(len(self.blocks), indices)
        blocks = self.blocks[: last + 1] if (stop_early or intermediates_only) else self.blocks
        state = self.embed(x)
        intermediates = []
        for i, block in enumerate(blocks):
            state = self._advance(block, state)
            if i in take:
                tokens = self.tokens(state)
                intermediates.append(self.norm(tokens) if norm else tokens)
        intermediates = [t[:, self.num_prefix_tokens :] for t in intermediates]
        if output_fmt == "NCHW":
            gh, gw = x.shape[-2] // self.config.patch_size, x.shape[-1] // self.config.patch_size
            intermediates = [t.transpose(1, 2).reshape(t.shape[0], t.shape[2], gh, gw) for t in intermediates]
        if intermediates_only:
            return intermediates
        return self.norm(self.tokens(state)), intermediates

    def prune_intermediate_layers(
        self, indices: int | list[int] | tuple[int, ...] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """Drop the blocks after the last of ``indices`` (and the norm, the head); returns the kept indices."""
        take, last = feature_take_indices(len(self.blocks), indices)
        self.blocks = self.blocks[: last + 1]
        if prune_norm:
            self.norm = nn.Identity()
        if prune_head:
            self.reset_classifier(0, "")
        return take
