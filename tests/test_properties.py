"""Property-based tests: whatever a user (or a file) feeds the parsers, the answer is a
valid spec or the clean aezoo error, never another exception.

Example counts are modest so the suite stays fast; hypothesis explores new inputs on
every run (no example database is written).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aezoo
from aezoo import config, specfile
from aezoo.errors import AezooError, CheckpointError, SpecError, UsageError
from aezoo.specs import DataSpec, ModelSpec, RunSpec, TrainSpec, validate

SETTINGS = settings(max_examples=200, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])

# Keys a spec really has, so generated dicts reach deep into the validators.
SPEC_KEYS = ["model", "train", "data", "variant", "encoder", "decoder", "loss", "name", "params",
             "input_shape", "init", "channels", "kernel_size", "optimizer", "lr", "epochs",
             "batch_size", "seed", "device", "betas", "precision", "scheduler", "limit",
             "val_fraction", "image_size", "callbacks", "patience", "grad_clip"]
NAMES = ["cae-upsample", "cae-strided", "pool", "strided", "upsample", "convtranspose", "bce",
         "mse", "aezoo:pool", "nope", "", "mnist5k", "cpu", "cuda:7", "adam", "sgd", "glorot"]

scalars = (st.none() | st.booleans() | st.integers(-2**70, 2**70)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12)
           | st.sampled_from(NAMES))
keys = st.sampled_from(SPEC_KEYS) | st.text(max_size=8)
json_like = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(keys, children, max_size=5),
    max_leaves=25,
)
json_dicts = st.dictionaries(keys, json_like, max_size=5)


def _valid_model_spec() -> st.SearchStrategy[dict[str, Any]]:
    """Specs that are close to valid: right structure, values that may be off."""
    channels = st.lists(st.integers(-2, 40), min_size=0, max_size=5)
    comp = st.fixed_dictionaries({"name": st.sampled_from(NAMES)},
                                 optional={"params": st.fixed_dictionaries(
                                     {}, optional={"channels": channels,
                                                   "kernel_size": st.integers(-1, 9)})})
    return st.fixed_dictionaries(
        {"encoder": comp, "decoder": comp, "loss": comp},
        optional={"input_shape": st.lists(st.integers(-1, 64), min_size=2, max_size=4),
                  "init": st.sampled_from(["default", "glorot", "he"]),
                  "variant": st.sampled_from(NAMES) | st.none()})


# --- specs.validate ------------------------------------------------------------------


@SETTINGS
@given(data=json_like | json_dicts | st.fixed_dictionaries(
    {"model": _valid_model_spec()}, optional={"train": json_dicts, "data": json_dicts}))
def test_validate_run_spec_gives_a_spec_or_a_spec_error(data: Any) -> None:
    try:
        spec = validate(RunSpec, data)
    except SpecError as exc:
        _assert_clean(exc)
        return
    assert isinstance(spec, RunSpec)
    assert validate(RunSpec, json.loads(spec.model_dump_json())) == spec  # round trip


@SETTINGS
@given(model=st.sampled_from([ModelSpec, TrainSpec, DataSpec]), data=json_like | json_dicts)
def test_every_spec_model_answers_cleanly(model: Any, data: Any) -> None:
    try:
        validate(model, data)
    except SpecError as exc:
        _assert_clean(exc)


# --- config.build_run_spec -----------------------------------------------------------


@SETTINGS
@given(variant=st.sampled_from(["cae-upsample", "cae-strided", None, "nope"]),
       layers=st.lists(json_dicts | st.fixed_dictionaries({"model": _valid_model_spec()}),
                       max_size=3))
def test_build_run_spec_gives_a_spec_or_an_aezoo_error(variant: str | None,
                                                       layers: list[dict[str, Any]]) -> None:
    try:
        spec = config.build_run_spec(variant, layers)
    except AezooError as exc:
        _assert_clean(exc)
        return
    assert isinstance(spec, RunSpec)
    # Resolved: every component's params validate against the component's own model.
    for kind in config.COMPONENT_KINDS:
        config.component_params(spec.model, kind)


# --- --set parsing -------------------------------------------------------------------

paths = st.lists(st.sampled_from(SPEC_KEYS) | st.text(max_size=6), min_size=0, max_size=5)
values = (st.text(max_size=20)
          | json_like.map(lambda v: json.dumps(v, allow_nan=True))
          | st.sampled_from(["[", "{", "[1,", "1e999", "-0", "NaN", "null", "true", "[]", "{}",
                             "[32,16,8]", "0.01", "sgd", "[" * 2000]))
assignments = (st.text(max_size=40)
               | st.builds(lambda p, v: ".".join(p) + "=" + v, paths, values)
               | st.builds(lambda v: "model.encoder.params.channels=" + v, values)
               | st.builds(lambda v: "train.lr=" + v, values))


@SETTINGS
@given(texts=st.lists(assignments, min_size=1, max_size=3))
def test_set_parsing_gives_a_spec_or_an_aezoo_error(texts: list[str]) -> None:
    try:
        layers = [config.parse_assignment(t) for t in texts]
    except SpecError as exc:
        _assert_clean(exc)
        return
    for layer, text in zip(layers, texts, strict=True):
        assert isinstance(layer, dict) and len(layer) == 1
        key = text.partition("=")[0].strip()
        node: Any = layer
        for part in key.split("."):  # the dotted key becomes nested dicts
            node = node[part]
    try:
        spec = config.build_run_spec("cae-upsample", layers)
    except AezooError as exc:
        _assert_clean(exc)
        return
    assert isinstance(spec, RunSpec)


@settings(max_examples=60, deadline=None, database=None)
@given(text=assignments, fmt=st.sampled_from(["toml", "yaml", "json"]))
def test_config_command_answers_any_set_cleanly(text: str, fmt: str) -> None:
    """End to end through the CLI: exit 0 with a spec, or 2 with one red line."""
    from typer.testing import CliRunner

    from aezoo.cli import app

    result = CliRunner().invoke(app, ["config", "cae-upsample", "--set", text, "--format", fmt])
    assert result.exit_code in (0, 2), result.output
    assert "Traceback" not in result.output
    if result.exit_code:
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
        assert "error: unexpected" not in lines[0]


@SETTINGS
@given(problem=st.text(min_size=1), fix=st.none() | st.text())
def test_an_error_message_is_always_one_line(problem: str, fix: str | None) -> None:
    """User text with line breaks or terminal escapes cannot break the one-line rule."""
    text = str(SpecError(problem, fix))
    assert len(text.splitlines()) <= 1 and "\x1b" not in text


# --- spec files ----------------------------------------------------------------------


@SETTINGS
@given(content=st.binary(max_size=200) | st.text(max_size=200).map(str.encode)
       | json_dicts.map(lambda d: json.dumps(d, allow_nan=True).encode()),
       suffix=st.sampled_from([".toml", ".yaml", ".yml", ".json"]))
def test_read_config_gives_a_mapping_or_a_usage_error(tmp_path: Path, content: bytes,
                                                      suffix: str) -> None:
    path = tmp_path / f"spec{suffix}"
    path.write_bytes(content)
    try:
        data = specfile.read_config(path)
    except UsageError as exc:
        _assert_clean(exc)
        return
    assert isinstance(data, dict)


# --- model files ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("ckpt") / "model.safetensors"
    aezoo.save(aezoo.build("cae-upsample"), path)
    return path.read_bytes()


def _mutate(raw: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    data = bytearray(raw)
    for pos, byte in edits:
        data[pos % len(data)] = byte
    return bytes(data[:cut] if cut is not None else data)


@SETTINGS
@given(edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=4),
       header_edits=st.lists(st.tuples(st.integers(8, 600), st.integers(32, 126)), max_size=3),
       cut=st.none() | st.integers(0, 20_000))
def test_load_of_a_damaged_checkpoint_gives_a_model_or_a_checkpoint_error(
        tmp_path: Path, checkpoint: bytes, edits: list[tuple[int, int]],
        header_edits: list[tuple[int, int]], cut: int | None) -> None:
    """Random byte flips (anywhere, and printable ones inside the JSON header) and cuts."""
    path = tmp_path / "model.safetensors"
    path.write_bytes(_mutate(checkpoint, edits + header_edits, cut))
    try:
        model = aezoo.load(path)
    except AezooError as exc:
        _assert_clean(exc)
        assert isinstance(exc, CheckpointError) or exc.exit_code in (1, 2)
        return
    assert model.num_parameters() > 0


@SETTINGS
@given(header=json_like | json_dicts, trailer=st.binary(max_size=64))
def test_load_of_any_header_gives_a_checkpoint_error(tmp_path: Path, header: Any,
                                                     trailer: bytes) -> None:
    text = json.dumps(header, allow_nan=True).encode()
    path = tmp_path / "model.safetensors"
    path.write_bytes(struct.pack("<Q", len(text)) + text + trailer)
    with pytest.raises(AezooError) as info:
        aezoo.load(path)
    _assert_clean(info.value)


def _assert_clean(exc: AezooError) -> None:
    """The clean error: one line, a problem, an exit code the CLI understands."""
    assert exc.exit_code in (1, 2)
    assert exc.problem and len(str(exc).splitlines()) == 1, repr(str(exc))
    assert len(str(exc)) < 1000, str(exc)[:200]
