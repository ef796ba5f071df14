"""Shell completion: scripts for bash, zsh and fish; candidates without importing torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aezoo.cli import complete as completers

# Runs the CLI as a shell's completion call would, then reports what it imported.
PROBE = """
import json, sys
from aezoo.cli import app
try:
    app([], prog_name="aezoo")
except SystemExit:
    pass
sys.stdout.flush()
print("\\nMODULES " + json.dumps([m for m in ("torch", "numpy", "PIL") if m in sys.modules]))
"""


def complete(env: dict[str, str], cwd: Path) -> tuple[list[str], list[str]]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AEZOO_", "_AEZOO"))}
    result = subprocess.run([sys.executable, "-c", PROBE], env={**base, **env}, cwd=cwd,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    out, _, modules = result.stdout.rpartition("MODULES ")
    return [w for w in out.splitlines() if w.strip()], json.loads(modules)


@pytest.mark.parametrize("shell", completers.SHELLS)
def test_completion_scripts_are_generated(cli, shell: str) -> None:  # type: ignore[no-untyped-def]
    result = cli("completion", shell)
    assert result.exit_code == 0, result.output
    assert "_AEZOO_COMPLETE=complete_" + shell in result.stdout
    assert "aezoo" in result.stdout
    bad = cli("completion", "tcsh")
    assert bad.exit_code == 2 and "no completion for shell 'tcsh'" in bad.output


def test_bash_completes_a_variant_name_without_torch(tmp_path: Path) -> None:
    words, modules = complete({"_AEZOO_COMPLETE": "complete_bash",
                               "COMP_WORDS": "aezoo train cae-v", "COMP_CWORD": "2"}, tmp_path)
    assert words == ["cae-vae"]
    assert modules == []  # as cheap as `aezoo --help`


def test_zsh_and_fish_complete_datasets_components_and_keys(tmp_path: Path) -> None:
    words, _ = complete({"_AEZOO_COMPLETE": "complete_zsh",
                         "_TYPER_COMPLETE_ARGS": "aezoo train --data mnist"}, tmp_path)
    assert any('"mnist5k"' in w for w in words)
    words, _ = complete({"_AEZOO_COMPLETE": "complete_fish", "_TYPER_COMPLETE_FISH_ACTION":
                         "get-args", "_TYPER_COMPLETE_ARGS": "aezoo info strid"}, tmp_path)
    assert words == ["strided"]
    words, _ = complete({"_AEZOO_COMPLETE": "complete_bash",
                         "COMP_WORDS": "aezoo train --set train.war", "COMP_CWORD": "3"},
                        tmp_path)
    assert words == ["train.warmup="]


def test_run_directories_complete(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "runs/done").mkdir(parents=True)
    (tmp_path / "runs/done/run.json").write_text("{}")
    (tmp_path / "runs/group").mkdir()
    (tmp_path / "model.safetensors").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    assert completers.run_dirs("") == ["runs/done", "runs/group/"]
    assert completers.run_dirs("runs/d") == ["runs/done"]
    assert completers.models("mod") == ["model.safetensors"]
    assert completers.set_keys("train.lr=0.1") == []
    assert "folder:" in completers.datasets("fo")


def test_absolute_paths_complete_as_absolute(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run/run.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"")
    typed = f"{tmp_path}/"
    assert completers.run_dirs(typed + "r") == [f"{tmp_path}/run"]
    assert completers.models(typed + "mo") == [f"{tmp_path}/model.safetensors"]
    top = sorted(p.name for p in Path("/").iterdir() if p.is_dir())[0]
    assert f"/{top}/" in completers.run_dirs("/" + top[:1]) or \
        f"/{top}" in completers.run_dirs("/" + top[:1])


def test_every_command_taking_a_model_completes_it(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import typer.main

    from aezoo.cli import app

    (tmp_path / "model.safetensors").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    group = typer.main.get_command(app)
    takers = []
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        for param in command.params:
            if param.name == "model":
                ctx = command.make_context(name, ["x"], resilient_parsing=True)
                words = [item.value for item in param.shell_complete(ctx, "mod")]
                assert words == ["model.safetensors"], f"aezoo {name} MODEL: {words}"
                takers.append(name)
    assert {"eval", "encode", "export", "score", "reconstruct"} <= set(takers)
