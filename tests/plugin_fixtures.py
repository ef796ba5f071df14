"""Fake installed plugin distributions for fast in-process tests.

A ``FakeSite`` is a directory on ``sys.path`` holding ``NAME-VERSION.dist-info``
folders (METADATA + entry_points.txt) and the plugin modules: exactly what pip leaves
in site-packages, minus pip. Use it through a fixture::

    @pytest.fixture
    def site(tmp_path, monkeypatch):
        with FakeSite(tmp_path / "site", monkeypatch) as s:
            yield s
"""

from __future__ import annotations

import importlib
import os
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from aezoo import registry

# Descriptor sources reused by several tests. MODULE is replaced by the module name.
GOOD_COMPONENTS = """
from pydantic import BaseModel, ConfigDict, Field
from aezoo.protocols import DecoderComponent, EncoderComponent, LossComponent


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    width: int = Field(4, ge=1, description="channels")


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _enc(params, input_shape):
    from torch import nn

    class Enc(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(input_shape[0], params.width, 3, padding=1)
            self.input_shape = tuple(input_shape)
            self.latent_shape = (params.width, *input_shape[1:])

        def forward(self, x):
            return self.conv(x)

    return Enc()


def _dec(params, latent_shape, output_shape):
    from torch import nn

    class Dec(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(latent_shape[0], output_shape[0], 3, padding=1)
            self.latent_shape = tuple(latent_shape)
            self.output_shape = tuple(output_shape)

        def forward(self, z):
            return self.conv(z)

    return Dec()


def _loss(params):
    from torch import nn
    import torch.nn.functional as F

    class L(nn.Module):
        def forward(self, logits, target):
            return F.binary_cross_entropy_with_logits(logits.float(), target.float())

    return L()


encoder = EncoderComponent(params=Params, build=_enc, description="one conv (MODULE)")
decoder = DecoderComponent(params=Params, build=_dec, description="one conv (MODULE)")
loss = LossComponent(params=NoParams, build=_loss, description="bce (MODULE)")
"""


def variant_source(encoder: str, decoder: str, loss: str, **extra: object) -> str:
    args = ", ".join(f"{k}={v!r}" for k, v in extra.items())
    return (f"from aezoo.protocols import Variant\n"
            f"variant = Variant(encoder={encoder!r}, decoder={decoder!r}, loss={loss!r}"
            f"{', ' + args if args else ''})\n")


class FakeSite:
    """A site directory with fake installed distributions; clears registry caches."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.monkeypatch = monkeypatch
        self.modules: list[str] = []
        monkeypatch.syspath_prepend(str(root))
        for var in ("AEZOO_PLUGINS", "AEZOO_STRICT_PLUGINS"):
            monkeypatch.delenv(var, raising=False)

    def __enter__(self) -> FakeSite:
        registry.clear_cache()
        return self

    def __exit__(self, *exc: object) -> None:
        for name in self.modules:
            sys.modules.pop(name, None)
        registry.clear_cache()

    def add(self, dist: str, *, version: str = "1.0",
            entry_points: Mapping[str, Mapping[str, str]] = {},  # noqa: B006 - read only
            modules: Mapping[str, str] = {}) -> None:  # noqa: B006
        """Install ``dist``: ``entry_points`` maps group -> {name: "module:attr"};
        ``modules`` maps a module name to its source."""
        info = self.root / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n", encoding="utf-8")
        lines = []
        for group, eps in entry_points.items():
            lines.append(f"[{group}]")
            lines += [f"{name} = {value}" for name, value in eps.items()]
            lines.append("")
        (info / "entry_points.txt").write_text("\n".join(lines), encoding="utf-8")
        for name, source in modules.items():
            path = self.root / (name.replace(".", "/") + ".py")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(source).replace("MODULE", name), encoding="utf-8")
            self.modules.append(name)
        importlib.invalidate_caches()
        registry.clear_cache()

    def add_components(self, dist: str, module: str, names: Mapping[str, str],
                       version: str = "1.0") -> None:
        """A distribution providing the GOOD_COMPONENTS under the given public names:
        ``names`` maps kind (encoder/decoder/loss) -> public name."""
        groups = {registry.GROUPS[kind]: {name: f"{module}:{kind}"}
                  for kind, name in names.items()}
        self.add(dist, version=version, entry_points=groups,
                 modules={module: GOOD_COMPONENTS})

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for a subprocess that sees this site (and nothing else new)."""
        env = {k: v for k, v in os.environ.items()
               if k not in ("AEZOO_PLUGINS", "AEZOO_STRICT_PLUGINS")}
        env["PYTHONPATH"] = os.pathsep.join([str(self.root), env.get("PYTHONPATH", "")])
        env.update(extra)
        return env


# --- real virtual environments, offline --------------------------------------------
#
# A fresh venv gets the main environment's third-party packages (torch, pydantic, pip,
# setuptools, pytest...) through a .pth file pointing at a folder of symlinks, so nothing
# is downloaded or copied; aezoo itself and anything that registers aezoo entry points
# are left out, so the venv holds exactly the aezoo and plugins the test pip-installs.

REPO = Path(__file__).resolve().parents[1]


def dependency_overlay(dest: Path) -> Path:
    """Symlinks to this interpreter's site-packages, minus aezoo and aezoo plugins."""
    import sysconfig

    site = Path(sysconfig.get_paths()["purelib"])
    dest.mkdir(parents=True)
    for item in site.iterdir():
        name = item.name
        if name.startswith(("aezoo", "__editable__", "_aezoo")) or name.endswith(".pth") \
                or name == "__pycache__":
            continue
        eps = item / "entry_points.txt"
        if name.endswith(".dist-info") and eps.exists() and "[aezoo." in eps.read_text():
            continue
        (dest / name).symlink_to(item)
    return dest


def aezoo_source_copy(dest: Path) -> Path:
    """What an sdist of aezoo holds, copied so builds never write into the repo."""
    import shutil

    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
    dest.mkdir(parents=True)
    for name in ("aezoo", "plugins"):
        shutil.copytree(REPO / name, dest / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, dest / name)
    return dest


class Venv:
    """A real virtual environment; ``run`` executes its console scripts and python."""

    def __init__(self, path: Path, overlay: Path) -> None:
        import subprocess

        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True,
                       capture_output=True)
        self.path = path
        self.bin = path / ("Scripts" if os.name == "nt" else "bin")
        self.python = self.bin / "python"
        purelib = subprocess.run(
            [str(self.python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True, capture_output=True, text=True).stdout.strip()
        Path(purelib, "_aezoo_test_dependencies.pth").write_text(f"{overlay}\n")

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("AEZOO_", "PYTHON", "VIRTUAL_ENV", "PIP_"))}
        env.update(PATH=f"{self.bin}{os.pathsep}{env.get('PATH', '')}", VIRTUAL_ENV=str(self.path),
                   PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1", COLUMNS="200")
        return env

    def run(self, *args: str | Path, cwd: Path | None = None, check: bool = True,
            timeout: float = 300) -> Any:
        import subprocess

        program = str(args[0])
        if (self.bin / program).exists():
            program = str(self.bin / program)
        run = subprocess.run([program, *map(str, args[1:])], cwd=cwd, env=self.env(),
                             capture_output=True, text=True, timeout=timeout)
        if check and run.returncode != 0:
            raise AssertionError(f"{' '.join(map(str, args))} exited {run.returncode}\n"
                                 f"--- stdout\n{run.stdout}\n--- stderr\n{run.stderr}")
        return run

    def pip_install(self, *targets: str | Path, cwd: Path | None = None) -> Any:
        """pip install with no network: dependencies must already be present."""
        return self.run("python", "-m", "pip", "install", "--no-index", "--no-build-isolation",
                        *targets, cwd=cwd)
