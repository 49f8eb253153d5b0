"""The shape of the code: which of Crier's modules import which, imports inside functions included (an
import moved into a function to dodge a loop is still a loop)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bots", "campaigns", "core", "delivery", "emulator", "settings")
CRIER = ("bots", "campaigns", "core", "delivery", "settings", "django", "rest_framework", "celery")

# Which code may import which (docs/architecture.md, "Who imports whom"): a module imports its own layer
# and those listed before it, never one after. A module belongs to the layer of the longest prefix it has.
LAYERS = [
    ("core", ["core"]),
    ("the Teams channel", ["bots"]),
    ("campaigns", ["campaigns"]),
    ("delivery", ["delivery"]),
    ("entry points", ["bots.admin", "bots.management", "bots.services", "bots.tasks", "bots.views",
                      "campaigns.admin", "campaigns.api", "campaigns.management", "campaigns.tasks",
                      "delivery.admin", "delivery.tasks", "settings"]),
]


def project_modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            parts = path.relative_to(ROOT).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def imported_names(module: str, path: Path) -> set[str]:
    """Every dotted name the module imports, anywhere in it, relative imports made absolute."""
    names = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package
                for _ in range(node.level - 1):
                    anchor = anchor.rpartition(".")[0]
                base = f"{anchor}.{base}" if base else anchor
            names |= {f"{base}.{alias.name}" for alias in node.names}  # a module, or a name in one
    return names


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()

    def owner(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for module, path in modules.items():
        graph[module] = {owner(name) for name in imported_names(module, path)} - {None, module}
    return graph


def loops(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iteratively)."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph[successor]))))
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(component)
    return found


def layer_of(module: str) -> int | None:
    found, longest = None, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(f"{prefix}.")) and len(prefix) > longest:
                found, longest = index, len(prefix)
    return found


def imports_upwards(graph: dict[str, set[str]]) -> list[str]:
    """Every import of a module of a later layer, as "importer (its layer) -> imported (its layer)"."""
    found = []
    for module, imported in sorted(graph.items()):
        own = layer_of(module)
        for name in sorted(imported):
            theirs = layer_of(name)
            if own is not None and theirs is not None and theirs > own:
                found.append(f"{module} ({LAYERS[own][0]}) -> {name} ({LAYERS[theirs][0]})")
    return found


def test_the_loop_finder_finds_loops_through_imports_inside_functions_and_relative_ones():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e2"}, "e2": {"e"}, "f": set()}
    assert sorted(map(sorted, loops(graph))) == [["a", "b", "c"], ["e", "e2"]]
    # sending.py takes campaign_watch_errors from .control inside a function
    assert "delivery.control.campaign_watch_errors" in imported_names("delivery.sending", ROOT / "delivery" / "sending.py")
    assert "delivery.control" in import_graph()["delivery.sending"]


def test_no_module_imports_itself_through_others():
    found = [sorted(loop) for loop in loops(import_graph())]
    assert found == [], "an import loop: untie it (a module both can import, or work queued by name: delivery.jobs)"


def test_the_emulator_imports_nothing_of_crier_nor_django():
    graph = import_graph()
    emulator_modules = [module for module in graph if module.split(".")[0] == "emulator"]
    assert len(emulator_modules) > 10
    for module in emulator_modules:
        path = project_modules()[module]
        foreign = sorted(name for name in imported_names(module, path) if name.split(".")[0] in CRIER)
        assert foreign == [], f"{module} imports {foreign}"


def test_the_shared_core_imports_none_of_the_apps():
    graph = import_graph()
    core = {module: sorted(m for m in graph[module] if m.split(".")[0] in ("bots", "campaigns", "delivery"))
            for module in graph if module.split(".")[0] == "core"}
    assert set(core) >= {"core.errors", "core.http", "core.connections", "core.admin"}
    assert all(imported == [] for imported in core.values()), core


def test_each_module_has_a_layer_and_the_layer_check_finds_an_import_upwards():
    graph = import_graph()
    crier = [module for module in graph if module.split(".")[0] in ("bots", "campaigns", "core", "delivery", "settings")]
    assert [module for module in crier if layer_of(module) is None] == []
    assert LAYERS[layer_of("campaigns.api.views.campaigns")][0] == "entry points"
    assert LAYERS[layer_of("campaigns.approvals")][0] == "campaigns"
    assert imports_upwards({"campaigns.rendering": {"delivery.sending"}, "delivery.sending": {"campaigns.rendering"}}) == [
        "campaigns.rendering (campaigns) -> delivery.sending (delivery)"
    ]


def test_no_module_imports_a_layer_above_its_own():
    assert imports_upwards(import_graph()) == [], (
        "an import against the layers of docs/architecture.md: move the code to the layer it needs, "
        "or have the layer above call it"
    )
