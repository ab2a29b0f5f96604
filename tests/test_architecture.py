"""The package's import direction (ARCHITECTURE.md), read from the source with ``ast``.

Every module under ``tnt_rest_lite/`` is parsed; its imports of ``tnt_rest_lite`` modules (module level
and inside functions) are the arrows of a graph. The graph must have no cycle, no arrow against the layer
order of :data:`LAYERS` other than the sideways arrows of :data:`SIDEWAYS`, no private name (``_x``)
imported from another module, and no function-level import of a ``tnt_rest_lite`` module (a
function-level import is for an optional or heavy third-party package only). The checks are plain
functions of a graph, so the tests at the end feed them made-up graphs and expect each fault reported.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE = "tnt_rest_lite"
PACKAGE_DIR = Path(__file__).resolve().parent.parent / PACKAGE

# The layer of every unit (a top-level module or a subpackage), lowest first; the table of ARCHITECTURE.md.
LAYERS: dict[str, int] = {
    "profiles": 0,
    "reference": 0,
    "core": 1,
    "layers": 2,
    "models": 3,
    "data": 4,
    "measure": 4,
    "train": 4,
    "explain": 4,
    "detection": 4,
    "experiments": 5,
    "report": 6,
    "book": 6,
    "__init__": 7,
    "__main__": 7,
}
# Arrows allowed within one layer, between different units (an arrow inside one unit is always allowed).
SIDEWAYS: set[tuple[str, str]] = {
    ("reference", "profiles"),  # layer 0: in this order, reference may read profiles (it does not today)
    ("train", "measure"),  # the engine reports the trainable parameters with measure.complexity.count_params
    ("detection", "train"),  # DetectionTask is a train.tasks.Task; detectors train with the engine
    ("detection", "data"),  # the detection splits are data.synthetic's ShapeDetection scenes
    ("detection", "measure"),  # parameter_breakdown counts with measure.complexity
    ("book", "report"),  # the book may show reports, never the reverse
}


@dataclass(frozen=True)
class Import:
    """One import statement's arrow: ``source`` imports ``target`` (dotted module names)."""

    source: str
    target: str
    names: tuple[str, ...]
    line: int
    function_level: bool


@dataclass
class Graph:
    modules: set[str] = field(default_factory=set)
    imports: list[Import] = field(default_factory=list)


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def _resolve(source: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module an ``ImportFrom`` names (relative imports resolved against ``source``)."""
    if node.level == 0:
        return node.module or ""
    base = source.split(".") if is_package else source.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def imports_of(source: str, tree: ast.Module, modules: set[str], is_package: bool = False) -> list[Import]:
    """Every import of a package module in ``tree`` (``from X import name`` of a submodule counts as X.name)."""
    top_level = {id(n) for n in tree.body}
    found: list[Import] = []
    for node in ast.walk(tree):
        function_level = id(node) not in top_level
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == PACKAGE or alias.name.startswith(PACKAGE + "."):
                    found.append(Import(source, alias.name, (), node.lineno, function_level))
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(source, is_package, node)
            if target != PACKAGE and not target.startswith(PACKAGE + "."):
                continue
            plain = []
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in modules:  # ``from pkg import module``: an arrow to the module itself
                    found.append(Import(source, sub, (), node.lineno, function_level))
                else:
                    plain.append(alias.name)
            if plain or not node.names:
                found.append(Import(source, target, tuple(plain), node.lineno, function_level))
    return found


def package_graph(root: Path = PACKAGE_DIR) -> Graph:
    paths = sorted(root.rglob("*.py"))
    modules = {module_name(p, root) for p in paths}
    graph = Graph(modules=modules)
    for path in paths:
        name = module_name(path, root)
        tree = ast.parse(path.read_text(), filename=str(path))
        graph.imports.extend(imports_of(name, tree, modules, is_package=path.name == "__init__.py"))
    return graph


def unit_of(module: str) -> str:
    """The layer table's unit of a module: ``tnt_rest_lite.core.store`` -> ``core``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def cycles(graph: Graph) -> list[list[str]]:
    """Every cycle of module arrows that Tarjan's strongly connected components find (one per component)."""
    edges: dict[str, set[str]] = {m: set() for m in graph.modules}
    for imp in graph.imports:
        if imp.target in graph.modules and imp.target != imp.source:
            edges.setdefault(imp.source, set()).add(imp.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def wrong_way(graph: Graph, layers: dict[str, int] = LAYERS, sideways: set[tuple[str, str]] = SIDEWAYS) -> list[str]:
    """Arrows to a higher layer, or sideways between units without an allowed sideways arrow."""
    faults = []
    for imp in graph.imports:
        a, b = unit_of(imp.source), unit_of(imp.target)
        if a == b or imp.target == PACKAGE and a == "__init__":
            continue
        if b not in layers or a not in layers:
            faults.append(f"{imp.source}:{imp.line} -> {imp.target}: a unit missing from the layer table")
        elif layers[b] > layers[a] or (layers[b] == layers[a] and (a, b) not in sideways):
            faults.append(f"{imp.source}:{imp.line} -> {imp.target} ({a}, layer {layers[a]} -> {b}, layer {layers[b]})")
    return faults


def private_imports(graph: Graph) -> list[str]:
    return [
        f"{imp.source}:{imp.line} imports {name} from {imp.target}"
        for imp in graph.imports
        for name in imp.names
        if name.startswith("_") and imp.target != imp.source
    ]


def function_level_imports(graph: Graph) -> list[str]:
    return [
        f"{imp.source}:{imp.line} imports {imp.target} inside a function" for imp in graph.imports if imp.function_level
    ]


# ---- the package ------------------------------------------------------------------------------


def test_every_unit_is_in_the_layer_table() -> None:
    units = {unit_of(m) for m in package_graph().modules}
    assert units <= set(LAYERS), sorted(units - set(LAYERS))


def test_no_import_cycle() -> None:
    assert cycles(package_graph()) == []


def test_no_arrow_against_the_layers() -> None:
    assert wrong_way(package_graph()) == []


def test_no_private_name_crosses_modules() -> None:
    assert private_imports(package_graph()) == []


def test_no_function_level_import_of_the_package() -> None:
    assert function_level_imports(package_graph()) == []


def test_the_graph_sees_the_imports() -> None:
    """A check of the reader itself: known arrows of the package are found, relative imports resolved."""
    arrows = {(i.source, i.target) for i in package_graph().imports}
    assert ("tnt_rest_lite.models.trl_deit", "tnt_rest_lite.models._registry") in arrows
    assert ("tnt_rest_lite.core.store", "tnt_rest_lite.profiles") in arrows
    assert ("tnt_rest_lite.models", "tnt_rest_lite.models.trl_tnt") in arrows


# ---- each check can fail ----------------------------------------------------------------------


def _fake(sources: dict[str, str]) -> Graph:
    modules = set(sources)
    graph = Graph(modules=modules)
    for name, text in sources.items():
        graph.imports.extend(imports_of(name, ast.parse(text), modules))
    return graph


def test_a_cycle_is_reported() -> None:
    graph = _fake(
        {
            "tnt_rest_lite.core.a": "from .b import f\n",
            "tnt_rest_lite.core.b": "from tnt_rest_lite.core.c import g\n",
            "tnt_rest_lite.core.c": "from . import a\n",
        }
    )
    assert cycles(graph) == [["tnt_rest_lite.core.a", "tnt_rest_lite.core.b", "tnt_rest_lite.core.c"]]


def test_an_upward_and_an_unlisted_sideways_arrow_are_reported() -> None:
    graph = _fake(
        {
            "tnt_rest_lite.core.store": "from ..models.trl_tnt import TNT\n",
            "tnt_rest_lite.models.trl_tnt": "",
            "tnt_rest_lite.train.loop": "from ..detection.task import DetectionTask\n",
            "tnt_rest_lite.detection.task": "from ..train.tasks import Task\n",
            "tnt_rest_lite.train.tasks": "",
        }
    )
    faults = wrong_way(graph)
    assert len(faults) == 2
    assert "core, layer 1 -> models, layer 3" in faults[0]
    assert "train, layer 4 -> detection, layer 4" in faults[1]  # detection -> train is allowed, not the reverse


def test_a_private_import_is_reported() -> None:
    graph = _fake({"tnt_rest_lite.train.loop": "from .loaders import _val_loader\n", "tnt_rest_lite.train.loaders": ""})
    assert private_imports(graph) == ["tnt_rest_lite.train.loop:1 imports _val_loader from tnt_rest_lite.train.loaders"]


def test_a_function_level_import_is_reported_and_a_third_party_one_is_not() -> None:
    text = "def f():\n    import matplotlib\n    from ..core import store\n    return store\n"
    graph = _fake({"tnt_rest_lite.train.curves": text, "tnt_rest_lite.core.store": ""})
    assert function_level_imports(graph) == [
        "tnt_rest_lite.train.curves:3 imports tnt_rest_lite.core.store inside a function"
    ]
