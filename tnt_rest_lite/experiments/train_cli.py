"""Command line of the engine: train one registered model (``python -m tnt_rest_lite train``, also under torchrun)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch.distributed as dist

from ..data.datasets import build_dataset
from ..models._registry import create_model
from ..train.config import TrainConfig, seed_everything
from ..train.distributed import distributed_info
from ..train.loop import train

# ----------------------------------------------------------------------------------------------
# Command line (and the torchrun entry point)
# ----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """``python -m tnt_rest_lite train --model deit_s_mini ...``, also under ``torchrun``.

    Trains one registered model on one dataset and writes the final metrics as JSON (rank ``r``
    of a multi-process run writes ``<metrics-out>.rank<r>.json``).
    """

    parser = argparse.ArgumentParser(prog="python -m tnt_rest_lite train", description=main.__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--dataset", default="synthetic")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--train-samples", type=int, default=2000)
    parser.add_argument("--val-samples", type=int, default=500)
    parser.add_argument("--difficulty", default="standard", help="synthetic data: easy | standard | hard")
    parser.add_argument("--model-overrides", default="{}", help="JSON object of config overrides")
    parser.add_argument("--config", default="{}", help="JSON object of TrainConfig fields")
    parser.add_argument("--metrics-out", type=Path)
    args = parser.parse_args(argv)

    config = TrainConfig(**json.loads(args.config))
    info = distributed_info(config.device)
    train_set = build_dataset(
        args.dataset,
        "train",
        args.image_size,
        num_samples=args.train_samples,
        seed=config.seed,
        difficulty=args.difficulty,
    )
    val_set = build_dataset(
        args.dataset, "val", args.image_size, num_samples=args.val_samples, seed=config.seed, difficulty=args.difficulty
    )
    seed_everything(config.seed)
    model = create_model(
        args.model, num_classes=len(train_set.classes), img_size=args.image_size, **json.loads(args.model_overrides)
    )
    result = train(model, train_set, val_set, config, desc=args.model)
    if args.metrics_out is not None:
        out = args.metrics_out
        if info.distributed:
            out = out.with_name(f"{out.stem}.rank{info.rank}{out.suffix}")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"rank": info.rank, "world_size": info.world_size, **result.as_dict()}, indent=1))
    if info.distributed:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
