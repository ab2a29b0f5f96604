"""GPU check: the colab/full training path measured on one GPU, and each chapter's time estimated from it.

``python -m tnt_rest_lite gpu-check [--steps 20] [--profiles colab full] [--device cuda]`` (also
``make gpu-check``) needs only torch, torchvision and timm beyond this package. It

1. trains every small model of the training tables (and ResNet-50-mini, which 08 trains with
   ResT's recipe) for ``--steps`` optimizer steps at each profile's image size, batch size and
   recipe, with the profile's mixed precision (fp16 autocast + GradScaler on CUDA), and times the
   bare step (one fixed batch on the device: no data, no evaluation) and its peak memory;
2. runs one seed of each training table through :func:`tnt_rest_lite.experiments.runs.run_model` for the
   same number of steps (data loading, evaluation and checkpointing included): the ratio to the
   bare step is the loop's overhead;
3. runs the figure chapters' GPU path (outer attention of TNT/DeiT, Group-CAM and Grad-CAM of
   ResT-Lite and ResNet-50 on a few images) and times it per image;
4. writes one JSON report, ``gpu_check`` in the results store of the profile it runs under (with
   provenance), holding the measurements and, per profile, the estimated minutes of each training
   chapter (seeds x models x epochs x training samples at the measured loop throughput, plus the
   data generation) and of the figure chapters.

Detection chapters (09, 10) are not estimated: their detectors' step times are not measured here.
``--device cpu`` runs the same code on the CPU, for the tests; its times say nothing about a GPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys
import time
from typing import Any

import torch

from ..core import store
from ..core.store import stopwatch
from ..data.datasets import build_dataset
from ..data.synthetic import SyntheticShapes
from ..measure.bench import mean_time
from ..profiles import PROFILES, Profile, get_profile
from ..train.config import amp_enabled
from ..train.loop import train_step
from ..train.optim import build_optimizer, build_scheduler
from ..train.tasks import ClassificationTask
from . import figures
from .recipes import build_model, recipe
from .runs import run_model
from .tables import TABLES

__all__ = ["main", "step_times", "chapter_estimates"]


# The models each training chapter trains (08 trains ResNet-50-mini with ResT Table 1's recipe).
CHAPTER_TABLES = {"04": "tnt_table1", "05": "rest_table1", "06": "rest_ablation"}
EXTRA_MODELS = {"rest_table1": ("resnet50_mini",)}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _models_of(table: str) -> tuple[str, ...]:

    return (*TABLES[table].models, *EXTRA_MODELS.get(table, ()))


def _time_steps(
    model: torch.nn.Module,
    batch: dict[str, torch.Tensor],
    optimizer: Any,
    scheduler: Any,
    config: Any,
    task: ClassificationTask,
    scaler: torch.amp.GradScaler,
    steps: int,
) -> tuple[float, torch.Tensor]:
    """Mean seconds of one of ``steps`` training steps and the last step's loss. The Timer's untimed
    warm-up steps before them (two, or ``steps // 100``) choose the kernels and fill the caches."""
    updates, last = itertools.count(1), []

    def step() -> None:
        loss, _ = train_step(
            model, batch, optimizer, scheduler, config, task=task, scaler=scaler, num_updates=next(updates)
        )
        last[:] = [loss]

    return mean_time(step, steps), last[0]


def bare_step_seconds(
    name: str, config: Any, profile: Profile, device: torch.device, steps: int
) -> tuple[float, torch.Tensor]:
    """Mean seconds of a bare training step of ``name`` with ``config`` (one batch held on ``device``: no
    data, no evaluation) over ``steps`` timed steps, and the last loss; on CUDA the peak memory counts from here."""
    data = SyntheticShapes(config.batch_size, profile.image_size, "train", difficulty=profile.data_difficulty)
    batch = {k: v.to(device) for k, v in data.batch(list(range(config.batch_size))).items()}
    model = build_model(name, 20, profile.image_size, profile).to(device).train()
    task = ClassificationTask()
    task.prepare(model, data, config)
    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, config, steps_per_epoch=max(steps, 1))
    scaler = torch.amp.GradScaler(device.type, enabled=amp_enabled(config, device))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    return _time_steps(model, batch, optimizer, scheduler, config, task, scaler, steps)


def step_times(
    profile: Profile, steps: int, device: torch.device, batch_size: int | None = None
) -> list[dict[str, Any]]:
    """Seconds per bare training step of every table model of ``profile`` (recipe, batch, AMP as trained)."""

    rows = []
    for table, spec in TABLES.items():
        for name in _models_of(table):
            config = recipe(spec.recipe, profile, 0, table, name if name in spec.models else spec.models[0])
            config = dataclasses.replace(config, device=str(device), batch_size=batch_size or config.batch_size)
            seconds, loss = bare_step_seconds(name, config, profile, device, steps)
            rows.append(
                {
                    "profile": profile.name,
                    "table": table,
                    "model": name,
                    "batch_size": config.batch_size,
                    "image_size": profile.image_size,
                    "amp": amp_enabled(config, device),
                    "step_s": seconds,
                    "images_per_s": config.batch_size / seconds,
                    "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30
                    if device.type == "cuda"
                    else None,
                    "loss_finite": bool(torch.isfinite(loss)),
                }
            )
            print(
                f"{profile.name:6s} {name:20s} batch {config.batch_size:4d}: {seconds * 1e3:8.1f} ms/step, "
                f"{rows[-1]['images_per_s']:8.0f} img/s",
                flush=True,
            )
    return rows


def loop_times(profile: Profile, steps: int, device: torch.device) -> list[dict[str, Any]]:
    """One seed of each training table through run_model for ``steps`` steps: the loop's throughput."""

    rows = []
    for table, spec in TABLES.items():
        batch = profile.batch_size_for(table)
        short = dataclasses.replace(
            profile, table_recipe={**profile.table_recipe, table: {**profile.table_recipe.get(table, {}), "epochs": 1}}
        )
        splits = [
            build_dataset(
                "synthetic", split, profile.image_size, num_samples=n, seed=0, difficulty=profile.data_difficulty
            )
            for split, n in (("train", steps * batch), ("val", 2 * batch), ("test", 2 * batch))
        ]
        for name in spec.models:
            with stopwatch() as clock:
                summary = run_model(
                    name, spec.recipe, *splits, short, seeds=[0], progress=False, table=table, checkpoint=False
                )
            rows.append(
                {
                    "profile": profile.name,
                    "table": table,
                    "model": name,
                    "steps": steps,
                    "train_images_per_s": summary["train_images_per_s"],
                    "run_s": clock["s"],
                }
            )
            print(
                f"{profile.name:6s} {table:14s} {name:20s} loop: {summary['train_images_per_s']:8.0f} img/s", flush=True
            )
    return rows


def figure_times(profile: Profile, device: torch.device, images: int = 4) -> dict[str, float]:
    """Seconds per image of the figure chapters' GPU path (07: outer attention; 08: CAMs and their scores)."""

    test = build_dataset(
        "synthetic", "test", profile.image_size, num_samples=images, seed=0, difficulty=profile.data_difficulty
    )
    batch = test.batch(list(range(images)))
    out = {}
    vits = [build_model(n, 20, profile.image_size, profile).eval() for n in ("tnt_s_mini", "deit_s_mini")]
    with stopwatch() as clock, torch.no_grad():
        for model in vits:
            with figures.on_compute_device(model.to(device)):
                figures.outer_attention(model, batch["image"])
        _sync(device)
    out["07_attention_s_per_image"] = clock["s"] / images
    rest, resnet = (build_model(n, 20, profile.image_size, profile).eval() for n in ("rest_lite_mini", "resnet50_mini"))
    cam_models = {"rest": [(rest.to(device), rest.stage4_out)], "resnet": [(resnet.to(device), resnet.layer4)]}
    with stopwatch() as clock:
        figures.cam_study(cam_models, batch["image"], batch["label"], batch["mask"])
        _sync(device)
    out["08_cam_s_per_image"] = clock["s"] / images
    return out


def data_rate(profile: Profile, samples: int = 512) -> float:
    """Images per second that SyntheticShapes draws at the profile's size in its worker processes."""

    data = SyntheticShapes(samples, profile.image_size, "train", seed=99, difficulty=profile.data_difficulty)
    with stopwatch() as clock:
        data.materialize(workers=profile.num_workers)
    return samples / clock["s"]


def chapter_estimates(
    profile: Profile, loops: list[dict[str, Any]], figures_s: dict[str, float], images_per_s: float
) -> dict[str, float]:
    """Estimated minutes of each chapter in ``profile`` from the measured throughputs (detection: not estimated)."""

    data_min = (profile.train_samples + profile.val_samples + profile.test_samples) / images_per_s / 60
    speed = {(r["table"], r["model"]): r["train_images_per_s"] for r in loops if r["profile"] == profile.name}
    minutes: dict[str, float] = {}
    for chapter, table in CHAPTER_TABLES.items():
        epochs = profile.epochs_for(table)
        train = sum(epochs * profile.train_samples / speed[(table, m)] for m in TABLES[table].models) / 60
        minutes[chapter] = round(data_min + profile.num_seeds * train, 1)
    # 07 and 08 load the trained models when present; on a fresh runtime they train them (as 04/05 do)
    minutes["07_if_models_present"] = round(
        data_min + figures_s["07_attention_s_per_image"] * profile.diversity_images / 60, 1
    )
    cams = figures_s["08_cam_s_per_image"] * profile.diversity_images * profile.num_seeds / 60
    resnet = speed.get(
        ("rest_table1", "rest_lite_mini"), 0.0
    )  # ResNet-50-mini's loop speed is not measured: ResT's stands in
    extra = (
        profile.num_seeds * profile.epochs_for("rest_table1") * profile.train_samples / resnet / 60 if resnet else 0.0
    )
    minutes["08_if_models_present"] = round(data_min + cams, 1)
    minutes["08_fresh_runtime"] = round(minutes["05"] + extra + cams, 1)
    return minutes


def main(argv: list[str] | None = None) -> int:

    parser = argparse.ArgumentParser(prog="python -m tnt_rest_lite gpu-check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="timed optimizer steps per model (default 20)")
    parser.add_argument("--profiles", nargs="*", default=["colab", "full"], choices=list(PROFILES))
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu (the tests: times mean nothing)")
    parser.add_argument("--batch-size", type=int, help="override every batch size (the tests)")
    parser.add_argument("--num-workers", type=int, help="override the profiles' data-loader workers (the tests)")
    parser.add_argument("--figure-images", type=int, default=4, help="images of the figure path (default 4)")
    parser.add_argument("--data-samples", type=int, default=512, help="images drawn to time data generation")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(
            "gpu-check measures a GPU and this machine has no CUDA device (--device cpu runs it here, for tests)"
        )
    start = time.perf_counter()
    report: dict[str, Any] = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "profiles": {},
    }
    for name in args.profiles:
        profile = get_profile(name)
        if args.num_workers is not None:
            profile = dataclasses.replace(profile, num_workers=args.num_workers)
        steps = step_times(profile, args.steps, device, args.batch_size)
        loops = loop_times(
            dataclasses.replace(profile, batch_size=args.batch_size) if args.batch_size else profile, args.steps, device
        )
        figs = figure_times(profile, device, args.figure_images)
        rate = data_rate(profile, args.data_samples)
        report["profiles"][name] = {
            "steps": steps,
            "loops": loops,
            "figures": figs,
            "data_images_per_s": rate,
            "estimated_minutes": chapter_estimates(profile, loops, figs, rate),
        }
        print(f"{name}: estimated minutes per chapter {report['profiles'][name]['estimated_minutes']}", flush=True)
    path = store.save_json("gpu_check", report, wall_time_s=time.perf_counter() - start, steps=args.steps)
    print(f"wrote {path} in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
