"""gpu-check runs its whole path on the CPU (``--device cpu``): every model's AMP step, one seed of each
training table, the figure path, and one report with per-chapter estimates. Its times mean nothing here."""

from __future__ import annotations

import pytest

from tnt_rest_lite.__main__ import main
from tnt_rest_lite.core import store


def test_gpu_check_refuses_without_a_gpu(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit, match="no CUDA device"):
        main(["gpu-check"])


def test_gpu_check_path_on_cpu(capsys):
    assert (
        main(
            ["gpu-check", "--device", "cpu", "--steps", "1", "--batch-size", "4", "--num-workers", "0"]
            + ["--figure-images", "1", "--data-samples", "16", "--profiles", "colab"]
        )
        == 0
    )
    report = store.load_json("gpu_check")
    assert report["provenance"]["steps"] == 1
    # colab only: full's path is the same code at 112 px (its geometry is tested in test_experiments), ~4x slower here
    for name, size in (("colab", 32),):
        entry = report["data"]["profiles"][name]
        models = {r["model"] for r in entry["steps"]}
        assert {
            "tnt_s_mini",
            "tnt_s_se_mini",
            "deit_s_mini",
            "rest_lite_mini",
            "rest_lite_msa_mini",
            "resnet18_mini",
            "resnet50_mini",
        } <= models
        assert all(r["image_size"] == size and r["loss_finite"] and r["step_s"] > 0 for r in entry["steps"])
        assert {r["table"] for r in entry["loops"]} == {"tnt_table1", "rest_table1", "rest_ablation"}
        minutes = entry["estimated_minutes"]
        assert set(minutes) >= {"04", "05", "06", "07_if_models_present", "08_if_models_present", "08_fresh_runtime"}
        assert all(m > 0 for m in minutes.values())
    assert "estimated minutes per chapter" in capsys.readouterr().out
