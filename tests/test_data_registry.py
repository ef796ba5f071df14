"""The aezoo.datasets group: built-ins, name resolution, a third-party plugin, the cache."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from aezoo import registry
from aezoo.data import catalog, load_dataset
from aezoo.data.source import DatasetSource
from aezoo.errors import DataError, PluginError, UnknownNameError, UsageError
from aezoo.specs import DataSpec

BUILT_INS = {"mnist5k", "mnist", "fashion-mnist", "kmnist", "cifar10", "folder", "npz", "npy"}


def test_built_ins_come_from_the_entry_point_group() -> None:
    entries = {e.name: e for e in registry.entries(catalog.KIND)}
    assert BUILT_INS <= set(entries)
    for name in BUILT_INS:
        assert entries[name].dist == "aezoo"
        source = registry.load_entry(entries[name])
        assert isinstance(source, DatasetSource) and source.name == name
        assert source.license and source.description
        for file in source.files:  # every download is pinned by size and SHA-256
            assert len(file.sha256) == 64 and int(file.sha256, 16) >= 0 and file.size
        assert bool(source.files) == bool(source.mirrors)


def test_name_resolution() -> None:
    assert catalog.resolve("cifar10").argument is None
    assert catalog.resolve("folder:some/dir").argument == "some/dir"
    assert catalog.resolve("folder:C:/x").argument == "C:/x"  # only the first colon splits
    assert catalog.resolve("aezoo:mnist").source.name == "mnist"  # DIST:NAME
    assert catalog.resolve("aezoo:npz:a.npz").argument == "a.npz"
    with pytest.raises(UnknownNameError, match="did you mean 'cifar10'"):
        catalog.resolve("cifar-10")
    with pytest.raises(UnknownNameError, match="did you mean 'folder:x'"):
        catalog.resolve("folder-typo:x")
    with pytest.raises(UsageError, match="needs a path"):
        catalog.resolve("folder")
    with pytest.raises(UsageError, match="takes no path"):
        catalog.resolve("mnist:x")


def test_a_path_given_as_a_name_gets_the_right_prefix(tmp_path: Path) -> None:
    with pytest.raises(UnknownNameError, match=f"did you mean 'folder:{tmp_path}'"):
        catalog.resolve(str(tmp_path))
    with pytest.raises(UnknownNameError, match="did you mean 'npz:x.npz'"):
        catalog.resolve("x.npz")


def test_cache_location(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("AEZOO_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert catalog.data_root() == tmp_path / "xdg" / "aezoo"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    assert catalog.data_root() == Path.home() / ".cache" / "aezoo"
    monkeypatch.setenv("AEZOO_DATA", str(tmp_path / "mine"))
    assert catalog.source_dir(catalog.resolve("kmnist").source) == tmp_path / "mine" / "kmnist"


PLUGIN = '''
import numpy as np
from aezoo.data.source import DatasetSource, Splits

def _load(ctx):
    n = 30
    side = ctx.image_size[0] if ctx.image_size else 16
    images = np.zeros((n, 1, side, side), np.uint8)
    for i in range(n):
        images[i, 0, : i % side, : i % side] = 255
    return Splits(train=images, train_labels=np.arange(n) % 3,
                  test=images[:4].copy(), test_labels=np.arange(4) % 3)

squares = DatasetSource(name="squares", description="white squares", license="CC0",
                        load=_load, shape=(1, 16, 16), counts={"train": 30, "test": 4})
not_a_source = object()

def _crash(ctx):
    raise RuntimeError("the plugin broke")

crashing = DatasetSource(name="crashing", description="x", license="x", load=_crash)
'''


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A distribution 'fakedata' on sys.path, registering datasets via entry points."""
    (tmp_path / "fakedata_mod.py").write_text(PLUGIN)
    info = tmp_path / "fakedata-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakedata\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(textwrap.dedent("""\
        [aezoo.datasets]
        squares = fakedata_mod:squares
        notasource = fakedata_mod:not_a_source
        missing = fakedata_nowhere:thing
        crashing = fakedata_mod:crashing
        """))
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.clear_cache()
    yield tmp_path
    monkeypatch.undo()
    sys.modules.pop("fakedata_mod", None)
    registry.clear_cache()


def test_a_plugin_dataset_trains_like_a_built_in(plugin: Path) -> None:
    ds = load_dataset(DataSpec(name="squares", val_fraction=0.2))
    assert ds.shape == (1, 16, 16) and ds.splits() == {"train": 24, "val": 6, "test": 4}
    assert np.bincount(ds.val_labels).tolist() == [2, 2, 2]
    assert catalog.resolve("fakedata:squares").entry.dist == "fakedata"


def test_broken_plugins_are_isolated_and_reported(plugin: Path) -> None:
    with pytest.raises(PluginError, match="not a DatasetSource"):
        catalog.resolve("notasource")
    with pytest.raises(PluginError, match="failed to load dataset 'missing'"):
        catalog.resolve("missing")
    with pytest.raises(DataError, match="crashing .*fakedata 1.0.* RuntimeError: the plugin "
                                        "broke"):
        load_dataset(DataSpec(name="crashing"))
    broken = {f.entry.name for f in registry.failures() if f.entry.kind == "dataset"}
    assert broken == {"notasource", "missing"}
    assert len(load_dataset(DataSpec(name="mnist5k")).train) == 4500  # others unaffected


def test_cli_list_shows_plugins_and_warns_about_broken_ones(plugin: Path) -> None:
    from typer.testing import CliRunner

    from aezoo.cli import app

    result = CliRunner().invoke(app, ["data", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert rows["squares"]["shape"] == [1, 16, 16] and rows["squares"]["license"] == "CC0"
    assert "dataset 'missing' is unavailable" in result.stderr
    assert "dataset 'notasource' is unavailable" in result.stderr


def test_listing_imports_neither_torch_nor_pil_nor_numpy() -> None:
    code = textwrap.dedent("""
        import sys
        from typer.testing import CliRunner
        from aezoo.cli import app
        result = CliRunner().invoke(app, ["data", "list"])
        assert result.exit_code == 0, result.output
        print(sorted(m for m in ("torch", "PIL", "numpy") if m in sys.modules))
        """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"
