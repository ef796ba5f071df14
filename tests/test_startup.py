"""Start-up: `aezoo list` and `aezoo --help` never import torch; `python -m aezoo` works.

Each check runs in a fresh interpreter: this test process has long imported torch.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import aezoo

HEAVY = ("torch", "numpy", "PIL", "safetensors")


def python(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AEZOO_")}
    env["COLUMNS"] = "200"
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=120, check=False)


PROBE = """
import sys
heavy = {heavy!r}
assert not [m for m in heavy if m in sys.modules], "the interpreter itself imports them"
from aezoo.cli import app
try:
    app({argv!r}, standalone_mode=False)
except SystemExit as exc:
    assert not exc.code, exc.code
print("LOADED:" + ",".join(m for m in heavy if m in sys.modules))
"""


@pytest.mark.parametrize("argv", [["list"], ["--help"], ["list", "--json"],
                                  ["list", "--components"], ["list", "cae-*"],
                                  ["train", "--help"], ["info", "--help"]], ids=" ".join)
def test_cli_does_not_import_torch(tmp_path: Path, argv: list[str]) -> None:
    result = python("-c", PROBE.format(heavy=HEAVY, argv=argv), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    loaded = result.stdout.strip().splitlines()[-1]
    assert loaded.startswith("LOADED:")
    assert "torch" not in loaded.split(":", 1)[1].split(","), loaded
    assert loaded == "LOADED:", f"`aezoo {' '.join(argv)}` imported {loaded[7:]}"
    if argv in (["list"], ["list", "--json"], ["list", "cae-*"]):
        assert "cae-upsample" in result.stdout  # it really listed


@pytest.mark.parametrize("argv", [["list"], ["--help"]], ids=" ".join)
def test_python_m_aezoo_does_not_import_torch(tmp_path: Path, argv: list[str]) -> None:
    # -X importtime logs every module the real entry point imports, site hooks and all.
    result = python("-X", "importtime", "-m", "aezoo", *argv, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()
                if line.startswith("import time:")}
    assert "aezoo.cli" in imported  # the log is real
    for module in HEAVY:
        assert module not in imported, f"`python -m aezoo {' '.join(argv)}` imported {module}"
    if argv == ["list"]:
        assert "cae-upsample" in result.stdout and "4,385" in result.stdout


def test_python_m_aezoo_version(tmp_path: Path) -> None:
    result = python("-m", "aezoo", "--version", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"aezoo {aezoo.__version__}"
    assert not result.stderr
