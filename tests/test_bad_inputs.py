"""The bad-input corpus: typos, wrong types, impossible values, broken and hostile files.

Each row is one bad input, on the command line (typer's CliRunner) or through the Python
API. Every one must give the right exit code (2: usage, 1: runtime), ONE line naming the
problem, no traceback, and leave every file as it was: the workspace (cwd) and the data
cache are snapshotted before and after. Training never starts (``Trainer.fit`` is
booby-trapped).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import aezoo
from aezoo.errors import AezooError

MARKER = "PWNED"
MOUNT_POINT_NAME = "readonly"


class _Evil:
    """Unpickling this writes a marker file."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (MARKER, "w"))


# --- the workspace every case runs in -------------------------------------------------


def _png(width: int, height: int) -> bytes:
    """A grey PNG of zeros, compressed row by row (a 15000x15000 one is ~300 KB)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    packer = zlib.compressobj(9)
    rows = b"\0" * (width + 1) * 500
    data = b"".join(packer.compress(rows) for _ in range(height // 500)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data)
            + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def model_bytes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """Files built once: saved models (1x28x28 and 3x32x32) and images."""
    out = {}
    for name, overrides in (("good", {}), ("rgb32", {"input_shape": (3, 32, 32)})):
        path = tmp_path_factory.mktemp("models") / f"{name}.safetensors"
        aezoo.save(aezoo.build("cae-upsample", **overrides), path)
        out[name] = path.read_bytes()
    out["bomb.png"] = _png(15_000, 15_000)  # 225 megapixels in a ~300 KB file
    out["small.png"] = _png(28, 500)[:-30]  # cut inside its data
    return out


def _make_workspace(ws: Path, models: dict[str, bytes]) -> None:
    (ws / "good.safetensors").write_bytes(models["good"])
    (ws / "rgb32.safetensors").write_bytes(models["rgb32"])
    (ws / "afile").write_text("I am a file, not a directory\n")
    (ws / "emptydir").mkdir()
    (ws / "dir.toml").mkdir()
    (ws / "existing.png").write_bytes(b"keep me")
    (ws / "existing.npy").write_bytes(b"keep me")
    configs = {
        "bad.toml": "[train\nlr = 0.1\n",
        "bad.yaml": "train: [1, 2\n  lr: : :\n",
        "bad.json": '{"train": {"lr": 0.1,}}',
        "list.json": "[1, 2, 3]",
        "empty.yaml": "",
        "scalar.yaml": "42\n",
        "conf.txt": "train.lr = 0.1\n",
        "unknown-key.toml": "[train]\nlearning_rate = 0.1\n",
        "wrong-type.yaml": "train:\n  epochs: many\n",
        "bad-component.json": json.dumps({"model": {"variant": "cae-upsample",
                                                    "encoder": {"name": "resnet-nope"}}}),
        "python-tag.yaml": f"train: !!python/object/apply:os.system ['touch {MARKER}']\n",
        "deep.json": "[" * 50_000 + "]" * 50_000,
        "bad-variant.toml": '[model]\nvariant = "cae-nope"\n',
    }
    for name, text in configs.items():
        (ws / name).write_text(text)
    (ws / "binary.toml").write_bytes(b"\xff\xfe\x00garbage\x80")
    # data files
    np.save(ws / "floats.npy", np.random.default_rng(0).random((8, 28, 28)) * 300)
    np.save(ws / "vector.npy", np.zeros(10, dtype=np.uint8))
    np.savez(ws / "nokeys.npz", foo=np.zeros((4, 28, 28), np.uint8),
             bar=np.zeros(4, np.uint8))
    np.savez(ws / "objects.npz", images=np.array([_Evil(), _Evil()], dtype=object))
    (ws / "notnumpy.npy").write_bytes(pickle.dumps(_Evil()))
    for folder, files in {"bomb": {"a.png": models["bomb.png"], "b.png": models["good"]},
                          "broken-images": {"a.png": models["small.png"],
                                            "b.png": pickle.dumps(_Evil())}}.items():
        (ws / folder).mkdir()
        for name, data in files.items():
            (ws / folder / name).write_bytes(data)
    # run directories
    done = ws / "done-run"
    done.mkdir()
    (done / "model.safetensors").write_bytes(models["good"])
    (done / "run.json").write_text(json.dumps({"model": json.loads(
        aezoo.build("cae-upsample").spec.model_dump_json())}))
    unfinished = ws / "unfinished-run"
    unfinished.mkdir()
    (unfinished / "state.safetensors").write_bytes(b"\0" * 16)
    (ws / "no-runjson").mkdir()
    (ws / "corrupt-runjson").mkdir()
    (ws / "corrupt-runjson" / "run.json").write_text("{oops")
    (ws / "binary-runjson").mkdir()
    (ws / "binary-runjson" / "run.json").write_bytes(b"\xff\xfe\x80")
    (ws / "invalid-runjson").mkdir()
    (ws / "invalid-runjson" / "run.json").write_text('{"model": 5}')
    nostate = ws / "no-state"
    nostate.mkdir()
    shutil.copy(done / "run.json", nostate / "run.json")
    evil_state = ws / "evil-state"
    evil_state.mkdir()
    shutil.copy(done / "run.json", evil_state / "run.json")
    (evil_state / "state.safetensors").write_bytes(pickle.dumps(_Evil()))
    (ws / "existing-plugin").mkdir()
    (ws / "existing-plugin" / "keep.txt").write_text("keep")


def _snapshot(*roots: Path) -> dict[str, tuple[str, int, str]]:
    """Every path under ``roots``: its kind, mode and content hash."""
    out = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                p = Path(dirpath) / name
                st = p.lstat()
                digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else ""
                out[str(p)] = ("dir" if p.is_dir() else "file", st.st_mode, digest)
    return out


@pytest.fixture(scope="module")
def readonly_mount(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path | None]:
    """A read-only directory: a read-only tmpfs as root (root ignores chmod, not a read-only
    mount), chmod 555 otherwise; None where neither works."""
    point = tmp_path_factory.mktemp("mnt") / MOUNT_POINT_NAME
    point.mkdir()
    if os.geteuid() != 0:
        point.chmod(0o555)
        yield point
        point.chmod(0o755)
        return
    if shutil.which("mount") is None:
        yield None
        return
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(point)],
                          capture_output=True)
    if done.returncode != 0:
        yield None
        return
    try:
        yield point
    finally:
        subprocess.run(["umount", str(point)], capture_output=True)


@dataclass
class Env:
    ws: Path
    data_dir: Path
    readonly: Path | None


@pytest.fixture
def env(tmp_path: Path, model_bytes: dict[str, bytes], readonly_mount: Path | None,
        monkeypatch: pytest.MonkeyPatch) -> Env:
    ws = tmp_path / "ws"
    ws.mkdir()
    _make_workspace(ws, model_bytes)
    data_dir = tmp_path / "data-cache"
    data_dir.mkdir()
    monkeypatch.setenv("AEZOO_DATA", str(data_dir))
    monkeypatch.setenv("AEZOO_OFFLINE", "1")  # a test never touches the network
    monkeypatch.chdir(ws)

    def no_training(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a bad input reached training")

    from aezoo.training import Trainer

    monkeypatch.setattr(Trainer, "fit", no_training)
    return Env(ws, data_dir, readonly_mount)


# --- the corpus ---------------------------------------------------------------------


@dataclass(frozen=True)
class Bad:
    """One bad input: CLI ``args`` or an ``api`` call, its exit code and what it must say."""

    id: str
    code: int
    says: str  # a regex the one-line message must match (case-insensitive)
    args: tuple[str, ...] = ()
    api: Callable[[Env], Any] | None = None
    needs_mount: bool = False


def cli(id: str, code: int, says: str, *args: str, needs_mount: bool = False) -> Bad:
    return Bad(id, code, says, args=args, needs_mount=needs_mount)


def api(id: str, code: int, says: str, call: Callable[[Env], Any],
        needs_mount: bool = False) -> Bad:
    return Bad(id, code, says, api=call, needs_mount=needs_mount)


T = ("train", "cae-upsample")
GOOD = "good.safetensors"
RO = "{readonly}"
DENIED = "(Read-only file system|Permission denied)"  # a read-only mount, or chmod (not root)
# One error in two wordings: newer typer parses flags with its own copy of click ("No such
# option: --bogus"), typer 0.18 with click itself ("No such option '--bogus'").
NO_SUCH = r"No such option(: | ')"


def _spec(**train: Any) -> Any:
    from aezoo.config import build_run_spec

    return build_run_spec("cae-upsample", [{"train": train}] if train else [])


def _save_into(target: str) -> Callable[[Env], Any]:
    def call(env: Env) -> Any:
        model = aezoo.build("cae-upsample")
        return aezoo.save(model, target.format(readonly=env.readonly))
    return call


def _train_into(out: str) -> Callable[[Env], Any]:
    def call(env: Env) -> Any:
        from aezoo.run import train

        return train(_spec(device="cpu"), Path(out.format(readonly=env.readonly)))
    return call


CASES: list[Bad] = [
    # --- the command line itself ---
    cli("unknown-command", 2, r"No such command 'bogus'.*aezoo --help", "bogus"),
    cli("unknown-root-option", 2, rf"{NO_SUCH}--bogus", "--bogus"),
    cli("unknown-list-option", 2, rf"{NO_SUCH}--bogus.*aezoo list --help", "list", "--bogus"),
    cli("list-two-patterns", 2, r"extra argument", "list", "a", "b"),
    cli("info-missing-name", 2, r"Missing argument 'name'", "info"),
    cli("info-unknown", 2, r"unknown variant 'nope'", "info", "nope"),
    cli("info-typo", 2, r"did you mean 'cae-upsample'", "info", "cae-upsampel"),
    cli("info-empty-name", 2, r"unknown variant ''", "info", ""),
    cli("info-terminal-escape", 2, r"unknown variant '\\x1b\[2J", "info", "\x1b[2J"),
    cli("set-line-breaks", 2, r"invalid --set 'a\\nb\\rc'", "config", "cae-upsample", "--set",
        "a\nb\rc"),
    cli("info-unknown-dist", 2, r"distribution nodist provides no variant", "info",
        "nodist:cae-upsample"),
    cli("unknown-data-command", 2, r"No such command 'bogus'.*aezoo data --help", "data", "bogus"),
    cli("plugins-extra-arg", 2, r"extra argument", "plugins", "x"),
    # --- train: names ---
    cli("train-no-model", 2, r"no model given", "train"),
    cli("train-typo", 2, r"did you mean 'cae-upsample'", "train", "cae-upsampel"),
    cli("train-unknown-loss", 2, r"unknown loss 'nope'", *T, "--loss", "nope"),
    cli("train-unknown-data", 2, r"unknown dataset 'nope'", *T, "--data", "nope"),
    cli("train-unknown-scheduler", 2, r"train\.scheduler", *T, "--scheduler", "bogus"),
    cli("train-unknown-callback", 2, r"callback 'nope'", *T, "--callback", "nope"),
    # --- train: wrong types and out-of-range values ---
    cli("epochs-not-int", 2, r"Invalid value for '--epochs'", *T, "--epochs", "abc"),
    cli("epochs-zero", 2, r"train\.epochs.*greater than 0", *T, "--epochs", "0"),
    cli("epochs-negative", 2, r"train\.epochs", *T, "--epochs", "-3"),
    cli("batch-size-zero", 2, r"train\.batch_size", *T, "--batch-size", "0"),
    cli("lr-zero", 2, r"train\.lr.*greater than 0", *T, "--lr", "0"),
    cli("lr-negative", 2, r"train\.lr", *T, "--lr", "-0.1"),
    cli("lr-nan", 2, r"train\.lr", *T, "--lr", "nan"),
    cli("lr-inf", 2, r"train\.lr.*finite", *T, "--lr", "inf"),
    cli("lr-not-float", 2, r"Invalid value for '--lr'", *T, "--lr", "fast"),
    cli("seed-negative", 2, r"train\.seed", *T, "--seed", "-1"),
    cli("limit-zero", 2, r"data\.limit", *T, "--limit", "0"),
    cli("val-fraction-above-1", 2, r"data\.val_fraction", *T, "--val-fraction", "1.5"),
    cli("val-fraction-zero", 2, r"data\.val_fraction", *T, "--val-fraction", "0"),
    cli("image-size-garbage", 2, r"image.size", *T, "--image-size", "big"),
    cli("image-size-zero", 2, r"image.size", *T, "--image-size", "0"),
    cli("image-size-a-million", 1, r"out of memory.*--image-size", *T, "--image-size", "1000000"),
    cli("channels-two", 2, r"channels", *T, "--channels", "2"),
    cli("warmup-negative", 2, r"train\.warmup", *T, "--warmup", "-1"),
    cli("grad-clip-zero", 2, r"train\.grad_clip", *T, "--grad-clip", "0"),
    cli("patience-zero", 2, r"train\.patience", *T, "--patience", "0"),
    cli("precision-8", 2, r"train\.precision", *T, "--precision", "8"),
    cli("fp16-on-cpu", 2, r"16", *T, "--precision", "16", "--device", "cpu"),
    cli("checkpoint-every-zero", 2, r"train\.checkpoint_every", *T, "--checkpoint-every", "0"),
    # --- train: devices ---
    cli("device-tpu", 2, r"train\.device.*'tpu'", *T, "--device", "tpu"),
    cli("device-cuda", 2, r"CUDA is not available", *T, "--device", "cuda"),
    cli("device-cuda-7", 2, r"CUDA is not available|cuda:7", *T, "--device", "cuda:7"),
    cli("device-cuda-x", 2, r"train\.device", *T, "--device", "cuda:x"),
    cli("device-mps", 2, r"MPS is not available", *T, "--device", "mps"),
    cli("device-upper-case", 2, r"train\.device", *T, "--device", "CPU"),
    # --- train: --set ---
    cli("set-no-equals", 2, r"invalid --set 'foo'", *T, "--set", "foo"),
    cli("set-no-key", 2, r"invalid --set '=1'", *T, "--set", "=1"),
    cli("set-empty-part", 2, r"invalid --set 'train\.\.lr=1'", *T, "--set", "train..lr=1"),
    cli("set-unknown-key", 2, r"train\.lrr: unknown key", *T, "--set", "train.lrr=1"),
    cli("set-unknown-section", 2, r"invalid trian: unknown key", *T, "--set", "trian.lr=1"),
    cli("set-wrong-type", 2, r"train\.lr", *T, "--set", "train.lr=abc"),
    cli("set-list-for-float", 2, r"train\.lr", *T, "--set", "train.lr=[1,2]"),
    cli("set-scalar-for-section", 2, r"invalid train", *T, "--set", "train=5"),
    cli("set-unknown-encoder", 2, r"unknown encoder 'nope'", *T,
        "--set", "model.encoder.name=nope"),
    cli("set-zero-channels", 2, r"channels", *T, "--set", "model.encoder.params.channels=[0]"),
    cli("set-no-channels", 2, r"channels", *T, "--set", "model.encoder.params.channels=[]"),
    cli("set-even-kernel", 2, r"kernel_size", *T, "--set", "model.encoder.params.kernel_size=4"),
    cli("set-unknown-param", 2, r"bogus: unknown key", *T,
        "--set", "model.encoder.params.bogus=1"),
    cli("set-unknown-init", 2, r"model\.init", *T, "--set", "model.init=xavier"),
    cli("set-2d-input-shape", 2, r"model\.input_shape", *T, "--set", "model.input_shape=[1,28]"),
    cli("set-unknown-optimizer", 2, r"train\.optimizer", *T, "--set", "train.optimizer=adamx"),
    cli("set-beta-above-1", 2, r"train\.betas", *T, "--set", "train.betas=[0.9,1.5]"),
    cli("set-empty-data-name", 2, r"data\.name", *T, "--set", "data.name="),
    cli("set-nested-100k-deep", 2, r"train\.lr", *T, "--set", "train.lr=" + "[" * 100_000),
    cli("set-infinite-channels", 2, r"channels", *T,
        "--set", "model.encoder.params.channels=[1e999]"),
    # --- train: spec files ---
    cli("config-missing", 2, r"cannot read config file nope\.toml", *T, "--config", "nope.toml"),
    cli("config-directory", 2, r"cannot read config file dir\.toml", *T, "--config", "dir.toml"),
    cli("config-bad-toml", 2, r"not valid TOML", *T, "--config", "bad.toml"),
    cli("config-bad-yaml", 2, r"not valid YAML", *T, "--config", "bad.yaml"),
    cli("config-bad-json", 2, r"not valid JSON", *T, "--config", "bad.json"),
    cli("config-json-list", 2, r"does not hold a table", *T, "--config", "list.json"),
    cli("config-empty-yaml", 2, r"does not hold a table", *T, "--config", "empty.yaml"),
    cli("config-scalar-yaml", 2, r"does not hold a table", *T, "--config", "scalar.yaml"),
    cli("config-unknown-suffix", 2, r"unknown type", *T, "--config", "conf.txt"),
    cli("config-not-utf8", 2, r"cannot read config file binary\.toml", *T,
        "--config", "binary.toml"),
    cli("config-unknown-key", 2, r"train\.learning_rate in unknown-key\.toml: unknown key", *T,
        "--config", "unknown-key.toml"),
    cli("config-wrong-type", 2, r"train\.epochs", *T, "--config", "wrong-type.yaml"),
    cli("config-unknown-component", 2, r"unknown encoder 'resnet-nope'", "train",
        "--config", "bad-component.json"),
    cli("config-unknown-variant", 2, r"unknown variant 'cae-nope'", "train",
        "--config", "bad-variant.toml"),
    cli("config-python-tag", 2, r"not valid YAML", *T, "--config", "python-tag.yaml"),
    cli("config-nested-50k-deep", 2, r"not valid JSON", *T, "--config", "deep.json"),
    # --- train: outputs ---
    cli("out-is-a-file", 2, r"output afile exists and is not a directory", *T, "--out", "afile"),
    cli("out-under-a-file", 2, r"cannot create output directory afile/run", *T,
        "--out", "afile/run"),
    cli("out-holds-a-model", 2, r"done-run/model\.safetensors already exists.*--force", *T,
        "--out", "done-run"),
    cli("out-holds-unfinished-run", 2, r"unfinished run.*--resume", *T,
        "--out", "unfinished-run"),
    cli("out-read-only-mount", 2, rf"not writable \({DENIED}\)", *T,
        "--out", RO, needs_mount=True),
    cli("out-under-read-only-mount", 2, rf"cannot create output directory.*{DENIED}", *T,
        "--out", RO + "/run", needs_mount=True),
    # --- train: data files ---
    cli("data-missing-npz", 2, r"missing\.npz does not exist", *T, "--data", "npz:missing.npz"),
    cli("data-npz-no-image-key", 1, r"no image array under a known key", *T,
        "--data", "npz:nokeys.npz"),
    cli("data-npz-object-arrays", 1, r"objects\.npz", *T, "--data", "npz:objects.npz"),
    cli("data-npy-is-a-pickle", 1, r"notnumpy\.npy is not a readable \.npy", *T,
        "--data", "npy:notnumpy.npy"),
    cli("data-npy-vector", 1, r"vector\.npy", *T, "--data", "npy:vector.npy"),
    cli("data-npy-floats", 1, r"floats\.npy", *T, "--data", "npy:floats.npy"),
    cli("data-folder-empty", 1, r"emptydir", *T, "--data", "folder:emptydir"),
    cli("data-folder-decompression-bomb", 1, r"cannot read image bomb/a\.png.*decompression bomb",
        "data", "info", "folder:bomb"),
    cli("data-folder-broken-images", 1, r"cannot read image \S*/broken-images/", *T,
        "--data", "folder:broken-images"),
    cli("data-folder-missing", 2, r"nowhere", *T, "--data", "folder:nowhere"),
    cli("data-folder-is-a-file", 2, r"afile", *T, "--data", "folder:afile"),
    cli("data-offline-download", 1, r"mnist", *T, "--data", "mnist"),
    # --- train: --resume ---
    cli("resume-missing-dir", 2, r"nowhere is not a run directory", "train", "--resume",
        "nowhere"),
    cli("resume-a-file", 2, r"afile is not a run directory", "train", "--resume", "afile"),
    cli("resume-no-runjson", 2, r"has no run\.json", "train", "--resume", "no-runjson"),
    cli("resume-corrupt-runjson", 2, r"cannot read corrupt-runjson/run\.json", "train",
        "--resume", "corrupt-runjson"),
    cli("resume-binary-runjson", 2, r"cannot read binary-runjson/run\.json", "train",
        "--resume", "binary-runjson"),
    cli("resume-invalid-runjson", 2, r"not a valid run spec", "train", "--resume",
        "invalid-runjson"),
    cli("resume-no-state", 2, r"no state\.safetensors", "train", "--resume", "no-state"),
    cli("resume-pickled-state", 1, r"state\.safetensors", "train", "--resume", "evil-state"),
    cli("resume-change-batch-size", 2, r"--batch-size cannot be combined with --resume",
        "train", "--resume",
        "evil-state", "--batch-size", "7"),
    # --- eval / reconstruct / encode ---
    cli("eval-missing-model", 2, r"nope\.safetensors does not exist", "eval", "nope.safetensors"),
    cli("eval-empty-dir", 2, r"emptydir holds no model", "eval", "emptydir"),
    cli("eval-not-a-model", 1, r"afile is not a safetensors file", "eval", "afile"),
    cli("eval-unknown-split", 2, r"unknown split 'bogus'", "eval", GOOD, "--split", "bogus"),
    cli("eval-test-split-missing", 2, r"no test split", "eval", GOOD, "--split", "test"),
    cli("eval-limit-zero", 2, r"--limit", "eval", GOOD, "--limit", "0"),
    cli("eval-batch-size-zero", 2, r"--batch-size", "eval", GOOD, "--batch-size", "0"),
    cli("eval-device-cuda", 2, r"CUDA is not available", "eval", GOOD, "--device", "cuda"),
    cli("eval-unknown-data", 2, r"unknown dataset 'nope'", "eval", GOOD, "--data", "nope"),
    cli("eval-shape-mismatch", 2, r"expects 3x32x32 images.*1x28x28", "eval",
        "rgb32.safetensors", "--device", "cpu"),
    cli("reconstruct-n-zero", 2, r"--n", "reconstruct", GOOD, "--n", "0"),
    cli("reconstruct-scale-100", 2, r"--scale", "reconstruct", GOOD, "--scale", "100"),
    cli("reconstruct-out-exists", 2, r"existing\.png already exists", "reconstruct", GOOD,
        "--out", "existing.png", "--device", "cpu"),
    cli("reconstruct-out-under-file", 2, r"cannot write afile/x\.png", "reconstruct", GOOD,
        "--out", "afile/x.png", "--device", "cpu"),
    cli("encode-out-exists", 2, r"existing\.npy already exists", "encode", GOOD,
        "--out", "existing.npy", "--device", "cpu"),
    cli("encode-out-under-file", 1, r"cannot use afile/z\.npy \(Not a directory\)", "encode",
        GOOD, "--out", "afile/z.npy", "--device", "cpu"),
    cli("encode-read-only", 1, rf"z\.npy \({DENIED}\)", "encode", GOOD, "--out",
        RO + "/z.npy", "--device", "cpu", needs_mount=True),
    # --- config / schema / new-plugin / data ---
    cli("config-unknown-variant-cmd", 2, r"unknown variant 'nope'", "config", "nope"),
    cli("config-unknown-format", 2, r"unknown format 'xml'", "config", "cae-upsample",
        "--format", "xml"),
    cli("config-bad-set", 2, r"invalid --set 'x'", "config", "cae-upsample", "--set", "x"),
    cli("config-bad-file", 2, r"not valid TOML", "config", "--config", "bad.toml"),
    cli("schema-unknown-variant", 2, r"unknown variant 'nope'", "schema", "nope"),
    cli("new-plugin-bad-name", 2, r"not a valid distribution name", "new-plugin", "bad name!"),
    cli("new-plugin-keyword", 2, r"usable Python package name", "new-plugin", "class"),
    cli("new-plugin-exists", 2, r"existing-plugin", "new-plugin", "existing-plugin"),
    cli("new-plugin-dir-is-file", 2, r"afile", "new-plugin", "aezoo-x", "--dir", "afile"),
    cli("data-info-unknown", 2, r"unknown dataset 'nope'", "data", "info", "nope"),
    cli("data-fetch-unknown", 2, r"unknown dataset 'nope'", "data", "fetch", "nope"),
    cli("data-info-bad-fraction", 2, r"val_fraction", "data", "info", "mnist5k",
        "--val-fraction", "2"),
    cli("data-info-bad-size", 2, r"image.size", "data", "info", "mnist5k", "--image-size", "x"),
    cli("data-info-bad-channels", 2, r"channels", "data", "info", "mnist5k", "--channels", "2"),
    cli("data-info-huge-size", 1, r"out of memory", "data", "info", "mnist5k",
        "--image-size", "1000000"),
    cli("data-list-bad-option", 2, rf"{NO_SUCH}--bogus", "data", "list", "--bogus"),
    cli("schema-extra-arg", 2, r"extra argument", "schema", "cae-upsample", "x"),
    cli("data-fetch-offline", 1, r"offline|AEZOO_OFFLINE", "data", "fetch", "mnist"),
    # --- Python API ---
    api("build-unknown", 2, r"unknown variant 'nope'", lambda e: aezoo.build("nope")),
    api("build-typo", 2, r"did you mean", lambda e: aezoo.build("cae-strided ")),
    api("build-unknown-loss", 2, r"unknown loss 'nope'",
        lambda e: aezoo.build("cae-upsample", loss="nope")),
    api("build-impossible-shape", 2, r"3x3",
        lambda e: aezoo.build("cae-upsample", input_shape=(1, 3, 3))),
    api("build-odd-shape-upsample", 2, r"multiples of 4|30x30|cannot",
        lambda e: aezoo.build("cae-upsample", input_shape=(1, 30, 30))),
    api("build-2d-shape", 2, r"model\.input_shape",
        lambda e: aezoo.build("cae-upsample", input_shape=(1, 28))),
    api("build-zero-channels-shape", 2, r"model\.input_shape",
        lambda e: aezoo.build("cae-upsample", input_shape=(0, 28, 28))),
    api("build-params-wrong-type", 2, r"channels",
        lambda e: aezoo.build("cae-upsample", encoder_params={"channels": "abc"})),
    api("build-params-not-a-dict", 2, r"encoder_params",
        lambda e: aezoo.build("cae-upsample", encoder_params=5)),
    api("build-unknown-override", 2, r"bogus: unknown key",
        lambda e: aezoo.build("cae-upsample", bogus=1)),
    api("build-component-wrong-type", 2, r"model\.encoder",
        lambda e: aezoo.build("cae-upsample", encoder=5)),
    api("build-dict-missing-parts", 2, r"model\.(encoder|decoder|loss)",
        lambda e: aezoo.build({"encoder": {"name": "pool"}})),
    api("build-not-a-name", 2, r"cannot build a model from 42 \(int\)",
        lambda e: aezoo.build(42)),
    api("build-none", 2, r"from None \(NoneType\)", lambda e: aezoo.build(None)),
    api("load-missing", 1, r"does not exist", lambda e: aezoo.load("nope.safetensors")),
    api("load-directory", 1, r"emptydir holds no model\.safetensors",
        lambda e: aezoo.load("emptydir")),
    api("load-cuda", 2, r"CUDA is not available",
        lambda e: aezoo.load(GOOD, device="cuda")),
    api("load-cuda-7", 2, r"CUDA is not available|cuda:7",
        lambda e: aezoo.load(GOOD, device="cuda:7")),
    api("load-tpu", 2, r"unknown device 'tpu'", lambda e: aezoo.load(GOOD, device="tpu")),
    api("save-under-a-file", 1, r"cannot write afile/m\.safetensors",
        _save_into("afile/m.safetensors")),
    api("save-missing-dir", 1, r"cannot write nowhere/m\.safetensors",
        _save_into("nowhere/m.safetensors")),
    api("save-onto-a-directory", 1, r"emptydir is a directory", _save_into("emptydir")),
    api("save-read-only", 1, DENIED, _save_into(RO + "/m.safetensors"),
        needs_mount=True),
    api("save-not-a-model", 2, r"aezoo model", lambda e: aezoo.save("model", "m.safetensors")),
    api("run-spec-unknown-variant", 2, r"unknown variant 'nope'",
        lambda e: __import__("aezoo.config").config.build_run_spec("nope")),
    api("run-spec-no-model", 2, r"no model given",
        lambda e: __import__("aezoo.config").config.build_run_spec(None, [{}])),
    api("run-spec-bad-layer", 2, r"train\.lr",
        lambda e: __import__("aezoo.config").config.build_run_spec(
            "cae-upsample", [{"train": {"lr": "x"}}])),
    api("run-spec-inf-weight-decay", 2, r"train\.weight_decay",
        lambda e: _spec(weight_decay=float("inf"))),
    api("validate-not-a-mapping", 2, r"invalid spec",
        lambda e: __import__("aezoo.specs").specs.validate(
            __import__("aezoo.specs").specs.RunSpec, 5)),
    api("parse-assignment", 2, r"invalid --set",
        lambda e: __import__("aezoo.config").config.parse_assignment("a.b")),
    api("resolve-device-cuda-7", 2, r"CUDA is not available|cuda:7",
        lambda e: __import__("aezoo.device").device.resolve_device("cuda:7")),
    api("resolve-device-gpu", 2, r"unknown device 'gpu'",
        lambda e: __import__("aezoo.device").device.resolve_device("gpu")),
    api("train-out-is-a-file", 2, r"exists and is not a directory", _train_into("afile")),
    api("train-out-read-only", 2, r"not writable", _train_into(RO), needs_mount=True),
    api("load-dataset-unknown", 2, r"unknown dataset 'nope'",
        lambda e: __import__("aezoo.data").data.load_dataset(
            __import__("aezoo.specs").specs.DataSpec(name="nope"))),
]


def test_a_huge_input_shape_is_checked_without_allocating() -> None:
    """The build-time shape check of a 1x100000x100000 model (a 40 GB input) runs on meta."""
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    model = aezoo.build("cae-upsample", input_shape=(1, 100_000, 100_000))
    assert model.num_parameters() == 4385
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 256, f"peak RSS grew by {grown_mb:.0f} MB"
    with pytest.raises(AezooError, match="cannot take"):  # and still refuses what cannot work
        aezoo.build("cae-upsample", input_shape=(1, 100_000, 3))


def test_the_corpus_is_large_and_unique() -> None:
    assert len(CASES) >= 60
    assert len({c.id for c in CASES}) == len(CASES)


def _resolve(args: tuple[str, ...], env: Env) -> list[str]:
    return [a.replace(RO, str(env.readonly)) for a in args]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Bad, env: Env) -> None:
    if case.needs_mount and env.readonly is None:
        pytest.skip("mounting a read-only tmpfs is not permitted here")
    roots = [env.ws, env.data_dir] + ([env.readonly] if env.readonly else [])
    before = _snapshot(*roots)
    if case.api is not None:
        with pytest.raises(AezooError) as info:
            case.api(env)
        line = str(info.value)
        assert info.value.exit_code == case.code, f"{type(info.value).__name__}: {line}"
        assert "\n" not in line, line
    else:
        from typer.testing import CliRunner

        from aezoo.cli import app

        result = CliRunner().invoke(app, _resolve(case.args, env))
        assert "Traceback" not in result.output
        assert "error: unexpected" not in result.output, result.output  # the catch-all: a bug
        assert isinstance(result.exception, SystemExit), repr(result.exception)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("error: "), result.stderr
        assert result.exit_code == case.code, result.stderr
        line = lines[0]
    assert re.search(case.says, line, re.IGNORECASE), line
    assert len(line) < 1000, f"a {len(line)}-character 'line' is not one line to read"
    assert _snapshot(*roots) == before, "a bad input created, changed or removed a file"
    assert not (env.ws / MARKER).exists(), "something was unpickled or executed"


# --- docs/errors.md lists every message ---------------------------------------------------


def _raise_sites() -> Iterator[tuple[str, str]]:
    """(where, the longest literal part of the problem) for every aezoo error raised."""
    import ast

    import aezoo.errors
    import aezoo.training.control
    import aezoo.training.loop

    modules = (aezoo.errors, aezoo.training.control, aezoo.training.loop)
    classes = {name for module in modules for name, obj in vars(module).items()
               if isinstance(obj, type) and issubclass(obj, AezooError)}
    root = Path(__file__).resolve().parents[1]
    for path in sorted([*(root / "aezoo").rglob("*.py"), *(root / "plugins").rglob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            call = getattr(node, "exc", None) if isinstance(node, ast.Raise) else (
                node.value if isinstance(node, ast.Return) else None)
            if not isinstance(call, ast.Call) or not call.args:
                continue
            if ast.unparse(call.func).split(".")[-1] not in classes:
                continue
            first = call.args[0]
            parts = [first.value] if isinstance(first, ast.Constant) else [
                v.value for v in getattr(first, "values", []) if isinstance(v, ast.Constant)]
            parts = [" ".join(str(p).split()).strip(" :;,(") for p in parts]
            parts = [p for p in parts if len(p) >= 5]
            if parts:
                yield f"{path.relative_to(root)}:{node.lineno}", max(parts, key=len)


def test_every_error_message_is_documented() -> None:
    doc = " ".join((Path(__file__).resolve().parents[1] / "docs" / "errors.md").read_text(
        encoding="utf-8").split())
    sites = list(_raise_sites())
    assert len(sites) > 100
    missing = [f"{where}: {text!r}" for where, text in sites if text not in doc]
    assert not missing, ("messages missing from docs/errors.md (add each with its cause and "
                         "fix):\n" + "\n".join(missing))
