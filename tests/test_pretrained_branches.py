"""The `PRETRAINED = True` branches of chapters 07 and 08, run end to end offline.

The hub is stubbed: timm's download function returns randomly initialised weights of the
architecture the hub id names, saved to a file and read back with ``weights_only=True`` as a
download would be. The authors' ResT-Lite checkpoint is stubbed by random weights saved in each
format their training script or a user may produce (raw, under ``model``, under ``state_dict``
with DataParallel's ``module.`` prefix). Each branch is the notebook's own cell, with only its
switch (and the checkpoint path) changed.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import pytest
import torch

matplotlib.use("Agg")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def _pretrained_cell(notebook: str) -> str:
    cells = json.loads((NOTEBOOKS / notebook).read_text())["cells"]
    sources = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    found = [s for s in sources if s.startswith("PRETRAINED = False")]
    assert len(found) == 1, f"{notebook} has {len(found)} cells starting with the PRETRAINED switch"
    return found[0]


@pytest.fixture()
def stub_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """timm's hub download replaced by random weights of the named architecture; returns the ids asked for."""
    import timm.models._builder as builder
    from pretrained_stubs import fake_hub_download

    asked: list[str] = []
    monkeypatch.setattr(builder, "load_state_dict_from_hf", fake_hub_download(tmp_path, asked))
    return asked


def _run_branch(source: str, replacements: dict[str, str]) -> dict[str, object]:
    import matplotlib.pyplot as plt

    from tnt_rest_lite.experiments import figures
    from tnt_rest_lite.explain import plots

    for old, new in replacements.items():
        assert old in source, f"the cell no longer contains {old!r}"
        source = source.replace(old, new, 1)
    from tnt_rest_lite.profiles import get_profile

    # the book's profile: its figure_images (6) keeps every photograph of both cells (smoke runs keep 2)
    namespace: dict[str, object] = {
        "torch": torch,
        "plt": plt,
        "figures": figures,
        "plots": plots,
        "profile": get_profile("cpu"),
    }
    shown: list[object] = []
    original_show = plt.show
    plt.show = lambda *a, **k: shown.append(plt.gcf())  # type: ignore[assignment]
    try:
        exec(compile(source, "<pretrained cell>", "exec"), namespace)
    finally:
        plt.show = original_show  # type: ignore[assignment]
        plt.close("all")
    namespace["_shown"] = shown
    return namespace


def test_07_pretrained_branch_draws_both_figures(stub_hub: list[str]) -> None:
    ns = _run_branch(_pretrained_cell("07_tnt_figures.ipynb"), {"PRETRAINED = False": "PRETRAINED = True"})
    assert sorted(stub_hub) == ["timm/deit_small_patch16_224.fb_in1k", "timm/tnt_s_patch16_224.in1k"]
    assert len(ns["_shown"]) == 2  # Fig. 1 (patch attention) and Fig. 2 (class token)
    maps = ns["full_maps"]
    assert {k: len(v) for k, v in maps.items()} == {"DeiT-S": 12, "TNT-S": 12}
    assert all(m.shape == (3, 6, 197, 197) for v in maps.values() for m in v)  # 14 x 14 patches + class token
    assert ns["photo_rgb"].shape == (3, 224, 224, 3)


def test_each_published_model_is_normalised_by_its_own_data_config() -> None:
    from tnt_rest_lite import create_model
    from tnt_rest_lite.data.images import photo_batch

    x_deit, rgb_deit = photo_batch(["chelsea"], create_model("deit_s"))
    x_tnt, rgb_tnt = photo_batch(["chelsea"], create_model("tnt_s"))
    torch.testing.assert_close(rgb_deit, rgb_tnt)  # the same crop
    # TNT's weights expect mean = std = 0.5 (x = 2 * rgb - 1), DeiT's ImageNet statistics
    torch.testing.assert_close(x_tnt[0], rgb_tnt[0].permute(2, 0, 1) * 2 - 1, atol=1e-5, rtol=0)
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    torch.testing.assert_close(x_deit[0].permute(1, 2, 0), (rgb_deit[0] - mean) / std, atol=1e-5, rtol=0)
    coins, _ = photo_batch(["coins"], create_model("deit_s"))  # greyscale, repeated to three channels
    assert coins.shape == (1, 3, 224, 224)


@pytest.mark.parametrize("layout", ["raw", "model", "state_dict_module_prefix"])
def test_08_pretrained_branch_accepts_every_checkpoint_layout(layout: str, stub_hub: list[str], tmp_path: Path) -> None:
    from tnt_rest_lite import create_model

    torch.manual_seed(0)
    weights = create_model("rest_lite").state_dict()
    saved = {
        "raw": weights,
        "model": {"model": weights, "epoch": 300},
        "state_dict_module_prefix": {"state_dict": {f"module.{k}": v for k, v in weights.items()}, "epoch": 300},
    }[layout]
    path = tmp_path / "rest_lite.pth"
    torch.save(saved, path)
    if layout != "raw":  # the other layouts are checked by reading them back; one full figure run is enough
        from tnt_rest_lite.models._weights import load_authors_checkpoint

        loaded = load_authors_checkpoint("rest_lite", path).state_dict()
        assert all(torch.equal(loaded[k], weights[k]) for k in weights)
        return
    ns = _run_branch(
        _pretrained_cell("08_rest_figures.ipynb"),
        {
            "PRETRAINED = False": "PRETRAINED = True",
            "REST_LITE_CHECKPOINT = None": f"REST_LITE_CHECKPOINT = {str(path)!r}",
        },
    )
    assert stub_hub == ["timm/resnet50.a1_in1k"]
    assert len(ns["_shown"]) == 1
    overlays = ns["overlays"]
    assert {k: tuple(v.shape) for k, v in overlays.items()} == {"ResT-Lite": (6, 224, 224), "ResNet-50": (6, 224, 224)}
    assert all(float(v.min()) >= 0 and float(v.max()) <= 1 for v in overlays.values())
    assert ns["grid"] == 7  # stage 4 of a 224 px image


def test_a_checkpoint_without_a_state_dict_is_a_clear_error(tmp_path: Path) -> None:
    from tnt_rest_lite.models._weights import load_authors_checkpoint

    path = tmp_path / "rest_lite.pth"
    torch.save({"epoch": 3, "optimizer": {"lr": 0.1}}, path)
    with pytest.raises(ValueError, match="no state dict"):
        load_authors_checkpoint("rest_lite", path)
