"""The figure measurements: which blocks, which maps, and the numbers drawn beside them."""

from __future__ import annotations

import math

import pytest
import torch

from tnt_rest_lite import create_model
from tnt_rest_lite.core import paths
from tnt_rest_lite.experiments import runs, tables, weights
from tnt_rest_lite.experiments.figures import (
    attention_measures,
    block_indices,
    class_token_maps,
    emsa_head_similarity,
    mask_share,
    outer_attention,
)
from tnt_rest_lite.profiles import PROFILES


def test_block_indices_are_the_supplements_blocks() -> None:
    assert block_indices(12) == [0, 5, 11]  # blocks 1, 6 and 12, as TNT's Fig. 1 shows
    assert block_indices(4) == [0, 1, 3]
    assert block_indices(2) == [0, 1] and block_indices(5, count=5) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("name", ["deit_s_mini", "tnt_s_mini"])
def test_outer_attention_is_one_row_stochastic_map_per_block(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name).eval()
    maps = outer_attention(model, torch.randn(2, 3, 32, 32))
    assert len(maps) == model.config.depth
    heads = model.config.num_heads if name.startswith("deit") else model.config.outer_heads
    assert all(a.shape == (2, heads, 17, 17) for a in maps)  # class token + 4x4 patches
    assert all(torch.allclose(a.sum(-1), torch.ones(2, heads, 17)) for a in maps)
    measures = attention_measures(maps, patch_size=8)
    assert len(measures["distance"]) == len(maps) and len(measures["distance"][0]) == heads
    # a key one patch away is 8 px; the farthest patch of a 4x4 grid of 8 px patches is 3*sqrt(2)*8 px
    assert all(0 < d < 3 * 2**0.5 * 8 for block in measures["distance"] for d in block)
    assert all(0 < e <= torch.log(torch.tensor(17.0)) + 1e-5 for block in measures["entropy"] for e in block)
    with pytest.raises(ValueError, match="no outer attention"):
        outer_attention(create_model("rest_lite_mini").eval(), torch.randn(1, 3, 32, 32))


def test_class_token_maps_and_rollout_on_hand_made_maps() -> None:
    # two blocks, one head, class token + 4 patches; block 1: the class token looks at patch 1 only
    a1 = torch.eye(5)[None, None].clone()
    a1[0, 0, 0] = torch.tensor([0.0, 1.0, 0.0, 0.0, 0.0])
    a2 = torch.full((1, 1, 5, 5), 0.2)  # uniform
    maps = class_token_maps([a1, a2])
    assert torch.allclose(maps["block1"].flatten(), torch.tensor([1.0, 0.0, 0.0, 0.0]))
    assert torch.allclose(maps["block2"].flatten(), torch.full((4,), 0.25))
    # rollout: (0.5 A2 + 0.5 I)(0.5 A1 + 0.5 I); class-token row over the patches, renormalised
    eye = torch.eye(5)
    r = (0.5 * a2[0, 0] + 0.5 * eye) @ (0.5 * a1[0, 0] + 0.5 * eye)
    expected = r[0, 1:] / r[0, 1:].sum()
    assert torch.allclose(maps["rollout"].flatten(), expected)
    assert all(torch.allclose(m.flatten(1).sum(-1), torch.ones(1)) for m in maps.values())


def test_mask_share_baseline_and_extremes() -> None:
    mask = torch.zeros(1, 8, 8, dtype=torch.bool)
    mask[0, :4, :4] = True  # the object fills the top-left patch of a 2x2 grid
    uniform = torch.full((1, 2, 2), 0.25)
    inside = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    outside = torch.tensor([[[0.0, 0.5], [0.5, 0.0]]])
    assert mask_share(uniform, mask).item() == pytest.approx(0.25)  # the object's area fraction
    assert mask_share(inside, mask).item() == pytest.approx(1.0)
    assert mask_share(outside, mask).item() == pytest.approx(0.0)


def test_emsa_head_similarity_covers_every_multi_head_block() -> None:
    torch.manual_seed(0)
    model = create_model("rest_lite_mini").eval()
    sims = emsa_head_similarity(model, torch.randn(2, 3, 32, 32))
    assert sorted(sims) == [f"stage{s}.{i}" for s in (2, 3, 4) for i in (0, 1)]  # stage 1 has one head
    for block, steps in sims.items():
        heads = model.config.num_heads[int(block[5]) - 1]
        for key in ("scores", "transformed", "attn"):
            assert steps[key].shape == (heads, heads)
            assert torch.allclose(steps[key].diagonal(), torch.ones(heads), atol=1e-5)


def test_trained_model_loads_saved_weights_and_names_a_mismatch(tmp_path, monkeypatch) -> None:
    from tnt_rest_lite.train.checkpoint import CheckpointError, save_checkpoint

    monkeypatch.setenv(paths.CHECKPOINTS_ENV_VAR, str(tmp_path))
    p = PROFILES["ci"]
    torch.manual_seed(1)
    source = create_model("deit_s_mini")
    save_checkpoint(weights.weights_path("tnt_table1", "deit_s_mini", 0, p), {"model": source.state_dict()})
    loaded = tables.trained_model("tnt_table1", "deit_s_mini", 0, p)
    assert not loaded.training
    assert all(
        torch.equal(a, b) for a, b in zip(source.state_dict().values(), loaded.state_dict().values(), strict=True)
    )
    # weights of another model under this name: every mismatched key is named
    save_checkpoint(weights.weights_path("tnt_table1", "tnt_s_mini", 0, p), {"model": source.state_dict()})
    with pytest.raises(KeyError, match="missing keys .*pixel_embed"):
        tables.trained_model("tnt_table1", "tnt_s_mini", 0, p)
    bad = weights.weights_path("tnt_table1", "deit_s_mini", 1, p)
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot be read"):
        tables.trained_model("tnt_table1", "deit_s_mini", 1, p)


def test_the_authors_rest_checkpoint_loads_and_fails_clearly(tmp_path) -> None:
    from tnt_rest_lite.models._weights import AUTHORS_REPOSITORY, load_authors_checkpoint

    torch.manual_seed(0)
    source = create_model("rest_lite")
    raw, wrapped = tmp_path / "rest_lite.pth", tmp_path / "wrapped.pth"
    torch.save(source.state_dict(), raw)
    torch.save({"model": source.state_dict(), "epoch": 300}, wrapped)
    for path in (raw, wrapped):
        loaded = load_authors_checkpoint("rest_lite", path)
        assert torch.equal(loaded.head.weight, source.head.weight)
    with pytest.raises(KeyError, match="does not match"):
        load_authors_checkpoint("rest_small", raw)  # Lite's weights in Small: stage 3 has more blocks
    with pytest.raises(FileNotFoundError, match=f"Google Drive folder linked in the README of {AUTHORS_REPOSITORY}"):
        load_authors_checkpoint("rest_lite", None)
    with pytest.raises(ValueError, match="rest_lite, rest_small, rest_base, rest_large; got 'rest_lite_mini'"):
        load_authors_checkpoint("rest_lite_mini", raw)


def _verdicts_by_claim(records):
    return {r["claim"]: r["verdict"] for r in records}


def test_diversity_verdicts_read_the_direction_of_each_step() -> None:
    from tnt_rest_lite.experiments.figures import diversity_verdicts, similarity_rows

    # trained: the conv raises the similarity, IN lowers it (the supplement); untrained: the reverse
    up_then_down = {
        "stage4.0": {"scores": [0.10, 0.12, 0.11], "transformed": [0.80, 0.82, 0.79], "attn": [0.20, 0.22, 0.18]}
    }
    down_then_up = {
        "stage4.0": {"scores": [0.80, 0.82, 0.79], "transformed": [0.10, 0.12, 0.11], "attn": [0.50, 0.52, 0.48]}
    }
    records = diversity_verdicts(
        "stage4.0",
        {"trained": up_then_down, "untrained": down_then_up},
        {"trained": {"test_top1": [80.0] * 3, "chance_top1": 5.0}},
    )
    assert [r["verdict"] for r in records] == ["holds", "holds", "reversed", "reversed"]
    assert records[0]["metric"] == "similarity" and records[0]["diff"] == pytest.approx((2.41 - 0.33) / 3, abs=1e-9)
    # a trained model at chance: its claims are not testable
    at_chance = diversity_verdicts(
        "stage4.0", {"trained": up_then_down}, {"trained": {"test_top1": [5.0] * 3, "chance_top1": 5.0}}
    )
    assert {r["verdict"] for r in at_chance} == {"not testable"}
    rows = similarity_rows({"trained": up_then_down, "untrained": down_then_up})
    assert rows[0][:3] == ["stage4.0", "trained", "0.11 ± 0.01"] and rows[1][1] == "untrained"


def test_attention_verdicts_on_hand_made_studies() -> None:
    from tnt_rest_lite.experiments.figures import (
        attention_measures_markdown,
        class_token_shares,
        depth_verdicts,
        mask_share_verdicts,
        uniform_attention_measures,
    )

    def run(first: float, last: float, share: float) -> dict:
        return {
            "distance": [[first, first], [last, last]],
            "entropy": [[1.0, 1.0], [2.0, 2.0]],
            "mask_share": {"block2": share, "rollout": share},
        }

    study = {
        "far": [run(2.0, 8.0 + s, 0.5 + 0.01 * s) for s in range(3)],
        "near": [run(8.0 + s, 2.0, 0.2 + 0.01 * s) for s in range(3)],
    }
    learnt = {"test_top1": [60.0] * 3, "chance_top1": 5.0}
    depth = depth_verdicts(study, {"far": learnt, "near": learnt})
    assert [r["verdict"] for r in depth] == ["holds", "reversed"] and depth[0]["unit"] == "px"
    shares = class_token_shares(study)
    assert shares["far"]["rollout"] == pytest.approx([50.0, 51.0, 52.0])
    records = mask_share_verdicts(shares, "far", "near", {"far": learnt, "near": learnt}, ["block2", "rollout"])
    assert [r["verdict"] for r in records] == ["holds", "holds"] and records[0]["diff"] == pytest.approx(30.0)
    table = attention_measures_markdown(study)
    assert (
        table.splitlines()[0]
        == "| block | distance (px): far | distance (px): near | entropy (nats): far | entropy (nats): near |"
    )
    assert table.splitlines()[2].startswith("| 1 | 2.0 ± 0.0 | 9.0 ± 1.0 |")
    # the even-spread reference: two patches 4 px apart (and the class token): half the rows look 4 px away
    assert (
        attention_measures_markdown(study, grid=1, patch_size=4.0).splitlines()[-1]
        == "| even spread | 0.0 | 0.0 | 0.69 | 0.69 |"
    )
    even = uniform_attention_measures(2, 4.0)
    assert even["entropy"] == pytest.approx(math.log(5))
    assert even["distance"] == pytest.approx((0 + 4 + 4 + 4 * math.sqrt(2)) / 4)


def test_cam_verdicts_turn_deletion_around() -> None:
    from tnt_rest_lite.experiments.figures import cam_verdicts

    def scores(deletion: float, other: float) -> dict:
        return {
            "group_cam": {
                "deletion": [[deletion + 0.01 * s] * 2 for s in range(3)],
                **{k: [[other + 0.01 * s] * 2 for s in range(3)] for k in ("insertion", "pointing", "energy")},
            }
        }

    learnt = {"test_top1": [60.0] * 3, "chance_top1": 5.0}
    records = cam_verdicts(
        {"good": scores(0.1, 0.9), "bad": scores(0.5, 0.3)}, "good", "bad", {"good": learnt, "bad": learnt}
    )
    assert [r["metric"] for r in records] == ["deletion", "insertion", "pointing", "energy"]
    assert {r["verdict"] for r in records} == {"holds"}  # lower deletion is better: stated the other way round
    assert records[0]["diff"] == pytest.approx(0.4) and "lower deletion AUC" in records[0]["claim"]


def test_seed_accuracy_measures_each_model_on_the_test_split() -> None:
    from tnt_rest_lite.data.datasets import build_dataset

    test_set = build_dataset("synthetic", "test", 32, num_samples=40, seed=0)
    torch.manual_seed(0)
    models = [create_model("resnet18_mini", num_classes=20).eval() for _ in range(2)]
    accuracy = runs.seed_accuracy(models, test_set, batch_size=16)
    labels = test_set.batch(list(range(40)))["label"]
    with torch.no_grad():
        expected = [
            100.0 * float((m(test_set.batch(list(range(40)))["image"]).argmax(1) == labels).float().mean())
            for m in models
        ]
    assert accuracy["test_top1"] == pytest.approx(expected) and accuracy["chance_top1"] == pytest.approx(5.0)
    assert "learning" not in accuracy  # no histories given: not known, and no verdict is blocked by it
    rising = [{"val_top1": [10.0, 20.0, 30.0, 40.0]}] * 2
    with_curves = runs.seed_accuracy(models, test_set, batch_size=16, histories=rising)
    assert with_curves["learning"]["still_learning"] and with_curves["learning"]["mean_gain"] == 10.0
    from tnt_rest_lite.experiments.figures import mask_share_verdicts

    shares = {"A": {"rollout": [60.0, 61.0]}, "B": {"rollout": [40.0, 41.0]}}
    plateau = runs.seed_accuracy(models, test_set, batch_size=16, histories=[{"val_top1": [50.0] * 4}] * 2)
    plateau["test_top1"] = [60.0, 61.0]  # both models learnt the task (test_top1 above twice chance)
    blocked = mask_share_verdicts(
        shares, "A", "B", {"A": {**plateau, **with_curves, "test_top1": [60.0, 61.0]}, "B": plateau}, ["rollout"]
    )
    assert blocked[0]["reason"] == "still learning"
    judged = mask_share_verdicts(shares, "A", "B", {"A": plateau, "B": plateau}, ["rollout"])
    assert judged[0]["verdict"] == "holds"


def test_the_attention_figures_run_their_forward_passes_on_the_compute_device(monkeypatch: pytest.MonkeyPatch) -> None:
    # 07 and 08's similarity figure take models that trained_model loads on the CPU: each forward pass asks
    # on_compute_device for the GPU (when there is one) and gives the maps back on the CPU
    import contextlib

    from tnt_rest_lite import create_model
    from tnt_rest_lite.experiments import figures

    entered: list[str] = []

    @contextlib.contextmanager
    def recording(model):  # noqa: ANN001, ANN202
        entered.append(type(model).__name__)
        yield torch.device("cpu")

    monkeypatch.setattr(figures, "on_compute_device", recording)
    deit = create_model("deit_s_mini", num_classes=20).eval()
    maps = figures.outer_attention(deit, torch.randn(1, 3, 32, 32))
    rest = create_model("rest_lite_mini", num_classes=20).eval()
    similarity = figures.emsa_head_similarity(rest, torch.randn(1, 3, 32, 32))
    assert entered == ["DeiT", "ResT"]
    assert all(m.device.type == "cpu" for m in maps)
    assert all(t.device.type == "cpu" for block in similarity.values() for t in block.values())
