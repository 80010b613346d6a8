"""No two modules of tui_ft import each other, even through others or from inside a function.

An import inside a function hides a cycle from Python (the module is complete by the time the
function runs), not from a reader: the two modules still depend on each other. The graph here
takes every ``import`` statement of every module, wherever it stands.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "tui_ft"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """``{module: the tui_ft modules it imports}``; ``from pkg import name`` counts as ``pkg.name`` when that is a module."""
    files = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        is_package = path.name == "__init__.py"
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: from the module's own package
                    base = name.split(".")[: len(name.split(".")) - node.level + (1 if is_package else 0)]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                for alias in node.names:
                    targets.add(f"{source}.{alias.name}" if f"{source}.{alias.name}" in files else source)
        graph[name] = {target for target in targets if target in files and target != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as ``[a, b, ..., a]``, or ``None``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_graph_sees_imports_inside_functions():
    graph = import_graph()
    # runs.lifecycle imports the config checks only inside create_run, and the models package inside functions.
    assert "tui_ft.engine.runs.config_checks" in graph["tui_ft.engine.runs.lifecycle"]
    assert "tui_ft.engine.models" in graph["tui_ft.engine.runs.lifecycle"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_import_cycles_between_modules():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


# Which package may import which (docs/architecture.md draws it). A package not listed may import
# nothing of tui_ft's; the UI, the CLI and its commands may import anything.
ENGINE = "tui_ft.engine"
FOUNDATION = {f"{ENGINE}.files", f"{ENGINE}.workspace", f"{ENGINE}.processes"}
ALLOWED = {
    f"{ENGINE}.files": set(),
    f"{ENGINE}.workspace": set(),
    f"{ENGINE}.processes": {f"{ENGINE}.files"},
    f"{ENGINE}.models": FOUNDATION,
    f"{ENGINE}.data": FOUNDATION | {f"{ENGINE}.models"},
    f"{ENGINE}.runs": FOUNDATION | {f"{ENGINE}.models", f"{ENGINE}.data"},
    f"{ENGINE}.training": FOUNDATION | {f"{ENGINE}.models", f"{ENGINE}.data", f"{ENGINE}.runs"},
    f"{ENGINE}.generation": FOUNDATION | {f"{ENGINE}.models", f"{ENGINE}.data"},
    f"{ENGINE}.evaluation": FOUNDATION | {f"{ENGINE}.models", f"{ENGINE}.data", f"{ENGINE}.runs",
                                          f"{ENGINE}.training", f"{ENGINE}.generation"},
    f"{ENGINE}.worker": {f"{ENGINE}.runs"},
    "tui_ft.safe_text": set(),
    "tui_ft.views": FOUNDATION | {f"{ENGINE}.models", f"{ENGINE}.data", f"{ENGINE}.runs", f"{ENGINE}.evaluation"},
}
# The processes' entry points sit on top of what they run: a run's worker trains.
ENTRY_POINTS = {f"{ENGINE}.runs.worker": {f"{ENGINE}.training"}}


def package_of(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:3]) if parts[:2] == ["tui_ft", "engine"] else ".".join(parts[:2])


def test_packages_import_only_the_layers_below_them():
    wrong = []
    for module, targets in import_graph().items():
        allowed = ALLOWED.get(package_of(module))
        if allowed is None:
            continue  # the CLI, its commands and the UI
        allowed = allowed | {package_of(module)} | ENTRY_POINTS.get(module, set())
        wrong += [f"{module} -> {target}" for target in sorted(targets) if package_of(target) not in allowed]
    assert wrong == [], "imports across the layers:\n" + "\n".join(wrong)
