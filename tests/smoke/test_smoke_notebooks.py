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


# 04-06 train the models 07-10 read: a profile's chapters from 04 on run in order in one worker.
CHAINED_FROM = "04"


def lanes(profiles: list[str], notebooks: list[Path]) -> dict[str, list[tuple[str, Path]]]:
    """The two workers' shares of ``make smoke`` (``-n 2 --dist loadscope``: one test class per worker).

    The last profile's chained chapters (04 on: ``full``'s, the heaviest) are one lane; everything else
    (the other profiles whole, in order, and the last one's 00-03, which read nothing) the other. Each
    profile's chained chapters stay in one worker, sharing its results and checkpoints, as on a runtime.
    """
    last = profiles[-1]
    chained = [(last, nb) for nb in notebooks if nb.stem >= CHAINED_FROM]
    rest = [(p, nb) for p in profiles for nb in notebooks if (p, nb) not in chained]
    return {"TestSmokeLane1": rest, "TestSmokeLane2": chained}


def _lane_tests(name: str, jobs: list[tuple[str, Path]]) -> type:
    """A test class running ``jobs`` in order (a class, not an ``xdist_group`` mark: pytest 9 ignores the
    node-id suffix that xdist 3.8's groups rely on, and ``loadscope`` keeps a class in one worker)."""

    class Lane:
        @pytest.mark.parametrize(("profile", "path"), jobs, ids=[f"{p}-{nb.stem}" for p, nb in jobs])
        def test_notebook_runs_at_smoke_scale(
            self, profile: str, path: Path, stores: dict[str, dict[str, Path]], monkeypatch: pytest.MonkeyPatch
        ) -> None:
            run_at_smoke_scale(profile, path, stores, monkeypatch)

    Lane.__name__ = Lane.__qualname__ = name
    return Lane


for _name, _jobs in lanes(PROFILES, NOTEBOOKS).items():
    globals()[_name] = _lane_tests(_name, _jobs)


def test_each_profiles_chained_chapters_share_one_lane() -> None:
    jobs = lanes(["colab", "full"], NOTEBOOKS)
    assert sorted(j for lane in jobs.values() for j in lane) == sorted(
        (p, nb) for p in ("colab", "full") for nb in NOTEBOOKS
    )
    for profile in ("colab", "full"):
        chained = {name for name, lane in jobs.items() for p, nb in lane if p == profile and nb.stem >= CHAINED_FROM}
        assert len(chained) == 1, (profile, chained)
        in_lane = [nb.stem for p, nb in jobs[chained.pop()] if p == profile]
        assert in_lane == sorted(in_lane)  # in reading order: 04-06 before the chapters that read them


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
