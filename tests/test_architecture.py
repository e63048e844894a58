"""The package's import rules (docs/architecture.md), read from the source, not from a list.

Stages import downwards only, the command-line modules sit on top and nothing below imports
them, and no two modules import each other, directly or through others. Imports inside
functions count too: they are how a stage reaches another without loading TensorFlow.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "tinyloc_tf"

#: Stage packages, lowest first; modules directly in tinyloc_tf/ (errors, atomic, arguments,
#: lifetime, tf_log, families, decoding, ...) are the foundation every stage may use.
STAGES = ("data", "models", "training", "compression", "deployment", "reports", "workflows")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_cli(name: str) -> bool:
    last = name.rsplit(".", 1)[-1]
    return last in ("cli", "__main__") or last.endswith("_cli")


def level(name: str) -> int:
    """-1 for the foundation, the stage's index otherwise."""
    parts = name.split(".")
    return STAGES.index(parts[1]) if len(parts) > 1 and parts[1] in STAGES else -1


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The tinyloc_tf modules ``path`` imports anywhere in its body."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if not name.startswith("tinyloc_tf"):
                continue
            while name not in modules and "." in name:  # `from pkg import function` -> pkg
                name = name.rsplit(".", 1)[0]
            if name in modules:
                found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    modules = set(paths)
    return {name: imports_of(path, modules) - {name} for name, path in paths.items()}


GRAPH = import_graph()


def test_the_graph_is_read():
    assert "tinyloc_tf.workflows.sweep" in GRAPH
    assert "tinyloc_tf.training.trainer" in GRAPH["tinyloc_tf.workflows.execute"]
    assert level("tinyloc_tf.errors") == -1 and level("tinyloc_tf.reports.report") == STAGES.index("reports")


@pytest.mark.parametrize("module", sorted(name for name in GRAPH if not is_cli(name)))
def test_library_modules_import_only_their_stage_and_below(module):
    upward = sorted(target for target in GRAPH[module] if level(target) > level(module))
    where = STAGES[level(module)] if level(module) >= 0 else "the foundation"
    assert not upward, f"{module} (in {where}) imports later stages: {upward}"


def test_only_the_entry_point_imports_a_command_line_module():
    """Stages register their verbs with ``tinyloc_tf.cli`` by name; no module imports another's."""
    for module, targets in GRAPH.items():
        clis = sorted(target for target in targets if is_cli(target))
        assert clis == (["tinyloc_tf.cli"] if module == "tinyloc_tf.__main__" else []), f"{module} imports {clis}"


def test_no_import_cycles():
    """Tarjan's strongly connected components over the whole graph, package inits excluded
    (a package's ``__init__`` re-exporting its own modules is not a dependency cycle)."""
    graph = {m: {t for t in ts if not (m.startswith(t + "."))} for m, ts in GRAPH.items()}
    index, low, on_stack, stack, cycles, counter = {}, {}, set(), [], [], [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    assert not cycles, f"import cycles: {cycles}"


def test_an_upward_import_inside_a_function_is_found(tmp_path):
    source = tmp_path / "probe.py"
    source.write_text("import os\n\ndef late():\n    from tinyloc_tf.workflows.sweep import sweep\n    return sweep\n")
    found = imports_of(source, set(GRAPH))
    assert found == {"tinyloc_tf.workflows.sweep"}
    assert level("tinyloc_tf.workflows.sweep") > level("tinyloc_tf.training.trainer")
