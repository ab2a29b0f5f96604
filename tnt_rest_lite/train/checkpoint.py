"""Checkpoints: atomic writes, exact resume (RNG states) and the changes a resume may make."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..core.store import atomic_torch_save
from ..models._weights import check_state_dict
from .config import TrainConfig

__all__ = [
    "CheckpointError",
    "save_checkpoint",
    "load_checkpoint",
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_NAME",
    "RESUMABLE_CHANGES",
]


CHECKPOINT_FORMAT = "tnt_rest_lite.checkpoint.v1"
CHECKPOINT_NAME = "last.pt"

# Config fields that may change between an interrupted run and its resumption (they do not change
# the numbers); every other field must match the checkpoint's.
# amp_on_cpu is the CPU stand-in of moving a run to a GPU (where amp turns on), as device is
RESUMABLE_CHANGES = {
    "checkpoint_dir",
    "resume",
    "progress",
    "num_workers",
    "device",
    "eval_batch_size",
    "amp_on_cpu",
    "foreach",  # the same update (to float rounding), one kernel for all tensors or one per tensor
}


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or does not belong to this run."""


# ----------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------


def rng_state() -> dict[str, Any]:
    """Every random-number state, as tensors and plain values (loadable with weights_only=True)."""
    _, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "python": {
            "version": int(version),
            "internal": torch.tensor(internal, dtype=torch.int64),
            "gauss_next": gauss_next,
        },
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))  # noqa: NPY002
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["internal"].tolist()), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` atomically: to a temporary file in the same folder, then ``os.replace``.

    A crash mid-write leaves the previous checkpoint intact (the rename is atomic on POSIX and
    Windows when both names are on the same file system, hence the same folder).
    """
    return atomic_torch_save(state, path)


def load_checkpoint(path: str | Path, model: nn.Module | None = None, require_format: bool = True) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``; check it against ``model`` if given.

    ``require_format=False`` also accepts a weights-only file, ``{"model": state_dict}`` (the trained
    weights the experiments keep for the figure chapters), which has no training state to resume.

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointError: the file is corrupt/truncated or not a checkpoint of this engine.
        KeyError / ValueError: (from :func:`weights.check_state_dict`) the weights do not match
            ``model``: the message names the file and every missing, unexpected or mis-shaped key.
    """

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, bad pickle, foreign objects: all the same to the user
        raise CheckpointError(
            f"Checkpoint {path} cannot be read (corrupt, truncated or not written by tnt_rest_lite): "
            f"{type(err).__name__}: {err}"
        ) from err
    if not require_format and isinstance(state, dict) and isinstance(state.get("model"), dict):
        pass  # a weights-only file
    elif not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"Checkpoint {path} is not a '{CHECKPOINT_FORMAT}' checkpoint (found {found!r})")
    if model is not None:
        check_state_dict(model, state["model"], f"checkpoint {path}")
    return state


def check_config(saved: dict[str, Any], config: TrainConfig, path: Path) -> None:
    current = config.as_dict()
    differ = sorted(k for k in current if k not in RESUMABLE_CHANGES and saved.get(k) != current[k])
    if differ:
        detail = "; ".join(f"{k}: checkpoint {saved.get(k)!r}, now {current[k]!r}" for k in differ)
        raise CheckpointError(
            f"Checkpoint {path} was written by a run with another config ({detail}); "
            "use another checkpoint_dir or resume=False to start afresh"
        )
