"""Command line: ``python -m tnt_rest_lite reproduce | execute NB... | summary | bench | train | train-bench | gpu-check | budget-model | sync-setup | models``."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from tqdm.auto import tqdm

from .book.notebooks import execute_notebook, notebook_paths, sync_setup_cells
from .core.paths import repo_root
from .core.store import git_commit
from .experiments import budget_model, gpu_check, recipe_search, train_bench, train_cli
from .measure import bench
from .models import list_models
from .report.summary import write_pages


def build_book() -> int:
    """Build the HTML book from the stored outputs, with warnings as errors (as ``make test`` does)."""
    # The jupyter-book beside this interpreter: a virtual environment need not be activated (make, CI).
    exe = shutil.which("jupyter-book", path=str(Path(sys.executable).parent)) or shutil.which("jupyter-book")
    if exe is None:
        raise SystemExit("jupyter-book is not installed: pip install -e '.[book]' (or use --no-book)")
    return subprocess.call([exe, "build", str(repo_root()), "-W", "--keep-going"])


# Sub-commands that are whole modules with their own command line (``module.main(argv) -> int``).
PASS_THROUGH = {
    "bench": bench,
    "train": train_cli,
    "train-bench": train_bench,
    "recipe-search": recipe_search,
    "gpu-check": gpu_check,
    "budget-model": budget_model,
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] and argv[0] in PASS_THROUGH:
        # These tools parse their own options; argparse's REMAINDER would not capture "--batch 8".
        return PASS_THROUGH[argv[0]].main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m tnt_rest_lite", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser("reproduce", help="re-execute every notebook (writing outputs back), then build the book")
    rep.add_argument("--profile", help="ci | colab | full (default: $TNT_REST_PROFILE, else by device)")
    rep.add_argument("--no-book", action="store_true", help="skip the HTML build")
    ex = sub.add_parser("execute", help="execute the given notebooks and store their outputs")
    ex.add_argument("notebooks", nargs="+", type=Path)
    ex.add_argument("--profile")
    sub.add_parser("summary", help="write book/summary.md and book/supplements.md from the stored results")
    sync = sub.add_parser("sync-setup", help="rewrite every notebook's set-up cell from tnt_rest_lite.book.notebooks")
    sync.add_argument("--commit", help="the commit Colab installs: HEAD or a sha (default: keep each notebook's)")
    sub.add_parser("models", help="list the registered models")
    sub.add_parser("train", help="train one registered model with the engine, also under torchrun (see train --help)")
    sub.add_parser("bench", help="inference throughput and memory: ResT-Lite EMSA vs MSA (see bench --help)")
    sub.add_parser("train-bench", help="training time and img/s of every small model against the profile budget")
    sub.add_parser("gpu-check", help="the colab/full training path timed on one GPU, with chapter estimates")
    sub.add_parser("budget-model", help="colab/full chapter times modelled from measured FLOPs and op counts (no GPU)")
    sub.add_parser(
        "recipe-search", help="validation curves of candidate batch sizes and rates (see recipe-search --help)"
    )
    args = parser.parse_args(argv)

    if args.command == "models":
        print("\n".join(list_models()))
    elif args.command == "summary":
        for path in write_pages():
            print(f"wrote {path}")
    elif args.command == "sync-setup":
        commit = git_commit() if args.commit == "HEAD" else args.commit
        for path in sync_setup_cells(commit=commit):
            print(f"updated {path}")
    elif args.command in ("reproduce", "execute"):
        paths = notebook_paths() if args.command == "reproduce" else args.notebooks
        for path in tqdm(paths, desc="notebooks", unit="nb"):
            seconds = execute_notebook(path, profile=args.profile)
            tqdm.write(f"{path.name}: {seconds:.1f} s")
        if args.command == "reproduce":
            write_pages()  # the summary and coverage pages from the results the run just stored
            if not args.no_book:
                return build_book()
    return 0


if __name__ == "__main__":
    sys.exit(main())
