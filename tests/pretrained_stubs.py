"""Offline stand-ins for the published weights, for the `PRETRAINED = True` branches of chapters 07 and 08.

timm's hub download is replaced by randomly initialised weights of the architecture the hub id names, saved
to a file and read back with ``weights_only=True`` as a download would be; the authors' ResT-Lite
checkpoint by random weights in the layout of their training script (under ``state_dict``, with
DataParallel's ``module.`` prefix). Used by ``tests/test_pretrained_branches.py`` and, inside the
notebook's kernel, by the smoke runs of ``tests/smoke``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch


def fake_hub_download(folder: Path, asked: list[str] | None = None) -> Callable[..., dict[str, torch.Tensor]]:
    """A stand-in for ``timm.models._builder.load_state_dict_from_hf`` that records the ids in ``asked``."""
    import timm

    def download(model_id: str, *args: object, **kwargs: object) -> dict[str, torch.Tensor]:
        if asked is not None:
            asked.append(model_id)
        architecture = model_id.split("/", 1)[1]  # "timm/tnt_s_patch16_224.in1k" -> "tnt_s_patch16_224.in1k"
        path = Path(folder) / f"{architecture}.pth"
        torch.save(timm.create_model(architecture, pretrained=False).state_dict(), path)
        return torch.load(path, map_location="cpu", weights_only=True)

    return download


def install_hub_stub(folder: str | Path) -> None:
    """Replace timm's hub download in this process (a notebook kernel) for good."""
    import timm.models._builder as builder

    builder.load_state_dict_from_hf = fake_hub_download(Path(folder))


def write_authors_checkpoint(path: str | Path) -> Path:
    """Random ResT-Lite weights saved as the authors' training script saves them; returns the path."""
    from tnt_rest_lite import create_model

    weights = create_model("rest_lite").state_dict()
    torch.save({"state_dict": {f"module.{k}": v for k, v in weights.items()}, "epoch": 300}, path)
    return Path(path)
