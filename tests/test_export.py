"""``aezoo export``: every first-party variant exports to TorchScript and ONNX, the files run
outside aezoo (torch.jit.load, onnxruntime) and match PyTorch at two batch sizes; a failed
verification writes nothing; the sidecar says what a deployer needs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import aezoo
import aezoo.exporting as export_mod
from aezoo.errors import ExportError, OutputExistsError, UsageError
from aezoo.exporting import export, output_paths

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated")

VARIANTS = ["cae-upsample", "cae-strided", "cae-denoising", "cae-sparse", "cae-vae",
            "cae-resnet"]
# ONNX exports take seconds each: all three parts for cae-vae (two encoder outputs, the
# sampling decoder); the whole model elsewhere, whose graph holds every op of its encoder
# and decoder (`aezoo export` itself verifies all parts; docs/deploy.md's example exports
# cae-upsample's three to ONNX).
ONNX_PARTS = {"cae-vae": None}


def _model(name: str) -> aezoo.Autoencoder:  # type: ignore[name-defined]
    torch.manual_seed(0)
    return aezoo.build(name).eval()


def _images(n: int = 16) -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, (n, 1, 28, 28), dtype=np.uint8)


def _expected(model, part: str, x: torch.Tensor) -> list[np.ndarray]:
    with torch.no_grad():
        if part == "decoder":
            return [model.decode(x).numpy()]
        code, extras = model.encode_parts(x)
        if part == "model":
            return [model.decode(code).numpy()]
        return [code.numpy()] + ([extras["logvar"].numpy()] if model.stochastic else [])


def _runner(path: Path, fmt: str):  # type: ignore[no-untyped-def]
    """The file loaded as a deployer would: numpy batch in, list of numpy outputs out."""
    if fmt == "onnx":
        ort = pytest.importorskip("onnxruntime")
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        assert session.get_inputs()[0].shape[0] == "batch"  # a dynamic batch axis
        return lambda a: session.run(None, {name: a})
    loaded = torch.jit.load(str(path))  # our own output, as a deployer loads it

    def run(a: np.ndarray) -> list[np.ndarray]:
        out = loaded(torch.from_numpy(a))
        return [t.numpy() for t in (out if isinstance(out, tuple) else (out,))]

    return run


def _check_runs(model, files: dict[str, Path], fmt: str) -> None:
    """Each file, loaded as a deployer would, on 16 inputs at batch sizes 16 and 3."""
    x = torch.from_numpy(_images()).float() / 255
    for part, path in files.items():
        inputs = model.encode(x).detach() if part == "decoder" else x
        want = _expected(model, part, inputs)
        run = _runner(path, fmt)
        for size in (16, 3):
            with torch.no_grad():
                got = [run(inputs[i:i + size].numpy()) for i in range(0, 16, size)]
            for k, w in enumerate(want):
                have = np.concatenate([g[k] for g in got])
                np.testing.assert_allclose(have, w, atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_exports_both_formats(tmp_path: Path, variant: str) -> None:
    model = _model(variant)
    ts = export(model, tmp_path / "m.pt", "torchscript", images=_images(), inputs_from="test")
    assert set(ts.files) == {"encoder", "decoder", "model"}
    _check_runs(model, ts.files, "torchscript")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    part = ONNX_PARTS.get(variant, "model")
    ox = export(model, tmp_path / "m.onnx", "onnx", part, images=_images(), inputs_from="t")
    _check_runs(model, ox.files, "onnx")
    info = json.loads((tmp_path / "m.onnx.json").read_text())
    assert info["opset"] >= 17 and info["stochastic"] is (variant == "cae-vae")
    assert info["versions"]["onnxruntime"] and info["spec"]["variant"] == variant


def test_sidecar_describes_the_parts(tmp_path: Path) -> None:
    model = _model("cae-vae").train()
    result = export(model, tmp_path / "vae.pt", "torchscript", images=_images(),
                    inputs_from="sixteen")
    assert model.training  # the caller's model is left as it was
    info = json.loads(result.sidecar.read_text())
    assert result.sidecar == tmp_path / "vae.pt.json"
    assert info["input_shape"] == [1, 28, 28] and info["latent_shape"] == [16, 1, 1]
    assert info["parts"]["encoder"]["outputs"] == {"latent": ["batch", 16, 1, 1],
                                                  "logvar": ["batch", 16, 1, 1]}
    assert info["parts"]["decoder"]["file"] == "vae.decoder.pt"
    assert info["value_range"]["images"] == [0.0, 1.0] and info["opset"] is None
    assert info["verification"]["tolerance"] == {"atol": 1e-4, "rtol": 1e-3}
    assert info["verification"]["batch_sizes"] == [16, 5]
    assert info["versions"]["torch"] == torch.__version__
    # the decoder turns prior draws into images: the sampling path
    loaded = torch.jit.load(str(result.files["decoder"]))
    draws = loaded(torch.randn(4, 16, 1, 1))
    assert draws.shape == (4, 1, 28, 28) and 0 <= float(draws.min()) <= float(draws.max()) <= 1


def test_failed_verification_leaves_no_file(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(export_mod, "ATOL", -1.0)  # nothing can match
    with pytest.raises(ExportError, match="differs from PyTorch.*nothing was written"):
        export(_model("cae-upsample"), tmp_path / "m.pt", "torchscript", images=_images())
    assert list(tmp_path.iterdir()) == []


def test_a_batch_baked_into_the_graph_is_caught(tmp_path: Path) -> None:
    import types

    model = _model("cae-upsample")
    latent = model.latent_shape

    def fixed_batch(self, x: torch.Tensor) -> torch.Tensor:  # len(x): a constant in a trace
        return type(self).forward(self, x).reshape(len(x), *latent)

    model.encoder.forward = types.MethodType(fixed_batch, model.encoder)  # type: ignore[method-assign]
    with pytest.raises(ExportError, match="fails at batch size 5"):
        export(model, tmp_path / "m.pt", "torchscript", "encoder", images=_images())
    assert list(tmp_path.iterdir()) == []


def test_paths_formats_and_overwrites(tmp_path: Path, monkeypatch) -> None:
    files, sidecar = output_paths(tmp_path / "a.onnx", "onnx", None)
    assert [p.name for p in files.values()] == ["a.encoder.onnx", "a.decoder.onnx", "a.onnx"]
    assert sidecar.name == "a.onnx.json"
    with pytest.raises(UsageError, match="cannot write onnx to .*a.pt"):
        output_paths(tmp_path / "a.pt", "onnx", None)
    with pytest.raises(UsageError, match="unknown part"):
        output_paths(tmp_path / "a.pt", "torchscript", "head")
    (tmp_path / "a.pt.json").write_text("{}")
    with pytest.raises(OutputExistsError):
        export(_model("cae-upsample"), tmp_path / "a.pt", "torchscript", "encoder")
    monkeypatch.setattr(export_mod, "_importable", lambda name: False)
    with pytest.raises(UsageError, match=r"needs the onnx extra.*aezoo\[onnx\]"):
        export(_model("cae-upsample"), tmp_path / "b.onnx", "onnx")


def test_cli_export_of_a_run(tmp_path: Path, monkeypatch) -> None:
    from aezoo.cli import app

    monkeypatch.chdir(tmp_path)
    aezoo.save(_model("cae-upsample"), "model.safetensors")
    runner = CliRunner()
    result = runner.invoke(app, ["export", "model.safetensors", "--out", "enc.pt",
                                 "--part", "encoder"])
    assert result.exit_code == 0, result.output
    assert "mnist5k/val, first 16 images" in result.output  # real inputs verified it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["enc.pt", "enc.pt.json",
                                                          "model.safetensors"]
    again = runner.invoke(app, ["export", "model.safetensors", "--out", "enc.pt",
                                "--part", "encoder"])
    assert again.exit_code == 2 and "already exists" in again.stderr
    missing = runner.invoke(app, ["export", "nothere", "--format", "torchscript"])
    assert missing.exit_code == 2 and "does not exist" in missing.stderr


def test_a_failed_export_writes_nothing_as_a_set(tmp_path: Path, monkeypatch) -> None:
    """An --out that is a directory, a disk that fills, a rename that fails part-way: no
    part is left behind, and --force over an older export leaves it whole, never a mix."""
    import os

    from aezoo.errors import WriteError

    model = _model("cae-upsample")
    (tmp_path / "cae.pt").mkdir()
    with pytest.raises(WriteError, match=r"cae\.pt \(Is a directory\).*nothing was written"):
        export(model, tmp_path / "cae.pt", "torchscript", images=_images(), force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cae.pt"]
    old = export(model, tmp_path / "m.pt", "torchscript", images=_images())
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    assert len(before) == 4 and old.files["model"].name == "m.pt"
    torch.manual_seed(5)
    other = aezoo.build("cae-upsample").eval()
    real_replace, real_fsync = os.replace, os.fsync
    calls = {"n": 0}

    def full(fd: int) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(28, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(WriteError, match="No space left on device"):
        export(other, tmp_path / "m.pt", "torchscript", images=_images(), force=True)
    monkeypatch.setattr(os, "fsync", real_fsync)

    def third_fails(src: object, dst: object) -> None:
        if str(dst).endswith("m.pt") and not str(src).endswith(".old"):
            raise OSError(5, "Input/output error")
        real_replace(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "replace", third_fails)
    with pytest.raises(WriteError, match="Input/output error"):
        export(other, tmp_path / "m.pt", "torchscript", images=_images(), force=True)
    monkeypatch.setattr(os, "replace", real_replace)
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    assert after == before  # the old set, whole; no temporary file left


class _WithIndices(torch.nn.Module):
    """A VQ-like encoder: its code, a codebook index per image, a batch-level loss and its
    16-entry codebook (as many rows as the 16 images the export probes with)."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.input_shape, self.latent_shape = inner.input_shape, inner.latent_shape

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.inner(x)
        return {"latent": z, "indices": z.flatten(1).argmax(1), "commit": z.pow(2).mean(),
                "codebook": torch.ones(16, 4)}


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_the_encoders_extras_are_exported_as_named_outputs(tmp_path: Path, fmt: str) -> None:
    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
        pytest.importorskip("onnxscript")
    model = _model("cae-upsample")
    model.encoder = _WithIndices(model.encoder)
    out = tmp_path / f"vq{export_mod.SUFFIX[fmt]}"
    result = export(model, out, fmt, "encoder", images=_images(), inputs_from="test")
    info = json.loads(result.sidecar.read_text())
    encoder = info["parts"]["encoder"]
    assert encoder["outputs"] == {"latent": ["batch", 8, 4, 4], "indices": ["batch"]}
    assert encoder["dtypes"] == {"latent": "float32", "indices": "int64"}
    assert info["extras_left_out"] == ["codebook", "commit"]  # no batch axis: not outputs
    x = torch.from_numpy(_images()).float() / 255
    with torch.no_grad():
        code, extras = model.encode_parts(x)
    run = _runner(out, fmt)
    for size in (16, 3):
        with torch.no_grad():
            got = [run(x[i:i + size].numpy()) for i in range(0, 16, size)]
        np.testing.assert_allclose(np.concatenate([g[0] for g in got]), code.numpy(),
                                   atol=1e-4, rtol=1e-3)
        indices = np.concatenate([g[1] for g in got])
        assert indices.dtype == np.int64 and (indices == extras["indices"].numpy()).all()
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        assert [o.name for o in session.get_outputs()] == ["latent", "indices"]
