"""Inference throughput and peak memory: ResT-Lite with EMSA vs with plain MSA (ResT supp. Table 1).

``python -m tnt_rest_lite bench --models rest_lite rest_lite_msa --image-size 224``

For every model and precision it builds the model (random weights: speed does not depend on
them), runs ``warmup`` untimed forward passes, then ``repeats`` timed ones
(``torch.utils.benchmark.Timer``, :func:`repeat_times`), and reports the median as images per
second. The Timer synchronises the GPU before reading its clock (kernels run asynchronously),
and on CUDA peak memory is ``torch.cuda.max_memory_allocated`` above what was allocated before
the run (the model's weights), i.e. the activations and workspace of one forward pass.

On the CPU the allocator keeps no peak statistic, so the first (untimed) pass runs under the
PyTorch profiler with memory profiling: the peak of the running sum of its allocation and free
events is the largest number of bytes PyTorch's CPU allocator had handed out at one time, the
CPU analogue of ``max_memory_allocated``. It leaves out memory that libraries keep outside
PyTorch's allocator (e.g. oneDNN scratch space) and the allocator's own slack.

If a batch does not fit (CUDA out of memory, or on the CPU a peak above ``--memory-budget-mb``),
the batch is halved until it fits and the batch actually used is reported. The authors' MSA
writes out a 3136 x 3136 score matrix per image in stage 1 at 224 px, which is why they could
only run 64 images per V100. Ours takes PyTorch's fused attention kernel whenever there is no
head transform (MSA everywhere, EMSA's one-head stage 1), which never materialises that matrix:
its time is still quadratic in the tokens, its memory is not.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import statistics
import sys
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch

from ..core.store import save_json, stopwatch
from ..models._registry import create_model
from ..models.trl_rest import ResT
from ..profiles import get_profile
from .conventions import attention_geometry

__all__ = [
    "MemoryBudgetExceeded",
    "is_out_of_memory",
    "largest_fitting_batch",
    "autocast_dtype",
    "measure",
    "repeat_times",
    "mean_time",
    "run_benchmark",
    "format_table",
    "main",
]


T = TypeVar("T")
DTYPES = ("float32", "autocast")


class MemoryBudgetExceeded(RuntimeError):
    """A CPU run needed more memory than the budget allows (treated like CUDA's out-of-memory)."""


def is_out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` means "this batch does not fit" (CUDA OOM, CPU allocation failure, budget)."""
    if isinstance(err, (torch.OutOfMemoryError, MemoryBudgetExceeded, MemoryError)):
        return True
    # the CPU allocator reports a failed allocation as a RuntimeError
    return isinstance(err, RuntimeError) and "DefaultCPUAllocator: can't allocate memory" in str(err)


def largest_fitting_batch(run: Callable[[int], T], batch: int) -> tuple[int, T]:
    """Call ``run(batch)``, halving ``batch`` on out-of-memory until it fits.

    Returns ``(batch that fitted, its result)``; if even one image does not fit, the last
    out-of-memory error is raised.
    """
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    while True:
        try:
            return batch, run(batch)
        except Exception as err:
            if not is_out_of_memory(err) or batch == 1:
                raise
        # outside the except block the traceback, and the tensors its frames hold, are gone
        _release_memory()
        batch //= 2


def _release_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def autocast_dtype(device: torch.device) -> torch.dtype:
    """Autocast's low precision: float16 on CUDA (tensor cores on every CUDA GPU), bfloat16 on CPU."""
    return torch.float16 if device.type == "cuda" else torch.bfloat16


def _cpu_peak_bytes(events: Any) -> int:
    """Peak of the running sum of the profiler's ``[memory]`` events (allocations +, frees -)."""
    deltas = sorted((e.start_ns(), e.nbytes()) for e in events if e.name() == "[memory]")
    live = peak = 0
    for _, nbytes in deltas:
        live += nbytes
        peak = max(peak, live)
    return peak


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null: the profiler's C++ side logs every start and stop there.

    Python exceptions still propagate; only text written by native code is dropped.
    """
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no file descriptor 2 (some embedded interpreters): nothing to silence
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@contextlib.contextmanager
def _peak_memory(device: torch.device) -> Iterator[dict[str, Any]]:
    """Yield a dict that holds ``mb`` (peak memory of the block, MiB) and ``kind`` afterwards."""
    out: dict[str, Any] = {}
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        yield out
        torch.cuda.synchronize(device)
        out["mb"] = (torch.cuda.max_memory_allocated(device) - before) / 2**20
        out["kind"] = "CUDA max_memory_allocated above the weights"
        return
    from torch.profiler import ProfilerActivity, profile

    with _native_stderr_silenced(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        yield out
    out["mb"] = _cpu_peak_bytes(prof.profiler.kineto_results.events()) / 2**20
    out["kind"] = "CPU: peak bytes held from PyTorch's allocator (profiler memory events)"


def measure(
    model: torch.nn.Module,
    batch: int,
    image_size: int,
    device: torch.device,
    dtype: str = "float32",
    warmup: int = 1,
    repeats: int = 3,
    memory_budget_mb: float | None = None,
) -> dict[str, Any]:
    """Time ``repeats`` forward passes of one batch after ``warmup`` untimed ones.

    Returns ``{"batch", "times_s", "median_s", "images_per_s", "peak_memory_mb", "memory_kind"}``.
    Raises :class:`MemoryBudgetExceeded` if a CPU run's peak passes ``memory_budget_mb``.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got '{dtype}'")
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
    model = model.to(device).eval()
    x = torch.randn(batch, 3, image_size, image_size, device=device)
    precision = (
        torch.autocast(device.type, dtype=autocast_dtype(device)) if dtype == "autocast" else contextlib.nullcontext()
    )

    def forward() -> None:
        with torch.inference_mode(), precision:
            model(x)

    with _peak_memory(device) as memory:
        forward()  # the first pass (also a warm-up) is the one whose peak we keep
    if device.type == "cpu" and memory_budget_mb is not None and memory["mb"] > memory_budget_mb:
        raise MemoryBudgetExceeded(
            f"batch {batch} needed {memory['mb']:.0f} MiB, above the budget of {memory_budget_mb:.0f} MiB"
        )
    for _ in range(max(warmup - 1, 0)):
        forward()
    times = repeat_times(forward, repeats)
    median = statistics.median(times)
    return {
        "batch": batch,
        "times_s": times,
        "median_s": median,
        "images_per_s": batch / median,
        "peak_memory_mb": memory["mb"],
        "memory_kind": memory["kind"],
    }


def repeat_times(fn: Callable[[], Any], repeats: int) -> list[float]:
    """Seconds of each of ``repeats`` calls of ``fn``, timed by ``torch.utils.benchmark.Timer``.

    Each timed call follows the Timer's own two untimed ones, and the Timer synchronises the
    accelerator before reading its clock (kernels run asynchronously). It runs with the current
    ``torch.get_num_threads()`` (the Timer's default would be one thread).
    """
    from torch.utils.benchmark import Timer

    timer = Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    return [timer.timeit(number=1).times[0] for _ in range(repeats)]


def mean_time(fn: Callable[[], Any], number: int) -> float:
    """Mean seconds of ``number`` back-to-back calls of ``fn``, timed as one block by
    ``torch.utils.benchmark.Timer`` after its own ``max(number // 100, 2)`` untimed calls (a warm-up),
    synchronising the accelerator and with the current ``torch.get_num_threads()``."""
    from torch.utils.benchmark import Timer

    timer = Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    return timer.timeit(number=number).mean


def _pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but no CUDA device is available")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got '{device}'")
    return torch.device(device)


def score_matrix_mb(model: torch.nn.Module, batch: int, image_size: int, element_bytes: int = 4) -> float | None:
    """MiB of the attention score matrices one forward pass of ``batch`` images computes (ResT models).

    Each block's attention scores ``B x heads x N x N'`` numbers; the sizes are read from one forward
    pass (:func:`tnt_rest_lite.measure.conventions.attention_geometry`), not from a formula. EMSA must write these
    matrices (its head transform convolves them); the fused kernel our MSA runs never does, which is
    why the allocator's peak is the same for both, while the authors' MSA wrote all of them. ``None``
    for models that are not ResT.
    """

    if not isinstance(model, ResT):
        return None
    depths = model.config.depths
    elements = sum(
        row["heads"] * row["score_elements"] * depths[row["stage"] - 1] for row in attention_geometry(model, image_size)
    )
    return batch * elements * element_bytes / 2**20


def run_benchmark(
    models: tuple[str, ...] = ("rest_lite", "rest_lite_msa"),
    image_size: int = 224,
    batch: int | None = None,
    repeats: int | None = None,
    warmup: int = 1,
    device: str = "auto",
    dtypes: tuple[str, ...] = DTYPES,
    memory_budget_mb: float | None = 8192,
    seed: int = 0,
) -> dict[str, Any]:
    """Benchmark each model in each precision; batch and repeats default to the active profile's.

    Returns ``{"settings": ..., "rows": [...], "ratios": {dtype: images/s of models[0] / of models[1]}}``;
    each row is :func:`measure`'s dict plus ``model``, ``dtype``, ``requested_batch``.
    """
    profile = get_profile()
    batch = batch or profile.bench_batch
    repeats = repeats or profile.bench_repeats
    dev = _pick_device(device)
    torch.manual_seed(seed)
    rows = []
    for name in models:
        model = create_model(name)
        for dtype in dtypes:

            def run(b: int, model: torch.nn.Module = model, dtype: str = dtype) -> dict[str, Any]:
                return measure(model, b, image_size, dev, dtype, warmup, repeats, memory_budget_mb)

            _, result = largest_fitting_batch(run, batch)
            element_bytes = 4 if dtype == "float32" else torch.finfo(autocast_dtype(dev)).bits // 8
            scores = score_matrix_mb(model, result["batch"], image_size, element_bytes)
            rows.append(
                {"model": name, "dtype": dtype, "requested_batch": batch, **result, "score_matrices_mb": scores}
            )
        model = None  # free the weights before the next model is built
        _release_memory()
    ratios = {}
    if len(models) >= 2:
        for dtype in dtypes:
            speed = {r["model"]: r["images_per_s"] for r in rows if r["dtype"] == dtype}
            ratios[dtype] = speed[models[0]] / speed[models[1]]
    settings = {
        "models": list(models),
        "image_size": image_size,
        "batch": batch,
        "repeats": repeats,
        "warmup": warmup,
        "device": str(dev),
        "autocast_dtype": str(autocast_dtype(dev)).replace("torch.", ""),
        "memory_budget_mb": memory_budget_mb if dev.type == "cpu" else None,
        "torch_threads": torch.get_num_threads(),
    }
    return {"settings": settings, "rows": rows, "ratios": ratios}


def format_table(result: dict[str, Any]) -> str:
    """A plain-text table of :func:`run_benchmark`'s rows and the speed ratio."""
    lines = [
        f"{'model':<16}{'precision':<11}{'batch':>6}{'median s':>10}{'img/s':>9}{'peak MiB':>10}{'scores MiB':>12}"
    ]
    for r in result["rows"]:
        batch = f"{r['batch']}" + ("*" if r["batch"] != r["requested_batch"] else "")
        scores = r.get("score_matrices_mb")
        lines.append(
            f"{r['model']:<16}{r['dtype']:<11}{batch:>6}{r['median_s']:>10.3f}"
            f"{r['images_per_s']:>9.1f}{r['peak_memory_mb']:>10.0f}{'–' if scores is None else f'{scores:.0f}':>12}"
        )
    models = result["settings"]["models"]
    for dtype, ratio in result["ratios"].items():
        lines.append(f"throughput {models[0]} / {models[1]} ({dtype}): {ratio:.2f}x")
    if any(r["batch"] != r["requested_batch"] for r in result["rows"]):
        lines.append("* largest batch that fitted")
    if result["rows"]:
        lines.append(f"peak: {result['rows'][0]['memory_kind']}")
        lines.append(
            "scores: the attention score matrices of one forward pass (B x heads x N x N' per block), which EMSA "
            "writes and the fused kernel of our MSA does not (the authors' MSA did)"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point (``python -m tnt_rest_lite bench ...``)."""
    profile = get_profile()
    parser = argparse.ArgumentParser(prog="python -m tnt_rest_lite bench", description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["rest_lite", "rest_lite_msa"])
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=profile.bench_batch, help="batch to try first")
    parser.add_argument("--repeats", type=int, default=profile.bench_repeats, help="timed runs (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs first")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--dtype", nargs="+", default=list(DTYPES), choices=list(DTYPES))
    parser.add_argument("--memory-budget-mb", type=float, default=8192, help="CPU only: larger peaks count as OOM")
    parser.add_argument("--name", default="rest_throughput", help="name of the result in the results store")
    parser.add_argument("--no-save", action="store_true", help="print only, do not write the results store")
    args = parser.parse_args(argv)

    with stopwatch() as clock:
        result = run_benchmark(
            tuple(args.models),
            args.image_size,
            args.batch,
            args.repeats,
            args.warmup,
            args.device,
            tuple(args.dtype),
            args.memory_budget_mb,
        )
    print(format_table(result))
    if not args.no_save:
        path = save_json(args.name, result, seed=0, wall_time_s=clock["s"], device=result["settings"]["device"])
        print(f"saved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
