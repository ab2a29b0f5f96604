"""The frame every chapter plugs into: registry, profiles, results store, attention, DeiT, weights."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import timm
import torch
import yaml

import tnt_rest_lite
from tnt_rest_lite import create_model, list_models
from tnt_rest_lite.book import notebooks
from tnt_rest_lite.core.store import load_json, provenance, save_json
from tnt_rest_lite.layers.attention import Attention, capture_attention
from tnt_rest_lite.layers.blocks import DropPath
from tnt_rest_lite.measure.complexity import count_flops, count_params
from tnt_rest_lite.models._registry import model_info
from tnt_rest_lite.models._weights import load_timm
from tnt_rest_lite.profiles import PROFILES, get_profile

ROOT = Path(__file__).resolve().parent.parent


# --- registry -------------------------------------------------------------------------------


def test_registry_lists_and_creates_every_model() -> None:
    names = list_models()
    assert "deit_s" in names and "deit_s_mini" in names
    model = create_model("deit_s_mini")
    assert isinstance(model, torch.nn.Module)


def test_unknown_model_lists_known_ones() -> None:
    with pytest.raises(ValueError, match=r"Unknown model 'no_such_net'.*deit_s"):
        create_model("no_such_net")


def test_unknown_override_is_clear_error() -> None:
    with pytest.raises(TypeError, match=r"DeiTConfig has no field\(s\) \['widht'\]"):
        create_model("deit_s_mini", widht=3)


def test_timm_create_model_after_import() -> None:
    model = timm.create_model("deit_s_mini", num_classes=7)
    assert type(model).__module__ == "tnt_rest_lite.models.trl_deit"
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)


# --- profiles -------------------------------------------------------------------------------


def test_profiles_resolve_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TNT_REST_PROFILE", "full")
    assert get_profile().name == "full"
    monkeypatch.setenv("TNT_REST_PROFILE", "Colab")
    assert get_profile().name == "colab"
    assert get_profile("ci") is PROFILES["ci"]


def test_default_profile_follows_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TNT_REST_PROFILE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert get_profile().name == "colab"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert get_profile().name == "ci"


def test_unknown_profile_lists_valid_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TNT_REST_PROFILE", "huge")
    with pytest.raises(ValueError, match=r"Unknown profile 'huge' \(from \$TNT_REST_PROFILE\).*ci, cpu, colab, full"):
        get_profile()


def test_profiles_grow_from_ci_to_full() -> None:
    ci, cpu, colab, full = PROFILES["ci"], PROFILES["cpu"], PROFILES["colab"], PROFILES["full"]
    assert ci.train_samples < cpu.train_samples < colab.train_samples <= full.train_samples
    assert ci.epochs <= cpu.epochs < colab.epochs <= full.epochs
    # every profile whose numbers the book shows tests on at least 2,000 held-out images, with 3 seeds
    for profile in (cpu, colab, full):
        assert profile.test_samples >= 2000 and profile.num_seeds >= 3
    assert ci.num_seeds == 1  # CI's smoke run: its verdicts say "one seed: not decided"


# --- results store --------------------------------------------------------------------------


def test_results_carry_provenance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TNT_REST_RESULTS", str(tmp_path))
    path = save_json("unit_result", {"top1": 12.5, "t": torch.tensor([1.0, 2.0])}, seed=3, wall_time_s=1.23456)
    assert path == tmp_path / "ci" / "unit_result.json"
    record = json.loads(path.read_text())
    assert record["data"] == {"top1": 12.5, "t": [1.0, 2.0]}
    prov = record["provenance"]
    assert prov["profile"] == "ci" and prov["seed"] == 3 and prov["wall_time_s"] == 1.235
    assert prov["torch"] == torch.__version__ and prov["device"].startswith("CPU")
    assert {"git_commit", "date", "timm"} <= set(prov)
    assert load_json("unit_result")["data"]["top1"] == 12.5


def test_missing_result_is_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TNT_REST_RESULTS", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="No stored result 'nothing_here' for profile 'ci'"):
        load_json("nothing_here")


def test_provenance_extra_fields() -> None:
    assert provenance(seed=None, note="x")["note"] == "x"


# --- the one attention module ----------------------------------------------------------------


def _manual_attention(attn: Attention, x: torch.Tensor) -> torch.Tensor:
    """Softmax(QK^T / sqrt(d)) V written out from the module's own weights."""
    b, n, c = x.shape
    h, d = attn.num_heads, attn.head_dim
    q = (x @ attn.q.weight.T + attn.q.bias).view(b, n, h, d).transpose(1, 2)
    k, v = (x @ attn.kv.weight.T + attn.kv.bias).view(b, n, 2, h, d).permute(2, 0, 3, 1, 4)
    weights = torch.softmax(q @ k.transpose(-2, -1) / d**0.5, dim=-1)
    out = (weights @ v).transpose(1, 2).reshape(b, n, c)
    return out @ attn.proj.weight.T + attn.proj.bias


def test_attention_fused_and_explicit_paths_match_the_math() -> None:
    attn = Attention(32, num_heads=4, qkv_bias=True).eval()
    x = torch.randn(2, 10, 32)
    expected = _manual_attention(attn, x)
    torch.testing.assert_close(attn(x), expected, atol=1e-5, rtol=1e-5)
    with capture_attention(attn) as maps:
        out = attn(x)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    probs = maps[""]["attn"]
    assert probs.shape == (2, 4, 10, 10)
    torch.testing.assert_close(probs.sum(-1), torch.ones(2, 4, 10))
    assert not attn.keep_maps and attn.maps == {}  # capture mode is switched off again


def test_capture_attention_names_every_block() -> None:
    model = create_model("deit_s_mini").eval()
    with capture_attention(model) as maps:
        model(torch.randn(1, 3, 32, 32))
    assert sorted(maps) == sorted(f"blocks.{i}.attn" for i in range(model.config.depth))
    assert maps["blocks.0.attn"]["attn"].shape == (1, 3, 17, 17)  # 16 patches + class token


def test_attention_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="divisible by num_heads"):
        Attention(30, num_heads=4)
    attn = Attention(16, num_heads=2, sr_ratio=2)
    with pytest.raises(ValueError, match=r"needs size=\(H, W\)"):
        attn(torch.randn(1, 16, 16))
    with pytest.raises(ValueError, match="does not match the 16 tokens"):
        attn(torch.randn(1, 16, 16), size=(3, 5))


def test_drop_path_zeroes_whole_samples_and_keeps_expectation() -> None:
    layer = DropPath(0.5).train()
    x = torch.ones(4000, 3)
    y = layer(x)
    per_sample = y[:, 0]
    assert set(per_sample.unique().tolist()) <= {0.0, 2.0}
    assert torch.equal(y, per_sample[:, None].expand(-1, 3))
    assert abs(y.mean().item() - 1.0) < 0.1
    assert torch.equal(layer.eval()(x), x)


# --- DeiT-S and timm ------------------------------------------------------------------------


def test_deit_s_matches_timm_logits_and_parameter_count() -> None:
    reference = timm.create_model("deit_small_patch16_224").eval()
    ours = load_timm(create_model("deit_s"), reference.state_dict()).eval()
    assert count_params(ours) == count_params(reference) == 22_050_664
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        diff = (ours(x) - reference(x)).abs().max().item()
    assert diff < 1e-5


def test_load_timm_names_missing_and_unexpected_keys() -> None:
    state = timm.create_model("deit_small_patch16_224").state_dict()
    state.pop("norm.weight")
    state["extra.bias"] = torch.zeros(1)
    with pytest.raises(KeyError, match=r"missing keys \['norm.weight'\]; unexpected keys \['extra.bias'\]"):
        load_timm(create_model("deit_s"), state)


def test_load_timm_names_shape_mismatch() -> None:
    state = timm.create_model("deit_small_patch16_224").state_dict()
    with pytest.raises(ValueError, match=r"shape mismatch for head.weight: expected \(10, 384\)"):
        load_timm(create_model("deit_s", num_classes=10), state)
    # ...unless the caller keeps its own head on purpose
    load_timm(create_model("deit_s", num_classes=10), state, skip_head=True)


def test_deit_rejects_wrong_image_size() -> None:
    model = create_model("deit_s_mini")
    with pytest.raises(ValueError, match=r"expects images of shape \(B, 3, 32, 32\), got \(1, 3, 48, 48\)"):
        model(torch.randn(1, 3, 48, 48))
    with pytest.raises(ValueError, match=r"\(B, 3, 32, 32\), got \(1, 1, 32, 32\)"):
        model(torch.randn(1, 1, 32, 32))
    with pytest.raises(ValueError, match="must be a multiple of patch_size=8"):
        create_model("deit_s_mini", img_size=30)


PRETRAINED = [name for name in list_models() if model_info(name).pretrained_source]


@pytest.mark.parametrize("name", PRETRAINED)
def test_pretrained_offline_is_clear_error(name: str) -> None:
    # A subprocess with the hub forced offline: the test never touches the network.
    code = f"import tnt_rest_lite as t; t.create_model({name!r}, pretrained=True)"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode != 0
    assert f"Could not fetch the pretrained weights of '{name}'" in proc.stderr
    assert model_info(name).pretrained_source in proc.stderr and "pretrained=False" in proc.stderr


def test_models_with_published_weights() -> None:
    assert set(PRETRAINED) == {"deit_s", "tnt_s", "tnt_b"}
    assert model_info("deit_s").pretrained_source == "timm/deit_small_patch16_224.fb_in1k"
    assert model_info("tnt_s").pretrained_source == "timm/tnt_s_patch16_224.in1k"
    assert model_info("tnt_b").pretrained_source == "timm/tnt_b_patch16_224.in1k"


def test_pretrained_needs_published_weights() -> None:
    with pytest.raises(ValueError, match="No pretrained weights are published for 'deit_s_mini'"):
        create_model("deit_s_mini", pretrained=True)


# --- FLOP counting ----------------------------------------------------------------------------


def test_plain_fvcore_counts_attention_products_as_on_timm() -> None:
    from fvcore.nn import FlopCountAnalysis

    x = torch.zeros(1, 3, 224, 224)

    def plain(model: torch.nn.Module) -> int:
        analysis = FlopCountAnalysis(model.eval(), x)
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        return int(analysis.total())

    ours = plain(create_model("tnt_s"))
    # fvcore as a reader calls it, no extra handle: our TNT-S reads what timm's TNT-S reads
    assert ours == plain(timm.create_model("tnt_s_patch16_224", pretrained=False)) == 5_245_147_008
    assert count_flops(create_model("tnt_s")).total == ours


def test_flops_without_attention_products_and_the_fused_handle() -> None:
    from fvcore.nn import FlopCountAnalysis

    from tnt_rest_lite.measure.complexity import sdpa_flop_handle

    model = create_model("deit_s").eval()
    report = count_flops(model)
    without = count_flops(model, attention_products=False)
    # 12 blocks x (QK^T + AV) = 12 x 2 x 197^2 x 384 multiply-adds, left out of the total, of matmul,
    # of each block and of each attention module
    products = 12 * 2 * 197 * 197 * 384
    assert report.attention_products == without.attention_products == products
    assert report.total - without.total == products
    assert report.by_operator["matmul"] == products and without.by_operator["matmul"] == 0
    assert report.module("blocks.3") - without.module("blocks.3") == products // 12
    assert without.module("blocks.3.attn") == without.module("blocks.3.attn.q") + without.module(
        "blocks.3.attn.kv"
    ) + without.module("blocks.3.attn.proj")
    with capture_attention(model):  # the explicit path the maps need gives the same count
        assert count_flops(model).total == report.total
    # the handle for the fused kernel (models that keep it while traced) counts the two products as the matmuls
    attn = model.blocks[0].attn
    q, k, v = (torch.randn(1, 6, 197, 64) for _ in range(3))

    class Fused(torch.nn.Module):
        def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.scaled_dot_product_attention(q, k, v)

    analysis = FlopCountAnalysis(Fused(), (q, k, v)).unsupported_ops_warnings(False)
    analysis.set_op_handle("aten::scaled_dot_product_attention", sdpa_flop_handle)
    assert analysis.total() == products // 12 == 2 * 197 * 197 * attn.dim


# --- the book -------------------------------------------------------------------------------


def test_config_repository_matches_setup_cell_url() -> None:
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["repository"]["url"] == notebooks.REPOSITORY_URL
    assert config["execute"]["execute_notebooks"] == "off"


def test_executed_notebook_stores_the_finished_progress_bar(tmp_path: Path) -> None:
    import nbformat

    from tnt_rest_lite.book.notebooks import execute_notebook

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            "import time\nfrom tnt_rest_lite.core.progress import progress_bar\n"
            "for _ in progress_bar(range(40), desc='steps', mininterval=0):\n    time.sleep(0.005)"
        )
    ]
    path = tmp_path / "bar.ipynb"
    nbformat.write(nb, path)
    execute_notebook(path, profile="ci")
    outputs = nbformat.read(path, as_version=4).cells[0].outputs
    # one stdout stream whose text is the finished bar only: no widget, no 0 % state, no carriage returns
    assert [(o.output_type, o.get("name")) for o in outputs] == [("stream", "stdout")]
    text = outputs[0].text
    assert "steps: 100%" in text and "40/40" in text
    assert text.count("steps:") == 1 and "\r" not in text, repr(text)


def _is_ancestor(older: str, newer: str) -> bool:
    """Whether commit ``older`` is ``newer`` or one of its ancestors in this repository."""
    import subprocess

    return subprocess.run(["git", "merge-base", "--is-ancestor", older, newer], cwd=ROOT).returncode == 0


def test_every_notebook_starts_with_the_setup_cell() -> None:
    import nbformat

    paths = notebooks.notebook_paths(ROOT)
    assert paths and paths[0].name == "00_tour.ipynb"
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        first_code = next(c for c in nb.cells if c.cell_type == "code")
        commit = notebooks.stamped_commit(first_code.source)
        assert first_code.source == notebooks.setup_cell_source(commit), path.name
        # Colab installs the commit the notebook's code is written for: the one its stored outputs were
        # computed at (the run report's), or a later one of this history where the package moved on
        printed = re.search(r"commit  : (\S+)", "".join(o.get("text", "") for o in first_code.outputs))
        assert commit is not None and re.fullmatch(r"[0-9a-f]{40}", commit), f"{path.name}: BOOK_COMMIT = {commit!r}"
        assert printed is not None and re.fullmatch(r"[0-9a-f]{40}", printed.group(1)), path.name
        assert _is_ancestor(printed.group(1), commit), (
            f"{path.name}: the set-up cell installs {commit}, which does not follow {printed.group(1)}, "
            "the commit its outputs come from"
        )
        assert _is_ancestor(commit, "HEAD"), f"{path.name}: BOOK_COMMIT {commit} is not in this history"
        # hidden in the rendered book (Colab needs it, a reader does not), its output kept
        assert first_code.metadata.get("tags") == notebooks.SETUP_CELL_TAGS == ["remove-input"], path.name


def test_toc_lists_every_notebook_in_order() -> None:
    toc = (ROOT / "_toc.yml").read_text()
    positions = [toc.find(f"notebooks/{p.stem}") for p in notebooks.notebook_paths(ROOT)]
    assert all(pos >= 0 for pos in positions), "a notebook is missing from _toc.yml"
    assert positions == sorted(positions)


def test_package_exports() -> None:
    assert tnt_rest_lite.__version__
    assert callable(tnt_rest_lite.create_model) and callable(tnt_rest_lite.get_profile)


# --- command line -----------------------------------------------------------------------------


def test_cli_lists_models(capsys: pytest.CaptureFixture[str]) -> None:
    from tnt_rest_lite.__main__ import main

    assert main(["models"]) == 0
    assert set(capsys.readouterr().out.split()) == set(list_models())


def test_cli_passes_options_through_to_tool_modules(capsys: pytest.CaptureFixture[str]) -> None:
    from tnt_rest_lite.__main__ import main

    for command, prog in (("bench", "tnt_rest_lite bench"), ("train-bench", "tnt_rest_lite train-bench")):
        with pytest.raises(SystemExit) as stop:
            main([command, "--help"])
        assert stop.value.code == 0
        assert prog in capsys.readouterr().out


def test_cli_rejects_unknown_profile_before_running(tmp_path: Path) -> None:
    from tnt_rest_lite.__main__ import main

    with pytest.raises(ValueError, match="Unknown profile 'gpu9000'"):
        main(["execute", str(ROOT / "notebooks" / "00_tour.ipynb"), "--profile", "gpu9000"])


def _run_setup_cell(prelude: str, commit: str | None = None) -> subprocess.CompletedProcess[str]:
    code = prelude + "\n" + notebooks.setup_cell_source(commit)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_setup_cell_outside_colab_says_how_to_install() -> None:
    # Pretend the package is not importable: outside Colab the cell must not pip-install anything.
    proc = _run_setup_cell("import importlib.util as u\nu.find_spec = lambda name, *a: None")
    assert proc.returncode != 0
    assert "tnt_rest_lite is not installed: run `pip install -e .`" in proc.stderr


def test_setup_cell_on_colab_installs_from_the_repository_url() -> None:
    prelude = """
import importlib.util as u, subprocess, sys, types
sys.modules["google.colab"] = types.ModuleType("google.colab")
calls = []
real_run = subprocess.run
subprocess.run = lambda cmd, *a, **k: calls.append(cmd) if "pip" in cmd else real_run(cmd, *a, **k)
real_find_spec = u.find_spec
u.find_spec = lambda name, *a: None if name == "tnt_rest_lite" else real_find_spec(name, *a)
import atexit
atexit.register(lambda: print("PIP", calls))
"""
    sha = "0123456789abcdef0123456789abcdef01234567"
    proc = _run_setup_cell(prelude, commit=sha)
    assert proc.returncode == 0, proc.stderr
    assert f"git+{notebooks.REPOSITORY_URL}@{sha}" in proc.stdout and "'pip', 'install'" in proc.stdout
    assert "profile : ci" in proc.stdout  # the run report follows the install


def test_setup_cell_on_colab_keeps_checkpoints_and_results_on_drive(tmp_path: Path) -> None:
    # PERSISTENT_DIR set: Drive is mounted and the package's checkpoints and results go there
    prelude = """
import os, sys, types
colab = types.ModuleType("google.colab")
colab.drive = types.SimpleNamespace(mount=lambda where: print("MOUNT", where))
sys.modules["google.colab"] = colab
import atexit
atexit.register(lambda: print("ENV", os.environ["TNT_REST_CHECKPOINTS"], os.environ["TNT_REST_RESULTS"]))
"""
    env_free = {k: v for k, v in os.environ.items() if not k.startswith("TNT_REST_")}
    code = (
        prelude
        + "\n"
        + notebooks.setup_cell_source("0" * 40).replace("PERSISTENT_DIR = None", f"PERSISTENT_DIR = {str(tmp_path)!r}")
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env_free)
    assert proc.returncode == 0, proc.stderr
    assert "MOUNT /content/drive" in proc.stdout
    assert f"ENV {tmp_path}/checkpoints {tmp_path}/results" in proc.stdout


def test_execute_stamps_the_commit_it_runs_at(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nbformat

    path = tmp_path / "00_x.ipynb"
    nb = nbformat.v4.new_notebook()
    setup = nbformat.v4.new_code_cell(
        notebooks.setup_cell_source(None), metadata={"tags": list(notebooks.SETUP_CELL_TAGS)}
    )
    nb.cells = [setup, nbformat.v4.new_code_cell("1 + 1")]
    nbformat.write(nb, path)
    monkeypatch.setattr(notebooks, "git_commit", lambda: "f" * 40)
    notebooks.execute_notebook(path, profile="ci")
    stamped = nbformat.read(path, as_version=4).cells[0]
    assert (
        stamped.source == notebooks.setup_cell_source("f" * 40)
        and stamped.metadata["tags"] == notebooks.SETUP_CELL_TAGS
    )
    assert notebooks.stamped_commit(stamped.source) == "f" * 40
    notebooks.sync_setup_cells([path])  # a plain sync keeps the stamp
    assert notebooks.stamped_commit(nbformat.read(path, as_version=4).cells[0].source) == "f" * 40


def test_book_build_uses_the_jupyter_book_beside_the_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    # `make book` runs the venv's python without activating the venv: PATH need not hold jupyter-book.
    from tnt_rest_lite import __main__ as cli

    calls: list[list[str]] = []
    monkeypatch.setattr(cli.subprocess, "call", lambda cmd: calls.append(cmd) or 0)
    monkeypatch.setenv("PATH", "/nonexistent")
    assert cli.build_book() == 0
    exe, *args = calls[0]
    assert Path(exe).parent == Path(sys.executable).parent
    assert args == ["build", str(ROOT), "-W", "--keep-going"]


# --- the generated summary ------------------------------------------------------------------------


def test_committed_summary_pages_are_what_the_results_give(tmp_path: Path) -> None:
    from tnt_rest_lite.report.summary import write_pages

    (tmp_path / "book").mkdir()
    for generated in write_pages(tmp_path, ROOT / "results"):
        committed = ROOT / "book" / generated.name
        assert committed.read_text() == generated.read_text(), (
            f"book/{generated.name} is stale: run `python -m tnt_rest_lite summary`"
        )


def test_summary_marks_missing_results_and_names_every_run(tmp_path: Path) -> None:
    import shutil

    from tnt_rest_lite.report.summary import ITEMS, Store, item_status, summary_markdown, supplements_markdown

    results = tmp_path / "results"
    shutil.copytree(ROOT / "results" / "cpu", results / "cpu")
    store = Store(results)
    assert all(item_status(item, store)[0] for item in ITEMS)
    (results / "cpu" / "tnt_table2_verdicts.json").unlink()
    done, why = item_status(next(i for i in ITEMS if i.key == "tnt_table2"), store)
    assert not done and why == "not yet: no stored `tnt_table2_verdicts`"
    coverage = supplements_markdown(store)
    assert "**not yet: no stored `tnt_table2_verdicts`**" in coverage
    page = summary_markdown(store)
    assert "**Not regenerated yet**" in page
    # a richer profile's run is shown instead of the cpu one, with its own provenance
    record = json.loads((results / "cpu" / "rest_table1_verdicts.json").read_text())
    record["provenance"].update(profile="colab", git_commit="abcdef0123", device="Tesla T4")
    (results / "colab").mkdir()
    (results / "colab" / "rest_table1_verdicts.json").write_text(json.dumps(record))
    assert (
        "colab · Tesla T4 · commit abcdef0 ·" in item_status(next(i for i in ITEMS if i.key == "rest_table1"), store)[1]
    )
    # every item of both supplements is there: 4 figures, 4 tables, the GL equations and the ablation
    assert sorted(i.key for i in ITEMS) == sorted(
        [
            "tnt_fig1",
            "tnt_fig2",
            "tnt_table1",
            "tnt_table2",
            "rest_fig1",
            "rest_fig2",
            "rest_table1",
            "rest_table2",
            "rest_gl",
            "rest_ablation",
        ]
    )


def _widget_notebook() -> Any:
    import nbformat

    def model(name: str, **state: Any) -> dict[str, Any]:
        return {"model_name": name, "model_module": "@jupyter-widgets/controls", "state": state}

    state = {
        "bar": model("HBoxModel", children=["IPY_MODEL_left", "IPY_MODEL_progress", "IPY_MODEL_right"]),
        "left": model("HTMLModel", value="train\u2007seed\u20070:\u2007100%"),
        "progress": model("FloatProgressModel", value=512.0, max=512.0),
        "right": model("HTMLModel", value="\u2007512/512\u2007[01:02&lt;00:00,\u20078.2step/s]"),
        "box": model("VBoxModel", children=["IPY_MODEL_slider", "IPY_MODEL_choice", "IPY_MODEL_out"]),
        "slider": model("IntSliderModel", description="image", value=3),
        "choice": model("DropdownModel", description="model", index=1, _options_labels=["DeiT", "TNT"]),
        "out": model(
            "OutputModel", outputs=[{"output_type": "display_data", "data": {"text/plain": "<Figure>"}, "metadata": {}}]
        ),
    }

    def view(model_id: str, fallback: str) -> Any:
        return nbformat.v4.new_output(
            "display_data",
            data={
                "application/vnd.jupyter.widget-view+json": {
                    "model_id": model_id,
                    "version_major": 2,
                    "version_minor": 0,
                },
                "text/plain": fallback,
            },
        )

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("train()"), nbformat.v4.new_code_cell("interact(explore)")]
    nb.cells[0].outputs = [view("bar", "train seed 0:   0%|          | 0/512")]
    nb.cells[1].outputs = [view("box", "interactive(children=...)")]
    nb.metadata["widgets"] = {
        "application/vnd.jupyter.widget-state+json": {"state": state, "version_major": 2, "version_minor": 0}
    }
    return nb


def test_stored_widgets_become_what_they_last_showed() -> None:
    nb = _widget_notebook()
    assert notebooks.finish_progress_widgets(nb) == 2
    bar = nb.cells[0].outputs
    assert [o.output_type for o in bar] == ["stream"]
    assert bar[0].text == "train seed 0: 100%|██████████| 512/512 [01:02<00:00, 8.2step/s]\n"
    explorer = nb.cells[1].outputs
    assert "controls: image=3, model=TNT" in explorer[0].text
    assert explorer[1].output_type == "display_data" and explorer[1].data["text/plain"] == "<Figure>"
    assert "widgets" not in nb.metadata  # nothing left for a CDN widget manager to render


def test_no_committed_notebook_needs_a_widget_manager() -> None:
    import nbformat

    for path in notebooks.notebook_paths(ROOT):
        nb = nbformat.read(path, as_version=4)
        views = [
            o
            for c in nb.cells
            for o in c.get("outputs", [])
            if "application/vnd.jupyter.widget-view+json" in o.get("data", {})
        ]
        assert not views and "widgets" not in nb.metadata, f"{path.name}: run notebooks.finish_progress_widgets"


def test_committed_outputs_name_one_commit_and_no_local_paths() -> None:
    """Deliverable 4 of the book issue, checked on what is committed: each notebook's stored outputs
    come from one run (every provenance line names the same commit), show no absolute path of the
    machine that ran them and no progress bar frozen at its start."""
    import nbformat

    commit = re.compile(r"commit[^0-9a-f]{0,12}([0-9a-f]{7,40})")
    local_path = re.compile(r"PosixPath\(|(?<![\w.:/])/(?:home|root|tmp|work|Users|content)/")
    unfinished_bar = re.compile(r"\s0%\|")
    for path in notebooks.notebook_paths(ROOT):
        nb = nbformat.read(path, as_version=4)
        texts = [json.dumps(o) for c in nb.cells for o in c.get("outputs", [])]
        commits = {m[:7] for text in texts for m in commit.findall(text)}
        assert len(commits) == 1, f"{path.name}: stored outputs name commits {sorted(commits)}"
        for text in texts:
            assert not local_path.search(text), f"{path.name}: a local path in {local_path.search(text).group(0)!r}"
            assert not unfinished_bar.search(text), f"{path.name}: a progress bar stored at 0%"


def test_smoke_scale_shrinks_the_runs_and_keeps_every_other_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from tnt_rest_lite.profiles import SCALE_ENV_VAR, smoke_scale

    for name in ("colab", "full"):
        book_run = PROFILES[name]
        monkeypatch.setenv(SCALE_ENV_VAR, "smoke")
        smoke = get_profile(name)
        monkeypatch.delenv(SCALE_ENV_VAR)
        assert smoke == smoke_scale(book_run) and get_profile(name) == book_run
        assert smoke.store_name == f"{name}-smoke" and book_run.store_name == name  # kept apart
        kept = (
            "image_size",
            "batch_size",
            "num_seeds",
            "num_workers",
            "model_overrides",
            "train_mixup",
            "data_difficulty",
        )
        assert {k: getattr(smoke, k) for k in kept} == {k: getattr(book_run, k) for k in kept}
        assert smoke.epochs == 1 and smoke.train_samples == smoke.batch_size  # one step of one epoch
        assert smoke.val_samples == smoke.test_samples == 8 and smoke.bench_batch <= 4
        for table in book_run.table_recipe:
            assert smoke.batch_size_for(table) == book_run.batch_size_for(table) and smoke.epochs_for(table) == 1
        detection = smoke.detection
        assert detection["epochs"] == 1 and detection["train_samples"] == detection["batch_size"]
        same = ("batch_size", "lr", "fpn_channels", "box_head_width", "faster_rcnn_options", "categories")
        assert {k: detection[k] for k in same} == {k: book_run.detection[k] for k in same}
    monkeypatch.setenv(SCALE_ENV_VAR, "tiny")
    with pytest.raises(ValueError, match="Unknown scale 'tiny' .*Valid scales: book, smoke"):
        get_profile("colab")


def test_smoke_batch_cap_changes_the_batch_sizes_only(monkeypatch: pytest.MonkeyPatch) -> None:
    from tnt_rest_lite.profiles import SCALE_ENV_VAR, SMOKE_MAX_BATCH_ENV_VAR, smoke_scale

    monkeypatch.setenv(SCALE_ENV_VAR, "smoke")
    monkeypatch.setenv(SMOKE_MAX_BATCH_ENV_VAR, "16")
    capped = get_profile("full")
    kept = smoke_scale(PROFILES["full"])
    assert capped.batch_size == 16 and kept.batch_size == 256
    assert capped.train_samples == 16 and capped.detection["batch_size"] == 16
    assert (
        capped.batch_size_for("rest_ablation") == 16
        and capped.table_recipe["rest_ablation"]["lr"] == (kept.table_recipe["rest_ablation"]["lr"])
    )
    same = ("image_size", "num_seeds", "num_workers", "train_mixup", "data_difficulty", "epochs", "val_samples")
    assert {k: getattr(capped, k) for k in same} == {k: getattr(kept, k) for k in same}
    for bad in ("0", "big"):
        monkeypatch.setenv(SMOKE_MAX_BATCH_ENV_VAR, bad)
        with pytest.raises(ValueError, match="TNT_REST_SMOKE_MAX_BATCH must be a positive batch size"):
            get_profile("full")
