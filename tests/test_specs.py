"""Specs: --set parsing, merging, config files, precedence, one-line validation errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from aezoo import registry
from aezoo.config import build_run_spec, merge, parse_assignment
from aezoo.errors import SpecError, UnknownNameError, UsageError
from aezoo.specfile import read_config
from aezoo.specs import ModelSpec, RunSpec, TrainSpec, validate

# --- parse_assignment ------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("train.lr=0.01", {"train": {"lr": 0.01}}),
    ("train.epochs=3", {"train": {"epochs": 3}}),
    ("model.encoder.params.channels=[32,16,8]",
     {"model": {"encoder": {"params": {"channels": [32, 16, 8]}}}}),
    ("train.channels_last=true", {"train": {"channels_last": True}}),
    ("data.limit=null", {"data": {"limit": None}}),
    ('model.encoder={"name":"strided"}', {"model": {"encoder": {"name": "strided"}}}),
    ("train.optimizer=sgd", {"train": {"optimizer": "sgd"}}),  # not JSON: a string
    ('data.name="123"', {"data": {"name": "123"}}),  # quoted JSON: a string
    ("train.device=cuda:1", {"train": {"device": "cuda:1"}}),
    ("a.b=x=y", {"a": {"b": "x=y"}}),  # only the first '=' splits
    (" train.lr = 0.5", {"train": {"lr": 0.5}}),
    ("x=", {"x": ""}),
])
def test_parse_assignment(text: str, expected: dict[str, Any]) -> None:
    assert parse_assignment(text) == expected


@pytest.mark.parametrize("text", ["train.lr", "=0.1", "a..b=1", "a.=1", ".a=1", "", " =1"])
def test_parse_assignment_rejects_bad_forms(text: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_assignment(text)
    assert "\n" not in str(info.value)
    assert "KEY=VALUE" in str(info.value)
    assert info.value.exit_code == 2


# --- merge -----------------------------------------------------------------------------


def test_merge_is_deep_and_does_not_mutate() -> None:
    base = {"train": {"lr": 0.1, "epochs": 5}, "data": {"name": "mnist5k"}}
    snapshot = json.loads(json.dumps(base))
    out = merge(base, {"train": {"lr": 0.2}, "data": {"limit": 10}})
    assert out == {"train": {"lr": 0.2, "epochs": 5}, "data": {"name": "mnist5k", "limit": 10}}
    assert base == snapshot
    out["train"]["epochs"] = 99
    assert base["train"]["epochs"] == 5


def test_merge_component_name_change_drops_old_params() -> None:
    base = {"model": {"encoder": {"name": "pool", "params": {"channels": [16, 8, 8]}}}}
    assert merge(base, {"model": {"encoder": {"name": "strided"}}}) == {
        "model": {"encoder": {"name": "strided"}}}
    # New params given with the new name are kept.
    assert merge(base, {"model": {"encoder": {"name": "strided", "params": {"kernel_size": 5}}}}
                 ) == {"model": {"encoder": {"name": "strided", "params": {"kernel_size": 5}}}}
    # The same name keeps (and merges) the params.
    assert merge(base, {"model": {"encoder": {"name": "pool", "params": {"kernel_size": 5}}}}
                 ) == {"model": {"encoder": {"name": "pool",
                                             "params": {"channels": [16, 8, 8],
                                                        "kernel_size": 5}}}}


def test_switching_component_through_run_spec_uses_its_defaults() -> None:
    spec = build_run_spec("cae-upsample", [{"model": {"encoder": {"name": "strided"}}}])
    strided = registry.encoder("strided")
    assert spec.model.encoder.name == "strided"
    assert spec.model.encoder.params == strided.params().model_dump(mode="json")


# --- read_config -----------------------------------------------------------------------

CONFIG = {"model": {"variant": "cae-upsample", "encoder": {"params": {"channels": [8, 8, 8]}}},
          "train": {"lr": 0.01, "epochs": 2, "optimizer": "sgd"}, "data": {"limit": 100}}
GOOD = {
    ".toml": '[model]\nvariant = "cae-upsample"\n[model.encoder.params]\nchannels = [8, 8, 8]\n'
             '[train]\nlr = 0.01\nepochs = 2\noptimizer = "sgd"\n[data]\nlimit = 100\n',
    ".yaml": "model:\n  variant: cae-upsample\n  encoder:\n    params:\n      channels: [8, 8, 8]\n"
             "train:\n  lr: 0.01\n  epochs: 2\n  optimizer: sgd\ndata:\n  limit: 100\n",
    ".yml": "model: {variant: cae-upsample, encoder: {params: {channels: [8, 8, 8]}}}\n"
            "train: {lr: 0.01, epochs: 2, optimizer: sgd}\ndata: {limit: 100}\n",
    ".json": json.dumps(CONFIG),
}


@pytest.mark.parametrize("suffix", list(GOOD))
def test_read_config_good(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"run{suffix}"
    path.write_text(GOOD[suffix], encoding="utf-8")
    assert read_config(path) == CONFIG
    assert read_config(str(path)) == CONFIG
    spec = build_run_spec(None, [read_config(path)])
    assert spec.model.variant == "cae-upsample"
    assert spec.model.encoder.params["channels"] == [8, 8, 8]
    assert (spec.train.lr, spec.train.epochs, spec.train.optimizer) == (0.01, 2, "sgd")
    assert spec.data.limit == 100


def test_read_config_uppercase_suffix(tmp_path: Path) -> None:
    path = tmp_path / "RUN.JSON"
    path.write_text(json.dumps(CONFIG), encoding="utf-8")
    assert read_config(path) == CONFIG


@pytest.mark.parametrize(("suffix", "text", "kind"), [
    (".toml", "[train\nlr = 1\n", "TOML"),
    (".toml", "train = [\n", "TOML"),
    (".yaml", "train: [1, 2\n", "YAML"),
    (".yaml", "a: b: c\n", "YAML"),
    (".json", '{"train": {"lr": 0.1,}}', "JSON"),
    (".json", "", "JSON"),
])
def test_read_config_malformed(tmp_path: Path, suffix: str, text: str, kind: str) -> None:
    path = tmp_path / f"bad{suffix}"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(UsageError) as info:
        read_config(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message and f"not valid {kind}" in message


@pytest.mark.parametrize(("suffix", "text"), [
    (".json", "[1, 2, 3]"), (".json", '"train"'), (".yaml", "- a\n- b\n"),
    (".yaml", "just a string\n"), (".yaml", "# only a comment\n"),
])
def test_read_config_non_mapping(tmp_path: Path, suffix: str, text: str) -> None:
    path = tmp_path / f"list{suffix}"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(UsageError, match="mapping"):
        read_config(path)


def test_read_config_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(UsageError) as info:
        read_config(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_read_config_directory_and_binary(tmp_path: Path) -> None:
    folder = tmp_path / "dir.yaml"
    folder.mkdir()
    with pytest.raises(UsageError, match="cannot read"):
        read_config(folder)
    binary = tmp_path / "bin.json"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(UsageError):
        read_config(binary)


@pytest.mark.parametrize("name", ["run.ini", "run.txt", "run", "run.toml.bak"])
def test_read_config_unknown_suffix(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text("{}", encoding="utf-8")
    with pytest.raises(UsageError, match="unknown type") as info:
        read_config(path)
    assert ".toml" in str(info.value)  # the fix lists what works


# --- build_run_spec: precedence --------------------------------------------------------


def test_precedence_variant_config_flags_set() -> None:
    variant = registry.variant("cae-upsample")
    config = {"train": {"lr": 0.1, "batch_size": 32, "epochs": 7, "weight_decay": 0.5}}
    flags = {"train": {"lr": 0.2, "epochs": 3}}
    sets = [parse_assignment("train.lr=0.3"), parse_assignment("train.weight_decay=0.25"),
            parse_assignment("train.weight_decay=0.125")]
    spec = build_run_spec("cae-upsample", [config, flags, *sets])
    assert spec.train.lr == 0.3  # --set beats flags beats config beats variant
    assert spec.train.epochs == 3  # flags beat config
    assert spec.train.batch_size == 32  # config beats variant
    assert spec.train.weight_decay == 0.125  # the last --set wins
    assert spec.train.eps == variant.train["eps"]  # variant beats TrainSpec defaults
    assert spec.train.optimizer == variant.train["optimizer"]


def test_variant_defaults_alone() -> None:
    variant = registry.variant("cae-upsample")
    spec = build_run_spec("cae-upsample")
    assert isinstance(spec, RunSpec)
    for key, value in variant.train.items():
        assert getattr(spec.train, key) == value
    assert spec.model.variant == "cae-upsample"
    assert tuple(spec.model.input_shape) == tuple(variant.input_shape)
    assert spec.model.init == variant.init
    assert spec.model.encoder.params["channels"] == list(variant.encoder_params["channels"])
    assert spec.data.name == "mnist5k"


def test_variant_from_config_file() -> None:
    spec = build_run_spec(None, [{"model": {"variant": "cae-strided"}, "train": {"epochs": 1}}])
    assert (spec.model.encoder.name, spec.model.decoder.name) == ("strided", "convtranspose")
    assert spec.train.epochs == 1


def test_conflicting_variants_are_an_error_not_a_mix() -> None:
    # Before the fix, cae-upsample's parts were saved under the label cae-strided.
    with pytest.raises(UsageError, match="conflicting variants cae-strided, cae-upsample"):
        build_run_spec("cae-upsample", [{"model": {"variant": "cae-strided"}}])
    with pytest.raises(UsageError, match="conflicting variants"):
        build_run_spec(None, [{"model": {"variant": "cae-strided"}},
                              parse_assignment("model.variant=cae-upsample")])
    same = build_run_spec("cae-strided", [{"model": {"variant": "cae-strided"}}])
    assert (same.model.variant, same.model.encoder.name) == ("cae-strided", "strided")


def test_variant_named_late_still_sits_under_earlier_layers() -> None:
    spec = build_run_spec(None, [{"train": {"epochs": 4}},
                                 parse_assignment("model.variant=cae-strided")])
    assert (spec.model.variant, spec.model.encoder.name) == ("cae-strided", "strided")
    assert spec.train.epochs == 4
    assert spec.train.lr == registry.variant("cae-strided").train["lr"]


def test_no_model_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="no model"):
        build_run_spec(None, [{"train": {"lr": 0.1}}])


def test_set_beats_loss_flag() -> None:
    spec = build_run_spec("cae-upsample", [{"model": {"loss": {"name": "mse"}}},
                                           parse_assignment("model.loss.name=bce")])
    assert spec.model.loss.name == "bce"


# --- validation errors: one line, naming the key ---------------------------------------


@pytest.mark.parametrize(("layer", "key"), [
    ("train.lr=-1", "train.lr"),
    ("train.lr=abc", "train.lr"),
    ("train.lr=0", "train.lr"),
    ("train.epochs=0", "train.epochs"),
    ("train.batch_size=2.5", "train.batch_size"),
    ("train.optimizer=adamx", "train.optimizer"),
    ("train.betas=[0.9,1.5]", "train.betas"),
    ("train.momentum=1", "train.momentum"),
    ("train.lrr=0.1", "train.lrr"),
    ("trian.lr=0.1", "trian"),
    ("data.limit=0", "data.limit"),
    ("data.extra=1", "data.extra"),
    ("model.input_shape=[1,0,28]", "model.input_shape"),
    ("model.input_shape=[28,28]", "model.input_shape"),
    ("model.init=he", "model.init"),
    ("model.encoder.params.chanels=[8,8]", "model.encoder.params.chanels"),
    ("model.encoder.params.channels=[0,8]", "model.encoder.params.channels"),
    ("model.encoder.params.channels=[]", "model.encoder.params.channels"),
    ("model.decoder.params.kernel_size=4", "model.decoder.params.kernel_size"),
    ("model.loss.params.weight=2", "model.loss.params.weight"),
    ("model.encoder.name=", "model.encoder.name"),
])
def test_invalid_values_name_the_key(layer: str, key: str) -> None:
    with pytest.raises(SpecError) as info:
        build_run_spec("cae-upsample", [parse_assignment(layer)])
    message = str(info.value)
    assert "\n" not in message
    assert f"invalid {key}" in message, message
    assert isinstance(info.value, UsageError) and info.value.exit_code == 2


def test_unknown_component_is_a_usage_error_with_a_suggestion() -> None:
    with pytest.raises(UnknownNameError) as info:
        build_run_spec("cae-upsample", [parse_assignment("model.loss.name=bcee")])
    assert "unknown loss 'bcee'" in str(info.value)
    assert "did you mean 'bce'" in str(info.value)
    assert info.value.exit_code == 2
    with pytest.raises(UnknownNameError, match="did you mean 'cae-upsample'"):
        build_run_spec("cae-upsampel")


@pytest.mark.parametrize("device", ["auto", "cpu", "mps", "cuda", "cuda:0", "cuda:12"])
def test_device_pattern_accepts(device: str) -> None:
    assert validate(TrainSpec, {"device": device}, "train").device == device


@pytest.mark.parametrize("device", ["gpu", "cuda:", "cuda:-1", "CUDA", "cpu:0", "cuda:0 ",
                                    "", "cuda:x", "mps:0", "tpu"])
def test_device_pattern_rejects(device: str) -> None:
    with pytest.raises(SpecError) as info:
        validate(TrainSpec, {"device": device}, "train")
    assert "invalid train.device" in str(info.value)
    assert "\n" not in str(info.value)


def test_specs_forbid_extra_keys_at_every_level() -> None:
    good = build_run_spec("cae-upsample").model_dump(mode="json")
    for path in (("extra",), ("model", "extra"), ("train", "extra"), ("data", "extra"),
                 ("model", "encoder", "extra")):
        data = json.loads(json.dumps(good))
        node = data
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = 1
        with pytest.raises(SpecError, match="unknown key"):
            validate(RunSpec, data)


def test_run_spec_json_round_trip() -> None:
    spec = build_run_spec("cae-strided", [parse_assignment("train.lr=0.05")])
    again = RunSpec.model_validate_json(spec.model_dump_json())
    assert again == spec
    assert ModelSpec.model_validate(spec.model.model_dump(mode="json")) == spec.model


def test_set_reaches_into_lists_by_index():
    """`--set model.regularizers.0.weight=...` edits one item instead of restating the list
    (the sweep's --param takes the same paths)."""
    from aezoo.config import run_spec_from
    from aezoo.errors import SpecError

    spec = run_spec_from("cae-sparse", None, {}, ["model.regularizers.0.weight=0.5"])
    assert [(r.name, r.weight) for r in spec.model.regularizers] == [("l1", 0.5)]
    spec = run_spec_from("cae-upsample", None, {}, ["model.encoder.params.channels.0=32"])
    assert spec.model.encoder.params["channels"] == [32, 8, 8]
    with pytest.raises(SpecError, match=r"model\.regularizers has 1 item\(s\): there is no "
                       r"item 3"):
        run_spec_from("cae-sparse", None, {}, ["model.regularizers.3.weight=0.5"])
    with pytest.raises(SpecError, match="set the whole list"):
        run_spec_from("cae-upsample", None, {}, ["model.regularizers.0.weight=0.5"])
