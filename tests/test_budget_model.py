"""The no-GPU budget model: what it counts is exact on known operations, and its sums follow its formula."""

from __future__ import annotations

import math

import pytest
import torch

from tnt_rest_lite.experiments import budget_model
from tnt_rest_lite.experiments.tables import TABLES
from tnt_rest_lite.profiles import get_profile


def test_count_work_counts_flops_and_dispatched_ops():
    a, b = torch.randn(2, 3), torch.randn(3, 4)
    work = budget_model.count_work(lambda: (a @ b).relu())
    assert work["flops"] == 2 * 2 * 3 * 4  # 2 FLOPs per multiply-add; relu counts none
    assert work["ops"] == 2  # mm, relu


def test_attention_products_are_counted_on_the_cpu_too():
    import torch.nn.functional as F

    q = torch.randn(2, 4, 64, 32, requires_grad=True)  # batch, heads, tokens, head width
    forward = budget_model.count_work(lambda: F.scaled_dot_product_attention(q, q, q))
    products = 2 * 2 * (2 * 4 * 64 * 64 * 32)  # QK^T and AV, each b h n n d multiply-adds of 2 FLOPs
    assert forward["flops"] == products
    both = budget_model.count_work(lambda: F.scaled_dot_product_attention(q, q, q).sum().backward())
    assert both["flops"] == 3.5 * products  # torch counts five backward products: QK^T recomputed, dV, dP, dQ, dK


def test_training_step_work_scales_with_the_model():
    profile = get_profile("ci")
    small = budget_model._classifier_work("deit_s_mini", "tnt_table1", profile)
    tnt = budget_model._classifier_work("tnt_s_mini", "tnt_table1", profile)
    # a training step costs about 3 forward passes (forward, two backward products per weight)
    assert 2.5 < small["train_flops_per_image"] / small["eval_flops_per_image"] < 3.5
    assert tnt["train_ops_per_step"] > small["train_ops_per_step"]  # TNT adds the inner (pixel) blocks
    again = budget_model._classifier_work("deit_s_mini", "tnt_table1", profile)
    assert again == small  # no skipped (overflowing) step changes what is counted


def _measured(flops: float, ops: float) -> dict:
    work = {
        "train_flops_per_image": flops,
        "train_ops_per_step": ops,
        "eval_flops_per_image": flops / 3,
        "eval_ops_per_batch": ops / 3,
    }
    from tnt_rest_lite.experiments.gpu_check import EXTRA_MODELS
    from tnt_rest_lite.experiments.tables import TABLES

    models = {f"{t}/{n}": work for t, s in TABLES.items() for n in (*s.models, *EXTRA_MODELS.get(t, ()))}
    models.update({f"rest_table1/{n}": work for n in ("rest_small_mini", "rest_base_mini")})
    figure = {"flops": flops, "ops": ops}
    from tnt_rest_lite.experiments.detection import DETECTION_TABLES

    detectors = {
        t: {d.key: {**work, "init": [d.init_table, d.backbone, d.init_seeds]} for d in s.detectors}
        for t, s in DETECTION_TABLES.items()
    }
    return {
        "models": models,
        "detectors": detectors,
        "figures": {"07_attention_per_image": figure, "08_cams_per_image": figure},
        "data_images_per_s_per_process": 1e12,
        "detection_images_per_s_per_process": 1e12,
    }


def test_launch_bound_chapter_follows_the_formula():
    profile = get_profile("colab")
    gpu = budget_model.GPUS["colab"]
    ops = 1000.0
    minutes = budget_model.chapter_minutes(_measured(1.0, ops), profile, 0.1)  # 1 FLOP: every step launch-bound
    batch = profile.batch_size_for("tnt_table1")
    steps = math.ceil(profile.train_samples / batch)
    evals = math.ceil(profile.val_samples / (2 * batch))
    tests = math.ceil(profile.test_samples / (2 * batch))
    per_run = profile.epochs_for("tnt_table1") * (steps * ops + evals * ops / 3) + tests * ops / 3
    models = len(TABLES["tnt_table1"].models)  # Table 1's three and Table 2's slim ResNet-50 backbone
    expected = models * profile.num_seeds * per_run * gpu.launch_us * 1e-6 / 60
    assert minutes["04"] == pytest.approx(expected, abs=0.06)
    # a fresh runtime adds the training of the models a figure or detection chapter reads from an earlier
    # chapter; 10's classifiers (ResT-Small/Base) come from no earlier chapter: 10 trains them either way
    for chapter in ("07", "08", "09"):
        assert minutes[f"{chapter}_fresh_runtime"] > minutes[chapter]
    assert minutes["10_fresh_runtime"] == minutes["10"]


def test_more_utilisation_is_never_slower():
    profile = get_profile("full")
    measured = _measured(5e9, 2000.0)
    low, high = (budget_model.chapter_minutes(measured, profile, u) for u in budget_model.UTILISATION)
    assert all(high[k] <= low[k] for k in low)
    assert low["04"] > high["04"]  # FLOP-bound at this size: the assumed utilisation matters
