"""Shell completion: what each argument completes to, without importing torch.

Each function takes the word being typed and returns the candidates (typer's
``autocompletion=``). Names come from entry-point metadata (``aezoo.registry``), spec keys
from the pydantic models, runs from the file system: completing costs what `aezoo --help`
costs.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

SHELLS = ("bash", "zsh", "fish")
COMPLETE_VAR = "_AEZOO_COMPLETE"


def shells(incomplete: str) -> list[str]:
    return [s for s in SHELLS if s.startswith(incomplete)]


def _names(kind: str, incomplete: str) -> list[str]:
    from aezoo import registry

    try:
        return [n for n in registry.names(kind) if n.startswith(incomplete)]
    except Exception:  # a broken plugin must never break the user's shell  # noqa: BLE001
        return []


def variants(incomplete: str) -> list[str]:
    return _names("variant", incomplete)


def components(incomplete: str) -> list[str]:
    """Variants, parts, callbacks and datasets by name (what `aezoo info` takes)."""
    from aezoo.kinds import PART_KINDS

    kinds = (*PART_KINDS, "callback", "dataset")
    found = [*variants(incomplete), *(n for k in kinds for n in _names(k, incomplete))]
    return list(dict.fromkeys(found))


def losses(incomplete: str) -> list[str]:
    return _names("loss", incomplete)


def datasets(incomplete: str) -> list[str]:
    """Dataset names; the path-taking sources as ``folder:``, ``npz:``, ``npy:``."""
    path_sources = {"folder", "npz", "npy"}
    names = [f"{n}:" if n in path_sources else n for n in _names("dataset", "")]
    return [n for n in names if n.startswith(incomplete)]


def schedules(incomplete: str) -> list[str]:
    return _names("schedule", incomplete)


def run_dirs(incomplete: str) -> list[str]:
    """Run directories (holding run.json) and the directories on the way to them; with
    nothing typed, the runs under ``runs/``."""
    from aezoo.rundir import RUN_FILE

    if not incomplete and Path("runs").is_dir():
        incomplete = "runs/"
    where, prefix, tail = _split(incomplete)
    try:
        entries = sorted(os.scandir(where), key=lambda e: e.name)
    except OSError:
        return []
    out = []
    for entry in entries:
        hidden = entry.name.startswith(".") and not tail.startswith(".")
        try:
            if hidden or not entry.name.startswith(tail) or not entry.is_dir():
                continue
        except OSError:
            continue
        d = f"{prefix}{entry.name}"
        out.append(d if (Path(d) / RUN_FILE).is_file() else f"{d}/")
    return out


def _split(incomplete: str) -> tuple[str, str, str]:
    """``"runs/d"`` -> (the directory to list, what the candidates start with, the name
    typed so far): ``("runs", "runs/", "d")``; ``"/tm"`` -> ``("/", "/", "tm")``."""
    head, slash, tail = incomplete.rpartition("/")
    return head or slash or ".", head + slash, tail


def models(incomplete: str) -> list[str]:
    """Run directories, ``.safetensors`` files and weight sets ``VARIANT.TAG`` (what MODEL
    takes; names from entry-point metadata only)."""
    where, prefix, tail = _split(incomplete)
    files: list[str] = []
    with contextlib.suppress(OSError):
        files = sorted(f"{prefix}{p.name}" for p in Path(where).iterdir()
                       if p.name.startswith(tail) and p.suffix == ".safetensors")
    return [*run_dirs(incomplete), *files, *_names("weights", incomplete)]


def _keys(model: Any, prefix: str = "") -> list[str]:
    out = []
    for name, field in model.model_fields.items():
        sub = field.annotation
        if isinstance(sub, type) and hasattr(sub, "model_fields"):
            out += _keys(sub, f"{prefix}{name}.")
        else:
            out.append(f"{prefix}{name}")
    return out


def set_keys(incomplete: str) -> list[str]:
    """``--set`` keys (every dotted path of a run spec) as ``KEY=``."""
    from aezoo.specs import RunSpec

    if "=" in incomplete:
        return []
    return [f"{k}=" for k in _keys(RunSpec) if k.startswith(incomplete)]


def script(shell: str, prog_name: str = "aezoo") -> str:
    """The completion script for ``shell`` (what ``aezoo completion SHELL`` prints)."""
    from typer.completion import get_completion_script

    return get_completion_script(prog_name=prog_name, complete_var=COMPLETE_VAR, shell=shell)


def enable_if_asked() -> None:
    """Register typer's completion protocol when a shell asks for candidates (the
    ``_AEZOO_COMPLETE`` variable set by the script); otherwise nothing is imported."""
    if os.environ.get(COMPLETE_VAR):
        if os.environ[COMPLETE_VAR].startswith("complete_bash"):
            _check_bash_word_index()
        from typer.completion import completion_init

        completion_init()


def _check_bash_word_index() -> None:
    """bash's completion protocol passes the word being completed as ``COMP_CWORD``; a
    value that is not a word index is one error line (exit 2), not the parser's traceback."""
    value = os.environ.get("COMP_CWORD", "")
    words = os.environ.get("COMP_WORDS", "").split()
    if not (value.isascii() and value.isdigit() and int(value) <= len(words)):
        import sys

        from aezoo.errors import one_line

        sys.stderr.write(f"error: COMP_CWORD is {one_line(repr(value)[:40])}, not the index of "
                         f"a word in COMP_WORDS: it is set by the completion script; reinstall "
                         f"it with `aezoo completion bash`\n")
        raise SystemExit(2)
