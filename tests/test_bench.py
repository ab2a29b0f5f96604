"""The throughput benchmark: structure of what it returns and stores, and the batch search on OOM."""

from __future__ import annotations

import pytest
import torch

from tnt_rest_lite.core.store import load_json
from tnt_rest_lite.measure import bench
from tnt_rest_lite.models._registry import create_model

ROW_KEYS = {
    "model",
    "dtype",
    "requested_batch",
    "score_matrices_mb",
    "batch",
    "times_s",
    "median_s",
    "images_per_s",
    "peak_memory_mb",
    "memory_kind",
}


def test_run_benchmark_structure() -> None:
    result = bench.run_benchmark(
        ("rest_lite_mini", "rest_lite_msa_mini"), image_size=64, batch=2, repeats=2, warmup=1, device="cpu"
    )
    assert result["settings"]["device"] == "cpu"
    assert result["settings"]["autocast_dtype"] == "bfloat16"
    assert [(r["model"], r["dtype"]) for r in result["rows"]] == [
        ("rest_lite_mini", "float32"),
        ("rest_lite_mini", "autocast"),
        ("rest_lite_msa_mini", "float32"),
        ("rest_lite_msa_mini", "autocast"),
    ]
    for row in result["rows"]:
        assert set(row) == ROW_KEYS
        assert row["batch"] == row["requested_batch"] == 2
        assert len(row["times_s"]) == 2 and row["median_s"] > 0
        assert row["images_per_s"] == pytest.approx(2 / row["median_s"])
    speed = {(r["model"], r["dtype"]): r["images_per_s"] for r in result["rows"]}
    for dtype in ("float32", "autocast"):
        expected = speed[("rest_lite_mini", dtype)] / speed[("rest_lite_msa_mini", dtype)]
        assert result["ratios"][dtype] == pytest.approx(expected)
    table = bench.format_table(result)
    assert "rest_lite_mini / rest_lite_msa_mini (float32)" in table


def test_main_writes_the_results_store(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--models", "rest_lite_mini", "--image-size", "48", "--batch", "2", "--repeats", "1"]
    argv += ["--device", "cpu", "--dtype", "float32", "--name", "bench_test"]
    assert bench.main(argv) == 0
    assert "rest_lite_mini" in capsys.readouterr().out
    stored = load_json("bench_test")
    assert stored["provenance"]["profile"] == "ci"
    assert stored["provenance"]["wall_time_s"] > 0
    assert stored["data"]["settings"]["image_size"] == 48
    assert set(stored["data"]["rows"][0]) == ROW_KEYS
    assert stored["data"]["ratios"] == {}  # one model: nothing to compare


def test_cli_routes_bench_options() -> None:
    from tnt_rest_lite.__main__ import main

    argv = ["bench", "--models", "rest_lite_mini", "--image-size", "40", "--batch", "1", "--repeats", "1"]
    assert main(argv + ["--device", "cpu", "--dtype", "float32", "--no-save"]) == 0


def test_largest_fitting_batch_halves_on_out_of_memory() -> None:
    tried = []

    def run(batch: int) -> str:
        tried.append(batch)
        if batch > 5:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return f"ran {batch}"

    assert bench.largest_fitting_batch(run, 16) == (4, "ran 4")
    assert tried == [16, 8, 4]


def test_largest_fitting_batch_gives_up_at_one_and_passes_other_errors() -> None:
    def never_fits(batch: int) -> None:
        raise bench.MemoryBudgetExceeded(f"batch {batch} too big")

    with pytest.raises(bench.MemoryBudgetExceeded, match="batch 1"):
        bench.largest_fitting_batch(never_fits, 4)

    def broken(batch: int) -> None:
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        bench.largest_fitting_batch(broken, 4)
    with pytest.raises(ValueError, match="batch must be"):
        bench.largest_fitting_batch(broken, 0)


def test_cpu_memory_budget_counts_as_out_of_memory() -> None:
    model = create_model("rest_lite_msa_mini")
    with pytest.raises(bench.MemoryBudgetExceeded, match="above the budget"):
        bench.measure(model, 4, 64, torch.device("cpu"), repeats=1, memory_budget_mb=-1)
    assert bench.is_out_of_memory(bench.MemoryBudgetExceeded("x"))
    assert bench.is_out_of_memory(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried"))
    assert not bench.is_out_of_memory(RuntimeError("size mismatch"))


def test_bad_arguments_are_clear_errors() -> None:
    model = create_model("rest_lite_mini")
    with pytest.raises(ValueError, match="dtype must be one of"):
        bench.measure(model, 1, 32, torch.device("cpu"), dtype="float16")
    with pytest.raises(ValueError, match="repeats >= 1"):
        bench.measure(model, 1, 32, torch.device("cpu"), repeats=0)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            bench.run_benchmark(("rest_lite_mini",), device="cuda")


class _FakeEvent:
    def __init__(self, start: int, nbytes: int) -> None:
        self._start, self._nbytes = start, nbytes

    def name(self) -> str:
        return "[memory]"

    def start_ns(self) -> int:
        return self._start

    def nbytes(self) -> int:
        return self._nbytes


def test_cpu_peak_is_the_running_sum_of_allocations_and_frees() -> None:
    # out of time order on purpose: allocate 10, allocate 5, free 10, allocate 7 -> peak 15
    events = [_FakeEvent(3, -10), _FakeEvent(1, 10), _FakeEvent(4, 7), _FakeEvent(2, 5)]
    assert bench._cpu_peak_bytes(events) == 15


def test_cpu_peak_memory_covers_the_activations() -> None:
    model = create_model("rest_lite_mini")
    row = bench.measure(model, 2, 64, torch.device("cpu"), repeats=1)
    stem_hidden = 2 * 16 * 32 * 32 * 4  # the first stem conv's float32 output alone, in bytes
    assert row["peak_memory_mb"] * 2**20 > stem_hidden
    assert "profiler" in row["memory_kind"]


def test_score_matrices_are_what_differs_between_emsa_and_msa() -> None:
    from tnt_rest_lite import create_model
    from tnt_rest_lite.measure.bench import score_matrix_mb

    # ResT-Lite at 224 px: stages of N = 56^2, 28^2, 14^2, 7^2 tokens, 1/2/4/8 heads, 2 blocks each;
    # MSA attends over all N tokens, EMSA over N / s^2 with s = 8, 4, 2, 1 (49 keys in every stage)
    tokens, heads = [3136, 784, 196, 49], [1, 2, 4, 8]
    msa = 2 * sum(h * n * n for h, n in zip(heads, tokens, strict=True)) * 4 / 2**20
    emsa = 2 * sum(h * n * 49 for h, n in zip(heads, tokens, strict=True)) * 4 / 2**20
    assert score_matrix_mb(create_model("rest_lite_msa"), 1, 224) == pytest.approx(msa)
    assert score_matrix_mb(create_model("rest_lite"), 1, 224) == pytest.approx(emsa)
    assert score_matrix_mb(create_model("rest_lite"), 16, 224, element_bytes=2) == pytest.approx(emsa * 8)
    assert score_matrix_mb(create_model("deit_s_mini"), 1, 32) is None


def test_repeat_times_times_each_call_with_the_threads_in_use() -> None:
    threads = []
    times = bench.repeat_times(lambda: threads.append(torch.get_num_threads()), 4)
    assert len(times) == 4 and all(t >= 0 for t in times)
    assert len(threads) == 4 * 3  # each timed call follows the Timer's two untimed ones
    assert set(threads) == {torch.get_num_threads()}  # not the Timer's default of one thread


def test_compare_roi_align_keeps_its_fields() -> None:
    from tnt_rest_lite.detection.roi_align import compare_roi_align

    features = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    rois = torch.tensor([[0.0, 1.0, 1.0, 9.0, 12.0], [0.0, 4.0, 2.0, 15.0, 8.0]])
    check = compare_roi_align(features, rois, output_size=3, spatial_scale=1.0, repeats=2)
    assert set(check) == {"max_value_difference", "max_gradient_difference", "torchvision_s", "separable_s"}
    assert check["max_value_difference"] < 1e-5 and check["max_gradient_difference"] < 1e-5
    assert check["torchvision_s"] > 0 and check["separable_s"] > 0
