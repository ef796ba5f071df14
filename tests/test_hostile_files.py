"""Hostile model files: each is refused fast, with a clear CheckpointError, bounded memory,
and nothing ever unpickled or executed.

Every case is a crafted file (a few KB, or sparse) handed to ``aezoo.load`` and to
``aezoo eval``. Memory is bounded by construction (the header is checked before any
tensor is allocated: asserted by spying on the builds) and measured (tracemalloc for
Python allocations, ru_maxrss in a subprocess for the worst cases).
"""

from __future__ import annotations

import ast
import inspect
import json
import pickle
import re
import shutil
import struct
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save as st_save

import aezoo
from aezoo.errors import CheckpointError

ROOT = Path(__file__).resolve().parents[1]
MARKER_NAME = "PWNED"


class _Evil:
    """Unpickling this writes a marker file: proof that something was unpickled."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.marker, "w"))


@dataclass
class Good:
    """A real checkpoint to start from: its model, bytes, header and metadata."""

    model: Any
    raw: bytes
    header: dict[str, Any]

    @property
    def meta(self) -> dict[str, str]:
        return dict(self.header["__metadata__"])

    @property
    def spec(self) -> dict[str, Any]:
        return json.loads(self.meta["aezoo.spec"])

    @property
    def body(self) -> bytes:
        (n,) = struct.unpack("<Q", self.raw[:8])
        return self.raw[8 + n:]


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Good:
    torch.manual_seed(0)
    model = aezoo.build("cae-upsample")
    path = tmp_path_factory.mktemp("good") / "model.safetensors"
    aezoo.save(model, path)
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return Good(model, raw, json.loads(raw[8:8 + n]))


def with_header(header: Any, body: bytes = b"") -> bytes:
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + body


def tensors(good: Good, change: Callable[[dict[str, torch.Tensor]], None],
            meta: dict[str, str] | None = None) -> bytes:
    state = {k: v.clone() for k, v in good.model.state_dict().items()}
    change(state)
    return st_save(state, metadata=meta or good.meta)


def spec_file(good: Good, spec: Any, **meta: str) -> bytes:
    text = spec if isinstance(spec, str) else json.dumps(spec)
    return tensors(good, lambda s: None, {**good.meta, "aezoo.spec": text, **meta})


def edit_spec(good: Good, **changes: Any) -> dict[str, Any]:
    spec = good.spec
    for dotted, value in changes.items():
        node = spec
        *parents, last = dotted.split("__")
        for p in parents:
            node = node[p]
        node[last] = value
    return spec


def edit_header(good: Good, edit: Callable[[dict[str, Any]], None]) -> bytes:
    header = json.loads(json.dumps(good.header))
    edit(header)
    return with_header(header, good.body)


def first_tensor(good: Good) -> str:
    """The first conv weight in the header that is not square in (out, in) channels."""
    return next(k for k, v in good.header.items()
                if k != "__metadata__" and len(v["shape"]) == 4 and v["shape"][0] != v["shape"][1])


def _sparse_gb_spec(path: Path, good: Good) -> None:
    """A header that claims 1 GB, starting like a spec of 1 GB; sparse, so it costs nothing."""
    size = 1 << 30
    with path.open("wb") as f:
        f.write(struct.pack("<Q", size))
        f.write(b'{"__metadata__": {"format": "pt", "aezoo.spec": "' + b"A" * 4096)
        f.truncate(8 + size + 16)


def _pickle(path: Path, good: Good) -> None:
    path.write_bytes(pickle.dumps({"state": _Evil(str(path.parent / MARKER_NAME))}))


def _torch_zip(path: Path, good: Good) -> None:
    torch.save({"weights": good.model.state_dict(), "x": _Evil(str(path.parent / MARKER_NAME))},
               path)


def _pickle_after_prefix(path: Path, good: Good) -> None:
    """A 'header' whose declared length is right but which holds a pickle, not JSON."""
    payload = pickle.dumps(_Evil(str(path.parent / MARKER_NAME)))
    path.write_bytes(with_header(payload, b"\0" * 16))


# (id, file contents from a Good, or a writer (path, good), what the message must say)
CASES: list[tuple[str, Any, str]] = [
    ("empty", lambda g: b"", "too short"),
    ("five-bytes", lambda g: b"\x01\x02\x03\x04\x05", "too short"),
    ("header-length-2^60", lambda g: struct.pack("<Q", 1 << 60) + b"{}", "bad header length"),
    ("header-length-2^64-1", lambda g: b"\xff" * 8 + b"{}", "bad header length"),
    ("header-longer-than-file", lambda g: struct.pack("<Q", 4096) + b"{}" * 10,
     "bad header length"),
    ("spec-of-1GB-sparse", _sparse_gb_spec, "bad header length"),
    ("header-not-json", lambda g: with_header(b"this is not json", b"\0" * 8),
     "header is not JSON"),
    ("header-not-utf8", lambda g: with_header(b"\xff\xfe\xfd{}", b"\0" * 8),
     "header is not JSON"),
    ("header-nested-100k-deep", lambda g: with_header(b"[" * 100_000 + b"]" * 100_000),
     "header is not JSON"),
    ("header-json-list", lambda g: with_header([1, 2, 3]), "malformed safetensors header"),
    ("header-json-string", lambda g: with_header("hello"), "malformed safetensors header"),
    ("header-json-null", lambda g: with_header(None), "malformed safetensors header"),
    ("metadata-not-object", lambda g: with_header({"__metadata__": ["a"]}), "malformed metadata"),
    ("no-metadata", lambda g: st_save({"w": torch.zeros(2)}), "not an aezoo model"),
    ("no-spec", lambda g: st_save({"w": torch.zeros(2)}, metadata={"format": "pt"}),
     "not an aezoo model"),
    ("spec-not-json", lambda g: spec_file(g, "{not json"), "spec that is not JSON"),
    ("spec-nested-100k-deep", lambda g: spec_file(g, "[" * 100_000), "spec that is not JSON"),
    ("spec-json-list", lambda g: spec_file(g, [1, 2]), "invalid spec"),
    ("spec-json-number", lambda g: spec_file(g, 5), "invalid spec"),
    ("spec-missing-encoder", lambda g: spec_file(g, {"decoder": {"name": "upsample"},
                                                     "loss": {"name": "bce"}}), "invalid spec"),
    ("spec-unknown-key", lambda g: spec_file(g, {**g.spec, "evil": 1}), "invalid spec"),
    ("spec-wrong-type", lambda g: spec_file(g, edit_spec(g, input_shape="big")), "invalid spec"),
    ("spec-nan-shape", lambda g: spec_file(g, edit_spec(g, input_shape=[1, float("nan"), 28])),
     "invalid spec"),
    ("spec-unknown-encoder", lambda g: spec_file(g, edit_spec(g, encoder__name="nope")),
     "encoder 'nope'"),
    # A missing loss only costs the objective (the model loads for inference, with a
    # warning: tests/test_objective.py); a missing decoder is still refused.
    ("spec-unknown-decoder-bad-plugins", lambda g: spec_file(
        g, edit_spec(g, decoder__name="nope"), **{"aezoo.plugins": "{oops"}), "decoder 'nope'"),
    ("spec-invalid-params", lambda g: spec_file(
        g, edit_spec(g, encoder__params={"channels": [-1]})), "cannot be built"),
    ("spec-impossible-shape", lambda g: spec_file(g, edit_spec(g, input_shape=[1, 3, 3])),
     "cannot be built"),
    ("spec-huge-model", lambda g: spec_file(g, edit_spec(
        g, encoder__params={"channels": [100_000, 100_000, 100_000]},
        decoder__params={"channels": [100_000, 100_000, 100_000]})), "expects"),
    ("spec-huge-input", lambda g: spec_file(g, edit_spec(g, input_shape=[3, 100_000, 100_000])),
     "expects [16, 3, 3, 3]"),
    ("truncated-half", lambda g: g.raw[: len(g.raw) // 2], "outside the file"),
    ("truncated-one-byte", lambda g: g.raw[:-1], "outside the file"),
    ("truncated-in-header", lambda g: g.raw[:40], "bad header length"),
    ("float64-weights", lambda g: tensors(g, lambda s: s.update(
        {k: v.double() for k, v in s.items()})), "is F64, the model expects F32"),
    ("float16-weights", lambda g: tensors(g, lambda s: s.update(
        {k: v.half() for k, v in s.items()})), "is F16, the model expects F32"),
    ("int32-weights", lambda g: tensors(g, lambda s: s.update(
        {k: v.to(torch.int32) for k, v in s.items()})), "is I32, the model expects F32"),
    ("one-int64-tensor", lambda g: tensors(g, lambda s: s.update(
        {first_tensor(g): s[first_tensor(g)].long()})), "is I64, the model expects F32"),
    ("shape-mismatch", lambda g: tensors(g, lambda s: s.update(
        {first_tensor(g): torch.zeros(3)})), "has shape [3]"),
    ("transposed-shape", lambda g: tensors(g, lambda s: s.update(
        {first_tensor(g): s[first_tensor(g)].transpose(0, 1).contiguous()})), "has shape"),
    ("missing-tensor", lambda g: tensors(g, lambda s: s.pop(first_tensor(g))), "missing tensor"),
    ("extra-tensor", lambda g: tensors(g, lambda s: s.update(
        {"backdoor": torch.zeros(1 << 10)})), "unexpected tensor 'backdoor'"),
    ("no-tensors", lambda g: st_save({}, metadata=g.meta), "missing tensor"),
    ("tensor-entry-not-object", lambda g: edit_header(
        g, lambda h: h.update({first_tensor(g): 5})), "malformed entry"),
    ("unknown-dtype", lambda g: edit_header(
        g, lambda h: h[first_tensor(g)].update(dtype="X99")), "is X99"),
    ("offsets-past-end", lambda g: edit_header(
        g, lambda h: h[first_tensor(g)].update(data_offsets=[1 << 40, (1 << 40) + 576])),
     "outside the file"),
    ("offsets-reversed", lambda g: edit_header(
        g, lambda h: h[first_tensor(g)].update(data_offsets=[576, 0])), "outside the file"),
    ("offsets-not-ints", lambda g: edit_header(
        g, lambda h: h[first_tensor(g)].update(data_offsets=["0", "576"])), "outside the file"),
    ("overlapping-offsets", lambda g: edit_header(g, lambda h: [
        e.update(data_offsets=[0, e["data_offsets"][1] - e["data_offsets"][0]])
        for k, e in h.items() if k != "__metadata__"]), "overlapping or gapped"),
    ("trailing-garbage", lambda g: g.raw + b"\0" * 4096, "4096 bytes beyond its tensors"),
    ("pickle-renamed", _pickle, "bad header length"),
    ("torch-save-zip-renamed", _torch_zip, "bad header length"),
    ("pickle-after-length-prefix", _pickle_after_prefix, "header is not JSON"),
]


def _write(case: Any, path: Path, good: Good) -> None:
    if len(inspect.signature(case).parameters) == 2:  # a writer: (path, good)
        case(path, good)
    else:
        path.write_bytes(case(good))


@pytest.fixture
def spy_builds(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The device of every model build ``load`` makes (``meta`` allocates nothing)."""
    import aezoo.model

    devices: list[str] = []
    real = aezoo.model.from_spec

    def spy(spec: Any, **kwargs: Any) -> Any:
        devices.append(torch.empty(0).device.type)
        return real(spec, **kwargs)

    monkeypatch.setattr(aezoo.model, "from_spec", spy)
    return devices


@pytest.mark.parametrize(("name", "make", "says"), CASES, ids=[c[0] for c in CASES])
def test_hostile_file_is_refused_fast_with_bounded_memory(
        name: str, make: Any, says: str, good: Good, tmp_path: Path,
        spy_builds: list[str]) -> None:
    path = tmp_path / "model.safetensors"
    _write(make, path, good)
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(CheckpointError) as info:
            aezoo.load(path)
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    elapsed = time.perf_counter() - start
    message = str(info.value)
    assert says in message, message
    assert "\n" not in message and str(path.name) in message
    assert info.value.fix  # every refusal says what to do
    assert elapsed < 5, f"took {elapsed:.1f} s"  # generous: the point is 'no 1 GB read'
    assert peak < 16 * 2**20, f"{peak / 2**20:.1f} MB of Python allocations"
    assert "cpu" not in spy_builds, "weights were allocated before the file was checked"
    assert not (tmp_path / MARKER_NAME).exists(), "something was unpickled"


@pytest.mark.parametrize(("name", "make", "says"), CASES, ids=[c[0] for c in CASES])
def test_hostile_file_via_cli_is_one_line(
        name: str, make: Any, says: str, good: Good, tmp_path: Path, cli: Any) -> None:
    path = tmp_path / "model.safetensors"
    _write(make, path, good)
    before = sorted(p.name for p in tmp_path.iterdir())
    result = cli("eval", str(path), "--device", "cpu")
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert says in lines[0] and "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert not (tmp_path / MARKER_NAME).exists()


def test_the_pickle_payloads_are_really_dangerous(tmp_path: Path, good: Good) -> None:
    """Guard the guard: unpickling these payloads does write the marker."""
    marker = tmp_path / MARKER_NAME
    pickle.loads(pickle.dumps(_Evil(str(marker))))
    assert marker.exists()
    marker.unlink()
    _torch_zip(tmp_path / "evil.pt", good)
    torch.load(tmp_path / "evil.pt", weights_only=False)  # what aezoo must never do
    assert marker.exists()
    marker.unlink()
    with pytest.raises(pickle.UnpicklingError):
        torch.load(tmp_path / "evil.pt", weights_only=True)
    assert not marker.exists()


@pytest.mark.parametrize("what", ["missing", "directory"])
def test_missing_file_and_directory(tmp_path: Path, what: str) -> None:
    path = tmp_path / "model.safetensors"
    if what == "directory":
        path.mkdir()
    # A directory is taken as a run directory (like the CLI): one without a model says so.
    with pytest.raises(CheckpointError, match="does not exist" if what == "missing" else
                       "holds no model.safetensors or last.safetensors"):
        aezoo.load(path)


def test_good_file_still_loads_bit_exact(good: Good, tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(good.raw)
    loaded = aezoo.load(path)
    for (k, a), (k2, b) in zip(good.model.state_dict().items(), loaded.state_dict().items(),
                                  strict=True):
        assert k == k2 and a.dtype == b.dtype and torch.equal(a, b)


def test_save_refuses_what_load_would_refuse(good: Good, tmp_path: Path) -> None:
    model = aezoo.build("cae-upsample").double()
    with pytest.raises(CheckpointError, match="float64"):
        aezoo.save(model, tmp_path / "m.safetensors")
    assert list(tmp_path.iterdir()) == []


_RSS_SCRIPT = r"""
import resource, struct, sys, json
import aezoo, torch
from aezoo.errors import CheckpointError
aezoo.load(sys.argv[1])  # warm up: imports, one real load
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
# A valid model for 1x100000x100000 images: its build-time shape check must not allocate.
assert aezoo.load(sys.argv[2]).input_shape == (1, 100_000, 100_000)
for path in sys.argv[3:]:
    try:
        aezoo.load(path)
        raise SystemExit(f"{path} loaded")
    except CheckpointError:
        pass
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base
print(json.dumps({"grown_kb": grown}))
"""


def test_worst_cases_do_not_grow_the_process(good: Good, tmp_path: Path) -> None:
    """Peak RSS (torch allocations included) barely moves while refusing the worst files."""
    ok = tmp_path / "ok.safetensors"
    ok.write_bytes(good.raw)
    huge_ok = tmp_path / "huge-input-ok.safetensors"
    huge_ok.write_bytes(spec_file(good, edit_spec(good, input_shape=[1, 100_000, 100_000])))
    worst = ["spec-of-1GB-sparse", "header-length-2^60", "spec-huge-model", "spec-huge-input",
             "extra-tensor", "offsets-past-end", "header-nested-100k-deep"]
    paths = []
    for name, make, _ in CASES:
        if name in worst:
            path = tmp_path / f"{name}.safetensors"
            _write(make, path, good)
            paths.append(str(path))
    out = subprocess.run([sys.executable, "-c", _RSS_SCRIPT, str(ok), str(huge_ok), *paths],
                         capture_output=True, text=True, timeout=120, check=True)
    grown_mb = json.loads(out.stdout.strip().splitlines()[-1])["grown_kb"] / 1024
    assert grown_mb < 64, f"peak RSS grew by {grown_mb:.0f} MB"


# --- no unpickling anywhere in the package -------------------------------------------


def _unsafe_calls(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
            for n in names:
                if n.split(".")[0] in ("pickle", "cPickle", "dill", "joblib", "marshal",
                                       "shelve", "cloudpickle"):
                    found.append((node.lineno, f"imports {n}"))
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        dotted = ast.unparse(func)
        keywords = {k.arg: ast.unparse(k.value) for k in node.keywords if k.arg}
        if isinstance(func, ast.Name) and func.id in ("eval", "exec"):
            found.append((node.lineno, f"{func.id}()"))
        if dotted.endswith(("pickle.load", "pickle.loads", "torch.jit.load", "yaml.unsafe_load",
                            "yaml.full_load")):
            found.append((node.lineno, dotted))
        if dotted in ("torch.load",) and keywords.get("weights_only") != "True":
            found.append((node.lineno, "torch.load without weights_only=True"))
        if dotted in ("np.load", "numpy.load") and keywords.get("allow_pickle") != "False":
            found.append((node.lineno, f"{dotted} without allow_pickle=False"))
        if dotted == "yaml.load" and "Safe" not in keywords.get("Loader", ""):
            found.append((node.lineno, "yaml.load without a SafeLoader"))
    return found


def test_no_unpickling_in_the_package_source() -> None:
    offenders = []
    files = sorted((ROOT / "aezoo").rglob("*.py")) + sorted((ROOT / "plugins").rglob("*.py"))
    assert len(files) > 20
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        offenders += [f"{path.relative_to(ROOT)}:{line}: {what}"
                      for line, what in _unsafe_calls(tree)]
    assert not offenders, "\n".join(offenders)


def test_the_source_scan_catches_offenders() -> None:
    bad = """
import pickle
torch.load(f)
torch.load(f, weights_only=False)
np.load(p)
np.load(p, allow_pickle=True)
yaml.load(text)
eval("1")
"""
    good = """
torch.load(f, weights_only=True)
np.load(p, allow_pickle=False)
np.load(
    p, mmap_mode="r", allow_pickle=False)
yaml.safe_load(text)
yaml.load(text, Loader=yaml.SafeLoader)
model.eval()
"""
    assert len(_unsafe_calls(ast.parse(bad))) == 7
    assert _unsafe_calls(ast.parse(good)) == []


# --- hostile training states (aezoo train --resume) ------------------------------------


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny finished run (1 epoch) whose state can be resumed with --epochs 2."""
    from aezoo.config import build_run_spec
    from aezoo.run import train

    spec = build_run_spec("cae-upsample", [{"train": {"epochs": 1, "batch_size": 64,
                                                      "images": False, "device": "cpu"},
                                            "data": {"limit": 128}}])
    out = tmp_path_factory.mktemp("run") / "run"
    train(spec, out)
    (out / "model.safetensors").unlink()  # resumable: as if stopped after epoch 1
    return out


def _state_parts(run: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    with safe_open(str(run / "state.safetensors"), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata())


def _state(edit_tensors: Callable[[dict[str, torch.Tensor]], None] | None = None,
           edit_info: Callable[[dict[str, Any]], Any] | None = None,
           raw_info: str | None = None) -> Callable[[Path], bytes]:
    def make(run: Path) -> bytes:
        tensors, meta = _state_parts(run)
        if edit_tensors:
            edit_tensors(tensors)
        info = json.loads(meta["aezoo.state"])
        if edit_info:
            info = edit_info(info) or info
        meta["aezoo.state"] = raw_info if raw_info is not None else json.dumps(info)
        return st_save(tensors, metadata=meta)
    return make


def _raw_info(edit: Callable[[str], str]) -> Callable[[Path], bytes]:
    """A state whose info's JSON text is edited (values json.dumps cannot write)."""
    def make(run: Path) -> bytes:
        tensors, meta = _state_parts(run)
        meta["aezoo.state"] = edit(meta["aezoo.state"])
        return st_save(tensors, metadata=meta)
    return make


def _drop(key: str) -> Callable[[dict[str, Any]], None]:
    """An edit that removes ``key`` (and returns nothing: the edited dict stays the info)."""
    def edit(d: dict[str, Any]) -> None:
        d.pop(key)
    return edit


def _group(edit: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Any]], None]:
    """An edit of the first optimiser param group."""
    def apply(info: dict[str, Any]) -> None:
        edit(info["optimizer"]["param_groups"][0])
    return apply


def _shift(**changes: int) -> Callable[[dict[str, Any]], None]:
    """Add to the info's integers (position edits)."""
    def apply(info: dict[str, Any]) -> None:
        for key, delta in changes.items():
            info[key] += delta
    return apply


STATE_CASES: list[tuple[str, Callable[[Path], bytes], str]] = [
    ("pickle", lambda run: pickle.dumps(_Evil(str(run / MARKER_NAME))), "bad header length"),
    ("truncated", lambda run: (run / "state.safetensors").read_bytes()[:-100], "corrupt"),
    ("info-not-json", _state(raw_info="{oops"), "corrupt training state"),
    ("info-a-list", _state(raw_info="[1, 2]"), "corrupt training state"),
    ("info-deep", _state(raw_info="[" * 100_000), "corrupt training state"),
    ("info-no-epoch", _state(edit_info=_drop("epoch")), "corrupt training state"),
    ("info-epoch-a-string", _state(edit_info=lambda i: i.update(epoch="2")),
     "corrupt training state"),
    ("info-no-optimizer", _state(edit_info=_drop("optimizer")), "corrupt training state"),
    ("info-garbage-history", _state(edit_info=lambda i: i.update(history=[{"evil": 1}])),
     "corrupt training state"),
    ("info-history-not-list", _state(edit_info=lambda i: i.update(history=5)),
     "corrupt training state"),
    ("info-wrong-world-size", _state(edit_info=lambda i: i.update(world_size=8)),
     "world_size=8"),
    ("info-wrong-version", _state(edit_info=lambda i: i.update(version=99)), "version 99"),
    ("no-rng", _state(edit_tensors=_drop("rng.torch")), "corrupt training state"),
    ("rng-wrong-dtype", _state(edit_tensors=lambda t: t.update(
        {"rng.torch": t["rng.torch"].float()})), "corrupt training state"),
    ("no-weights", _state(edit_tensors=lambda t: [t.pop(k) for k in list(t)
                                                  if k.startswith("model.")]),
     "does not match this model"),
    ("wrong-weight-shape", _state(edit_tensors=lambda t: t.update(
        {"model.encoder.net.0.weight": torch.zeros(3)})), "does not match this model"),
    ("optimizer-state-garbage", _state(edit_tensors=lambda t: t.update(
        {"optim.0.exp_avg": torch.zeros(7)})), "corrupt|does not match"),
    # Values the loop would use wrongly or crash on later ("unexpected" mid-training).
    ("info-lr-a-string", _state(edit_info=_group(lambda g: g.update(lr="0.001"))),
     r"optimizer.param_groups\[0\].lr is '0.001'"),
    ("info-betas-strings", _state(edit_info=_group(lambda g: g.update(betas=["a", "b"]))),
     r"optimizer.param_groups\[0\].betas"),
    ("info-eps-null", _state(edit_info=_group(lambda g: g.update(eps=None))),
     r"optimizer.param_groups\[0\].eps is None"),
    ("info-optimizer-key-missing", _state(edit_info=_group(lambda g: g.pop("betas"))),
     r"optimizer.param_groups\[0\].betas is missing"),
    ("info-params-edited", _state(edit_info=_group(lambda g: g.update(params=[0, 0]))),
     r"optimizer.param_groups\[0\].params"),
    ("info-param-groups-not-list", _state(edit_info=lambda i: i["optimizer"].update(
        param_groups={})), "optimizer.param_groups is not a list"),
    ("info-step-beyond-epoch", _state(edit_info=_shift(step=5, global_step=5)),
     "step is 5, not a whole number from 0 to the epoch's 2 steps"),
    ("info-negative-step", _state(edit_info=_shift(step=-1, global_step=-1)), "step is -1"),
    ("info-negative-epoch", _state(edit_info=lambda i: i.update(epoch=-1)),
     "epoch is -1, not a whole number from 1"),
    ("info-epoch-true", _state(edit_info=lambda i: i.update(epoch=True)), "epoch is True"),
    ("info-global-step-inconsistent", _state(edit_info=_shift(global_step=7)),
     "global_step is 9, but epoch 2, step 0 of 2 per epoch is step 2"),
    ("info-loss-count-negative", _state(edit_info=lambda i: i.update(loss_count=-3)),
     "loss_count is -3"),
    ("info-history-loss-a-string", _state(edit_info=lambda i: i["history"][0].update(
        train_loss="low")), r"history\[0\] is not an epoch's numbers"),
    ("int64-weights", _state(edit_tensors=lambda t: t.update(
        {k: v.long() for k, v in t.items() if k.startswith("model.")})),
     "is torch.int64, the model expects torch.float32"),
    ("optimizer-state-int64", _state(edit_tensors=lambda t: t.update(
        {"optim.0.exp_avg": t["optim.0.exp_avg"].long()})),
     "optim.0.exp_avg is torch.int64, the parameter torch.float32"),
    ("loss-sum-not-a-scalar", _state(edit_tensors=lambda t: t.update(
        {"acc.loss_sum": torch.zeros(3, dtype=torch.float64)})), "acc.loss_sum is"),
    ("info-5000-digit-integer", _raw_info(lambda text: text.replace(
        '"loss_count": ', '"loss_count": ' + "9" * 5000 + ', "was": ', 1)),
     "holds a corrupt training state"),
    ("optimizer-step-shaped-like-its-parameter", _state(edit_tensors=lambda t: t.update(
        {"optim.0.step": torch.zeros_like(t["optim.0.exp_avg"])})),
     r"optim\.0\.step has shape \[.*\], not a scalar"),
    ("optimizer-step-a-vector", _state(edit_tensors=lambda t: t.update(
        {"optim.0.step": torch.zeros(3)})), r"optim\.0\.step has shape \[3\], not a scalar"),
    ("info-world-size-a-string", _state(edit_info=lambda i: i.update(world_size="1")),
     r"world_size is '1', not a whole number"),
    ("optimizer-scalar-a-list", _state(edit_info=lambda i: i["optimizer"].update(
        scalars={"0": {"step": [1, 2]}})), r"optimizer\.scalars\.0\.step is \[1, 2\], not a"),
]


@pytest.mark.parametrize(("name", "make", "says"), STATE_CASES, ids=[c[0] for c in STATE_CASES])
def test_hostile_training_state_is_refused_by_resume(
        name: str, make: Callable[[Path], bytes], says: str, finished_run: Path,
        tmp_path: Path, cli: Any) -> None:
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    (run / "state.safetensors").write_bytes(make(run))
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    result = cli("train", "--resume", str(run), "--epochs", "2")
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "state.safetensors" in lines[0] and re.search(says, lines[0]), lines[0]
    assert "error: unexpected" not in lines[0] and "Traceback" not in result.output
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before
    assert not (run / MARKER_NAME).exists()


def test_the_untouched_state_resumes(finished_run: Path, tmp_path: Path, cli: Any) -> None:
    """The control: the same run, state unedited, resumes and finishes."""
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    result = cli("train", "--resume", str(run), "--epochs", "2")
    assert result.exit_code == 0, result.output
    assert aezoo.load(run / "model.safetensors").num_parameters() == 4385


@pytest.mark.parametrize("run_json", [b"[" * 100_000, b"\xff\xfe", b'{"model": 5}', b"[]"],
                         ids=["nested-100k-deep", "not-utf8", "invalid-spec", "a-list"])
def test_a_hostile_run_json_beside_a_model_does_not_break_eval(
        run_json: bytes, good: Good, tmp_path: Path, cli: Any) -> None:
    """eval reads run.json only to pick the dataset; a bad one falls back to the default."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.safetensors").write_bytes(good.raw)
    (run / "run.json").write_bytes(run_json)
    result = cli("eval", str(run), "--device", "cpu", "--limit", "8", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["data"] == "mnist5k"


@pytest.mark.parametrize(("edit", "says"), [
    (lambda s: s["train"].update(epochs="x"), "run.json is not a valid run spec"),
    (lambda s: s["train"].update(lr="fast"), "run.json is not a valid run spec"),
    (lambda s: s["train"].update(batch_size=32), "state.safetensors was saved with "
     "steps_per_epoch=2, this run has 4"),
    (lambda s: s["model"]["encoder"]["params"].update(channels=[8, 8, 8]),
     "state.safetensors does not match this model"),
], ids=["epochs-a-string", "lr-a-string", "batch-size-changed", "model-changed"])
def test_an_edited_run_json_is_refused_by_resume(edit: Callable[[dict[str, Any]], Any],
                                                 says: str, finished_run: Path, tmp_path: Path,
                                                 cli: Any) -> None:
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    spec = json.loads((run / "run.json").read_text())
    edit(spec)
    (run / "run.json").write_text(json.dumps(spec))
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    result = cli("train", "--resume", str(run), "--epochs", "2")
    assert result.exit_code in (1, 2), result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0] and "unexpected" not in lines[0], result.stderr
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before
