"""Checkpoints: bit-exact round trips, header metadata, missing plugins, atomic writes."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import aezoo
from aezoo import checkpoint, fileio, registry
from aezoo.device import resolve_device
from aezoo.errors import CheckpointError, DeviceError
from aezoo.specs import ModelSpec


def perturbed(name: str, **overrides: object) -> aezoo.model.Autoencoder:
    """A model whose weights no fresh build reproduces (so a load must read the file)."""
    torch.manual_seed(10)
    model = aezoo.build(name, **overrides)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model


@pytest.mark.parametrize(("name", "overrides"), [
    ("cae-upsample", {}),
    ("cae-strided", {}),
    ("cae-upsample", {"input_shape": (3, 32, 32), "decoder": "convtranspose", "loss": "mse",
                      "encoder_params": {"channels": [12, 6, 4]}}),
], ids=["cae-upsample", "cae-strided", "custom-3x32x32"])
def test_save_load_is_bit_exact(tmp_path: Path, name: str, overrides: dict) -> None:
    model = perturbed(name, **overrides)
    path = aezoo.save(model, tmp_path / "model.safetensors")
    assert path == tmp_path / "model.safetensors"
    torch.manual_seed(999)  # a different init: only the file can make the weights match
    loaded = aezoo.load(path)
    assert loaded.spec == model.spec
    before, after = model.state_dict(), loaded.state_dict()
    assert before.keys() == after.keys()
    for key in before:
        assert after[key].dtype == before[key].dtype, key
        assert torch.equal(after[key], before[key]), key
    x = torch.rand(5, *model.input_shape)
    model.eval()
    loaded.eval()
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
        assert torch.equal(loaded.encode(x), model.encode(x))
        assert torch.equal(loaded.loss(x), model.loss(x))
    assert all(p.device.type == "cpu" for p in loaded.parameters())


def test_load_takes_device_names(tmp_path: Path) -> None:
    path = aezoo.save(perturbed("cae-upsample"), tmp_path / "m.safetensors")
    for device in ("cpu", "auto", torch.device("cpu")):
        model = aezoo.load(path, device=device)
        expected = "cpu" if device != "auto" else resolve_device("auto").type
        assert {p.device.type for p in model.parameters()} == {expected}
    with pytest.raises(DeviceError, match="unknown device"):
        aezoo.load(path, device="gpu")
    if not torch.cuda.is_available():  # before the fix: a bare torch AssertionError
        with pytest.raises(DeviceError, match="CUDA is not available"):
            aezoo.load(path, device="cuda")


def test_header_metadata(tmp_path: Path) -> None:
    model = perturbed("cae-upsample", loss="mse")
    path = aezoo.save(model, tmp_path / "m.safetensors")
    with safe_open(str(path), framework="pt") as f:  # an independent reader
        meta = f.metadata()
        keys = set(f.keys())
    assert keys == set(model.state_dict())
    assert meta["format"] == "pt"
    assert meta["aezoo.version"] == aezoo.__version__
    spec = json.loads(meta["aezoo.spec"])
    assert spec == model.spec.model_dump(mode="json")
    assert ModelSpec.model_validate(spec) == model.spec
    assert spec["loss"]["name"] == "mse" and spec["variant"] == "cae-upsample"
    plugins = json.loads(meta["aezoo.plugins"])
    assert set(plugins) == {"encoder", "decoder", "loss"}
    for kind, info in plugins.items():
        component = getattr(model.spec, kind).name
        assert info["name"] == component
        assert info["dist"] == registry.find(kind, component).dist
        assert info["version"] == metadata.version(info["dist"])
    assert checkpoint.read_metadata(path) == meta
    assert checkpoint.read_spec(path) == model.spec


def _crafted(path: Path, spec: dict, plugins: dict | None) -> Path:
    meta = {"format": "pt", "aezoo.spec": json.dumps(spec), "aezoo.version": "9.9.9"}
    if plugins is not None:
        meta["aezoo.plugins"] = json.dumps(plugins)
    save_file({"encoder.w": torch.zeros(2, 2)}, str(path), metadata=meta)
    return path


@pytest.mark.parametrize("kind", ["encoder", "decoder", "loss"])
def test_missing_component_names_it_and_the_distribution(tmp_path: Path, kind: str) -> None:
    spec = aezoo.build("cae-upsample").spec.model_dump(mode="json")
    spec[kind] = {"name": "warp-drive", "params": {"flux": 3}}
    plugins = {k: {"name": spec[k]["name"], "dist": "aezoo", "version": aezoo.__version__}
               for k in ("encoder", "decoder", "loss")}
    plugins[kind] = {"name": "warp-drive", "dist": "aezoo-warp", "version": "1.2.0"}
    path = _crafted(tmp_path / "warp.safetensors", spec, plugins)
    if kind == "loss":  # a training-only part: the model loads for inference, with a warning
        from aezoo.errors import AezooWarning

        with pytest.warns(AezooWarning) as caught, pytest.raises(CheckpointError):
            aezoo.load(path)  # (this crafted file's tensors do not match the model)
        message = str(caught[0].message)
    else:
        with pytest.raises(CheckpointError) as info:
            aezoo.load(path)
        message = str(info.value)
        assert info.value.exit_code == 1
    assert f"{kind} 'warp-drive'" in message
    assert "pip install aezoo-warp" in message
    assert "\n" not in message


def test_missing_component_without_provenance(tmp_path: Path) -> None:
    spec = aezoo.build("cae-upsample").spec.model_dump(mode="json")
    spec["decoder"] = {"name": "hologram", "params": {}}
    path = _crafted(tmp_path / "old.safetensors", spec, plugins=None)
    with pytest.raises(CheckpointError) as info:
        aezoo.load(path)
    assert "decoder 'hologram'" in str(info.value)
    assert "install the plugin" in str(info.value)


def test_plain_safetensors_file_is_not_an_aezoo_model(tmp_path: Path) -> None:
    path = tmp_path / "plain.safetensors"
    save_file({"w": torch.ones(3)}, str(path))
    with pytest.raises(CheckpointError, match="not an aezoo model"):
        aezoo.load(path)


def test_spec_that_does_not_match_the_weights(tmp_path: Path) -> None:
    path = aezoo.save(perturbed("cae-strided"), tmp_path / "m.safetensors")
    tensors = {}
    with safe_open(str(path), framework="pt") as f:
        for key in f.keys():
            tensors[key] = f.get_tensor(key)
    other = aezoo.build("cae-upsample").spec.model_dump_json()
    save_file(tensors, str(path), metadata={**checkpoint.read_metadata(path), "aezoo.spec": other})
    with pytest.raises(CheckpointError, match="does not match its spec"):
        aezoo.load(path)


def test_invalid_spec_in_header(tmp_path: Path) -> None:
    path = tmp_path / "bad.safetensors"
    save_file({"w": torch.ones(1)}, str(path), metadata={"aezoo.spec": "{not json"})
    with pytest.raises(CheckpointError, match="not JSON"):
        aezoo.load(path)
    save_file({"w": torch.ones(1)}, str(path), metadata={"aezoo.spec": '{"encoder": 3}'})
    with pytest.raises(CheckpointError, match="invalid spec"):
        aezoo.load(path)


# --- atomic writes ---------------------------------------------------------------------


def _fail(*_args: object, **_kwargs: object) -> None:
    raise OSError(28, "No space left on device")


@pytest.mark.parametrize("target", ["replace", "fsync"])
def test_failed_save_keeps_the_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             target: str) -> None:
    path = aezoo.save(perturbed("cae-upsample"), tmp_path / "model.safetensors")
    original = path.read_bytes()
    other = perturbed("cae-upsample", loss="mse")
    monkeypatch.setattr(os, target, _fail)
    with pytest.raises(CheckpointError) as info:
        aezoo.save(other, path)
    monkeypatch.undo()
    assert "No space left on device" in str(info.value)
    assert path.read_bytes() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]  # no temp left
    assert aezoo.load(path).spec.loss.name == "bce"


def test_interrupted_write_keeps_the_previous_file(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "model.safetensors"
    fileio.atomic_write(path, b"old contents")
    real_fdopen = os.fdopen

    class HalfWriter:
        """Writes half the data, then the process 'dies' (Ctrl-C mid-write)."""

        def __init__(self, f: object) -> None:
            self.f = f

        def __enter__(self) -> HalfWriter:
            return self

        def __exit__(self, *exc: object) -> None:
            self.f.close()  # type: ignore[attr-defined]

        def write(self, data: bytes) -> None:
            self.f.write(data[: len(data) // 2])  # type: ignore[attr-defined]
            raise KeyboardInterrupt

    monkeypatch.setattr(os, "fdopen", lambda fd, mode: HalfWriter(real_fdopen(fd, mode)))
    with pytest.raises(KeyboardInterrupt):
        fileio.atomic_write(path, b"new contents that never fully land")
    monkeypatch.undo()
    assert path.read_bytes() == b"old contents"
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    fileio.atomic_write(path, b"one")
    fileio.atomic_write(path, b"two")
    assert path.read_bytes() == b"two"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_save_into_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="cannot write"):
        aezoo.save(aezoo.build("cae-upsample"), tmp_path / "no" / "such" / "m.safetensors")


# --- unreadable files ------------------------------------------------------------------


def _truncated(tmp_path: Path) -> Path:
    good = aezoo.save(aezoo.build("cae-upsample"), tmp_path / "good.safetensors").read_bytes()
    path = tmp_path / "truncated.safetensors"
    path.write_bytes(good[: len(good) - 100])
    return path


def _header_only(tmp_path: Path) -> Path:
    good = aezoo.save(aezoo.build("cae-upsample"), tmp_path / "good.safetensors").read_bytes()
    path = tmp_path / "cut.safetensors"
    path.write_bytes(good[:40])  # the header is cut off mid-way
    return path


def _file(name: str, data: bytes) -> Callable[[Path], Path]:
    def make(d: Path) -> Path:
        (d / name).write_bytes(data)
        return d / name
    return make


def _folder(d: Path) -> Path:
    (d / "folder").mkdir()
    return d / "folder"


@pytest.mark.parametrize(("make", "words"), [
    (lambda d: d / "missing.safetensors", "does not exist"),
    (_folder, "holds no model.safetensors or last.safetensors"),  # taken as a run dir
    (_file("e.safetensors", b""), "too short"),
    (_file("t.txt", b"hello, not a model at all"), "not a safetensors file"),
    (_file("huge.safetensors", (2**62).to_bytes(8, "little") + b"{}"), "bad header length"),
    (_file("nj.safetensors", (4).to_bytes(8, "little") + b"abcd"), "not JSON"),
    (_file("list.safetensors", (2).to_bytes(8, "little") + b"[]"), "malformed"),
    (_truncated, "corrupt"),
    (_header_only, "not a safetensors file"),
], ids=["missing", "directory", "empty", "text", "huge-header", "header-not-json",
        "header-not-object", "truncated", "header-cut"])
def test_unreadable_files_raise_checkpoint_error(tmp_path: Path, make: Callable[[Path], Path],
                                                 words: str) -> None:
    path = make(tmp_path)
    with pytest.raises(CheckpointError) as info:
        aezoo.load(path)
    assert words in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", ["cae-upsample-0.1.0", "cae-strided-bce-0.1.0"])
def test_checkpoints_saved_by_the_first_release_still_load(name: str) -> None:
    """Saved by aezoo 0.1.0 before the house and family changes (no regularizers in the
    spec, the loss built from (logits, target)): they load bit for bit and still run."""
    from safetensors.torch import load_file

    path = Path(__file__).parent / "fixtures" / "checkpoints" / f"{name}.safetensors"
    model = aezoo.load(path)
    stored = load_file(str(path))
    assert set(model.state_dict()) == set(stored)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in stored.items())
    assert model.spec.regularizers == [] and model.term_names == ["recon"]
    x = torch.rand(2, *model.input_shape)
    assert model(x).shape == x.shape and torch.isfinite(model.loss(x))
