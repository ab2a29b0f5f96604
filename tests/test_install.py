"""The install keeps Colab's stack: ``pip install`` of the package (what the set-up cell runs) into an
environment holding Colab's preinstalled versions leaves torch, torchvision and ipywidgets as they are.

The environment is a virtual environment whose site-packages hold a metadata-only distribution of
every package of ``tests/data/colab_gpu_pip_freeze.txt`` at its Colab version; pip resolves the
install against it (``--dry-run --report``: nothing is installed). Packages Colab lacks are looked up
on PyPI, so the test needs the index (it is skipped, saying so, when PyPI cannot be reached).
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
import venv
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
SNAPSHOT = Path(__file__).parent / "data" / "colab_gpu_pip_freeze.txt"
KEPT = ("torch", "torchvision", "ipywidgets")


def colab_snapshot() -> dict[str, str]:
    pins = {}
    for line in SNAPSHOT.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    return pins


def _pypi_reachable() -> bool:
    try:
        urllib.request.urlopen("https://pypi.org/simple/timm/", timeout=10).close()
        return True
    except OSError:
        return False


def _fake_environment(folder: Path, pins: dict[str, str]) -> Path:
    """A virtual environment (no pip) whose site-packages hold ``pins`` as metadata-only distributions."""
    venv.create(folder, with_pip=False)
    python = folder / "bin" / "python"
    site = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    for name, version in pins.items():
        info = site / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        (info / "INSTALLER").write_text("colab-snapshot\n")
        (info / "RECORD").write_text("")
    return python


def test_declared_ranges_admit_colabs_versions():
    # offline half: every declared dependency that Colab preinstalls is satisfied by Colab's version
    import tomllib

    pins = colab_snapshot()
    declared = [Requirement(r) for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]]
    for name in KEPT:
        assert name in pins, f"{name} missing from the Colab snapshot"
    for req in declared:
        name = canonicalize_name(req.name)
        if name in pins:
            assert req.specifier.contains(Version(pins[name]), prereleases=True), (
                f"{req} would replace Colab's {name}=={pins[name]}"
            )


@pytest.mark.skipif(not _pypi_reachable(), reason="PyPI is not reachable: the install cannot be resolved")
def test_pip_install_keeps_colabs_torch_torchvision_ipywidgets(tmp_path: Path):
    pins = colab_snapshot()
    python = _fake_environment(tmp_path / "colab", pins)
    report = tmp_path / "report.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--dry-run",
            "--quiet",
            "--report",
            str(report),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    planned = {
        canonicalize_name(item["metadata"]["name"]): item["metadata"]["version"]
        for item in json.loads(report.read_text())["install"]
    }
    assert "tnt-rest-lite" in planned
    replaced = {name: (pins[name], planned[name]) for name in KEPT if name in planned}
    assert not replaced, f"the install would replace Colab's {replaced} (preinstalled, new)"
