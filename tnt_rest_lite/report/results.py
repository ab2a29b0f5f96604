"""Markdown of stored results: a regenerated table with provenance, stored verdicts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..core import store
from ..core.format import markdown_table
from ..experiments.verdicts import verdict_sentence

__all__ = ["detection_results_markdown", "results_markdown"]


def detection_results_markdown(table: Mapping[str, Any]) -> str:
    """The regenerated detection table with the provenance of every row (read from the results store)."""

    provenance = "\n".join(f"* {line}" for line in table["provenance"])
    return markdown_table(table["headers"], table["rows"]) + "\n\nProvenance of the rows:\n\n" + provenance


def stored_verdicts_markdown(names: Sequence[str]) -> str:
    """The verdicts stored under ``names`` in the results store, one line each, with their provenance.

    What a chapter's closing summary shows: read back from disk, so it says what the saved run
    measured (profile, device, commit, date), not what the kernel holds.
    """

    lines = []
    for name in names:
        record = store.load_json(name)
        prov = record["provenance"]
        lines.append(
            f"**`{name}`** (profile {prov['profile']}, {prov['device']}, commit {prov['git_commit']}, {prov['date']}):\n"
        )
        lines += [f"* {verdict_sentence(v)}" for v in record["data"]]
        lines.append("")
    return "\n".join(lines)


def results_markdown(table: Mapping[str, Any]) -> str:
    """A regenerated table (``experiments.runner.run_table``'s result) with the provenance of every row."""
    provenance = "\n".join(f"* {line}" for line in table["provenance"])
    return markdown_table(table["headers"], table["rows"]) + "\n\nProvenance of the rows:\n\n" + provenance
