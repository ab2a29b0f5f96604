"""The book's summary of both supplements, generated from the results store.

Every item of the two supplements (four figures, four tables, the GL equations and the ResNet-18
ablation) is described once, in :data:`ITEMS`: what the supplement shows, the chapters that
regenerate it, which stored results carry it and what our scale can and cannot match. Two pages are
written from these descriptions and from whatever the results store holds:

* ``book/summary.md``: per item, the paper's values beside ours with the difference, the verdicts
  of the published claims, a thumbnail of the regenerated figure and the provenance (profile,
  device, commit, date) of every row;
* ``book/supplements.md``: the coverage table, where an item reads "regenerated" only when its
  results are stored.

Both pages are committed; :func:`write_pages` rewrites them (``python -m tnt_rest_lite summary``,
run by ``reproduce`` before the book is built) and a test checks that the committed pages are what
the committed results give, so the text cannot disagree with the runs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.format import digits as _digits
from ..core.format import markdown_table
from ..core.paths import repo_root
from ..experiments.figures import scope_sentence
from ..experiments.verdicts import STILL_LEARNING_GAIN, VERDICT_STATES, verdict_state
from ..measure.conventions import FLOP_CONVENTIONS, PUBLISHED_FLOPS_CONVENTION
from ..reference import REST_TABLE1

__all__ = [
    "BOOK_PROFILES",
    "ITEMS",
    "SupplementItem",
    "Store",
    "item_status",
    "summary_markdown",
    "supplements_markdown",
    "write_pages",
]


# The profiles whose results the book shows, richest first: an item is shown from the first that has it.
BOOK_PROFILES = ("full", "colab", "cpu")


@dataclass
class Store:
    """Read access to ``results/<profile>/`` for the book's profiles."""

    root: Path

    def find(self, name: str) -> tuple[str, dict[str, Any]] | None:
        """``(profile, record)`` of stored result ``name`` from the richest profile that has it."""
        for profile in BOOK_PROFILES:
            path = self.root / profile / f"{name}.json"
            if path.is_file():
                return profile, json.loads(path.read_text())
        return None

    def figure(self, name: str, profile: str) -> Path | None:
        path = self.root / profile / f"{name}.png"
        return path if path.is_file() else None


def _short_device(device: str) -> str:
    """``CPU (x86_64, 2 logical cores, 2 torch threads)`` -> ``CPU, 2 cores``; GPU names as they are."""
    import re

    cores = re.match(r"CPU \(.*?(\d+) logical cores", device)
    return f"CPU, {cores.group(1)} cores" if cores else device


def _short_provenance(profile: str, record: Mapping[str, Any]) -> str:
    prov = record.get("provenance", {})
    commit = (prov.get("git_commit") or "unknown")[:7]
    device = _short_device(prov.get("device", "unknown device"))
    date = str(prov.get("date", ""))[:10]
    return f"{profile} · {device} · commit {commit} · {date}"


# --- what each item compares ---------------------------------------------------------------------
# A comparison function reads the store and returns rows: quantity | paper | ours | Δ | run.


def _table_rows(store: Store, name: str, metric: str) -> list[list[str]]:
    """The ``<metric> ours`` / ``<metric> paper`` / Δ columns of a stored chapter table, one row per model."""
    found = store.find(name)
    if found is None:
        return []
    profile, record = found
    headers, rows = record["data"]["headers"], record["data"]["rows"]
    ours = next(i for i, h in enumerate(headers) if h in (f"{metric} ours", f"test {metric} ours"))
    paper = next(i for i, h in enumerate(headers) if h == f"{metric} paper")
    delta = paper + 1  # every chapter table puts Δ right after the paper's column
    run = _short_provenance(profile, record)
    return [[f"{row[0]}: {metric}", row[paper], row[ours], row[delta], run] for row in rows]


def _signed(ours: float, paper: float | None, digits: int) -> str:
    return "–" if paper is None else f"{ours - paper:+.{digits}f}"


def _tnt_complexity_rows(store: Store) -> list[list[str]]:
    found = store.find("tnt_complexity")
    if found is None:
        return []
    profile, record = found
    run = _short_provenance(profile, record)
    rows = []
    for m in record["data"]["models"]:
        if m["model"] not in ("tnt_s", "tnt_s_se"):
            continue
        label = {"tnt_s": "TNT-S", "tnt_s_se": "TNT-S + SE"}[m["model"]]
        params, flops = m["params"] / 1e6, m["flops_fvcore"] / 1e9
        rows.append(
            [
                f"{label}: params (M)",
                f"{m['paper_params_m']}",
                f"{params:.2f}",
                _signed(params, m["paper_params_m"], 2),
                run,
            ]
        )
        rows.append(
            [
                f"{label}: GFLOPs (fvcore)",
                f"{m['paper_flops_g']}",
                f"{flops:.2f}",
                _signed(flops, m["paper_flops_g"], 2),
                run,
            ]
        )
    return rows


def _rest_complexity_rows(store: Store) -> list[list[str]]:

    rows = []
    found = store.find("rest_complexity")
    if found is not None:
        profile, record = found
        run = _short_provenance(profile, record)
        for key, label in (("rest_lite_msa", "ResT-Lite, MSA"), ("rest_lite", "ResT-Lite, EMSA")):
            c = record["data"][key]
            pub = c["published"]
            params = c["params"] / 1e6
            rows.append(
                [
                    f"{label}: params (M)",
                    f"{pub['params_m']}",
                    f"{params:.2f}",
                    _signed(params, pub["params_m"], 2),
                    run,
                ]
            )
            if PUBLISHED_FLOPS_CONVENTION in c:
                flops = c[PUBLISHED_FLOPS_CONVENTION] / 1e9
                rows.append(
                    [
                        f"{label}: GFLOPs ({FLOP_CONVENTIONS[PUBLISHED_FLOPS_CONVENTION]})",
                        f"{pub['flops_g']}",
                        f"{flops:.2f}",
                        _signed(flops, pub["flops_g"], 2),
                        run,
                    ]
                )
    found = store.find("rest_throughput")
    if found is not None:
        profile, record = found
        speed = {r["model"]: r["images_per_s"] for r in record["data"]["rows"] if r["dtype"] == "float32"}
        if {"rest_lite", "rest_lite_msa"} <= set(speed):
            ours = speed["rest_lite"] / speed["rest_lite_msa"]
            paper = REST_TABLE1["rest_lite"]["throughput"] / REST_TABLE1["rest_lite_msa"]["throughput"]
            rows.append(
                [
                    "EMSA / MSA inference speed (× , float32, 224 px)",
                    f"{paper:.2f} (V100)",
                    f"{ours:.2f}",
                    f"{ours - paper:+.2f}",
                    _short_provenance(profile, record),
                ]
            )
    return rows


def _detection_params_rows(store: Store, name: str) -> list[list[str]]:
    found = store.find(name)
    if found is None:
        return []
    profile, record = found
    run = _short_provenance(profile, record)
    rows = []
    for r in record["data"]["rows"]:
        if r.get("paper_m") is None:
            continue
        ours = r["trainable"] / 1e6
        rows.append(
            [
                f"{r['label']} detector: trainable params (M, full size)",
                f"{r['paper_m']}",
                f"{ours:.2f}",
                _signed(ours, r["paper_m"], 2),
                run,
            ]
        )
    return rows


def _gl_worst(row: Mapping[str, Any]) -> float:
    """The largest difference between GL's layer and its three other forms on one row of the checks."""
    return max(row["max_diff_block_diag"], row["max_diff_per_group_einsum"], row["max_diff_conv1d"])


def _gl_rows(store: Store) -> list[list[str]]:
    found = store.find("rest_gl_checks")
    if found is None:
        return []
    profile, record = found
    run = _short_provenance(profile, record)
    d = record["data"]
    rows = []
    for r in d["rows"]:
        worst = _gl_worst(r)
        rows.append(
            [
                f"g = {r['g']}: params d²/g, FLOPs n·d²/g (n = {d['n']}, d = {d['d']})",
                f"{r['params_formula']:,} / {r['flops_formula']:,}",
                f"{r['params']:,} / {r['flops_fvcore_conv1d']:,}",
                f"{r['params'] - r['params_formula']:+,} / {r['flops_fvcore_conv1d'] - r['flops_formula']:+,}; outputs agree to {worst:.1e}",
                run,
            ]
        )
    rows.append(
        [
            "g = d: GL is a per-channel scale, a depthwise 3×3 conv with only its centre",
            "equal",
            f"max |difference| {max(d['g_equals_d_scale_diff'], d['g_equals_d_depthwise_diff']):.1e}",
            "–",
            run,
        ]
    )
    return rows


def _gl_verdicts(store: Store) -> list[dict[str, Any]]:
    """GL's equations hold when every count equals its formula and every form gives the same output."""
    found = store.find("rest_gl_checks")
    if found is None:
        return []
    d = found[1]["data"]
    exact = all(
        r["params"] == r["params_formula"] and r["flops_fvcore_conv1d"] == r["flops_formula"] for r in d["rows"]
    )
    worst = max([_gl_worst(r) for r in d["rows"]] + [d["g_equals_d_scale_diff"], d["g_equals_d_depthwise_diff"]])
    holds = exact and worst < 1e-4
    return [
        {
            "claim": "GL with g groups is one block-diagonal linear map with d²/g parameters and n·d²/g FLOPs; g = d is a per-channel scale, PA's depthwise 3×3 conv with only its centre (the full 3×3 kernel extends GL to a neighbourhood)",
            "verdict": "holds" if holds else "reversed",
            "measure": f"counts exact: {exact}; largest output difference {worst:.1e}",
        }
    ]


# --- the items -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SupplementItem:
    """One table, figure or derivation of a supplement, and where the book regenerates it."""

    key: str
    paper: str  # "TNT" or "ResT"
    item: str  # as the supplement names it
    content: str
    chapters: tuple[tuple[str, str], ...]  # (what, notebook stem) in reading order
    scope: str  # what our scale can and cannot match
    results: tuple[str, ...]  # stored results that must exist for the item to count as regenerated
    verdicts: tuple[str, ...] = ()
    figure: str | None = None
    comparisons: Callable[[Store], list[list[str]]] | None = field(default=None, compare=False)
    derived_verdicts: Callable[[Store], list[dict[str, Any]]] | None = field(default=None, compare=False)
    # (stored result, kind) of the map sizes a figure's claims are measured on, read from the models
    # by the chapter (experiments.figures.*_scope); kind is scope_sentence's "outer" | "emsa" | "cam"
    map_scope: tuple[str, str] | None = None

    def __post_init__(self) -> None:
        if not set(self.verdicts) <= set(self.results):
            raise ValueError(f"{self.key}: its verdicts {self.verdicts} must be among its results {self.results}")

    @property
    def title(self) -> str:
        return f"{self.paper} supplement, {self.item}"


def _chapter_link(stem: str, short: bool = False) -> str:
    """A link to chapter ``stem`` named by its title (the notebook's first heading), or its number."""
    if short:
        return f"[{stem[:2]}](../notebooks/{stem}.ipynb)"

    title = stem
    path = repo_root() / "notebooks" / f"{stem}.ipynb"
    if path.is_file():
        cells = json.loads(path.read_text())["cells"]
        first = next((c for c in cells if c["cell_type"] == "markdown"), None)
        if first is not None:
            title = "".join(first["source"]).splitlines()[0].lstrip("# ").strip()
    return f"[{title}](../notebooks/{stem}.ipynb)"


ITEMS: tuple[SupplementItem, ...] = (
    SupplementItem(
        key="tnt_fig1",
        map_scope=("tnt_fig1_scope", "outer"),
        paper="TNT",
        item="Figure 1",
        content="attention from every patch to every patch in the outer transformer, DeiT-S vs TNT-S, shallow to deep blocks",
        chapters=(("the maps, mean attention distance and entropy per head, every seed", "07_tnt_figures"),),
        scope="our small models trained on generated data; the published ImageNet models on photographs with "
        "`PRETRAINED = True` (Colab)",
        results=("tnt_fig1_measures", "tnt_fig1_verdicts"),
        verdicts=("tnt_fig1_verdicts",),
        figure="tnt_fig1_patch_attention",
    ),
    SupplementItem(
        key="tnt_fig2",
        map_scope=("tnt_fig1_scope", "outer"),
        paper="TNT",
        item="Figure 2",
        content="class-token attention overlaid on images, DeiT-S vs TNT-S",
        chapters=(("last block and rollout, the share of attention on the object", "07_tnt_figures"),),
        scope="as Figure 1; the share on the object is measured with the generated images' ground-truth masks",
        results=("tnt_fig2_verdicts",),
        verdicts=("tnt_fig2_verdicts",),
        figure="tnt_fig2_class_attention",
    ),
    SupplementItem(
        key="tnt_table1",
        paper="TNT",
        item="Table 1",
        content="TNT-S vs TNT-S + SE: params, FLOPs, top-1, top-5",
        chapters=(("params and FLOPs at full size", "01_tnt"), ("accuracy at small scale", "04_tnt_table1")),
        scope="params and FLOPs of the full-size models exactly; accuracy at small scale on generated data "
        "(3 seeds, held-out test split, Welch intervals)",
        results=("tnt_complexity", "tnt_table1", "tnt_table1_verdicts"),
        verdicts=("tnt_table1_verdicts",),
        figure="tnt_table1_curves",
        comparisons=lambda store: _tnt_complexity_rows(store) + _table_rows(store, "tnt_table1", "top-1"),
    ),
    SupplementItem(
        key="tnt_table2",
        paper="TNT",
        item="Table 2",
        content="Faster R-CNN + FPN on COCO with ResNet-50, DeiT-S and TNT-S backbones",
        chapters=(("full-size parameters and small detectors on synthetic scenes", "09_tnt_table2"),),
        scope="COCO cannot be downloaded offline (a COCO-format loader is there for Colab); backbones start from "
        "minutes-long classifiers, not ImageNet; torchvision's heads, not mmdetection's",
        results=("tnt_table2", "tnt_table2_verdicts", "tnt_table2_params"),
        verdicts=("tnt_table2_verdicts",),
        figure="tnt_table2_detections",
        comparisons=lambda store: (
            _detection_params_rows(store, "tnt_table2_params") + _table_rows(store, "tnt_table2", "AP")
        ),
    ),
    SupplementItem(
        key="rest_fig1",
        map_scope=("rest_fig1_scope", "emsa"),
        paper="ResT",
        item="Figure 1",
        content="diversity of the EMSA heads before the 1×1 conv, after it, and after instance norm",
        chapters=(("head-similarity matrices, trained beside untrained, over the seeds", "08_rest_figures"),),
        scope="the paper averages 1,000 ImageNet validation images; ours averages the profile's test images of generated data",
        results=("rest_fig1_verdicts",),
        verdicts=("rest_fig1_verdicts",),
        figure="rest_fig1_trained_stage4_1",
    ),
    SupplementItem(
        key="rest_fig2",
        map_scope=("rest_fig2_scope", "cam"),
        paper="ResT",
        item="Figure 2",
        content="Group-CAM heatmaps, ResT-Lite vs ResNet-50",
        chapters=(("Group-CAM and Grad-CAM, deletion / insertion AUC and pointing games", "08_rest_figures"),),
        scope="small models on generated data offline; the published models on photographs with `PRETRAINED = True` (Colab)",
        results=("rest_fig2_verdicts",),
        verdicts=("rest_fig2_verdicts",),
        figure="rest_fig2_group_cam",
    ),
    SupplementItem(
        key="rest_table1",
        paper="ResT",
        item="Table 1",
        content="ResT-Lite with MSA vs EMSA: params, FLOPs, throughput, top-1, top-5",
        chapters=(
            ("params, FLOPs and throughput at full size", "02_rest"),
            ("accuracy and the merged table", "05_rest_table1"),
        ),
        scope="params and FLOPs at full size; throughput on our hardware (the EMSA/MSA ratio is comparable, absolute "
        "img/s is not); accuracy at small scale (3 seeds, held-out test split, Welch interval)",
        results=("rest_complexity", "rest_throughput", "rest_table1", "rest_table1_verdicts"),
        verdicts=("rest_table1_verdicts",),
        figure="rest_table1_curves",
        comparisons=lambda store: _rest_complexity_rows(store) + _table_rows(store, "rest_table1", "top-1"),
    ),
    SupplementItem(
        key="rest_table2",
        paper="ResT",
        item="Table 2",
        content="RetinaNet + FPN with vs without a LayerNorm on the stage outputs",
        chapters=(("the LN switch, full-size parameters and small RetinaNets", "10_rest_table2"),),
        scope="as TNT's Table 2: synthetic scenes at 64 px, small classifiers as the initialisation",
        results=("rest_table2", "rest_table2_verdicts"),
        verdicts=("rest_table2_verdicts",),
        figure="rest_table2_detections",
        comparisons=lambda store: _table_rows(store, "rest_table2", "AP"),
    ),
    SupplementItem(
        key="rest_gl",
        paper="ResT",
        item="A.4, GL equations (2)–(3)",
        content="group linear: split the channels into g groups, one linear map per group; ResT sets g = d_m",
        chapters=(("derivation and numerical checks", "02_rest"),),
        scope="exact: the equations are checked on real stem tokens",
        results=("rest_gl_checks",),
        comparisons=_gl_rows,
        derived_verdicts=_gl_verdicts,
    ),
    SupplementItem(
        key="rest_ablation",
        paper="ResT",
        item="A.4, ResNet-18 ablation",
        content="ResT-Lite vs ResNet-18 under a plain ResNet recipe",
        chapters=(("both trained with the ResNet recipe", "06_rest_ablation"),),
        scope="small scale, generated data; both networks halved in width with a stride-2 stem for 32 px images, keeping "
        "the published size ratio; 3 seeds, Welch verdict",
        results=("rest_ablation", "rest_ablation_verdicts"),
        verdicts=("rest_ablation_verdicts",),
        figure="rest_ablation_curves",
        comparisons=lambda store: _table_rows(store, "rest_ablation", "top-1"),
    ),
)


def item_status(item: SupplementItem, store: Store) -> tuple[bool, str]:
    """Whether every stored result of ``item`` exists, and the provenance (or what is missing)."""
    found = [store.find(name) for name in item.results]
    missing = [name for name, f in zip(item.results, found, strict=True) if f is None]
    if missing:
        return False, "not yet: no stored " + ", ".join(f"`{m}`" for m in missing)
    # the run of the item's conclusion: its verdicts, or its last result where it has none
    conclusion = item.verdicts[-1] if item.verdicts else item.results[-1]
    profile, record = found[item.results.index(conclusion)]
    return True, _short_provenance(profile, record)


def _verdict_records(item: SupplementItem, store: Store) -> list[tuple[dict[str, Any], str]]:
    records = []
    for name in item.verdicts:
        found = store.find(name)
        if found is not None:
            profile, record = found
            records += [(r, _short_provenance(profile, record)) for r in record["data"]]
    return records


def _verdict_cells(record: Mapping[str, Any]) -> tuple[str, str]:
    unit = record.get("unit", "points")
    d = _digits(unit)
    metric = record.get("metric", "test_top1")
    name = "test top-1" if metric == "test_top1" else metric
    diff = f"{record['diff']:+.{d}f}" + (f" {unit}" if unit else "") + f" ({name})"
    interval = "–" if record["ci_low"] is None else f"[{record['ci_low']:+.{d}f}, {record['ci_high']:+.{d}f}]"
    return diff, interval


def _counts(states: Sequence[str]) -> str:
    """``"2 holds, 1 not testable (still learning)"``: each :data:`VERDICT_STATES` state counted apart."""
    order = [*VERDICT_STATES, *sorted(set(states) - set(VERDICT_STATES))]
    return ", ".join(f"{states.count(v)} {v}" for v in order if states.count(v)) or "–"


_SUMMARY_INTRO = [
    "# Summary: both supplements, item by item",
    "",
    "Generated from the results store by `tnt_rest_lite.report.summary` (`python -m tnt_rest_lite summary`); a test checks "
    "that this page is what the committed results give. Every row names the run it comes from: profile, device, "
    "commit and date. Our numbers come from small models on generated data unless a row says otherwise; the "
    "papers' come from `tnt_rest_lite.reference`. A published claim is judged over the seeds on a held-out test "
    "split: **holds**, **reversed**, **undecided** (the 95 % interval spans 0) or **not testable**, for one of "
    "three reasons counted apart: a model is **still learning** (its seeds' mean validation gain over the last "
    f"quarter of training is above {STILL_LEARNING_GAIN:g} point), the measure is **at its bound** (the baseline cannot move the way "
    "the claim says), or a model has **learnt too little** (below twice chance, or a detector below its AP50 floor).",
]


def _overview_table(store: Store) -> str:
    """The summary's overview: one row per item (chapters, status, verdict counts, run)."""
    overview = []
    for item in ITEMS:
        done, prov = item_status(item, store)
        verdicts = [verdict_state(r) for r, _ in _verdict_records(item, store)]
        if item.derived_verdicts is not None:
            verdicts += [r["verdict"] for r in item.derived_verdicts(store)]
        chapters = ", ".join(_chapter_link(stem, short=True) for _, stem in item.chapters)
        overview.append(
            [
                f"{{ref}}`{item.title} <{item.key.replace('_', '-')}>`",
                item.content,
                chapters,
                "regenerated" if done else "**not yet**",
                _counts(verdicts) if done else "–",
                prov,
            ]
        )
    return markdown_table(["item", "what it shows", "chapters", "status", "verdicts", "run"], overview)


def _item_figure(item: SupplementItem, store: Store) -> list[str]:
    """The lines of an item's regenerated thumbnail (none if the item has no figure or it is not stored)."""
    if item.figure is None:
        return []
    found = store.find(item.results[-1])
    figure = store.figure(item.figure, found[0]) if found else None
    if figure is None:
        return []
    return [
        "",
        "```{image} " + f"../{figure.relative_to(store.root.parent).as_posix()}",
        f":alt: {item.title}, regenerated",
        ":width: 420px",
        "```",
    ]


def _item_tables(item: SupplementItem, store: Store, prov: str) -> list[str]:
    """The lines of an item's comparison, verdict and derived-verdict tables (those it has)."""
    lines: list[str] = []
    if item.comparisons is not None:
        rows = item.comparisons(store)
        if rows:
            lines += ["", markdown_table(["quantity", "paper", "ours", "Δ", "run"], rows)]
    records = _verdict_records(item, store)
    if records:
        table = []
        for record, run in records:
            diff, interval = _verdict_cells(record)
            table.append([record["claim"], str(record["n_seeds"]), diff, interval, f"**{verdict_state(record)}**", run])
        lines += ["", markdown_table(["published claim", "seeds", "Δ ours", "95 % CI", "verdict", "run"], table)]
    if item.derived_verdicts is not None:
        table = [[r["claim"], r["measure"], f"**{r['verdict']}**", prov] for r in item.derived_verdicts(store)]
        lines += ["", markdown_table(["published statement", "measured", "verdict", "run"], table)]
    return lines


def _map_sizes(item: SupplementItem, store: Store) -> str:
    """`` Map sizes: measured on ...; the paper's models: ...`` of a figure item (empty for other items)."""
    if item.map_scope is None:
        return ""
    name, kind = item.map_scope
    found = store.find(name)
    if found is None:
        return f" Map sizes: not stored yet (`{name}`: the chapter's next run reads them from the models)."
    return f" Map sizes: {scope_sentence(kind, **found[1]['data'])}."


def _item_section(item: SupplementItem, store: Store) -> list[str]:
    """One item's section: anchor, heading, what it shows and where, then its figure and tables if regenerated."""
    done, prov = item_status(item, store)
    lines = [
        "",
        f"({item.key.replace('_', '-')})=",
        f"## {item.title}",
        "",
        f"{item.content[0].upper()}{item.content[1:]}. Regenerated in "
        + ", ".join(f"{_chapter_link(stem)} ({what})" for what, stem in item.chapters)
        + f". Scope: {item.scope}.{_map_sizes(item, store)}",
    ]
    if not done:
        return [*lines, "", f"**Not regenerated yet** ({prov})."]
    return lines + _item_figure(item, store) + _item_tables(item, store, prov)


def summary_markdown(store: Store) -> str:
    """The summary chapter: an overview of every item, then per item its comparisons, verdicts and thumbnail."""
    lines = [*_SUMMARY_INTRO, "", "## Overview", "", _overview_table(store)]
    for item in ITEMS:
        lines += _item_section(item, store)
    return "\n".join(lines) + "\n"


def supplements_markdown(store: Store) -> str:
    """The coverage page: every item, what it shows, where it is regenerated, its status and scope."""
    lines = [
        "# The supplements, item by item",
        "",
        "Every table and figure of the two supplements, what it shows, where this book regenerates it and whether the "
        "results store holds its run. Generated by `tnt_rest_lite.report.summary` from the stored results (a test checks this "
        "page against them), so an item reads *regenerated* only when its results are there. The values and verdicts "
        "are in the [summary](summary.md); the published values are transcribed once, in `tnt_rest_lite/reference.py`.",
    ]
    for paper in ("TNT", "ResT"):
        rows = []
        for item in (i for i in ITEMS if i.paper == paper):
            done, prov = item_status(item, store)
            chapters = "; ".join(f"{what}: {_chapter_link(stem)}" for what, stem in item.chapters)
            status = f"regenerated ({prov})" if done else f"**{prov}**"
            rows.append([item.item, item.content, chapters, status, item.scope])
        lines += [
            "",
            f"## {paper} supplement",
            "",
            markdown_table(["item", "content", "regenerated in", "status", "what we can and cannot match"], rows),
        ]
    return "\n".join(lines) + "\n"


def write_pages(root: Path | None = None, results_root: Path | None = None) -> list[Path]:
    """Write ``book/summary.md`` and ``book/supplements.md`` from ``results_root`` (default ``<root>/results``)."""

    root = Path(root) if root is not None else repo_root()
    store = Store(Path(results_root) if results_root is not None else root / "results")
    pages = {
        root / "book" / "summary.md": summary_markdown(store),
        root / "book" / "supplements.md": supplements_markdown(store),
    }
    for path, text in pages.items():
        path.write_text(text)
    return list(pages)
