"""aezoo and its first-party plugins use their libraries through public APIs only.

The libraries aezoo uses (torch, rich, safetensors, pydantic, typer, matplotlib, ...)
promise nothing about their underscored names (``torch._dynamo``,
``rich.table.Table._extra_width``, ``pydantic._internal``): they change in any release
that aezoo's version ranges allow. This scans every ``.py`` file
under ``aezoo/`` and ``plugins/`` and names each file:line that reaches one:

- an import of a private module or name: ``import torch._dynamo``,
  ``from rich._loop import ...``, ``from torch import _C``;
- an attribute chain from a library name: ``torch._foreach_norm``,
  ``torch.utils._pytree``, ``Table._extra_width``, and ``tab._cells`` where ``tab`` is a
  parameter or variable annotated with a library class (``tab: Table``); an unannotated
  object is not seen (a static scan cannot type it);
- ``getattr``/``hasattr``/``setattr``/``delattr`` on a library object with a private
  name given as a string, directly or from a tuple or list of strings in the same
  function (``for name in ("_is_amx_tile_supported", ...): getattr(torch.cpu, name)``).

Dunder names (``__version__``, ``__file__``) are public.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIBRARIES = ("torch", "rich", "safetensors", "pydantic", "typer", "click", "matplotlib", "numpy",
             "PIL", "optuna", "huggingface_hub", "datasets", "mlflow", "wandb", "webdataset")
ATTRIBUTE_CALLS = ("getattr", "hasattr", "setattr", "delattr")


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _library(module: str) -> bool:
    return module.split(".")[0] in LIBRARIES


def _chain(node: ast.expr) -> list[str] | None:
    """``torch.cpu.x`` -> ["torch", "cpu", "x"]; None for anything but names and dots."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return [node.id, *reversed(parts)]


class _Scan(ast.NodeVisitor):
    def __init__(self) -> None:
        self.aliases: dict[str, str] = {}  # local name -> the library path it stands for
        self.strings: dict[str, set[str]] = {}  # name -> strings a tuple/list gave it
        self.found: list[tuple[int, str]] = []

    def report(self, node: ast.AST, what: str) -> None:
        self.found.append((getattr(node, "lineno", 0), what))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if not _library(alias.name):
                continue
            if any(_private(part) for part in alias.name.split(".")):
                self.report(node, f"import {alias.name}")
            if alias.asname:
                self.aliases[alias.asname] = alias.name
            else:
                root = alias.name.split(".")[0]
                self.aliases[root] = root

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        if node.level or not _library(module):
            return
        if any(_private(part) for part in module.split(".")):
            self.report(node, f"from {module} import ...")
            return
        for alias in node.names:
            if _private(alias.name):
                self.report(node, f"from {module} import {alias.name}")
            self.aliases[alias.asname or alias.name] = f"{module}.{alias.name}"

    def _resolve(self, node: ast.expr) -> list[str] | None:
        """The library path ``node`` names (aliases expanded), or None."""
        chain = _chain(node)
        if chain is None or chain[0] not in self.aliases:
            return None
        return [*self.aliases[chain[0]].split("."), *chain[1:]]

    def _typed(self, name: str, annotation: ast.expr | None) -> None:
        """``tab: Table`` / ``console: Console | None``: ``name`` stands for that class."""
        if annotation is None:
            return
        if isinstance(annotation, ast.BinOp):  # X | None
            self._typed(name, annotation.left)
            self._typed(name, annotation.right)
            return
        if isinstance(annotation, ast.Subscript):  # Optional[X], type[X]
            self._typed(name, annotation.slice)
            return
        path = self._resolve(annotation)
        if path is not None:
            self.aliases[name] = ".".join(path)

    def visit_arg(self, node: ast.arg) -> None:
        self._typed(node.arg, node.annotation)
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if isinstance(node.target, ast.Name):
            self._typed(node.target.id, node.annotation)
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        path = self._resolve(node)
        if path is not None:
            private = [part for part in path if _private(part)]
            if private:
                self.report(node, ".".join(path))
                return  # one report per chain, not one per prefix
        self.generic_visit(node)

    def visit_Assign(self, node: ast.Assign) -> None:
        if isinstance(node.value, ast.Tuple | ast.List | ast.Set):
            texts = {e.value for e in node.value.elts
                     if isinstance(e, ast.Constant) and isinstance(e.value, str)}
            for target in node.targets:
                if isinstance(target, ast.Name) and texts:
                    self.strings.setdefault(target.id, set()).update(texts)
        self.generic_visit(node)

    def visit_For(self, node: ast.For) -> None:
        # for name in ("_a", "_b"): ... / for name in checks: ...
        if isinstance(node.target, ast.Name):
            texts = self._strings_of(node.iter)
            if texts:
                self.strings.setdefault(node.target.id, set()).update(texts)
        self.generic_visit(node)

    def visit_comprehension(self, node: ast.comprehension) -> None:
        if isinstance(node.target, ast.Name):
            texts = self._strings_of(node.iter)
            if texts:
                self.strings.setdefault(node.target.id, set()).update(texts)
        self.generic_visit(node)

    def _strings_of(self, node: ast.expr) -> set[str]:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return {node.value}
        if isinstance(node, ast.Name):
            return self.strings.get(node.id, set())
        if isinstance(node, ast.Tuple | ast.List | ast.Set):
            return set().union(*(self._strings_of(e) for e in node.elts))
        if isinstance(node, ast.JoinedStr | ast.BinOp):  # f"_{x}", "_" + x
            first = node.values[0] if isinstance(node, ast.JoinedStr) else node.left
            return self._strings_of(first)  # type: ignore[arg-type]
        return set()

    def visit_Call(self, node: ast.Call) -> None:
        if (isinstance(node.func, ast.Name) and node.func.id in ATTRIBUTE_CALLS
                and len(node.args) >= 2):
            path = self._resolve(node.args[0])
            if path is not None:
                for text in sorted(self._strings_of(node.args[1])):
                    if _private(text):
                        self.report(node, f"{node.func.id}({'.'.join(path)}, {text!r})")
        self.generic_visit(node)


def _comprehensions_first(tree: ast.Module) -> ast.Module:
    """ast visits a comprehension's element before its ``for``: hoist the generators so
    ``[getattr(torch.cpu, n) for n in names]`` sees ``n``'s strings first."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp):
            node._fields = ("generators", *(f for f in node._fields if f != "generators"))
    return tree


def private_uses(source: str, filename: str = "<source>") -> list[tuple[int, str]]:
    scan = _Scan()
    scan.visit(_comprehensions_first(ast.parse(source, filename)))
    return sorted(scan.found)


def _files() -> Iterator[Path]:
    for top in ("aezoo", "plugins"):
        yield from sorted((ROOT / top).rglob("*.py"))


def test_the_scan_sees_each_kind_of_private_use() -> None:
    source = '''
import torch, torch._dynamo
import torch.utils._pytree as pytree
from torch._C import _get_tracing_state
from torch import _C
from rich._loop import loop_last
from pydantic._internal import _model_construction
from safetensors.torch import _find_shared_tensors
from typer._completion_shared import get_completion_script
from rich.table import Table
from rich.console import Console
import rich.cells as cells
x = torch._foreach_norm([], 2)
y = torch.optim.Optimizer._hook_for_profile
z = Table._extra_width
w = cells._is_single_cell_widths
def width(tab: Table, console: Console | None) -> int:
    return tab._extra_width + console._buffer_index
getattr(torch, "_disable_dynamo", None)
hasattr(torch.cpu, "_is_amx_tile_supported")
setattr(torch.optim.adam.adam, "_x", 1)
checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
any(getattr(torch.cpu, name, lambda: False)() for name in checks)
for other in ("_a",):
    getattr(torch.cpu, other)
'''
    found = [what for _, what in private_uses(source)]
    assert found == [
        "import torch._dynamo", "import torch.utils._pytree",
        "from torch._C import ...", "from torch import _C", "from rich._loop import ...",
        "from pydantic._internal import ...", "from safetensors.torch import _find_shared_tensors",
        "from typer._completion_shared import ...",
        "torch._foreach_norm", "torch.optim.Optimizer._hook_for_profile",
        "rich.table.Table._extra_width", "rich.cells._is_single_cell_widths",
        "rich.console.Console._buffer_index", "rich.table.Table._extra_width",
        "getattr(torch, '_disable_dynamo')", "hasattr(torch.cpu, '_is_amx_tile_supported')",
        "setattr(torch.optim.adam.adam, '_x')",
        "getattr(torch.cpu, '_is_amx_tile_supported')",
        "getattr(torch.cpu, '_is_avx512_bf16_supported')", "getattr(torch.cpu, '_a')"]


def test_the_scan_leaves_public_and_own_names_alone() -> None:
    source = '''
import torch
from torch import nn
import yaml
from aezoo import fileio
print(torch.__version__, torch.cpu.is_available(), nn.Module.__init__)
self._cells = 1
obj._private = 2
getattr(obj, "_x", None)
getattr(torch.nn.utils, "get_total_norm", None)
yaml.nodes._x
fileio.atomic_write
'''
    assert private_uses(source) == []


def test_aezoo_and_plugins_use_only_public_library_apis() -> None:
    found = [f"{path.relative_to(ROOT)}:{line}: {what}"
             for path in _files()
             for line, what in private_uses(path.read_text(encoding="utf-8"), str(path))]
    assert not found, ("private attributes of a library "
                       "(use its public API):\n" + "\n".join(found))
