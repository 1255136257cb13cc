"""The house's rules that a reader relies on: no import circle among the `noshow` modules
(module-level, function-level and TYPE_CHECKING imports all count, so a lazy import cannot
hide a circle), imports only down the layers (noshow/__init__.py draws them), and no
module outside the approaches re-deciding by approach name."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "noshow"
# Each layer's rank: a module may import its own layer and the layers of lower rank.
LAYERS = {
    "noshow.config": 0,
    "noshow.system": 0,
    "noshow.data": 1,
    "noshow.labels": 2,
    "noshow.modeling": 3,
    "noshow.evaluation": 4,
    "noshow.training": 5,
    "noshow.inference": 6,
    "noshow.app": 7,
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """{module: the noshow modules it imports anywhere in its source}."""
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        targets: set[str] = set()
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative import
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                submodules = {f"{base}.{a.name}" for a in node.names} & set(files)
                targets.update(submodules)  # `from noshow import runs` imports noshow.training.runs
                if len(submodules) < len(node.names):
                    targets.add(base)  # names defined in `base` itself
        graph[name] = {t for t in targets if t in files and t != name}
    return graph


def find_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
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
                circles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return circles


def layer_of(module: str) -> int | None:
    """The rank of the layer `module` belongs to (None for the package's own __init__)."""
    parts = module.split(".")
    return LAYERS.get(".".join(parts[:2]))


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """'a -> b' for every import from a lower layer to a higher one."""
    return sorted(
        f"{a} -> {b}"
        for a, targets in graph.items()
        for b in targets
        if layer_of(a) is not None and layer_of(b) is not None and layer_of(b) > layer_of(a)
    )


def test_every_module_belongs_to_a_layer():
    unplaced = [m for m in import_graph() if m != "noshow" and layer_of(m) is None]
    assert unplaced == [], f"modules outside the layers of LAYERS: {unplaced}"


def test_the_layer_check_finds_a_planted_upward_import():
    graph = {"noshow.data.load": {"noshow.training.runs"}, "noshow.app.demo": {"noshow.data.load"}}
    assert upward_imports(graph) == ["noshow.data.load -> noshow.training.runs"]


def test_imports_only_run_down_the_layers():
    assert upward_imports(import_graph()) == []


def test_the_circle_finder_finds_a_planted_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_circles(graph) == [["a", "b", "c"]]
    assert find_circles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_function_level_and_package_imports():
    graph = import_graph()
    assert (
        "noshow.modeling.approaches" in graph["noshow.training.recipe"]
    )  # from noshow.modeling.approaches import ...
    assert (
        "noshow.training.runs" in graph["noshow.training.session"]
    )  # from noshow.training import runs
    assert (
        "noshow.training.distributed" in graph["noshow.training.session"]
    )  # imported inside a method


def test_no_import_circle_among_noshow_modules():
    circles = find_circles(import_graph())
    assert circles == [], "import circles: " + "; ".join(" <-> ".join(c) for c in circles)


def test_only_the_approaches_decide_by_approach_name():
    """`approach == "generative"`, `approach in {"generative": ...}` and the like belong in
    noshow/modeling/approaches/ alone: elsewhere the approach object says what differs."""
    offenders = approach_name_decisions(PACKAGE)
    assert offenders == []


def test_the_approach_name_check_finds_comparisons_and_membership(tmp_path):
    package = tmp_path / "noshow"
    package.mkdir()
    (package / "a.py").write_text('if approach == "classifier":\n    pass\n')
    (package / "b.py").write_text('MODELS = {"generative": "x", "classifier": "y"}\n')
    (package / "c.py").write_text('ok = name in ("generative", "classifier")\n')
    (package / "d.py").write_text('"""The classifier head: approach == "generative" is a doc."""\n')
    (package / "e.py").write_text('PEAKS = {("8b", "generative"): 1.0}\n')
    found = approach_name_decisions(package)
    assert found == ["noshow/a.py:1", "noshow/b.py:1", "noshow/c.py:1", "noshow/e.py:1"]


APPROACH_NAMES = {"generative", "classifier"}


def _names_an_approach(node: ast.AST) -> bool:
    """A string constant that is an approach name, alone or inside a tuple/list/set."""
    if isinstance(node, ast.Constant):
        return node.value in APPROACH_NAMES
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return any(_names_an_approach(e) for e in node.elts)
    return False


def approach_name_decisions(package: Path) -> list[str]:
    """'path:line' of every decision by approach name outside `approaches/` (and config.py,
    which declares the names): a comparison or membership test with a name, or a mapping
    keyed by one. Docstrings and other text do not count."""
    found = set()
    for path in sorted(package.rglob("*.py")):
        if "approaches" in path.parts or path.name == "config.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            decides = (
                isinstance(node, ast.Compare)
                and any(_names_an_approach(x) for x in [node.left, *node.comparators])
            ) or (
                isinstance(node, ast.Dict) and any(k and _names_an_approach(k) for k in node.keys)
            )
            if decides:
                found.add((str(path.relative_to(package.parent)), node.lineno))
    return [f"{f}:{n}" for f, n in sorted(found)]


MAX_LINES = 600


def test_no_file_of_the_package_scripts_or_app_is_over_600_lines():
    """A file that holds several concerns is several files (a reader sees a file whole)."""
    root = PACKAGE.parent
    files = [*PACKAGE.rglob("*.py"), *(root / "scripts").glob("*.py"), root / "app.py"]
    long = {
        str(p.relative_to(root)): n
        for p in files
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}, f"over {MAX_LINES} lines: {long}"


def test_the_package_top_level_is_its_layers():
    entries = sorted(p.name for p in PACKAGE.iterdir() if not p.name.startswith("__pycache__"))
    assert len(entries) <= 10, entries
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert {f"noshow.{name}" for name in folders} <= set(LAYERS), folders
