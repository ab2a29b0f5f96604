"""How long each chapter takes on a GPU, modelled from work measured on any machine (no GPU needed).

``gpu-check`` measures a GPU; until a session has one, the ``colab`` and ``full`` budgets come from
this step-time model. What it **measures** here, with the profile's models, image size, recipes and
batch sizes: the floating-point operations of one training step (forward, backward and optimizer,
``torch.utils.flop_counter.FlopCounterMode``, 2 per multiply-add) and the number of ATen operations
it dispatches (in eager mode each is at least one kernel launch on a GPU), the same for evaluation
and for the figure studies per image, and how many synthetic images one CPU process draws per second.
What it **assumes** (:data:`GPUS`): the GPU's dense fp16 peak, the share of it that models this
small reach (a range: :data:`UTILISATION`), the cost of one kernel launch, and the host's CPU count
(the data is drawn on the CPU, in ``min(workers, host_cpus)`` processes). A step takes
``max(flops / (utilisation x peak), ops x launch)``; a chapter sums its seeds, models, epochs,
evaluations and data generation. The result is a range, printed and stored as ``budget_model``
with the measured inputs beside the assumptions; it is replaced by ``gpu-check``'s measurements
when a GPU is lent.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from ..core import store
from ..core.store import stopwatch
from ..data.datasets import build_dataset
from ..data.synthetic import SyntheticShapes
from ..detection.datasets import DETECTION_IMAGE_SIZE, detection_dataset
from ..detection.task import DetectionTask
from ..profiles import Profile, get_profile
from ..train.config import amp_enabled
from ..train.loop import train_step
from ..train.optim import build_optimizer, build_scheduler
from ..train.tasks import ClassificationTask
from . import figures
from .detection import (
    DETECTION_TABLES,
    build_small_detector,
    detection_recipe,
    detection_settings,
    detection_table_spec,
)
from .gpu_check import EXTRA_MODELS
from .recipes import build_model, recipe
from .tables import TABLES

__all__ = ["GpuSpec", "GPUS", "UTILISATION", "count_work", "measure_profile", "chapter_minutes", "main"]


@dataclasses.dataclass(frozen=True)
class GpuSpec:
    """The assumed machine of a profile (vendors' datasheet peaks; launch cost and host CPUs typical)."""

    name: str
    peak_tflops: float  # dense fp16 tensor-core peak (2 FLOPs per multiply-add)
    launch_us: float  # eager-mode cost of one dispatched op on the GPU, kernel launch included
    host_cpus: int  # CPU processes that draw the synthetic data


GPUS = {
    "colab": GpuSpec("NVIDIA T4 (Colab)", peak_tflops=65.0, launch_us=10.0, host_cpus=2),
    "full": GpuSpec("NVIDIA A100 40GB", peak_tflops=312.0, launch_us=6.0, host_cpus=12),
}
UTILISATION = (0.10, 0.35)  # share of the peak that models of under 25 M parameters reach (low, high)
PROBE_BATCH = 4  # images per counted step: FLOPs scale linearly to the real batch, op counts do not change


class _OpCounter(TorchDispatchMode):
    """Counts the ATen operations dispatched inside it (what the GPU would launch in eager mode)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        self.ops[str(func.overloadpacket)] += 1
        return func(*args, **(kwargs or {}))


# FlopCounterMode knows the CUDA kernels of scaled_dot_product_attention, not the CPU's: without these the
# attention products (most of ResT-Lite-MSA's work at 112 px) would count as free here
def _cpu_attention_flops(query: Any, key: Any, value: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    return sdpa_flop_count(query, key, value)  # shapes: FlopCounterMode passes every tensor as its shape


def _cpu_attention_backward_flops(
    grad: Any, query: Any, key: Any, value: Any, *args: Any, out_shape: Any = None, **kwargs: Any
) -> int:
    return sdpa_backward_flop_count(grad, query, key, value)


_CPU_ATTENTION_FLOPS = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention_flops,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_attention_backward_flops,
}


def count_work(fn: Callable[[], Any]) -> dict[str, float]:
    """``{"flops", "ops"}`` of one call of ``fn`` (FLOPs: 2 per multiply-add; ops: dispatched ATen calls)."""
    flops = FlopCounterMode(display=False, custom_mapping=_CPU_ATTENTION_FLOPS)
    ops = _OpCounter()
    with flops, ops:
        fn()
    return {"flops": float(flops.get_total_flops()), "ops": float(sum(ops.ops.values()))}


def _step_work(model: nn.Module, batch: Any, images: Any, config: Any, task: Any) -> dict[str, float]:
    """The counted work of one training step of ``model`` on ``batch`` and one forward pass of ``images``."""
    optimizer = build_optimizer(model, config)
    for group in optimizer.param_groups:
        group["foreach"] = True  # the optimizer's implementation on CUDA (on the CPU it loops over tensors)
    scheduler = build_scheduler(optimizer, config, steps_per_epoch=10)
    # scale 1: the fp16 gradients of a random model stay finite, so no step is skipped (with its optimizer ops)
    scaler = torch.amp.GradScaler("cpu", init_scale=1.0, enabled=amp_enabled(config, torch.device("cpu")))
    step = dict(task=task, scaler=scaler, num_updates=1)
    train_step(model, batch, optimizer, scheduler, config, **step)  # optimizer state exists from here on
    trained = count_work(lambda: train_step(model, batch, optimizer, scheduler, config, **step))
    model.eval()
    with torch.no_grad():
        evaluated = count_work(lambda: model(images))
    return {
        "train_flops_per_image": trained["flops"] / PROBE_BATCH,
        "train_ops_per_step": trained["ops"],
        "eval_flops_per_image": evaluated["flops"] / PROBE_BATCH,
        "eval_ops_per_batch": evaluated["ops"],
    }


def _classifier_work(name: str, table: str, profile: Profile) -> dict[str, float]:
    """One training step and one evaluation batch of ``name`` as ``table`` trains it, per image (FLOPs)."""
    spec = TABLES[table]
    config = recipe(spec.recipe, profile, 0, table, name if name in spec.models else spec.models[0])
    # amp_on_cpu: the profile's fp16 autocast and GradScaler run here as on the GPU (their casts are counted)
    config = dataclasses.replace(config, batch_size=PROBE_BATCH, device="cpu", amp_on_cpu=True)
    data = SyntheticShapes(PROBE_BATCH, profile.image_size, "train", difficulty=profile.data_difficulty)
    batch = data.batch(list(range(PROBE_BATCH)))
    model = build_model(name, 20, profile.image_size, profile).train()
    task = ClassificationTask()
    task.prepare(model, data, config)
    return _step_work(model, batch, batch["image"], config, task)


def _detector_work(table: str, profile: Profile) -> dict[str, dict[str, float]]:
    """One training step and one evaluation batch of every detector of detection table ``table``, per image."""
    spec = detection_table_spec(table)
    settings = detection_settings(profile, table)
    offset = 1 if spec.kind == "faster_rcnn" else 0
    data = detection_dataset(
        "synthetic",
        "train",
        PROBE_BATCH,
        image_size=DETECTION_IMAGE_SIZE,
        seed=0,
        label_offset=offset,
        difficulty=profile.data_difficulty,
        categories=settings.get("categories", "class"),
    )
    task = DetectionTask()
    batch = task.collate([data[i] for i in range(PROBE_BATCH)])
    out = {}
    for detector in spec.detectors:
        model = build_small_detector(spec.kind, detector, len(data.classes), profile).train()
        config = dataclasses.replace(
            detection_recipe(profile, 0, table), batch_size=PROBE_BATCH, device="cpu", amp_on_cpu=True
        )
        task.prepare(model, data, config)
        out[detector.key] = {
            **_step_work(model, batch, batch[0], config, task),
            "init": [detector.init_table, detector.backbone, detector.init_seeds],
        }
    return out


def _figure_work(profile: Profile) -> dict[str, dict[str, float]]:
    """Work per image of 07's attention study (TNT and DeiT) and of 08's CAM study (ResT-Lite and ResNet-50)."""
    test = build_dataset(
        "synthetic", "test", profile.image_size, num_samples=2, seed=0, difficulty=profile.data_difficulty
    )
    batch = test.batch([0, 1])
    models = {n: build_model(n, 20, profile.image_size, profile).eval() for n in ("tnt_s_mini", "deit_s_mini")}
    patch = models["deit_s_mini"].config.patch_size

    def attention() -> None:
        with torch.no_grad():
            figures.attention_study({k: [m] for k, m in models.items()}, batch["image"], batch["mask"], patch)

    rest, resnet = (build_model(n, 20, profile.image_size, profile).eval() for n in ("rest_lite_mini", "resnet50_mini"))
    cam_models = {"rest": [(rest, rest.stage4_out)], "resnet": [(resnet, resnet.layer4)]}

    def cams() -> None:
        figures.cam_study(cam_models, batch["image"][:1], batch["label"][:1], batch["mask"][:1], progress=False)

    seven, eight = count_work(attention), count_work(cams)
    return {
        "07_attention_per_image": {k: v / 2 for k, v in seven.items()},
        "08_cams_per_image": eight,
    }


def _detection_data_rate(profile: Profile, samples: int = 16) -> float:
    """Synthetic detection scenes per second that one CPU process draws (measured)."""
    data = detection_dataset(
        "synthetic", "train", samples, image_size=DETECTION_IMAGE_SIZE, seed=99, difficulty=profile.data_difficulty
    )
    with stopwatch() as clock:
        for i in range(samples):
            data[i]
    return samples / clock["s"]


def _data_rate(profile: Profile, samples: int = 32) -> float:
    """Synthetic images per second that one CPU process draws at the profile's image size (measured)."""
    data = SyntheticShapes(samples, profile.image_size, "train", seed=99, difficulty=profile.data_difficulty)
    with stopwatch() as clock:
        data.materialize(workers=0)
    return samples / clock["s"]


def measure_profile(profile: Profile, progress: bool = True) -> dict[str, Any]:
    """The measured inputs of the model for ``profile``: per trained model, its step's work; the data rate."""

    models = {}
    for table, spec in TABLES.items():
        for name in (*spec.models, *EXTRA_MODELS.get(table, ())):
            models[f"{table}/{name}"] = _classifier_work(name, table, profile)
            if progress:
                w = models[f"{table}/{name}"]
                print(
                    f"{profile.name:6s} {table:14s} {name:20s} {w['train_flops_per_image'] / 1e9:8.3f} GFLOP/image "
                    f"per step, {w['train_ops_per_step']:6.0f} ops/step",
                    flush=True,
                )
    for table in ("rest_table1",):  # 10's classifiers, which no training chapter trains
        for name in ("rest_small_mini", "rest_base_mini"):
            models[f"{table}/{name}"] = _classifier_work(name, table, profile)
    detectors = {table: _detector_work(table, profile) for table in DETECTION_TABLES}
    return {
        "models": models,
        "detectors": detectors,
        "figures": _figure_work(profile),
        "data_images_per_s_per_process": _data_rate(profile),
        "detection_images_per_s_per_process": _detection_data_rate(profile),
    }


def _step_s(flops: float, ops: float, gpu: GpuSpec, utilisation: float) -> float:
    return max(flops / (utilisation * gpu.peak_tflops * 1e12), ops * gpu.launch_us * 1e-6)


def _run_s(work: dict[str, float], profile: Profile, table: str, gpu: GpuSpec, utilisation: float) -> float:
    """Seconds of one seed of one model of ``table``: its epochs of training and validation, then the test."""
    batch = profile.batch_size_for(table)
    eval_batch = 2 * batch
    steps = math.ceil(profile.train_samples / batch)
    train = steps * _step_s(work["train_flops_per_image"] * batch, work["train_ops_per_step"], gpu, utilisation)
    val_batches, test_batches = (
        math.ceil(profile.val_samples / eval_batch),
        math.ceil(profile.test_samples / eval_batch),
    )
    per_eval_batch = _step_s(work["eval_flops_per_image"] * eval_batch, work["eval_ops_per_batch"], gpu, utilisation)
    return profile.epochs_for(table) * (train + val_batches * per_eval_batch) + test_batches * per_eval_batch


# The training chapters and their tables; 07 needs 04's TNT/DeiT models, 08 05's ResT-Lite and ResNet-50-mini.
_TRAINING_CHAPTERS = {"04": "tnt_table1", "05": "rest_table1", "06": "rest_ablation"}
_FIGURE_CHAPTERS = {
    "07": ("tnt_table1", ("tnt_s_mini", "deit_s_mini"), "07_attention_per_image"),
    "08": ("rest_table1", ("rest_lite_mini", "resnet50_mini"), "08_cams_per_image"),
}
_DETECTION_CHAPTERS = {"09": "tnt_table2", "10": "rest_table2"}


def _detector_s(work: dict[str, float], settings: dict[str, Any], gpu: GpuSpec, utilisation: float) -> float:
    """Seconds of one seed of one detector: its epochs of training and validation AP, then the test AP."""
    batch, eval_batch = int(settings["batch_size"]), 16
    steps = math.ceil(int(settings["train_samples"]) / batch)
    train = steps * _step_s(work["train_flops_per_image"] * batch, work["train_ops_per_step"], gpu, utilisation)
    per_eval = _step_s(work["eval_flops_per_image"] * eval_batch, work["eval_ops_per_batch"], gpu, utilisation)
    val, test = (math.ceil(int(settings[f"{s}_samples"]) / eval_batch) for s in ("val", "test"))
    return int(settings["epochs"]) * (train + val * per_eval) + test * per_eval


def chapter_minutes(measured: dict[str, Any], profile: Profile, utilisation: float) -> dict[str, float]:
    """Modelled minutes of the chapters that train or explain models (04-10) at one assumed ``utilisation``.

    Chapters 07-10 read the models of earlier chapters when present (``<chapter>``) and train them on
    a fresh runtime (``<chapter>_fresh_runtime``). 10's ResT-Small/Base classifiers are trained by no
    other chapter: they are in both of 10's numbers.
    """
    gpu = GPUS[profile.name]
    processes = max(1, min(profile.num_workers, gpu.host_cpus))
    rate = measured["data_images_per_s_per_process"] * processes
    data_s = (profile.train_samples + profile.val_samples + profile.test_samples) / rate
    seeds = profile.num_seeds

    def trained_s(table: str, name: str, runs: int = seeds, epochs: int | None = None) -> float:
        run = profile
        if epochs is not None:
            recipe = {**profile.table_recipe.get(table, {}), "epochs": epochs}
            run = dataclasses.replace(profile, table_recipe={**profile.table_recipe, table: recipe})
        return runs * _run_s(measured["models"][f"{table}/{name}"], run, table, gpu, utilisation)

    out: dict[str, float] = {}
    for chapter, table in _TRAINING_CHAPTERS.items():
        out[chapter] = data_s + sum(trained_s(table, n) for n in TABLES[table].models)
    for chapter, (table, names, study) in _FIGURE_CHAPTERS.items():
        work = measured["figures"][study]
        images = profile.diversity_images * seeds
        out[chapter] = data_s + images * _step_s(work["flops"], work["ops"], gpu, utilisation)
        out[f"{chapter}_fresh_runtime"] = out[chapter] + sum(trained_s(table, n) for n in names)
    for chapter, table in _DETECTION_CHAPTERS.items():
        settings = detection_settings(profile, table)
        samples = sum(int(settings[f"{s}_samples"]) for s in ("train", "val", "test"))
        detection_data_s = samples / (measured["detection_images_per_s_per_process"] * processes)
        detectors = measured["detectors"][table]
        present = detection_data_s + sum(seeds * _detector_s(w, settings, gpu, utilisation) for w in detectors.values())
        classifiers = {}  # (table, backbone) -> seeds it is trained for
        for work in detectors.values():
            init_table, backbone, init_seeds = work["init"]
            classifiers[(init_table, backbone)] = init_seeds or seeds
        epochs = settings.get("init_epochs")
        by_a_chapter = {(t, b): b in (*TABLES[t].models, *EXTRA_MODELS.get(t, ())) for t, b in classifiers}
        trained_by_no_chapter = sum(
            trained_s(t, b, runs, epochs) for (t, b), runs in classifiers.items() if not by_a_chapter[(t, b)]
        )
        trained_by_a_chapter = sum(
            trained_s(t, b, runs, epochs) for (t, b), runs in classifiers.items() if by_a_chapter[(t, b)]
        )
        out[chapter] = present + trained_by_no_chapter + (data_s if trained_by_no_chapter else 0.0)
        out[f"{chapter}_fresh_runtime"] = present + data_s + trained_by_no_chapter + trained_by_a_chapter
    return {k: round(v / 60, 1) for k, v in out.items()}


def main(argv: list[str] | None = None) -> int:

    parser = argparse.ArgumentParser(prog="python -m tnt_rest_lite budget-model", description=__doc__.split("\n\n")[0])
    parser.add_argument("--profiles", nargs="*", default=list(GPUS), choices=list(GPUS))
    args = parser.parse_args(argv)
    start = time.perf_counter()
    report: dict[str, Any] = {
        "assumed": {"gpus": {k: dataclasses.asdict(v) for k, v in GPUS.items()}, "utilisation": UTILISATION},
        "probe_batch": PROBE_BATCH,
        "profiles": {},
    }
    for name in args.profiles:
        profile = get_profile(name)
        measured = measure_profile(profile)
        estimate = {f"utilisation_{u:.2f}": chapter_minutes(measured, profile, u) for u in UTILISATION}
        report["profiles"][name] = {"measured": measured, "estimated_minutes": estimate}
        for key, minutes in estimate.items():
            print(f"{name} ({GPUS[name].name}, {key}): {minutes}", flush=True)
    path = store.save_json("budget_model", report, wall_time_s=time.perf_counter() - start)
    print(f"wrote {path} in {time.perf_counter() - start:.0f} s")
    return 0
