"""Every notebook under the ``colab`` and ``full`` profiles at the smoke scale (``make smoke``, part of ``make test``).

``TNT_REST_SCALE=smoke`` keeps each profile's models, image size, recipes, batch sizes, workers, seeds and
AMP flag and shrinks every run to one step per epoch (:func:`tnt_rest_lite.profiles.smoke_scale`), so the
GPU profiles' code paths run on a CPU. The notebooks of one profile share a results and a checkpoint
folder, as on a Colab runtime: 07-10 read the models 04-06 trained. The ``PRETRAINED = True`` branches of
07 and 08 run too, with the published weights stubbed offline (``tests/pretrained_stubs.py``): random
weights for timm's hub and the authors' ResT-Lite checkpoint in their training script's layout. Outputs
are not written back. ``TNT_REST_SMOKE_PROFILES`` picks the profiles (default ``colab full``);
``TNT_REST_SMOKE_MAX_BATCH_<PROFILE>`` (e.g. ``..._FULL=16``, as ``make test`` sets it) caps that
profile's training batch sizes (:func:`tnt_rest_lite.profiles.smoke_scale`), ``TNT_REST_SMOKE_THREADS_<PROFILE>``
sets its kernels' torch threads (``make smoke`` runs the two profiles side by side, one thread each).
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
PROFILES = os.environ.get("TNT_REST_SMOKE_PROFILES", "colab full").split()
SWITCH = "PRETRAINED = False"


@pytest.fixture(scope="session")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Path]]:
    """Per profile: one results folder, one checkpoint folder and one folder of stub weights for all notebooks."""
    return {
        p: {kind: tmp_path_factory.mktemp(f"{p}-{kind}") for kind in ("results", "checkpoints", "stubs")}
        for p in PROFILES
    }


def with_pretrained_stubs(nb: nbformat.NotebookNode, stubs: Path) -> bool:
    """Turn the notebook's pretrained switch on, with the published weights stubbed; False if it has none."""
    switch = [c for c in nb.cells if c.cell_type == "code" and c.source.startswith(SWITCH)]
    if not switch:
        return False
    cell = switch[0]
    cell.source = cell.source.replace(SWITCH, "PRETRAINED = True", 1)
    if "REST_LITE_CHECKPOINT = None" in cell.source:
        from pretrained_stubs import write_authors_checkpoint

        path = write_authors_checkpoint(stubs / "rest_lite.pth")
        cell.source = cell.source.replace("REST_LITE_CHECKPOINT = None", f"REST_LITE_CHECKPOINT = {str(path)!r}", 1)
    install = (
        f"import sys\nsys.path.insert(0, {str(TESTS)!r})\nimport pretrained_stubs\n"
        f"pretrained_stubs.install_hub_stub({str(stubs)!r})"
    )
    nb.cells.insert(nb.cells.index(cell), nbformat.v4.new_code_cell(install))
    return True


def run_at_smoke_scale(
    profile: str, path: Path, stores: dict[str, dict[str, Path]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Execute notebook ``path`` under ``profile`` at the smoke scale in a fresh kernel (outputs not written)."""
    import sys

    sys.path.insert(0, str(TESTS))
    store = stores[profile]
    for key, value in {
        "TNT_REST_PROFILE": profile,
        "TNT_REST_SCALE": "smoke",
        "TNT_REST_RESULTS": str(store["results"]),
        "TNT_REST_CHECKPOINTS": str(store["checkpoints"]),
        "TNT_REST_TEXT_PROGRESS": "1",
        "MPLBACKEND": "Agg",
    }.items():
        monkeypatch.setenv(key, value)  # the kernel inherits this environment
    # the torch threads of this profile's kernels (``make smoke`` gives each profile one: the two workers'
    # kernels side by side on two cores; a third thread slowed both 2-5x); the thread count changes no result
    threads = os.environ.get(f"TNT_REST_SMOKE_THREADS_{profile.upper()}")
    if threads:
        monkeypatch.setenv("OMP_NUM_THREADS", threads)
    cap = os.environ.get(f"TNT_REST_SMOKE_MAX_BATCH_{profile.upper()}")
    if cap:
        monkeypatch.setenv("TNT_REST_SMOKE_MAX_BATCH", cap)
    else:
        monkeypatch.delenv("TNT_REST_SMOKE_MAX_BATCH", raising=False)
    nb = nbformat.read(path, as_version=4)
    with_pretrained_stubs(nb, store["stubs"])
    NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()


def _profile_tests(profile: str) -> type:
    """One test class per profile: ``make smoke`` runs ``-n 2 --dist loadscope``, so each class (profile) runs
    in order in one worker, sharing its results and checkpoints (07-10 read 04-06's models), beside the other.
    (A class, not an ``xdist_group`` mark: pytest 9 ignores the node-id suffix that xdist 3.8's groups rely on.)"""

    class ProfileNotebooks:
        @pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda v: v.stem)
        def test_notebook_runs_at_smoke_scale(
            self, path: Path, stores: dict[str, dict[str, Path]], monkeypatch: pytest.MonkeyPatch
        ) -> None:
            run_at_smoke_scale(profile, path, stores, monkeypatch)

    name = f"TestSmoke{profile.capitalize()}"
    ProfileNotebooks.__name__ = ProfileNotebooks.__qualname__ = name
    return ProfileNotebooks


for _profile in PROFILES:
    globals()[f"TestSmoke{_profile.capitalize()}"] = _profile_tests(_profile)


def test_the_pretrained_switch_is_found_in_both_figure_chapters(tmp_path: Path) -> None:
    import sys

    sys.path.insert(0, str(TESTS))
    found = {}
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        found[path.stem] = with_pretrained_stubs(nb, tmp_path)
        if found[path.stem]:
            sources = [c.source for c in nb.cells if c.cell_type == "code"]
            assert any(s.startswith("PRETRAINED = True") for s in sources)
            assert any("install_hub_stub" in s for s in sources)
    assert [k for k, v in found.items() if v] == ["07_tnt_figures", "08_rest_figures"]
