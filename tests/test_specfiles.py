"""`aezoo config` writes complete run specs that `aezoo train --config` reproduces;
`aezoo schema` describes them, components' params included."""

from __future__ import annotations

import json
import math
import sys

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from plugin_fixtures import FakeSite, variant_source
from pydantic import ValidationError
from safetensors.torch import load_file

from aezoo.config import build_run_spec, parse_assignment
from aezoo.schema import schema, typed_run_spec
from aezoo.specfile import parse, read_config, to_toml

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SETS = ["train.epochs=1", "train.seed=3", "data.limit=128", "train.batch_size=64",
        "model.decoder.params.channels=[8,8,8]", "train.device=cpu"]


@pytest.mark.parametrize("fmt", ["toml", "yaml", "json"])
def test_config_writes_the_complete_resolved_spec(cli, tmp_path, fmt):
    args = [a for s in SETS for a in ("--set", s)]
    result = cli("config", "cae-upsample", "--format", fmt, *args)
    assert result.exit_code == 0, result.output
    path = tmp_path / f"run.{fmt}"
    path.write_text(result.stdout)
    data = read_config(path)
    expected = build_run_spec("cae-upsample", [parse_assignment(s) for s in SETS])
    # Complete: every field of the spec is in the file (TOML leaves out nulls only).
    dumped = expected.model_dump(mode="json")
    for section in ("model", "train", "data"):
        keys = {k for k, v in dumped[section].items() if v is not None or fmt != "toml"}
        assert keys <= set(data[section]), section
    assert data["model"]["encoder"]["params"] == {"channels": [16, 8, 8], "kernel_size": 3}
    # Resolved: reading it back gives the same spec, with or without the variant name.
    assert build_run_spec(None, [data]) == expected
    assert build_run_spec("cae-upsample", [data]) == expected


def test_train_from_the_config_file_reproduces_the_run(cli, tmp_path):
    result = cli("train", "cae-upsample", "--epochs", "1", "--seed", "3", "--limit", "128",
                 "--batch-size", "64", "--set", "model.decoder.params.channels=[8,8,8]",
                 "--device", "cpu", "--out", "direct")
    assert result.exit_code == 0, result.output
    args = [a for s in SETS for a in ("--set", s)]
    (tmp_path / "run.toml").write_text(cli("config", "cae-upsample", *args).stdout)
    result = cli("train", "--config", "run.toml", "--out", "from-file")
    assert result.exit_code == 0, result.output
    direct, again = (json.loads((tmp_path / d / "run.json").read_text())
                     for d in ("direct", "from-file"))
    assert direct == again
    a, b = (load_file(str(tmp_path / d / "model.safetensors")) for d in ("direct", "from-file"))
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)


def test_config_refines_a_partial_file_and_rejects_bad_input(cli, tmp_path):
    (tmp_path / "partial.yaml").write_text("model:\n  variant: cae-strided\ntrain:\n  lr: 0.01\n")
    result = cli("config", "--config", "partial.yaml", "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["model"]["encoder"]["name"] == "strided" and data["train"]["lr"] == 0.01
    result = cli("config", "cae-upsample", "--format", "ini")
    assert result.exit_code == 2 and "unknown format 'ini'" in result.stderr
    result = cli("config")
    assert result.exit_code == 2 and "no model given" in result.stderr
    result = cli("config", "cae-upsampel")
    assert result.exit_code == 2 and "did you mean 'cae-upsample'" in result.stderr


def test_a_null_toml_cannot_express_is_refused_not_silently_changed(tmp_path, monkeypatch, cli):
    with FakeSite(tmp_path / "site", monkeypatch) as site:
        site.add("plug-nhwc", entry_points={"aezoo.variants": {"nhwc": "plug_nhwc:variant"}},
                 modules={"plug_nhwc": variant_source("pool", "upsample", "bce",
                                                      train={"channels_last": True})})
        args = ("config", "nhwc", "--set", "train.channels_last=null")
        result = cli(*args)
        assert result.exit_code == 2
        assert "cannot be written as TOML exactly" in result.stderr
        assert "--format yaml" in result.stderr
        result = cli(*args, "--format", "yaml")
        assert result.exit_code == 0
        again = build_run_spec(None, [yaml.safe_load(result.stdout)])
        assert again.train.channels_last is None


def test_schema_leaves_out_broken_components_with_a_warning(tmp_path, monkeypatch, cli):
    with FakeSite(tmp_path / "site", monkeypatch) as site:
        site.add("plug-raises", version="0.3",
                 entry_points={"aezoo.encoders": {"boom": "plug_boom_mod:encoder"}},
                 modules={"plug_boom_mod": "raise RuntimeError('the plugin is broken')\n"})
        site.add("plug-wrong", entry_points={"aezoo.losses": {"wrong": "plug_wrong_mod:thing"}},
                 modules={"plug_wrong_mod": "thing = object()\n"})
        result = cli("schema")
        assert result.exit_code == 0, result.output
        assert result.stderr.splitlines() == [
            "warning: plugin plug-raises 0.3 failed to load encoder 'boom' (RuntimeError: the "
            "plugin is broken); left out of the schema",
            "warning: plugin plug-wrong 1.0 provides a broken loss 'wrong': "
            "plug_wrong_mod:thing is a object, not a LossComponent; left out of the schema"]
        encoders = json.dumps(json.loads(result.stdout)["$defs"])
        assert "boom" not in encoders and "EncoderPool" in encoders
        monkeypatch.setenv("AEZOO_STRICT_PLUGINS", "1")
        strict = cli("schema")
        assert strict.exit_code == 1 and "failed to load encoder 'boom'" in strict.stderr


# TOML writer: anything JSON-like (the shape of specs and params) survives tomllib.
_scalars = (st.booleans() | st.integers(-2**63, 2**63 - 1) | st.text()
            | st.floats(allow_nan=False))
_values = st.recursive(
    _scalars, lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=8), inner | st.none(), max_size=4), max_leaves=20)
_documents = st.dictionaries(st.text(max_size=8), _values | st.none(), max_size=6)


def _without_none(value):
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value]
    return value


@settings(max_examples=150, deadline=None)
@given(_documents)
def test_toml_writer_round_trips_json_like_data(doc):
    assert tomllib.loads(to_toml(doc)) == _without_none(doc)


def test_toml_writer_special_values():
    doc = {"a": math.inf, "b": -math.inf, "c": 1e-07, "d": 'q"uo\\te\x7f\n', "e": [[1, 2], []],
           "f": [{"x": 1}], "g": {}, "weird key": {"dotted.key": True}}
    assert tomllib.loads(to_toml(doc)) == doc
    assert math.isnan(tomllib.loads(to_toml({"n": math.nan}))["n"])
    with pytest.raises(ValueError, match="null"):
        to_toml({"a": [1, None]})


def test_parse_inverts_each_format():
    assert parse('a = 1\n[b]\nc = "x"\n', "toml") == {"a": 1, "b": {"c": "x"}}
    assert parse("a: [1, 2]\n", "yaml") == {"a": [1, 2]}
    assert parse('{"a": null}', "json") == {"a": None}


def test_schema_types_every_installed_component(cli):
    result = cli("schema")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["$schema"].endswith("2020-12/schema") and doc["title"] == "aezoo run spec"
    model = doc["$defs"]["ModelSpec"]["properties"]
    assert set(model["encoder"]["discriminator"]["mapping"]) >= {"pool", "strided",
                                                                 "aezoo:pool"}
    pool = doc["$defs"]["PoolParams"]["properties"]
    assert pool["channels"]["default"] == [16, 8, 8] and "description" in pool["channels"]
    assert doc["$defs"]["PoolParams"]["additionalProperties"] is False
    # The typed model behind the schema accepts every variant's resolved spec...
    typed = typed_run_spec()
    for name in ("cae-upsample", "cae-strided"):
        typed.model_validate(build_run_spec(name).model_dump(mode="json"))
    # ...and rejects params that do not belong to the chosen component.
    bad = build_run_spec("cae-upsample").model_dump(mode="json")
    bad["model"]["encoder"]["params"]["channels"] = "sixteen"
    with pytest.raises(ValidationError, match="channels"):
        typed.model_validate(bad)


def test_schema_for_a_variant_has_its_values_as_defaults(cli):
    result = cli("schema", "cae-upsample")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["title"] == "aezoo run spec for cae-upsample"
    resolved = build_run_spec("cae-upsample").model_dump(mode="json")
    assert doc["properties"]["model"]["default"] == resolved["model"]
    assert doc["properties"]["train"]["default"]["eps"] == 1e-07
    encoder = doc["$defs"]["EncoderPool"]["properties"]
    assert encoder["name"]["default"] == "pool"
    assert "EncoderStrided" not in doc["$defs"]
    assert schema("cae-upsample") == doc
    result = cli("schema", "nope")
    assert result.exit_code == 2 and "unknown variant 'nope'" in result.stderr


def test_a_fifo_as_config_is_refused_not_read(tmp_path):
    """`aezoo train --config fifo.toml` blocked forever reading it (the timeout only
    guards against that hang)."""
    import os
    import subprocess
    import sys

    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    env = {k: v for k, v in os.environ.items() if k != "AEZOO_DEBUG"}
    done = subprocess.run([sys.executable, "-m", "aezoo", "train", "--config", str(fifo)],
                          capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines == [f"error: config file {fifo} is not a regular file: give a .toml, "
                     ".yaml/.yml or .json file"], done.stderr
