"""Test set-up: results go to a temporary folder, the profile is ci, runs are single-threaded-safe."""

from __future__ import annotations

import os

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _isolated_results(tmp_path_factory: pytest.TempPathFactory) -> None:
    # Tests must never overwrite the committed results/ of a real run.
    os.environ["TNT_REST_RESULTS"] = str(tmp_path_factory.mktemp("results"))
    os.environ["TNT_REST_PROFILE"] = "ci"


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
