"""`aezoo new-plugin`: the generated project is complete, clean and conformant.

(tests/test_plugins_venv.py installs one for real and runs its own tests.)
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from plugin_fixtures import FakeSite

from aezoo import testing

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

EXPECTED_FILES = {
    "pyproject.toml", "README.md", ".gitignore", ".github/workflows/tests.yml",
    "src/aezoo_resnet/__init__.py", "src/aezoo_resnet/variants.py",
    "src/aezoo_resnet/components.py", "src/aezoo_resnet/layers.py",
    "tests/test_conformance.py",
}


@pytest.fixture
def project(cli, tmp_path):
    result = cli("new-plugin", "aezoo-resnet", "--dir", str(tmp_path / "work"))
    assert result.exit_code == 0, result.output
    assert "variant resnet" in result.stdout
    assert 'pip install -e ".[test]"' in result.stdout  # as the docs say (not rich markup)
    return tmp_path / "work" / "aezoo-resnet"


def test_generates_a_complete_project(project):
    files = {str(p.relative_to(project)) for p in project.rglob("*") if p.is_file()}
    assert files == EXPECTED_FILES
    for path in project.rglob("*"):
        if path.is_file():
            assert "{{" not in path.read_text().replace("${{", ""), path
    meta = tomllib.loads((project / "pyproject.toml").read_text())
    assert meta["project"]["name"] == "aezoo-resnet"
    assert meta["project"]["entry-points"] == {
        "aezoo.encoders": {"resnet-encoder": "aezoo_resnet.components:encoder"},
        "aezoo.decoders": {"resnet-decoder": "aezoo_resnet.components:decoder"},
        "aezoo.losses": {"resnet-loss": "aezoo_resnet.components:loss"},
        "aezoo.variants": {"resnet": "aezoo_resnet.variants:resnet"},
    }
    assert any(d.startswith("aezoo>=") for d in meta["project"]["dependencies"])
    workflow = yaml.safe_load((project / ".github/workflows/tests.yml").read_text())
    assert "pytest -q" in str(workflow["jobs"]["test"]["steps"])
    readme = (project / "README.md").read_text()
    assert "aezoo train resnet" in readme and "twine upload" in readme
    # The generated test uses documented APIs only (aezoo.testing), not the registry's.
    generated = (project / "tests/test_conformance.py").read_text()
    assert "registry" not in generated and "variant_names(dist=" in generated


def test_generated_code_is_lint_clean(project):
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    run = subprocess.run([ruff, "check", "--isolated", "--select", "E,F,W,I,B,UP",
                          "--line-length", "100", "--target-version", "py310", "."],
                         cwd=project, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_generated_plugin_passes_the_conformance_kit(project, tmp_path, monkeypatch):
    """Installed the way pip would (a dist-info with its entry points, code on sys.path)."""
    meta = tomllib.loads((project / "pyproject.toml").read_text())
    monkeypatch.syspath_prepend(str(project / "src"))
    with FakeSite(tmp_path / "site", monkeypatch) as site:
        site.add("aezoo-resnet", version="0.1.0",
                 entry_points=meta["project"]["entry-points"])
        site.modules += ["aezoo_resnet", "aezoo_resnet.variants", "aezoo_resnet.components",
                         "aezoo_resnet.layers"]
        ran = testing.check_variant("aezoo-resnet:resnet", bad_params={
            "encoder": [{"channels": []}], "loss": [{"l1_weight": -1.0}]})
        assert {"shape round trip 3x32x32", "shape round trip 1x27x33"} <= set(ran)


@pytest.mark.parametrize(("name", "problem"), [
    ("bad!", "not a valid distribution name"),
    ("has space", "not a valid distribution name"),
    ("9lives", "does not give a usable Python package name"),
    ("aezoo", "does not give a usable Python package name"),
])
def test_rejects_unusable_names(cli, tmp_path, name, problem):
    result = cli("new-plugin", name, "--dir", str(tmp_path))
    assert result.exit_code == 2 and problem in result.stderr
    assert not any(tmp_path.iterdir())


def test_never_overwrites_an_existing_project(cli, tmp_path):
    target = tmp_path / "aezoo-resnet"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    result = cli("new-plugin", "aezoo-resnet", "--dir", str(tmp_path))
    assert result.exit_code == 2 and "already exists and is not empty" in result.stderr
    assert [p.name for p in target.iterdir()] == ["keep.txt"]
