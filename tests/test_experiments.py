"""The small-scale experiments: faithful small models in every profile, verdicts, splits, the fast data path."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from tnt_rest_lite import create_model
from tnt_rest_lite.data.datasets import build_dataset
from tnt_rest_lite.data.synthetic import SyntheticShapes
from tnt_rest_lite.experiments.recipes import attention_check, build_model, recipe
from tnt_rest_lite.experiments.runner import Experiment, run_table
from tnt_rest_lite.experiments.tables import TABLES, table_experiment
from tnt_rest_lite.experiments.verdicts import VERDICTS, verdict, verdict_rows, verdict_sentence, verdict_state
from tnt_rest_lite.measure.complexity import count_params
from tnt_rest_lite.measure.conventions import attention_geometry
from tnt_rest_lite.measure.stats import welch_interval
from tnt_rest_lite.profiles import PROFILES
from tnt_rest_lite.train.config import TrainConfig
from tnt_rest_lite.train.distributed import distributed_info
from tnt_rest_lite.train.loaders import build_train_loader as _train_loader
from tnt_rest_lite.train.loaders import build_val_loader as _val_loader
from tnt_rest_lite.train.loop import train

TRAINED = sorted({(model, spec.recipe) for spec in TABLES.values() for model in spec.models})


# ---- every trained model is still the model, at every profile's image size ------------------


@pytest.mark.parametrize("profile", list(PROFILES))
@pytest.mark.parametrize("model", sorted({m for m, _ in TRAINED}))
def test_every_attention_attends_and_learns(profile: str, model: str) -> None:
    p = PROFILES[profile]
    net = build_model(model, 20, p.image_size, p)
    records = attention_check(net, p.image_size, batch=2)
    if model.startswith("resnet"):
        assert records == []  # no attention: nothing to check
        return
    assert records, f"{model} has no attention modules"
    for r in records:
        assert r["keys"] >= 4, f"{profile}/{model}/{r['module']} attends over {r['keys']} key(s)"
        assert r["zero_grad_params"] == [] and r["min_grad_norm"] > 0, f"{profile}/{model}/{r['module']}: {r}"
        expected = {"q.weight", "kv.weight", "proj.weight", "proj.bias"}
        assert expected <= set(r["params"])


@pytest.mark.parametrize("profile", list(PROFILES))
def test_emsa_keeps_the_published_reduction_per_stage(profile: str) -> None:
    p = PROFILES[profile]
    full = attention_geometry(create_model("rest_lite"), 224)
    small = attention_geometry(build_model("rest_lite_mini", 20, p.image_size, p), p.image_size)
    assert [f["ratio"] for f in full] == [64, 16, 4, 1] and [f["keys"] for f in full] == [49] * 4
    assert [s["ratio"] for s in small] == [64, 16, 4, 1]
    assert all(s["keys"] >= 4 for s in small)
    # the head transform (stages 2-4) convolves and normalises maps of more than one element
    assert all(s["score_elements"] > 1 for s in small if s["heads"] > 1)


def test_the_check_catches_the_degenerate_emsa() -> None:
    # the old small config: a stride-4 stem at 32 px leaves stages 2-4 one key, and no gradient
    records = attention_check(create_model("rest_lite_mini", stem_stride=4), 32, batch=2)
    assert min(r["keys"] for r in records) == 1
    stuck = [r for r in records if r["zero_grad_params"]]
    assert stuck and all({"q.weight", "kv.weight", "sr.weight"} & set(r["zero_grad_params"]) for r in stuck[:2])


@pytest.mark.parametrize("profile", list(PROFILES))
def test_compared_models_keep_the_papers_size_relation(profile: str) -> None:
    p = PROFILES[profile]
    n = {
        m: count_params(build_model(m, 20, p.image_size, p))
        for m in ("tnt_s_mini", "deit_s_mini", "rest_lite_mini", "resnet18_mini")
    }
    assert abs(n["tnt_s_mini"] / n["deit_s_mini"] - 1) <= 0.10
    assert abs(n["resnet18_mini"] / n["rest_lite_mini"] - 1) <= 0.15
    # both ResT and ResNet reach their four stages at the same widths in every profile
    x = torch.randn(1, 3, p.image_size, p.image_size)
    widths = {
        m: build_model(m, 20, p.image_size, p).eval().forward_features(x).shape[-1]
        for m in ("rest_lite_mini", "resnet18_mini")
    }
    assert widths["rest_lite_mini"] == widths["resnet18_mini"] == (7 if p.name == "full" else 2)


def test_full_has_the_papers_token_geometry() -> None:
    # at 112 px: the 224 px geometry of the published models (14x14 patches; ResT 56-28-14-7 with 7x7 keys)
    p = PROFILES["full"]
    assert p.image_size == 112
    small = attention_geometry(build_model("rest_lite_mini", 20, p.image_size, p), p.image_size)
    assert [s["map"] for s in small] == [56, 28, 14, 7] and [s["keys"] for s in small] == [49] * 4
    for name in ("deit_s_mini", "tnt_s_mini"):
        net = build_model(name, 20, p.image_size, p)
        with torch.no_grad():
            tokens = net.forward_features(torch.randn(1, 3, p.image_size, p.image_size))
        assert tokens.shape[1] == 1 + 14 * 14, (name, tuple(tokens.shape))


def test_resnet_stem_adaptation() -> None:
    small, published = create_model("resnet18_mini").eval(), create_model("resnet18_mini", stem_stride=4).eval()
    x = torch.randn(1, 3, 32, 32)
    assert small.forward_features(x).shape[-1] == 2 and published.forward_features(x).shape[-1] == 1
    with pytest.raises(ValueError, match="output stride 4 .* or 2"):
        create_model("resnet18_mini", stem_stride=3)


@pytest.mark.parametrize("profile", list(PROFILES))
def test_every_profile_trains_every_table_model_one_step(profile: str) -> None:
    """colab and full cannot run here: one step of each of their models and recipes, on CPU."""
    p = PROFILES[profile]
    for model, recipe_name in TRAINED:
        config = dataclasses.replace(recipe(recipe_name, p, 0), epochs=1, progress=False, num_workers=0)
        batch = min(config.batch_size, 32)  # one step at the recipe's settings, a smaller batch
        config = dataclasses.replace(config, batch_size=batch, eval_batch_size=4)
        data = SyntheticShapes(batch, p.image_size, "train", difficulty=p.data_difficulty)
        val = SyntheticShapes(4, p.image_size, "val", difficulty=p.data_difficulty)
        net = build_model(model, 20, p.image_size, p)
        result = train(net, data, val, config)
        assert math.isfinite(result.history["train_loss"][0]), (profile, model)


# ---- verdicts ---------------------------------------------------------------------------------


def _s(values: list[float]) -> dict:
    return {"test_top1": values, "chance_top1": 5.0}


def test_verdicts_on_hand_made_seeds() -> None:
    holds = verdict("A beats B", "a", "b", _s([60.0, 61.0, 62.0]), _s([50.0, 51.0, 52.0]))
    assert holds["verdict"] == "holds" and holds["ci_low"] > 0 and holds["diff"] == pytest.approx(10.0)
    reversed_ = verdict("A beats B", "a", "b", _s([50.0, 51.0, 52.0]), _s([60.0, 61.0, 62.0]))
    assert reversed_["verdict"] == "reversed" and reversed_["ci_high"] < 0
    undecided = verdict("A beats B", "a", "b", _s([50.0, 55.0, 60.0]), _s([49.0, 54.0, 59.0]))
    assert undecided["verdict"] == "undecided" and undecided["ci_low"] < 0 < undecided["ci_high"]
    one_seed = verdict("A beats B", "a", "b", _s([40.0]), _s([30.0]))
    assert (
        one_seed["verdict"] == "undecided"
        and one_seed["ci_low"] is None
        and one_seed["note"] == "one seed: not decided"
    )
    near_chance = verdict("A beats B", "a", "b", _s([30.0, 31.0, 32.0]), _s([8.0, 9.0, 9.5]))
    assert near_chance["verdict"] == "not testable"  # B below twice chance, however large the gap
    for record in (holds, reversed_, undecided, one_seed, near_chance):
        assert set(record) >= {"claim", "better", "worse", "diff", "ci_low", "ci_high", "n_seeds", "verdict"}
        assert record["verdict"] in VERDICTS
        assert f"**{verdict_state(record)}**" in verdict_sentence(record)
    headers, rows = verdict_rows([holds, one_seed])
    assert rows[0][3].startswith("[+") and rows[1][3] == "–"


def test_welch_interval_matches_scipy() -> None:
    from scipy import stats

    a, b = [71.2, 73.9, 72.4, 70.8], [69.1, 70.0, 72.5]
    diff, low, high = welch_interval(a, b)
    reference = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert (low, high) == pytest.approx((reference.low, reference.high))
    assert diff == pytest.approx(sum(a) / 4 - sum(b) / 3)
    assert welch_interval([5.0, 5.0], [3.0, 3.0]) == (2.0, 2.0, 2.0)  # no spread: a point
    with pytest.raises(ValueError, match="at least 2 values"):
        welch_interval([1.0], [2.0, 3.0])


def test_run_table_stores_structured_verdicts(tmp_path, monkeypatch) -> None:
    from tnt_rest_lite.core import store as core_store

    monkeypatch.setenv("TNT_REST_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("TNT_REST_CHECKPOINTS", str(tmp_path / "checkpoints"))
    p = dataclasses.replace(PROFILES["ci"], num_seeds=2, epochs=1, batch_size=8)
    splits = tuple(
        SyntheticShapes(n, 32, split, difficulty="easy") for split, n in (("train", 16), ("val", 8), ("test", 8))
    )
    table = run_table(table_experiment("rest_ablation"), profile=p, splits=splits, progress=False)
    stored = core_store.load_json("rest_ablation_verdicts")["data"]
    assert (
        stored == table["verdicts"]
        and stored[0]["n_seeds"] == 2
        and stored[0]["claim"].startswith("ResT-Lite (small) beats")
    )
    for model in ("rest_lite_mini", "resnet18_mini"):
        summary = core_store.load_json(f"rest_ablation_{model}")["data"]
        assert len(summary["test_top1"]) == len(summary["val_top1"]) == 2 and summary["test_samples"] == 8
        for seed in (0, 1):
            weights = tmp_path / "checkpoints" / "ci" / f"rest_ablation_{model}_seed{seed}.pt"
            state = torch.load(weights, weights_only=True)["model"]
            create_model(model).load_state_dict(state)  # the figure chapters can load them back
        # one epoch: no curve to read a plateau from, so the summary says still learning, and the claim is not testable
        assert summary["learning"]["still_learning"] and summary["learning"]["epochs"] == 1
        assert summary["target"] == {
            "metric": "test_top1",
            "target": 50.0,
            "value": summary["test_top1_mean"],
            "met": False,
        }
    assert [verdict_state(v) for v in stored] == ["not testable (still learning)"] * len(stored)
    # the figure chapters read the histories the weights were trained with: from the weights files ...
    from tnt_rest_lite.experiments.tables import trained_histories
    from tnt_rest_lite.experiments.weights import weights_path

    histories = core_store.load_json("rest_ablation_resnet18_mini")["data"]["histories"]
    assert trained_histories("rest_ablation", "resnet18_mini", [0, 1], p) == histories
    # ... else from the stored table summary, else they are not known
    for seed in (0, 1):
        path = weights_path("rest_ablation", "resnet18_mini", seed, p)
        torch.save({"model": torch.load(path, weights_only=True)["model"]}, path)
    assert trained_histories("rest_ablation", "resnet18_mini", [0, 1], p) == histories
    assert trained_histories("rest_ablation", "resnet18_mini", [0, 5], p) is None
    (tmp_path / "results" / "ci" / "rest_ablation_resnet18_mini.json").unlink()
    assert trained_histories("rest_ablation", "resnet18_mini", [0, 1], p) is None
    assert (tmp_path / "results" / "ci" / "rest_ablation_curves.png").is_file()
    with pytest.raises(ValueError, match="Unknown table 'tnt_table9'.*tnt_table1, rest_table1, rest_ablation"):
        table_experiment("tnt_table9")


class _CountingExperiment(Experiment):
    """A fake task for the shared runner: a "model" is a number, its per-seed score that number plus the seed."""

    metric = "test_score"
    curve = "val_score"
    curve_label = "val score"

    def __init__(self, spec):
        self.spec, self.trained = spec, []

    def units(self):
        return ("a", "b")

    def splits(self, profile, dataset="synthetic", download=False):
        return ([1, 2, 3], [4], [5, 6])

    def train_seed(self, unit, seed, splits, profile, progress):
        self.trained.append((unit, seed))
        return {"a": 10.0, "b": 1.0}[unit] + seed + len(splits[2])

    def summarise(self, unit, seeds, runs, splits, profile):
        history = {"epoch": [1, 2], "train_loss": [1.0, 0.5], "val_score": [0.0, 1.0]}
        return {"model": unit, "seeds": seeds, "test_score": runs, "histories": [history] * len(seeds)}

    def rows(self, summaries):
        return ["model", "score"], [[unit, f"{sum(s['test_score']):.0f}"] for unit, s in summaries.items()]

    def claim_text(self, claim):
        return f"{claim.better} beats {claim.worse}"

    def judge(self, claim, summaries):
        better, worse = summaries[claim.better], summaries[claim.worse]
        return verdict(self.claim_text(claim), claim.better, claim.worse, better, worse, metric=self.metric)

    def summary_line(self, unit, summary):
        return f"{unit}: {summary['test_score']}"

    def targets(self, table):
        return "no targets"


def test_one_runner_for_classification_detection_and_a_fake_task(tmp_path, monkeypatch) -> None:
    """Both tasks are the shared runner's Experiment; a fake one with a trivial metric runs a table end to end."""
    from tnt_rest_lite.core import store as core_store
    from tnt_rest_lite.experiments import runner
    from tnt_rest_lite.experiments.detection import DETECTION_TABLES, DetectionExperiment, detection_experiment
    from tnt_rest_lite.experiments.runs import ClassificationExperiment
    from tnt_rest_lite.experiments.verdicts import Claim

    for name in TABLES:
        assert isinstance(table_experiment(name), ClassificationExperiment)
    for name in DETECTION_TABLES:
        assert isinstance(detection_experiment(name), DetectionExperiment)
    for kind in (ClassificationExperiment, DetectionExperiment):  # neither replaces a phase of the runner
        assert issubclass(kind, runner.Experiment)
        assert not {"run_table", "run_seeds"} & set(vars(kind))
    monkeypatch.setenv("TNT_REST_RESULTS", str(tmp_path / "results"))
    spec = runner.ExperimentSpec(
        prefix="fake_table",
        title="fake",
        labels={"a": "A", "b": "B"},
        reference_table="TNT_TABLE1",
        claims=(Claim("a", "b"), Claim("b", "a")),
        source="made up",
    )
    fake = _CountingExperiment(spec)
    p = dataclasses.replace(PROFILES["ci"], num_seeds=3)
    table = runner.run_table(fake, profile=p, progress=False)
    assert fake.trained == [(u, s) for u in ("a", "b") for s in (0, 1, 2)]
    assert table["summaries"]["a"]["test_score"] == [12.0, 13.0, 14.0]
    assert table["rows"] == [["a", "39"], ["b", "12"]]
    assert [v["verdict"] for v in table["verdicts"]] == ["holds", "reversed"]
    assert core_store.load_json("fake_table")["data"] == {
        "headers": ["model", "score"],
        "rows": table["rows"],
        "source": "made up",
    }
    assert core_store.load_json("fake_table_verdicts")["data"] == table["verdicts"]
    assert core_store.load_json("fake_table_b")["data"]["test_score"] == [3.0, 4.0, 5.0]
    assert (tmp_path / "results" / "ci" / "fake_table_curves.png").is_file()
    assert runner.training_summary(table) == "a: [12.0, 13.0, 14.0]\nb: [3.0, 4.0, 5.0]"
    assert runner.describe_targets(table) == "no targets"
    assert runner.describe_reference(fake).endswith("Source: made up.")
    assert runner.run_seeds(fake, "b", fake.splits(p), p, seeds=[7])["test_score"] == [10.0]
    # every summary says whether its model is still learning, on the task's own curve (+1.0: at the threshold)
    learning = table["summaries"]["a"]["learning"]
    assert learning["curve"] == "val_score" and learning["mean_gain"] == 1.0 and not learning["still_learning"]
    assert table["summaries"]["a"]["target"] is None  # the fake task sets no target


# ---- splits and the fast data path ---------------------------------------------------------------


def test_three_synthetic_splits_are_different_images() -> None:
    images = [SyntheticShapes(4, 32, split).raw(0)["image"] for split in ("train", "val", "test")]
    assert not (images[0] == images[1]).all() and not (images[1] == images[2]).all()


def test_image_folder_holds_validation_out_of_train(tmp_path) -> None:
    from PIL import Image

    for split, count in (("train", 20), ("val", 6)):
        for cls in ("a", "b"):
            folder = tmp_path / split / cls
            folder.mkdir(parents=True)
            for i in range(count // 2):
                Image.new("RGB", (40, 40), (i * 10, 0, 0)).save(folder / f"{i}.png")
    name = f"imagefolder:{tmp_path}"
    train_set, val_set, test_set = (build_dataset(name, s, 32) for s in ("train", "val", "test"))
    assert (len(train_set), len(val_set), len(test_set)) == (18, 2, 6)  # 10 % of train/ held out as val
    train_files = {train_set.dataset.samples[i][0] for i in train_set.indices}
    val_files = {val_set.dataset.samples[i][0] for i in val_set.indices}
    assert not train_files & val_files and all("/train/" in f for f in val_files)
    assert all("/val/" in f for f, _ in test_set.samples)  # the published split is the test split


def test_fast_batches_equal_the_dataloader() -> None:
    data = SyntheticShapes(40, 32, "train")
    config = TrainConfig(batch_size=8, seed=3)
    info = distributed_info("cpu")

    class PerSample(torch.utils.data.Dataset):
        classes = data.classes

        def __len__(self) -> int:
            return len(data)

        def __getitem__(self, i: int) -> dict:
            return data[i]

    fast, slow = list(_train_loader(data, config, 2, info)), list(_train_loader(PerSample(), config, 2, info))
    assert len(fast) == len(slow) == 5
    for a, b in zip(fast, slow, strict=True):
        assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    val_fast = list(_val_loader(data, 16, info))
    assert [len(b["label"]) for b in val_fast] == [16, 16, 8]  # every sample once, the last batch short


# ---- the chapter helpers of 04-06 ----------------------------------------------------------------


def test_check_small_models_reports_and_catches_a_broken_size_relation(monkeypatch) -> None:
    from tnt_rest_lite.experiments import tables

    p = PROFILES["ci"]
    text = tables.check_small_models("rest_ablation", p)
    assert (
        "resnet18_mini / rest_lite_mini" in text and "rest_lite_mini: 8 attention modules; keys per query [4]" in text
    )
    assert "resnet18_mini:" not in text.split("\n", 2)[-1]  # a CNN has no attention to check
    tight = dataclasses.replace(
        TABLES["rest_ablation"],
        size_relation=dataclasses.replace(TABLES["rest_ablation"].size_relation, tolerance=0.01),
    )
    monkeypatch.setitem(tables.TABLES, "rest_ablation", tight)
    with pytest.raises(AssertionError, match="expected within 1% of 1, the paper's size relation"):
        tables.check_small_models("rest_ablation", p)


def _summary(test: list[float], curve: list[float]) -> dict:
    from tnt_rest_lite.core.format import mean_std

    mean, std = mean_std(test)
    return {
        "test_top1": test,
        "test_top1_mean": mean,
        "test_top1_std": std,
        "histories": [{"val_top1": curve}] * len(test),
    }


def test_describe_targets_on_hand_made_summaries() -> None:
    from tnt_rest_lite.experiments.recipes import TARGET_BEST_TOP1, TARGET_TOP1, describe_targets

    ok = {
        "a": _summary([TARGET_BEST_TOP1 + 1] * 3, [60, 70, 71, 71.2]),
        "b": _summary([TARGET_TOP1 + 1] * 3, [40, 50, 51, 51.5]),
    }
    assert describe_targets({"summaries": ok}).endswith("Every model reaches its target.")
    rising = {**ok, "b": _summary([TARGET_TOP1 + 1] * 3, [40, 45, 51])}  # +6 over its last epoch
    assert describe_targets({"summaries": rising}).endswith(
        "Every model reaches its target. Still learning: `b`; the run is too short for them on this device "
        "(not a ceiling of the models), and a claim about them is not testable."
    )
    short = {
        "a": _summary([TARGET_BEST_TOP1 - 2] * 3, [50, 60, 68]),
        "b": _summary([TARGET_TOP1 - 10] * 3, [39, 40, 40.5]),
    }
    text = describe_targets({"summaries": short})
    assert "`a` (best) | 68.0 | 70 | no (-2.0) | +8.0 (last 1 of 3 epochs) | **still learning**" in text
    assert "no (-10.0) | +0.5 (last 1 of 3 epochs) | plateau" in text
    assert "Short of the target: `a`, `b`." in text
    assert "Still learning: `a`;" in text and "`b`;" not in text


def test_verdict_and_results_markdown() -> None:
    from tnt_rest_lite.experiments.verdicts import verdicts_markdown
    from tnt_rest_lite.report.results import results_markdown

    record = verdict("A beats B", "a", "b", {"test_top1": [60.0, 61.0, 62.0]}, {"test_top1": [50.0, 51.0, 52.0]})
    text = verdicts_markdown([record])
    assert "| A beats B | 3 | +10.0 |" in text and "* A beats B: **holds** at our scale" in text
    # another per-seed measurement of the same models, in its own unit; testability still reads top-1
    far = {"test_top1": [60.0] * 3, "chance_top1": 5.0, "distance": [12.0, 12.5, 13.0]}
    near = {"test_top1": [60.0] * 3, "chance_top1": 5.0, "distance": [8.0, 8.5, 9.0]}
    record = verdict("deep attends farther", "deep", "first", far, near, metric="distance", unit="px")
    assert record["verdict"] == "holds" and "(+4.0 px, 95% CI [+" in verdict_sentence(record)
    assert verdicts_markdown([record]).startswith("| claim | seeds | Δ distance (px) | 95 % CI (Welch) | verdict |")
    similar = verdict(
        "s",
        "a",
        "b",
        {"similarity": [0.5, 0.52, 0.54]},
        {"similarity": [0.1, 0.11, 0.12]},
        metric="similarity",
        unit="",
    )
    assert "| Δ similarity |" in verdicts_markdown([similar]) and "| +0.410 |" in verdicts_markdown([similar])
    assert "| Δ (each claim's measure) |" in verdicts_markdown([record, similar])
    near["test_top1"] = [6.0] * 3  # a model below twice chance: nothing to judge
    assert verdict("x", "deep", "first", far, near, metric="distance", unit="px")["verdict"] == "not testable"
    table = {
        "headers": ["model", "top-1"],
        "rows": [["a", "61.0"]],
        "provenance": ["a: profile ci, CPU, commit x, today"],
    }
    assert (
        results_markdown(table)
        == "| model | top-1 |\n| --- | --- |\n| a | 61.0 |\n\nProvenance of the rows:\n\n* a: profile ci, CPU, commit x, today"
    )


def test_paired_interval_removes_the_shared_seed_spread() -> None:
    from tnt_rest_lite.measure.stats import paired_interval

    # two measurements of three models whose levels differ a lot but whose differences do not
    first, last = [10.0, 20.0, 30.0], [11.0, 21.2, 30.8]
    diff, low, high = paired_interval(last, first)
    assert diff == pytest.approx(1.0) and low > 0  # every seed moves up by about 1
    assert welch_interval(last, first)[1] < 0  # unpaired, the seeds' spread hides it
    assert paired_interval([1.0, 2.0], [0.0, 1.0]) == (1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="equally long"):
        paired_interval([1.0, 2.0], [1.0, 2.0, 3.0])
    record = verdict("x", "last", "first", {"d": last}, {"d": first}, metric="d", unit="px", paired=True)
    assert record["verdict"] == "holds" and record["paired"] and record["method"].startswith("paired t")
    assert verdict_rows([record])[0][3] == "95 % CI (paired t)"
    assert verdict("x", "last", "first", {"d": last}, {"d": first}, metric="d", unit="px")["verdict"] == "undecided"


def test_stored_verdicts_are_read_back_with_their_provenance(tmp_path, monkeypatch) -> None:
    from tnt_rest_lite.core import store as core_store
    from tnt_rest_lite.report.results import stored_verdicts_markdown

    monkeypatch.setenv("TNT_REST_RESULTS", str(tmp_path))
    record = verdict("A beats B", "a", "b", {"test_top1": [60.0, 61.0, 62.0]}, {"test_top1": [50.0, 51.0, 52.0]})
    core_store.save_json("fig_verdicts", [record], seed=[0, 1, 2])
    text = stored_verdicts_markdown(["fig_verdicts"])
    assert text.startswith("**`fig_verdicts`** (profile ") and "commit " in text
    assert "* A beats B: **holds** at our scale (+10.0 points" in text
    with pytest.raises(FileNotFoundError):
        stored_verdicts_markdown(["never_saved"])


def test_stored_searches_are_described_best_first(tmp_path, monkeypatch) -> None:
    from tnt_rest_lite.core import store as core_store
    from tnt_rest_lite.experiments.recipe_search import describe_searches, searches_report, stored_searches

    monkeypatch.setenv("TNT_REST_RESULTS", str(tmp_path))
    run = {
        "recipe": "resnet",
        "batch_size": 64,
        "epochs": 2,
        "train_samples": 100,
        "train_images_per_s": 10.0,
        "model": "resnet18_mini",
        "val_top1": [20.0, 30.0],
    }
    core_store.save_json(
        "recipe_search_resnet18_mini",
        [{**run, "lr": 0.05, "final_val_top1": 30.0}, {**run, "lr": 0.2, "final_val_top1": 40.0}],
    )
    found = stored_searches(["resnet18_mini", "rest_lite_mini"], "ci")
    assert list(found) == ["resnet18_mini"]
    assert stored_searches(["resnet18_mini"], "ci", recipe_name="deit") == {}  # searched under the resnet recipe only
    report, figures = searches_report(["resnet18_mini", "rest_lite_mini"], "resnet", "ci")
    assert report.startswith("| model |") and report.endswith(
        "No `resnet` search stored for `rest_lite_mini` in profile `ci`: their recipe is the profile's default."
    )
    assert len(figures) == 1
    lines = describe_searches(found).split("\n")
    assert "| 0.2 |" in lines[2] and "| 0.05 |" in lines[3]


def test_the_cpu_profiles_per_model_rates_are_the_best_of_its_stored_search() -> None:
    """A rate written in the cpu profile is the one its stored validation search ranks first."""
    import json
    from pathlib import Path

    store = Path(__file__).resolve().parents[1] / "results" / "cpu"  # the committed store, not the tests' one
    p = PROFILES["cpu"]
    for table, settings in p.table_recipe.items():
        rates = settings.get("lr")
        if not isinstance(rates, dict):
            continue
        batch = p.batch_size_for(table)
        for model, lr in rates.items():
            runs = [
                r
                for r in json.loads((store / f"recipe_search_{model}.json").read_text())["data"]
                if r["batch_size"] == batch and r["recipe"] == TABLES[table].recipe
            ]
            assert runs, f"no stored search of {model} at batch {batch}"
            assert max(runs, key=lambda r: r["final_val_top1"])["lr"] == lr


def test_gpu_ablation_rates_are_cpus_linearly_scaled() -> None:
    # colab trains the same 32 px data at batch 128: cpu's searched rates (batch 64) times 128 / 64; full at 256
    cpu = PROFILES["cpu"]
    for name, expected in (("colab", 2), ("full", 4)):
        gpu = PROFILES[name]
        ratio = gpu.batch_size_for("rest_ablation") / cpu.batch_size_for("rest_ablation")
        assert ratio == expected
        cpu_rates, gpu_rates = cpu.table_recipe["rest_ablation"]["lr"], gpu.table_recipe["rest_ablation"]["lr"]
        assert gpu_rates == {m: lr * ratio for m, lr in cpu_rates.items()}
    colab = PROFILES["colab"]
    assert (
        recipe("resnet", colab, 0, "rest_ablation", "rest_lite_mini").lr == 0.02
    )  # not 0.05, where cpu's search sat at chance


def test_mean_std_of_seeds_with_an_empty_size_bin() -> None:
    # COCO's APS of a test split without small objects is NaN for a seed: the spread is NaN, not a crash
    import math

    from tnt_rest_lite.core.format import mean_std

    assert mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)
    assert mean_std([4.0]) == (4.0, None)
    mean, std = mean_std([1.0, math.nan, 3.0])
    assert math.isnan(mean) and math.isnan(std)


def test_a_recipe_search_row_keeps_its_own_provenance(tmp_path, monkeypatch) -> None:
    """The stored search merges runs of several commits: every row names its own commit and date."""
    from tnt_rest_lite.core import store as core_store
    from tnt_rest_lite.experiments.recipe_search import search

    monkeypatch.setenv("TNT_REST_RESULTS", str(tmp_path / "results"))
    p = dataclasses.replace(PROFILES["ci"], val_samples=8)
    first = search("deit_s_mini", "deit", [1e-3], [8], p, epochs=1, train_samples=16, progress=False)
    assert first[0]["git_commit"] == core_store.git_commit() and first[0]["date"].startswith("20")
    old = {**first[0], "git_commit": "0" * 40, "date": "2026-01-01T00:00:00+00:00"}
    core_store.save_json("recipe_search_deit_s_mini", [old], seed=0)
    merged = search("deit_s_mini", "deit", [5e-4], [8], p, epochs=1, train_samples=16, progress=False)
    assert [(r["lr"], r["git_commit"][:1]) for r in merged] == [(1e-3, "0"), (5e-4, core_store.git_commit()[:1])]
