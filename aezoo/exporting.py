"""Export a model's encoder, decoder and whole model to ONNX or TorchScript, verified.

Each part is a small module over the model (float32 NCHW images in [0, 1] in; codes or
reconstructions in [0, 1] out; a stochastic encoder gives its mean as ``latent`` and its
``logvar`` beside it) with a dynamic batch axis. Before anything is written, each
exported part is run (onnxruntime on the file's bytes; the traced TorchScript graph) on
16 inputs as one batch of 16 and as batches of 5, 5, 5 and 1, and compared with PyTorch
within ``ATOL + RTOL * |pytorch|``; a mismatch is an ExportError and no file is written.
ONNX goes through torch's ``torch.export``-based exporter (``dynamo=True``, which needs
``onnxscript``): the TorchScript-based one is deprecated and warns it will be removed.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import io
import json
import logging
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from aezoo._version import __version__
from aezoo.errors import AezooError, ExportError, ShapeError, UsageError, WriteError, summary
from aezoo.fileio import atomic_write_many
from aezoo.outputs import refuse_overwrite

__all__ = ["ATOL", "FORMATS", "PARTS", "RTOL", "Exported", "export", "export_run",
           "format_of", "output_paths", "sample_inputs"]

FORMATS = ("onnx", "torchscript")
PARTS = ("encoder", "decoder", "model")
SUFFIX = {"onnx": ".onnx", "torchscript": ".pt"}
ATOL, RTOL = 1e-4, 1e-3
VERIFY_N, VERIFY_BATCHES = 16, (16, 5)
ONNX_EXTRA = "pip install 'aezoo[onnx]'"


class _Encoder(nn.Module):
    """The code, then each exported extra (``extras_of``) by name: outputs of those names."""

    def __init__(self, model: Any, extras: list[str]) -> None:
        super().__init__()
        self.model = model
        self.extras = extras

    def forward(self, images: torch.Tensor) -> Any:
        code, extras = self.model.encode_parts(images)
        return (code, *(extras[k] for k in self.extras)) if self.extras else code


def extras_of(model: Any, x: torch.Tensor) -> tuple[list[str], list[str]]:
    """The encoder's extras an export carries as outputs (a stochastic encoder's
    ``logvar``, codebook indices: one row per image), and those it leaves out (no batch
    axis, e.g. a batch's commitment loss; a Gaussian's ``mean``, which is the latent)."""
    with torch.no_grad():  # at two batch sizes: a 16-entry codebook is no batch of 16
        _, extras = model.encode_parts(x)
        _, more = model.encode_parts(torch.cat([x, x[:1]]))
    kept: list[str] = []
    left: list[str] = []
    for name in sorted(extras):
        if model.stochastic and name == "mean":
            continue
        rows = [v.shape[0] if isinstance(v, torch.Tensor) and v.dim() >= 1 else None
                for v in (extras[name], more.get(name))]
        (kept if rows == [len(x), len(x) + 1] else left).append(name)
    return kept, left


class _Decoder(nn.Module):
    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.model.decode_logits(latent))


class _Model(nn.Module):
    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.model.decode_logits(self.model.encode_parts(images)[0]))


def _io_names(part: str, extras: list[str]) -> tuple[list[str], list[str]]:
    inputs = ["latent"] if part == "decoder" else ["images"]
    return inputs, ["latent", *extras] if part == "encoder" else ["reconstruction"]


@dataclass
class Exported:
    """What ``export`` wrote: the files by part, the sidecar, the verification."""

    files: dict[str, Path]
    sidecar: Path
    info: dict[str, Any] = field(default_factory=dict)


def output_paths(out: Path, fmt: str, part: str | None, force: bool = True
                 ) -> tuple[dict[str, Path], Path]:
    """The part files and the JSON sidecar (``out`` + ``.json``) for ``--out``: one part at
    ``out``; or all three: the model at ``out``, ``STEM.encoder.EXT`` and
    ``STEM.decoder.EXT`` beside it. Without ``force``, an existing one is refused."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown export format '{fmt}'", "use onnx or torchscript")
    if part is not None and part not in PARTS:
        raise UsageError(f"unknown part '{part}'", "use encoder, decoder or model")
    suffix = SUFFIX[fmt]
    if out.suffix.lower() != suffix:
        raise UsageError(f"cannot write {fmt} to {out} (its extension is "
                         f"'{out.suffix or out.name}')", f"use --out NAME{suffix}")
    stem = out.with_suffix("")
    if part is not None:
        files = {part: out}
    else:
        files = {"encoder": stem.with_name(f"{stem.name}.encoder{suffix}"),
                 "decoder": stem.with_name(f"{stem.name}.decoder{suffix}"), "model": out}
    sidecar = out.with_name(out.name + ".json")
    for path in [*files.values(), sidecar]:
        refuse_overwrite(path, force)
    return files, sidecar


def sample_inputs(model_file: Path | None, shape: tuple[int, ...], data: str | None
                  ) -> tuple[np.ndarray, str]:
    """16 uint8 images to verify on: the first of the run's dataset's val split (``data``
    if given, which must match), else seeded uniform noise; and where they came from."""
    from aezoo.data import load_dataset
    from aezoo.protocols import format_shape
    from aezoo.rundir import data_spec_beside
    from aezoo.specs import DataSpec

    spec = data_spec_beside(model_file, data) if model_file is not None else DataSpec()
    try:
        images = load_dataset(spec).val[:VERIFY_N]
    except AezooError:
        if data:
            raise
        images = None
    if images is not None and tuple(images.shape[1:]) == tuple(shape):
        return np.ascontiguousarray(images), f"{spec.name}/val, first {len(images)} images"
    if data:
        raise ShapeError(f"the model expects {format_shape(shape)} images, dataset "
                         f"{spec.name} has {format_shape(images.shape[1:])}",  # type: ignore[union-attr]
                         "pass the --data the model was trained on")
    noise = np.random.default_rng(0).integers(0, 256, (VERIFY_N, *shape), dtype=np.uint8)
    return noise, "uniform noise (seed 0): no dataset of the model's shape"


def format_of(fmt: str | None, out: Path | None) -> tuple[str, Path]:
    """The format (``--format``, else from ``--out``'s extension, else onnx) and the output
    path (``--out``, else ``model.onnx`` / ``model.pt``)."""
    if fmt is None:
        by_suffix = {v: k for k, v in SUFFIX.items()}
        fmt = by_suffix.get(out.suffix.lower(), "onnx") if out is not None else "onnx"
    if fmt not in FORMATS:
        raise UsageError(f"unknown export format '{fmt}'", "use onnx or torchscript")
    return fmt, out if out is not None else Path("model" + SUFFIX[fmt])


def export_run(target: str | Path, fmt: str | None = None, part: str | None = None,
               out: Path | None = None, data: str | None = None, opset: int | None = None,
               force: bool = False) -> Exported:
    """``aezoo export``: the model file (or run directory) ``target`` exported and verified
    on the first validation images of its dataset."""
    from aezoo.checkpoint import load
    from aezoo.pretrained import locate

    fmt, out = format_of(fmt, Path(out) if out is not None else None)
    output_paths(out, fmt, part, force)  # a bad --out or --part, or a file kept: before loading
    path = locate(target).path
    if fmt == "onnx":
        _need_onnx()
    model = load(path, device="cpu")
    images, inputs_from = sample_inputs(path, tuple(model.input_shape), data)
    return export(model, out, fmt, part, images, inputs_from, opset, force, str(path))


def export(model: Any, out: str | Path, fmt: str = "onnx", part: str | None = None,
           images: np.ndarray | None = None, inputs_from: str = "", opset: int | None = None,
           force: bool = False, source: str = "") -> Exported:
    """Export ``model``'s parts (all three, or ``part``) as ``fmt`` to ``out`` and a JSON
    sidecar beside it; verified against PyTorch on ``images`` (16 uint8 images, NCHW)
    before anything is written."""
    files, sidecar = output_paths(Path(out), fmt, part, force)
    if fmt == "onnx":
        _need_onnx()
    model = copy.deepcopy(model).to("cpu").eval()  # the caller's model stays as it was
    if images is None:
        images, inputs_from = sample_inputs(Path(source) if source else None,
                                            tuple(model.input_shape), None)
    x = torch.from_numpy(np.ascontiguousarray(images)).float().div_(255)
    with torch.no_grad():
        codes = model.encode_parts(x)[0]
    if model.stochastic:  # the decoder also turns prior draws into images: half of each
        prior = torch.randn(codes.shape, generator=torch.Generator().manual_seed(0))
        codes = torch.cat([codes[:len(codes) // 2], prior[len(codes) // 2:]])
    extras, left_out = extras_of(model, x) if "encoder" in files else ([], [])
    wrappers: dict[str, Callable[[Any], nn.Module]] = {
        "encoder": lambda m: _Encoder(m, extras), "decoder": _Decoder, "model": _Model}
    writes: list[tuple[Path, bytes]] = []  # verified parts; written together below
    diffs: dict[str, float] = {}
    used_opset = None
    for name in files:
        module = wrappers[name](model).eval()
        example = codes if name == "decoder" else x
        inputs, outputs = _io_names(name, extras)
        if fmt == "onnx":
            blob, used_opset = _to_onnx(module, example, inputs, outputs, opset)
            runner = _onnx_runner(blob, inputs[0])
        else:
            blob, traced = _to_torchscript(module, example)
            runner = _torchscript_runner(traced)
        diffs[name] = _verify(name, module, runner, example, fmt)
        writes.append((files[name], blob))
    info = _sidecar(model, fmt, files, used_opset, diffs, inputs_from, source, x, extras)
    if left_out:
        info["extras_left_out"] = left_out
    writes.append((sidecar, (json.dumps(info, indent=2) + "\n").encode()))
    try:  # verified: now written as one set (all new, or all as they were)
        atomic_write_many(writes)
    except OSError as exc:
        raise WriteError(f"cannot write {exc.filename or out} ({exc.strerror or exc})",
                         "check --out names a file in a writable directory with space; "
                         "nothing was written") from None
    return Exported(files, sidecar, info)


def _need_onnx() -> None:
    missing = [m for m in ("onnx", "onnxruntime", "onnxscript") if not _importable(m)]
    if missing:
        raise UsageError(f"ONNX export needs the onnx extra ({', '.join(missing)} not "
                         "installed)", ONNX_EXTRA)
    version = tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2])
    if version < (2, 6):
        raise UsageError(f"ONNX export needs torch 2.6 or later (this is {torch.__version__})",
                         "upgrade torch, or export --format torchscript")


def _importable(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporters' warnings and log lines (deprecations, torchvision absent) stay out of
    the one-line output; verification is what decides."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "onnxscript")]
    levels = [lg.level for lg in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels, strict=True):
                lg.setLevel(level)


def _to_onnx(module: nn.Module, example: torch.Tensor, inputs: list[str], outputs: list[str],
             opset: int | None) -> tuple[bytes, int]:
    batch = torch.export.Dim("batch")
    try:
        with _quiet(), contextlib.redirect_stdout(io.StringIO()):
            program = torch.onnx.export(
                module, (example,), None, dynamo=True, input_names=inputs,
                output_names=outputs, dynamic_shapes=({0: batch},), opset_version=opset,
                verbose=False, optimize=True)
    except Exception as exc:  # the exporter's many failure types: one line, the cause kept
        raise ExportError(f"the ONNX exporter failed ({summary(exc)})",
                          "export --format torchscript, or report the model's spec") from exc
    if program is None:
        raise ExportError("the ONNX exporter returned nothing", "upgrade torch")
    proto = program.model_proto
    used = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    return proto.SerializeToString(), int(used)


def _onnx_runner(blob: bytes, input_name: str) -> Callable[[np.ndarray], list[np.ndarray]]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(blob, options, providers=["CPUExecutionProvider"])
    return lambda x: list(session.run(None, {input_name: x}))


def _to_torchscript(module: nn.Module, example: torch.Tensor) -> tuple[bytes, Any]:
    """The traced module's file bytes, and the traced module itself (what is verified)."""
    try:
        with _quiet():
            traced = torch.jit.trace(module, (example,), check_trace=False)
            buf = io.BytesIO()
            torch.jit.save(traced, buf)
    except Exception as exc:
        raise ExportError(f"TorchScript tracing failed ({summary(exc)})",
                          "export --format onnx, or report the model's spec") from exc
    return buf.getvalue(), traced


def _torchscript_runner(traced: Any) -> Callable[[np.ndarray], list[np.ndarray]]:
    """The traced graph, run by the TorchScript interpreter: the graph the file holds.
    Not loaded back from the bytes: a TorchScript file holds pickles, and aezoo unpickles
    nothing, not even its own output (tests/test_export.py loads the files as a deployer)."""

    def run(x: np.ndarray) -> list[np.ndarray]:
        with torch.no_grad(), _quiet():
            out = traced(torch.from_numpy(x))
        return [t.numpy() for t in (out if isinstance(out, tuple) else (out,))]

    return run


def _verify(name: str, module: nn.Module, runner: Callable[[np.ndarray], list[np.ndarray]],
            example: torch.Tensor, fmt: str) -> float:
    """The largest difference from PyTorch over the inputs at each verification batch size;
    an ExportError beyond the tolerance."""
    with torch.no_grad():
        out = module(example)
    expected = [t.numpy() for t in (out if isinstance(out, tuple) else (out,))]
    worst = 0.0
    for size in VERIFY_BATCHES:
        try:
            got = [runner(example[i:i + size].numpy()) for i in range(0, len(example), size)]
        except Exception as exc:  # e.g. a batch size baked into the graph while tracing
            raise ExportError(f"the {fmt} {name} fails at batch size {size} "
                              f"({summary(exc, limit=160)}); nothing was written",
                              "the graph must not fix the batch size (use -1 or x.shape[0] "
                              "in reshapes, not len(x)), or try the other --format") from exc
        for k, want in enumerate(expected):
            have = np.concatenate([g[k] for g in got])
            if have.shape != want.shape:
                raise ExportError(f"the {fmt} {name} returns shape {have.shape} at batch size "
                                  f"{size}, PyTorch {want.shape}",
                                  "report the model's spec: its graph is not batch-independent")
            diff = np.abs(have.astype(np.float64) - want)
            worst = max(worst, float(diff.max(initial=0.0)))
            if not np.all(diff <= ATOL + RTOL * np.abs(want)):
                raise ExportError(f"the {fmt} {name} differs from PyTorch by up to "
                                  f"{float(np.nanmax(diff)):.3g} at batch size {size} "
                                  f"(tolerance {ATOL:g} + {RTOL:g} x value); nothing was written",
                                  "report the model's spec, or try the other --format")
    return worst


def _sidecar(model: Any, fmt: str, files: dict[str, Path], opset: int | None,
             diffs: dict[str, float], inputs_from: str, source: str, x: torch.Tensor,
             extras: list[str]) -> dict[str, Any]:
    shape, latent = list(model.input_shape), list(model.latent_shape)
    parts = {}
    for name, path in files.items():
        in_shape = latent if name == "decoder" else shape
        if name == "encoder":  # the code and each extra, with their own shapes and dtypes
            with torch.no_grad():
                code, values = model.encode_parts(x[:1])
            outs = {"latent": code, **{k: values[k] for k in extras}}
        else:
            outs = {"reconstruction": x[:1]}
        parts[name] = {"file": path.name, "inputs": {_io_names(name, [])[0][0]:
                                                     ["batch", *in_shape]},
                       "outputs": {o: ["batch", *t.shape[1:]] for o, t in outs.items()},
                       "dtypes": {o: str(t.dtype).removeprefix("torch.")
                                  for o, t in outs.items()}}
    versions = {"aezoo": __version__, "torch": torch.__version__}
    if fmt == "onnx":
        import onnx
        import onnxruntime

        versions.update(onnx=onnx.__version__, onnxruntime=onnxruntime.__version__)
    return {
        "format": fmt, "source": source, "parts": parts,
        "input_shape": shape, "latent_shape": latent, "layout": "NCHW", "dtype": "float32",
        "value_range": {"images": [0.0, 1.0], "reconstruction": [0.0, 1.0]},
        "stochastic": bool(model.stochastic), "opset": opset, "versions": versions,
        "verification": {"inputs": inputs_from, "batch_sizes": list(VERIFY_BATCHES),
                         "tolerance": {"atol": ATOL, "rtol": RTOL}, "max_abs_diff": diffs},
        "spec": model.spec.model_dump(mode="json"),
    }
