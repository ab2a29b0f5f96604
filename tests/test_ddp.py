"""DistributedDataParallel: two CPU processes under torchrun (gloo) finish with the same metrics,
and those are the metrics of one process on the same global batches."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

MODEL_ARGS = [
    "--model", "deit_s_mini",
    "--model-overrides", json.dumps({"embed_dim": 32, "depth": 1, "num_heads": 2, "patch_size": 8}),
    "--train-samples", "64",  # divisible by the batch: both runs take the same 4 global batches per epoch
    "--val-samples", "41",  # odd: the two processes evaluate 21 and 20 images, each counted once
]  # fmt: skip
CONFIG = {"epochs": 2, "batch_size": 16, "lr": 1e-3, "warmup_epochs": 1, "progress": False}


def _run(command: list[str], cwd: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def test_two_processes_match_one(tmp_path: Path):
    args = [*MODEL_ARGS, "--config", json.dumps({**CONFIG, "checkpoint_dir": str(tmp_path / "ckpt")})]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    _run([*torchrun, "-m", "tnt_rest_lite", "train", *args, "--metrics-out", str(tmp_path / "ddp.json")], tmp_path)
    single_args = [*MODEL_ARGS, "--config", json.dumps(CONFIG)]
    _run(
        [sys.executable, "-m", "tnt_rest_lite", "train", *single_args, "--metrics-out", str(tmp_path / "one.json")],
        tmp_path,
    )

    ranks = [json.loads((tmp_path / f"ddp.rank{r}.json").read_text()) for r in (0, 1)]
    one = json.loads((tmp_path / "one.json").read_text())
    assert [r["world_size"] for r in ranks] == [2, 2] and one["world_size"] == 1
    # the reduced metrics are the same numbers on both ranks, bit for bit
    assert ranks[0]["metrics"] == ranks[1]["metrics"]
    assert ranks[0]["history"]["train_loss"] == ranks[1]["history"]["train_loss"]
    # and they are those of one process: the gradients are averaged over the same 16 images
    # (only the order of floating-point sums differs)
    for key in ("train_loss", "val_loss", "val_top1", "val_top5"):
        assert ranks[0]["history"][key] == pytest.approx(one["history"][key], rel=1e-4, abs=1e-4), key
    # rank 0 wrote the checkpoint, and it is complete
    assert (tmp_path / "ckpt" / "last.pt").is_file()
