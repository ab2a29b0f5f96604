"""Where trained weights and per-epoch run checkpoints are kept, and loading them back."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from torch import nn

from ..core.paths import checkpoints_root
from ..profiles import Profile, get_profile
from ..train.checkpoint import RESUMABLE_CHANGES, load_checkpoint
from ..train.config import TrainConfig

__all__ = ["run_checkpoint_dir", "weights_path", "load_weights"]


def weights_path(prefix: str, name: str, seed: int, profile: Profile | None = None) -> Path:
    """Where the trained weights of ``name`` (seed ``seed``) of table ``prefix`` are kept.

    ``checkpoints/<profile>/<prefix>_<name>_seed<seed>.pt`` in the repository (ignored by git;
    ``$TNT_REST_CHECKPOINTS`` moves it): the figure chapters load the trained models from there.
    """

    p = profile or get_profile()
    return checkpoints_root() / p.store_name / f"{prefix}_{name}_seed{seed}.pt"


def run_checkpoint_dir(prefix: str, name: str, seed: int, config: TrainConfig, profile: Profile | None = None) -> Path:
    """Where the per-epoch checkpoint of one training run is kept, so that an interrupted run resumes.

    ``checkpoints/<profile>/runs/<prefix>_<name>_seed<seed>_<recipe hash>/`` beside the final weights
    (:func:`weights_path`): a changed recipe gets a new folder, never another run's checkpoint.
    """
    recipe = {k: v for k, v in sorted(config.as_dict().items()) if k not in RESUMABLE_CHANGES}
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return weights_path(prefix, name, seed, profile).parent / "runs" / f"{prefix}_{name}_seed{seed}_{digest}"


def load_weights(path: Path, model: nn.Module) -> nn.Module:
    """Load the weights :func:`run_model` saved at ``path`` into ``model`` (``weights_only=True``).

    Read by :func:`tnt_rest_lite.train.checkpoint.load_checkpoint`: a missing file is a ``FileNotFoundError``,
    a corrupt one a ``CheckpointError`` naming it, weights of another architecture a ``KeyError`` /
    ``ValueError`` naming every mismatched key.
    """

    model.load_state_dict(load_checkpoint(path, model, require_format=False)["model"])
    return model
