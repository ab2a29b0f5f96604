"""Test set-up: results and checkpoints go to temporary folders, the profile is ci, runs are single-threaded-safe."""

from __future__ import annotations

import os

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _isolated_results(tmp_path_factory: pytest.TempPathFactory) -> None:
    # Tests must never overwrite the committed results/ of a real run.
    os.environ["TNT_REST_RESULTS"] = str(tmp_path_factory.mktemp("results"))
    # nor leave checkpoints in the repository (or resume a run a previous test session left there)
    os.environ["TNT_REST_CHECKPOINTS"] = str(tmp_path_factory.mktemp("checkpoints"))
    os.environ["TNT_REST_PROFILE"] = "ci"


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
