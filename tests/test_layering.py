"""The import graph of ``aezoo/`` is layered and acyclic (docs/architecture.md).

An AST walk over every module: each import (at module level or inside a function — a
deferred import is still a dependency) must point to the importer's own layer or a lower
one, and no set of modules may import each other in a circle. Imports under
``if TYPE_CHECKING:`` are exempt (they never run).
"""

from __future__ import annotations

import ast
import fnmatch
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "aezoo"

# Lowest first. A module may import from its own layer and any layer above it in this list.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("aezoo.errors", "aezoo.protocols", "aezoo._version", "aezoo.fileio", "aezoo._safetensors",
     "aezoo._interrupts", "aezoo.outputs",
     "aezoo.device", "aezoo.tensors", "aezoo.metrics", "aezoo.viz", "aezoo.curves", "aezoo.epochs",
     "aezoo.latents", "aezoo.data.source", "aezoo.kinds", "aezoo.weightset", "aezoo.hub"),
    ("aezoo.registry", "aezoo.specs"),
    ("aezoo.config", "aezoo.specfile", "aezoo.rundir", "aezoo.data", "aezoo.data.*",
     "aezoo.distributed", "aezoo.inference", "aezoo.generation", "aezoo.scaffold",
     "aezoo.records", "aezoo.pretrained", "aezoo.inmemory"),
    ("aezoo.model", "aezoo.objective", "aezoo.schema", "aezoo.doctor"),
    ("aezoo.checkpoint", "aezoo.loaded", "aezoo.encoding", "aezoo.evaluation", "aezoo.exporting",
     "aezoo.scoring", "aezoo.sharing"),
    ("aezoo.training", "aezoo.training.*", "aezoo.callbacks", "aezoo.callbacks.*",
     "aezoo.trainer"),
    ("aezoo.run", "aezoo.testing", "aezoo.testing.*", "aezoo.leaderboard"),
    # The front doors: the commands, and the Python API (the facade and aezoo.api, whose
    # functions the commands call; fit shows the commands' progress), split by job.
    ("aezoo.cli", "aezoo.cli.*", "aezoo.__main__", "aezoo", "aezoo.api", "aezoo.fitting",
     "aezoo.using", "aezoo.pictures", "aezoo.plotting"),
)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def layer_of(module: str) -> int:
    # Exact names win over patterns, so aezoo.data.source sits below aezoo.data.*.
    for index, names in enumerate(LAYERS):
        if module in names:
            return index
    for index, names in enumerate(LAYERS):
        if any(fnmatch.fnmatchcase(module, n) for n in names if "*" in n):
            return index
    raise AssertionError(f"{module} is in no layer: add it to LAYERS (and "
                         "docs/architecture.md)")


_LAZY_REF = re.compile(r"^aezoo(\.\w+)+:\w+(\.\w+)*$")


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return ((isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
            or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def _target(name: str) -> str | None:
    """The aezoo module ``name`` refers to (a submodule, else its package), if any."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str) -> set[str]:
    """aezoo modules ``module`` imports at run time."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking_only(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and \
                _LAZY_REF.match(node.value):  # "aezoo.x:attr": imported when called
            target = _target(node.value.partition(":")[0])
            if target:
                found.add(target)
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "aezoo":
                    found.add(_target(alias.name) or alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            if base.split(".")[0] == "aezoo":
                for alias in node.names:
                    target = _target(f"{base}.{alias.name}") or _target(base)
                    if target:
                        found.add(target)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    found.discard(module)
    return found


GRAPH = {m: imports_of(m) for m in MODULES}


def test_every_module_has_a_layer() -> None:
    for module in MODULES:
        layer_of(module)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down(module: str) -> None:
    mine = layer_of(module)
    upward = sorted(t for t in GRAPH[module] if layer_of(t) > mine)
    assert not upward, (f"{module} (layer {mine}) imports {', '.join(upward)} from a higher "
                        "layer: move the shared code down, or the caller up")


def test_no_import_cycles() -> None:
    # Tarjan's strongly connected components over the module graph.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                connect(w)
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
                cycles.append(sorted(component))

    for v in sorted(GRAPH):
        if v not in index:
            connect(v)
    assert not cycles, f"import cycles: {cycles}"


def test_the_walk_sees_deferred_imports() -> None:
    """The checker itself: a function-level import counts, a TYPE_CHECKING one does not."""
    assert "aezoo.data.base" in GRAPH["aezoo.data"]  # imported inside __getattr__
    assert "aezoo.model" not in GRAPH["aezoo.viz"]  # only under TYPE_CHECKING


PLUGIN_PACKAGES = {p.name for p in (ROOT.parent / "plugins").iterdir()
                   if (p / "__init__.py").is_file()}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_the_core_never_imports_a_first_party_plugin(module: str) -> None:
    """First-party plugins come through entry points only, like a third party's
    (docs/architecture.md): no aezoo module imports one, even lazily by a string."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    named: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            named |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            named.add(node.module.split(".")[0])
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            named.add(re.split(r"[.:]", node.value)[0])
    assert not named & PLUGIN_PACKAGES, f"{module} imports {sorted(named & PLUGIN_PACKAGES)}"


def test_the_plugin_check_sees_the_first_party_plugins() -> None:
    assert {"aezoo_cae", "aezoo_datasets", "aezoo_sweep"} <= PLUGIN_PACKAGES


PLUGINS = ROOT.parent / "plugins"


@pytest.mark.parametrize("path", sorted(PLUGINS.rglob("*.py")),
                         ids=lambda p: p.relative_to(PLUGINS).as_posix())
def test_first_party_plugins_use_only_public_aezoo_modules(path: Path) -> None:
    """A first-party plugin imports aezoo as a third party would: no ``_``-prefixed module
    (docs/architecture.md)."""
    named: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            named |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            named |= {f"{node.module}.{alias.name}" for alias in node.names}
    private = sorted(n for n in named if n.split(".")[0] == "aezoo"
                     and any(part.startswith("_") and not part.startswith("__")
                             for part in n.split(".")))
    assert not private, f"{path.name} imports {private}"
