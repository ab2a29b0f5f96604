"""The results store: every regenerated number and figure, with where it came from.

Layout: ``results/<profile>/<name>.json`` holds ``{"provenance": {...}, "data": ...}``;
figures are ``results/<profile>/<name>.png`` (and ``.svg``) beside a ``<name>.json`` with the
same provenance. The folder is the repository's ``results/`` (found by walking up from the
working directory), or ``$TNT_REST_RESULTS`` when set.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from ..profiles import get_profile
from .paths import PACKAGE_DIR, find_repo_root

__all__ = [
    "results_dir",
    "provenance",
    "save_json",
    "load_json",
    "save_figure",
    "stopwatch",
    "device_name",
    "git_commit",
    "atomic_write",
    "atomic_write_text",
    "atomic_torch_save",
]


ENV_VAR = "TNT_REST_RESULTS"


def results_dir(profile: str | None = None) -> Path:
    """Folder of the active profile's results (created on demand)."""
    base = os.environ.get(ENV_VAR)
    root = Path(base) if base else (find_repo_root() or Path.cwd()) / "results"
    folder = root / get_profile(profile).store_name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def device_name(device: torch.device | str | None = None) -> str:
    """A readable name of the device the run used (GPU model or CPU)."""
    dev = torch.device(device) if device is not None else None
    if (dev is None and torch.cuda.is_available()) or (dev is not None and dev.type == "cuda"):
        return torch.cuda.get_device_name(dev if dev is not None else 0)
    cpu = platform.processor() or platform.machine()
    return f"CPU ({cpu}, {os.cpu_count()} logical cores, {torch.get_num_threads()} torch threads)"


def git_commit() -> str | None:
    """The repository's current commit, with ``+dirty`` if tracked code (outside results/ and notebooks/) has changes."""
    root = find_repo_root() or PACKAGE_DIR.parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            # outputs that a run itself rewrites (results/, executed notebooks) do not make the code dirty
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!results", ":!notebooks"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return sha + ("+dirty" if dirty else "")


def provenance(
    *, seed: int | None = None, wall_time_s: float | None = None, device: Any = None, **extra: Any
) -> dict[str, Any]:
    """Where a result came from: profile, device, versions, seed, commit, wall time, date."""
    import timm

    record: dict[str, Any] = {
        "profile": get_profile().store_name,
        "device": device_name(device),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "python": platform.python_version(),
        "seed": seed,
        "git_commit": git_commit(),
        "wall_time_s": None if wall_time_s is None else round(float(wall_time_s), 3),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    record.update(extra)
    return record


def atomic_write(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """Write ``path`` atomically: ``write(tmp)`` to a temporary file in the same folder, then ``os.replace``.

    A crash mid-write leaves the previous file intact (the rename is atomic on POSIX and Windows when both
    names are on the same file system, hence the same folder).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    write(tmp)
    os.replace(tmp, path)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """:func:`atomic_write` of a text file."""
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """:func:`atomic_write` of ``torch.save(obj)``."""
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def save_json(
    name: str,
    data: Any,
    *,
    seed: int | None = None,
    wall_time_s: float | None = None,
    device: Any = None,
    **extra: Any,
) -> Path:
    """Write ``data`` to ``results/<profile>/<name>.json`` with its provenance."""
    path = results_dir() / f"{name}.json"
    record = {
        "provenance": provenance(seed=seed, wall_time_s=wall_time_s, device=device, **extra),
        "data": data,
    }
    atomic_write_text(path, json.dumps(record, indent=2, sort_keys=False, default=_jsonable) + "\n")
    return path


def load_json(name: str, profile: str | None = None) -> dict[str, Any]:
    """Read a stored result (``{"provenance": ..., "data": ...}``); a clear error if missing."""
    path = results_dir(profile) / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"No stored result '{name}' for profile '{get_profile(profile).name}' at {path}; "
            "run the notebook that produces it first"
        )
    return json.loads(path.read_text())


def save_figure(
    fig: Any,
    name: str,
    *,
    seed: int | None = None,
    wall_time_s: float | None = None,
    formats: tuple[str, ...] = ("png", "svg"),
    **extra: Any,
) -> Path:
    """Save a matplotlib figure as ``results/<profile>/<name>.png`` (+svg) with provenance."""
    folder = results_dir()
    for fmt in formats:
        # svg embeds a date by default; drop it so re-runs only change when the picture does
        meta = {"Date": None} if fmt == "svg" else None
        fig.savefig(folder / f"{name}.{fmt}", dpi=150, bbox_inches="tight", metadata=meta)
    save_json(name, {"figure": [f"{name}.{fmt}" for fmt in formats]}, seed=seed, wall_time_s=wall_time_s, **extra)
    return folder / f"{name}.{formats[0]}"


@contextmanager
def stopwatch() -> Iterator[dict[str, float]]:
    """``with stopwatch() as t: ...`` then ``t["s"]`` holds the wall time in seconds."""
    out: dict[str, float] = {}
    start = time.perf_counter()
    try:
        yield out
    finally:
        out["s"] = time.perf_counter() - start


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"Cannot store {type(obj).__name__} as JSON")
