"""The training engine: same seed -> same metrics; resume == uninterrupted; checkpoint errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from tnt_rest_lite import create_model
from tnt_rest_lite.data.synthetic import SyntheticShapes
from tnt_rest_lite.train.checkpoint import CHECKPOINT_FORMAT, CheckpointError, load_checkpoint, save_checkpoint
from tnt_rest_lite.train.config import TrainConfig, seed_everything
from tnt_rest_lite.train.curves import plot_history
from tnt_rest_lite.train.evaluate import evaluate
from tnt_rest_lite.train.loop import train

TINY = {"embed_dim": 32, "depth": 1, "num_heads": 2, "patch_size": 8, "drop_path_rate": 0.1}


@pytest.fixture(scope="module")
def splits() -> tuple[SyntheticShapes, SyntheticShapes]:
    return SyntheticShapes(64, 32, split="train", seed=0), SyntheticShapes(40, 32, split="val", seed=0)


def _model(seed: int = 0, **overrides: object) -> torch.nn.Module:
    seed_everything(seed)
    return create_model("deit_s_mini", num_classes=20, img_size=32, **{**TINY, **overrides})


def _config(**overrides: object) -> TrainConfig:
    # mixup, EMA, drop-path and clipping on: every source of randomness and state is exercised
    base = dict(
        epochs=3,
        batch_size=16,
        lr=1e-3,
        warmup_epochs=1,
        mixup_alpha=0.8,
        cutmix_alpha=1.0,
        ema_decay=0.9,
        clip_grad=1.0,
        progress=False,
    )
    return TrainConfig(**{**base, **overrides})


def _numbers(history: dict[str, list[float]]) -> dict[str, list[float]]:
    return {k: v for k, v in history.items() if not k.endswith("time_s")}  # wall times differ run to run


def test_same_seed_same_metrics(splits):
    first = train(_model(), *splits, _config())
    second = train(_model(), *splits, _config())
    assert _numbers(first.history) == _numbers(second.history)
    assert first.metrics == second.metrics
    other = train(_model(), *splits, _config(seed=1))
    assert _numbers(other.history) != _numbers(first.history)
    assert len(first.history["epoch"]) == 3 and set(first.metrics) >= {"top1", "top5", "loss", "ema_top1"}


def test_resume_gives_the_uninterrupted_metrics(splits, tmp_path: Path):
    straight = train(_model(), *splits, _config(checkpoint_dir=str(tmp_path / "straight")))

    class Interrupt(Exception):
        pass

    def stop_after_second_epoch(epoch: int, history: dict) -> None:
        if epoch == 1:
            raise Interrupt

    folder = str(tmp_path / "interrupted")
    with pytest.raises(Interrupt):
        train(_model(), *splits, _config(checkpoint_dir=folder), on_epoch_end=stop_after_second_epoch)
    assert load_checkpoint(Path(folder) / "last.pt")["epoch"] == 1
    # a fresh process would build a fresh model (with another init, even): the checkpoint decides
    resumed = train(_model(seed=123), *splits, _config(checkpoint_dir=folder))
    assert _numbers(resumed.history) == _numbers(straight.history)
    assert resumed.metrics == straight.metrics


def test_checkpoint_is_atomic_and_weights_only(splits, tmp_path: Path):
    train(_model(), *splits, _config(epochs=1, checkpoint_dir=str(tmp_path)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temporary file left behind
    state = torch.load(tmp_path / "last.pt", weights_only=True)  # plain tensors and containers only
    assert state["format"] == CHECKPOINT_FORMAT
    assert {"model", "optimizer", "scheduler", "scaler", "ema", "history", "config", "rng"} <= set(state)


def test_corrupt_checkpoint_names_the_file(splits, tmp_path: Path):
    train(_model(), *splits, _config(epochs=1, checkpoint_dir=str(tmp_path)))
    path = tmp_path / "last.pt"
    path.write_bytes(path.read_bytes()[:1000])  # truncated, as after a crash without atomic writes
    with pytest.raises(CheckpointError, match=str(path)):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="last.pt"):
        train(_model(), *splits, _config(epochs=2, checkpoint_dir=str(tmp_path)))


def test_mismatched_checkpoint_names_file_and_keys(splits, tmp_path: Path):
    train(_model(), *splits, _config(epochs=1, checkpoint_dir=str(tmp_path)))
    path = tmp_path / "last.pt"
    deeper = _model(depth=2)
    with pytest.raises(KeyError, match=r"last\.pt.*missing keys \[.*'blocks\.1\.attn\.q\.weight'"):
        load_checkpoint(path, deeper)
    wider = _model(embed_dim=48, num_heads=2)
    with pytest.raises(ValueError, match=r"last\.pt.*shape mismatch.*cls_token"):
        load_checkpoint(path, wider)
    with pytest.raises(CheckpointError, match=r"another config \(lr: checkpoint 0\.001, now 0\.002\)"):
        train(_model(), *splits, _config(epochs=1, lr=2e-3, checkpoint_dir=str(tmp_path)))


def test_not_a_checkpoint(tmp_path: Path):
    path = save_checkpoint(tmp_path / "other.pt", {"weights": torch.zeros(2)})
    with pytest.raises(CheckpointError, match=r"other\.pt.*not a"):
        load_checkpoint(path)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")


def test_evaluate_counts_top1_top5():
    class Fixed(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.dummy = torch.nn.Parameter(torch.zeros(()))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x  # the "images" are the logits

    logits = torch.tensor([[0.0, 1, 2, 3, 4, 5], [5.0, 4, 3, 2, 1, 0], [1.0, 0, 9, 2, 3, 4]])
    labels = torch.tensor([5, 4, 1])  # right; in the top 5 only; last of 6
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(logits, labels), batch_size=2)
    result = evaluate(Fixed(), loader)
    assert result["top1"] == pytest.approx(100 / 3) and result["top5"] == pytest.approx(200 / 3)
    expected = torch.nn.functional.cross_entropy(logits, labels).item()
    assert result["loss"] == pytest.approx(expected) and result["n"] == 3


def test_sgd_step_recipe_and_learning(splits):
    config = _config(
        epochs=2,
        optimizer="sgd",
        schedule="step",
        step_epochs=1,
        lr=0.05,
        mixup_alpha=0,
        cutmix_alpha=0,
        ema_decay=None,
        warmup_epochs=0,
    )
    result = train(_model(), *splits, config)
    assert result.history["lr"][0] == pytest.approx(0.005)  # decayed once after epoch 1 (x0.1)
    assert result.history["lr"][1] == pytest.approx(0.0005)
    assert result.train_images_per_s > 0 and result.num_params > 0


def test_bad_inputs_are_clear(splits):
    with pytest.raises(ValueError, match="optimizer must be"):
        TrainConfig(optimizer="lamb")
    with pytest.raises(ValueError, match="batch_size must be even"):
        TrainConfig(batch_size=15, mixup_alpha=0.8)
    wrong_head = create_model("deit_s_mini", num_classes=10, img_size=32, **TINY)
    with pytest.raises(ValueError, match="num_classes=20"):
        train(wrong_head, *splits, _config(epochs=1))


def test_plot_history(splits):
    result = train(_model(), *splits, _config(epochs=1))
    fig = plot_history({"a": result.history, "b": result.history}, title="curves")
    assert len(fig.axes) == 2 and len(fig.axes[1].lines) == 2


# ---- experiments and tables: recipes, multi-seed summaries, computed verdicts -------------------


def _summary(test_top1: list[float], chance: float = 5.0) -> dict:
    from tnt_rest_lite.core.format import mean_std

    mean, std = mean_std(test_top1)
    return {"test_top1": test_top1, "test_top1_mean": mean, "test_top1_std": std, "chance_top1": chance}


def test_recipes_and_run_model(splits):
    from tnt_rest_lite.experiments.recipes import recipe
    from tnt_rest_lite.experiments.runs import run_model
    from tnt_rest_lite.experiments.verdicts import accuracy_rows
    from tnt_rest_lite.profiles import get_profile

    profile = get_profile("ci")
    deit, resnet = recipe("deit", profile), recipe("resnet", profile)
    assert (deit.optimizer, deit.schedule, deit.label_smoothing) == ("adamw", "cosine", 0.1)
    assert (resnet.optimizer, resnet.schedule, resnet.label_smoothing, resnet.mixup_alpha) == ("sgd", "step", 0.0, 0.0)
    six = dataclasses.replace(profile, table_recipe={"t": {"epochs": 6, "batch_size": 64}})
    assert recipe("resnet", six, table="t").step_epochs == 2.0  # the step schedule follows the epochs
    assert recipe("resnet", six, table="t").lr == 0.1 * 64 / 256  # and the rate the batch
    with pytest.raises(ValueError, match="Unknown recipe"):
        recipe("lamb", profile)
    per_model = dataclasses.replace(profile, table_recipe={"t": {"lr": {"a": 0.01, "b": 0.2}}})
    assert (
        recipe("resnet", per_model, table="t", model="a").lr,
        recipe("resnet", per_model, table="t", model="b").lr,
    ) == (0.01, 0.2)
    with pytest.raises(ValueError, match=r"sets the rate of table 't' per model \(a, b\); got model 'c'"):
        recipe("resnet", per_model, table="t", model="c")
    tiny = dataclasses.replace(profile, epochs=1, batch_size=16, model_overrides={"deit_s_mini": TINY})
    test_set = SyntheticShapes(24, 32, split="test", seed=0)
    summary = run_model("deit_s_mini", "deit", *splits, test_set, tiny, seeds=[0, 1], progress=False)
    assert len(summary["test_top1"]) == len(summary["val_top1"]) == 2 and summary["test_top1_std"] is not None
    assert summary["test_samples"] == 24 and summary["val_samples"] == 40
    # every test accuracy is a whole number of the 24 test images
    assert all(abs(v * 24 / 100 - round(v * 24 / 100)) < 1e-9 for v in summary["test_top1"])
    assert summary["model_config"]["embed_dim"] == 32 and summary["params"] > 0
    assert summary["description"].startswith("32 px, 8x8 patches (4x4 grid), width 32, 1 blocks")
    assert summary["data_difficulty"] == "standard"  # the fixture's splits
    headers, rows = accuracy_rows({"deit_s_mini": summary}, {"deit_s": {"top1": 79.8}}, {}, {"deit_s_mini": "deit_s"})
    assert headers[2] == "test top-1 ours"
    assert rows[0][3] == "79.80" and rows[0][4] == f"{summary['test_top1_mean'] - 79.8:+.1f}" and rows[0][6] == "–"


def test_profile_sets_the_synthetic_difficulty_and_short_warm_up():
    from tnt_rest_lite.experiments.recipes import recipe
    from tnt_rest_lite.experiments.splits import load_splits
    from tnt_rest_lite.profiles import get_profile

    for name in ("ci", "cpu", "colab"):
        profile = dataclasses.replace(get_profile(name), train_samples=3, val_samples=2, test_samples=4)
        train_set, val_set, test_set = load_splits("synthetic", profile)
        assert train_set.difficulty == val_set.difficulty == test_set.difficulty == profile.data_difficulty
        assert (len(train_set), len(val_set), len(test_set)) == (3, 2, 4)
        assert (train_set.split, val_set.split, test_set.split) == ("train", "val", "test")
    # runs under 10 epochs warm up for half an epoch; longer ones for a tenth of the run
    assert recipe("deit", get_profile("ci")).warmup_epochs == 0.5
    assert recipe("deit", get_profile("colab")).warmup_epochs == get_profile("colab").epochs // 10


def test_tables_are_read_back_from_the_store():
    from tnt_rest_lite.core import store
    from tnt_rest_lite.experiments.verdicts import load_runs

    store.save_json("table_test_model_a", _summary([50.0, 52.0]), seed=[0, 1])
    summaries, provenance = load_runs("table_test", ["model_a"])
    assert summaries["model_a"]["test_top1"] == [50.0, 52.0]
    assert provenance[0].startswith("model_a: profile ci,") and "commit" in provenance[0]
    with pytest.raises(FileNotFoundError, match="table_test_model_b"):
        load_runs("table_test", ["model_b"])


def test_train_step_is_the_unrolled_step(splits):
    from torch.utils.data import DataLoader

    from tnt_rest_lite.train.loop import train_step
    from tnt_rest_lite.train.optim import build_optimizer, build_scheduler
    from tnt_rest_lite.train.tasks import ClassificationTask

    train_set, _ = splits
    config = _config(mixup_alpha=0.0, cutmix_alpha=0.0, clip_grad=0.5)
    batch = next(iter(DataLoader(train_set, batch_size=16)))
    nets = [_model().train(), _model().train()]
    task = ClassificationTask()
    task.prepare(nets[0], train_set, config)
    opts = [build_optimizer(n, config) for n in nets]
    scheds = [build_scheduler(o, config, steps_per_epoch=4) for o in opts]

    seed_everything(1)
    loss, samples = train_step(nets[0], batch, opts[0], scheds[0], config, task=task, num_updates=1)
    seed_everything(1)
    ref = task.criterion(nets[1](batch["image"]), batch["label"])
    opts[1].zero_grad()
    ref.backward()
    torch.nn.utils.clip_grad_norm_(nets[1].parameters(), 0.5)
    opts[1].step()
    scheds[1].step_update(num_updates=1)

    assert samples == 16 and not loss.requires_grad
    torch.testing.assert_close(loss, ref.detach())
    for a, b in zip(nets[0].parameters(), nets[1].parameters(), strict=True):
        torch.testing.assert_close(a, b)
    assert [g["lr"] for g in opts[0].param_groups] == [g["lr"] for g in opts[1].param_groups]


def test_a_non_finite_loss_names_its_update(splits, monkeypatch):
    from tnt_rest_lite.train import loop, tasks

    loop.check_finite(torch.tensor([1.0, 2.0]), first_update=7)  # finite: no error
    with pytest.raises(FloatingPointError, match="loss is nan at update 9"):
        loop.check_finite(torch.tensor([1.0, 2.0, float("nan"), float("inf")]), first_update=7)
    # in the loop: a window of 2 steps, the 3rd update diverges (lr far too high gives inf/nan quickly
    # for some models; a poisoned batch is certain): its number is named, within the window
    monkeypatch.setattr(loop, "FINITE_CHECK_EVERY", 2)
    real = tasks.ClassificationTask.batch_loss
    calls = {"n": 0}

    def poisoned(self, net, batch, device, amp):
        loss, n = real(self, net, batch, device, amp)
        calls["n"] += 1
        return (loss * float("nan") if calls["n"] == 3 else loss), n

    monkeypatch.setattr(tasks.ClassificationTask, "batch_loss", poisoned)
    with pytest.raises(FloatingPointError, match="at update 3"):
        train(_model(), *splits, _config(epochs=2, ema_decay=None))


def _count_host_reads(monkeypatch) -> dict[str, int]:
    """Count our code's reads of a tensor's value on the host (bool(), .item(), .tolist()): each
    waits for the GPU there. torch's own reads (AdamW's step counter, a CPU tensor even on CUDA, and
    the samplers' index lists) are not device syncs and are left out."""
    import sys

    package = str(Path(__file__).resolve().parents[1] / "tnt_rest_lite")
    counts = {"n": 0}
    for name in ("__bool__", "item", "tolist"):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, **kwargs):
            if sys._getframe(1).f_code.co_filename.startswith(package):
                counts["n"] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    return counts


def test_no_host_sync_per_step(monkeypatch):
    # the same epoch count with 2 and with 8 steps per epoch: the host reads must not grow with the steps
    val = SyntheticShapes(16, 32, split="val", seed=0)
    reads = {}
    for steps in (2, 8):
        train_set = SyntheticShapes(8 * steps, 32, split="train", seed=0)
        train_set.materialize()
        val.materialize()
        model = _model()
        with monkeypatch.context() as m:
            counts = _count_host_reads(m)
            train(
                model,
                train_set,
                val,
                _config(epochs=1, batch_size=8, ema_decay=None, mixup_alpha=0.0, cutmix_alpha=0.0),
            )
        reads[steps] = counts["n"]
    assert reads[2] == reads[8], f"host reads grow with the steps: {reads} (a sync per step)"


def test_amp_and_grad_scaler_path_on_cpu(splits, tmp_path: Path):
    # the CUDA-only path (float16 autocast + GradScaler) run on the CPU
    config = _config(epochs=2, amp_on_cpu=True, checkpoint_dir=str(tmp_path))
    model = _model()
    result = train(model, *splits, config)
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["scaler"] and state["scaler"]["scale"] > 0  # an enabled scaler kept its scale
    assert all(torch.isfinite(torch.tensor(v)).all() for v in _numbers(result.history).values())
    # validation is evaluated in float32, the precision of the test split: the stored metrics equal a
    # float32 evaluation of the final model (under autocast they would differ in the loss)
    from torch.utils.data import DataLoader

    fp32 = evaluate(model, DataLoader(splits[1], batch_size=2 * config.batch_size))
    assert result.metrics["loss"] == pytest.approx(fp32["loss"], rel=1e-6, abs=1e-7)
    assert result.metrics["top1"] == fp32["top1"]
    # and the autocast really runs in float16 on this path
    from tnt_rest_lite.train.tasks import ClassificationTask

    task = ClassificationTask()
    task.prepare(model, splits[0], config)
    seen = {}
    handle = model.head.register_forward_hook(lambda mod, inp, out: seen.update(dtype=out.dtype))
    task.batch_loss(model, next(iter(DataLoader(splits[0], batch_size=4))), torch.device("cpu"), True)
    handle.remove()
    assert seen["dtype"] == torch.float16


def test_empty_scaler_state_resumes_into_an_enabled_scaler(splits, tmp_path: Path):
    # a run written without AMP (a CPU run: the scaler saves {}) resumed where AMP is on (a GPU;
    # here amp_on_cpu stands in for it): torch's GradScaler.load_state_dict({}) raises, we start a fresh scale
    def stop(epoch: int, history: dict) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(_model(), *splits, _config(epochs=2, checkpoint_dir=str(tmp_path)), on_epoch_end=stop)
    assert load_checkpoint(tmp_path / "last.pt")["scaler"] == {}
    resumed = train(_model(), *splits, _config(epochs=2, checkpoint_dir=str(tmp_path), amp_on_cpu=True))
    assert resumed.history["epoch"] == [1, 2]
    assert load_checkpoint(tmp_path / "last.pt")["scaler"]["scale"] > 0


def test_run_model_checkpoints_every_epoch_and_resumes(splits, tmp_path: Path, monkeypatch):
    # a Colab disconnect in the middle of a run: re-running resumes from the last epoch and ends
    # where an uninterrupted run ends; a finished run is read back, not retrained
    from tnt_rest_lite.experiments import recipes, runs, weights
    from tnt_rest_lite.profiles import get_profile

    tiny = dataclasses.replace(get_profile("ci"), epochs=2, batch_size=16, model_overrides={"deit_s_mini": TINY})
    test_set = SyntheticShapes(24, 32, split="test", seed=0)

    def run(root: Path) -> dict:
        monkeypatch.setenv("TNT_REST_CHECKPOINTS", str(root))
        return runs.run_model("deit_s_mini", "deit", *splits, test_set, tiny, seeds=[0], progress=False, table="t")

    whole = run(tmp_path / "whole")
    assert whole["resumed"] == [False]
    real_train = runs.train

    def interrupted(*args, **kwargs):
        def stop(epoch: int, history: dict) -> None:
            raise KeyboardInterrupt  # the runtime goes away after the first epoch's checkpoint

        return real_train(*args, **kwargs, on_epoch_end=stop)

    monkeypatch.setattr(runs, "train", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "cut")
    monkeypatch.setattr(runs, "train", real_train)
    folders = list((tmp_path / "cut" / "ci" / "runs").iterdir())
    assert len(folders) == 1 and folders[0].name.startswith("t_deit_s_mini_seed0_")
    assert load_checkpoint(folders[0] / "last.pt")["epoch"] == 0
    resumed = run(tmp_path / "cut")
    assert resumed["resumed"] == [True]
    assert resumed["test_top1"] == whole["test_top1"] and resumed["val_top1"] == whole["val_top1"]
    assert _numbers(resumed["histories"][0]) == _numbers(whole["histories"][0])
    again = run(tmp_path / "cut")  # finished: read back from its checkpoint, the same numbers
    assert again["resumed"] == [True] and again["test_top1"] == whole["test_top1"]
    # another recipe (here: another batch size) gets its own folder, never another run's checkpoint
    other = recipes.recipe("deit", dataclasses.replace(tiny, batch_size=8), 0)
    assert weights.run_checkpoint_dir("t", "deit_s_mini", 0, other, tiny) != folders[0]


def test_foreach_is_the_same_update_as_one_kernel_per_tensor(splits):
    """foreach=True (the default: one multi-tensor kernel) trains the numbers foreach=False does, to rounding."""
    for optimizer in ("adamw", "sgd"):
        fast = train(_model(), *splits, _config(epochs=2, optimizer=optimizer))
        slow = train(_model(), *splits, _config(epochs=2, optimizer=optimizer, foreach=False))
        for key in ("train_loss", "val_loss"):
            assert fast.history[key] == pytest.approx(slow.history[key], rel=1e-4, abs=1e-5), (optimizer, key)
    assert TrainConfig().foreach is True
