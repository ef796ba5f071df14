"""Hostile or mistaken inputs cost bounded time and memory and end in one clear error.

Each test feeds one input class (a header of millions of tiny values, a FIFO, a
5,000-digit integer, an alias bomb, a plugin raising KeyboardInterrupt, a batch of the
wrong shape, a full disk) and asserts the error names the problem — never the catch-all.
"""

from __future__ import annotations

import errno
import json
import os
import re
import struct
import threading
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
import torch
from plugin_fixtures import FakeSite, variant_source

import aezoo
from aezoo import _safetensors, registry
from aezoo.errors import CheckpointError, PluginError, ShapeError, SpecError, UsageError, WriteError
from aezoo.specs import RunSpec, TrainSpec, short_repr, validate

VARIANTS = "aezoo.variants"
MODEL = {"encoder": {"name": "pool"}, "decoder": {"name": "upsample"}, "loss": {"name": "bce"}}


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    with FakeSite(tmp_path / "site", monkeypatch) as s:
        yield s


def _safetensors_file(path: Path, header: bytes) -> Path:
    path.write_bytes(struct.pack("<Q", len(header)) + header)
    return path


# --- safetensors headers ----------------------------------------------------------------


def test_a_header_of_millions_of_empty_lists_is_refused_before_it_is_parsed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lists = b",".join([b"[]"] * 3_000_000)
    header = b'{"__metadata__":{"aezoo.spec":"{}"},"x":[' + lists + b"]}"
    path = _safetensors_file(tmp_path / "bomb.safetensors", header)
    parsed: list[int] = []
    real = json.loads
    monkeypatch.setattr(_safetensors.json, "loads", lambda raw: parsed.append(1) or real(raw))
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError, match="malformed safetensors header"):
            aezoo.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert not parsed
    assert peak < 4 * len(header)  # the bytes read (and one scan), not ~25x in objects


def test_a_header_without_an_aezoo_spec_is_refused_unparsed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    header = json.dumps({"t": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                         "pad": ["x"] * 400_000}).encode()
    path = _safetensors_file(tmp_path / "plain.safetensors", header + b"\0" * 4)
    monkeypatch.setattr(_safetensors.json, "loads", lambda raw: pytest.fail("parsed"))
    with pytest.raises(CheckpointError, match="not an aezoo model"):
        aezoo.load(path)
    with pytest.raises(CheckpointError, match="not an aezoo model"):
        aezoo.checkpoint.read_spec(path)


def test_a_5000_digit_integer_in_a_header_is_a_checkpoint_error(tmp_path: Path) -> None:
    good = aezoo.save(aezoo.build("cae-upsample"), tmp_path / "good.safetensors")
    meta = aezoo.checkpoint.read_metadata(good)
    spec = json.loads(meta["aezoo.spec"])
    raw_spec = json.dumps(spec).replace('"input_shape": [1, 28, 28]',
                                        '"input_shape": [1, ' + "9" * 5000 + ", 28]")
    header = json.dumps({"__metadata__": {**meta, "aezoo.spec": raw_spec}}).encode()
    path = _safetensors_file(tmp_path / "digits.safetensors", header)
    with pytest.raises(CheckpointError, match="spec that is not JSON"):
        aezoo.load(path)
    outer = b'{"__metadata__":{"aezoo.spec":"{}"},"n":' + b"7" * 5000 + b"}"
    with pytest.raises(CheckpointError, match="not JSON"):
        aezoo.load(_safetensors_file(tmp_path / "outer.safetensors", outer))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_a_fifo_as_model_path_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "model.safetensors"
    os.mkfifo(fifo)
    outcome: list[BaseException] = []

    def load() -> None:
        try:
            aezoo.load(fifo)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome.append(exc)

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    worker.join(20)
    if worker.is_alive():  # unblock the reader so the thread can end
        with open(fifo, "wb"):
            pass
        pytest.fail("aezoo.load blocked on a FIFO")
    assert isinstance(outcome[0], CheckpointError)
    assert "not a regular file" in str(outcome[0])


# --- specs: integers, sizes, bombs, typos -------------------------------------------


@pytest.mark.parametrize(("train", "phrase"), [
    ({"seed": 2**64}, "less than or equal to 18446744073709551615"),
    ({"seed": 10**5000}, "about 5000 digits"),
    ({"epochs": 2**64}, "less than or equal to 4611686018427387904"),
    ({"batch_size": -3}, "greater than 0"),
])
def test_out_of_range_integers_name_the_value_and_range(train: dict[str, Any],
                                                        phrase: str) -> None:
    with pytest.raises(SpecError) as err:
        validate(RunSpec, {"model": MODEL, "train": train})
    assert phrase in str(err.value) and len(str(err.value)) < 300


@pytest.mark.parametrize("shape", [[1, 2**62, 28], [2**64, 28, 28], [1, 28, 2_000_000]])
def test_huge_input_shapes_are_refused_with_the_range(shape: list[int]) -> None:
    with pytest.raises(SpecError, match=r"input_shape\.\d: Input should be less than or equal "
                                        r"to 1048576"):
        validate(RunSpec, {"model": {**MODEL, "input_shape": shape}})


def test_huge_image_sizes_are_refused_with_the_range() -> None:
    with pytest.raises(SpecError, match="less than or equal to 1048576"):
        validate(RunSpec, {"model": MODEL, "data": {"image_size": f"{2**62}x{2**62}"}})


def test_an_alias_bomb_costs_nothing_to_report() -> None:
    """What a 377-byte YAML alias bomb loads as: a DAG whose expansion is astronomic."""
    bomb: Any = ["lol"] * 9
    for _ in range(40):
        bomb = [bomb] * 9
    tracemalloc.start()
    try:
        with pytest.raises(SpecError) as err:
            validate(TrainSpec, {"lr": bomb}, "train")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "invalid train.lr" in str(err.value) and len(str(err.value)) < 300
    assert peak < 20_000_000
    assert len(short_repr(bomb)) <= 80


@pytest.mark.parametrize(("data", "phrase"), [
    ({"model": MODEL, "train": {"lrr": 0.1}},
     "invalid train.lrr: unknown key (did you mean 'lr'?)"),
    ({"model": MODEL, "training": {}}, "invalid training: unknown key (did you mean 'train'?)"),
    ({"model": {**MODEL, "inputshape": [1, 2, 3]}},
     "unknown key (did you mean 'input_shape'?)"),
])
def test_unknown_keys_suggest_the_key_meant(data: dict[str, Any], phrase: str) -> None:
    with pytest.raises(SpecError, match=re.escape(phrase)):
        validate(RunSpec, data)


def test_validator_messages_do_not_leak_pydantics_prefix() -> None:
    with pytest.raises(SpecError) as err:
        validate(RunSpec, {"model": MODEL, "train": {"device": "gpu"}})
    assert "Value error" not in str(err.value)
    assert "invalid train.device: must be auto, cpu, cuda, cuda:N or mps" in str(err.value)


# --- plugins that raise BaseException on import -------------------------------------


@pytest.mark.parametrize("raised", ["KeyboardInterrupt", "GeneratorExit",
                                    "type('Custom', (BaseException,), {})"])
def test_a_plugin_raising_a_base_exception_on_import_is_isolated(site: Any, raised: str) -> None:
    site.add("plug-ki", entry_points={VARIANTS: {"ki": "plug_ki_mod:variant"}},
             modules={"plug_ki_mod": f"raise {raised}()\n"})
    site.add("plug-fine", entry_points={VARIANTS: {"fine": "plug_fine_mod:variant"}},
             modules={"plug_fine_mod": variant_source("pool", "upsample", "bce")})
    with pytest.raises(PluginError, match="plug-ki 1.0 failed to load variant 'ki'"):
        registry.load("variant", "ki")
    assert [f.entry.name for f in registry.failures()] == ["ki"]
    assert [e.name for e, _ in registry.load_all("variant") if e.dist.startswith("plug")] \
        == ["fine"]


def test_the_users_ctrl_c_during_a_plugin_import_still_interrupts(site: Any) -> None:
    site.add("plug-slow", entry_points={VARIANTS: {"slow": "plug_slow_mod:variant"}},
             modules={"plug_slow_mod": "import os, signal\n"
                                       "os.kill(os.getpid(), signal.SIGINT)\n"})
    with pytest.raises(KeyboardInterrupt):
        registry.load("variant", "slow")
    assert not registry.failures()


# --- models, loads and pictures -------------------------------------------------------


def test_a_batch_of_the_wrong_shape_is_a_shape_error_naming_both() -> None:
    model = aezoo.build("cae-upsample", input_shape=(3, 32, 32), loss="mse")
    with pytest.raises(ShapeError, match=r"takes \(N, 3, 32, 32\) images, got \(8, 1, 28, 28\)"):
        model(torch.rand(8, 1, 28, 28))
    with pytest.raises(ShapeError):
        model.encode(torch.rand(3, 32, 32))  # no batch dimension
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 3, 32, 32)


def test_load_accepts_a_run_directory(tmp_path: Path) -> None:
    model = aezoo.build("cae-upsample")
    aezoo.save(model, tmp_path / "last.safetensors")
    assert aezoo.load(tmp_path).spec == model.spec
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointError, match="holds no model.safetensors or last.safetensors"):
        aezoo.load(empty)


def test_a_full_disk_while_writing_a_picture_is_a_runtime_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from aezoo import viz

    def full(*_args: object, **_kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(WriteError) as err:
        viz.write_png(tmp_path / "x.png", viz.grid(torch.zeros(1, 1, 4, 4)))
    assert err.value.exit_code == 1 and "No space left on device" in str(err.value)
    monkeypatch.undo()
    with pytest.raises(UsageError) as usage:
        viz.write_png(tmp_path / "missing" / "x.png", viz.grid(torch.zeros(1, 1, 4, 4)))
    assert usage.value.exit_code == 2
