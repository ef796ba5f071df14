"""The CLI through typer's CliRunner: listing, info, a tiny training run and every error.

This typer's CliRunner keeps the streams apart: ``result.stdout``, ``result.stderr``, and
``result.output`` with both interleaved.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import typer

import aezoo
from aezoo import registry
from aezoo.cli import app

Cli = Callable[..., Any]


def assert_one_error_line(result: Any, exit_code: int, *words: str) -> str:
    """Exit code, exactly one 'error:' line (on stderr, nothing else there), no traceback."""
    assert result.exit_code == exit_code, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)  # handled, not a crash
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("error: "), line
    assert [x for x in result.output.splitlines() if x.startswith("error:")] == [line]
    for word in words:
        assert word in line, (word, line)
    return line


def command_paths() -> Iterator[list[str]]:
    """Every command and sub-command of the app, as argument lists."""
    def walk(command: Any, path: list[str]) -> Iterator[list[str]]:
        subcommands = getattr(command, "commands", None)
        if path:
            yield path
        for name, sub in sorted((subcommands or {}).items()):
            if not getattr(sub, "hidden", False):
                yield from walk(sub, [*path, name])
    yield from walk(typer.main.get_command(app), [])


# --- version and help ------------------------------------------------------------------


def test_version(cli: Cli) -> None:
    result = cli("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"aezoo {aezoo.__version__}"


def test_app_help(cli: Cli) -> None:
    result = cli("--help")
    assert result.exit_code == 0
    for command in ("list", "info", "train"):
        assert command in result.stdout
    assert "autoencoder" in result.stdout


def test_no_arguments_shows_help(cli: Cli) -> None:
    result = cli()
    assert "Usage" in result.output and "train" in result.output


@pytest.mark.parametrize("path", list(command_paths()), ids=" ".join)
def test_every_command_has_help(cli: Cli, path: list[str]) -> None:
    result = cli(*path, "--help")
    assert result.exit_code == 0, result.output
    assert "Usage" in result.stdout
    assert len(result.stdout.split()) > 12, result.stdout  # says something beyond the usage
    assert not result.stderr


def test_train_help_reads_like_a_manual(cli: Cli) -> None:
    text = cli("train", "--help").stdout
    for option in ("--device", "--epochs", "--batch-size", "--lr", "--loss", "--seed",
                   "--data", "--limit", "--out", "--config", "--set", "--force"):
        assert option in text, option
    assert "model.safetensors" in text and "metrics.jsonl" in text and "run.json" in text


# --- list and info ---------------------------------------------------------------------


def test_list_shows_both_variants(cli: Cli) -> None:
    result = cli("list")
    assert result.exit_code == 0, result.output
    for name in ("cae-upsample", "cae-strided"):
        assert name in result.stdout
        assert f"{registry.variant(name).param_count:,}" in result.stdout
    assert "4,385" in result.stdout
    assert "pool" in result.stdout and "bce" in result.stdout


def test_list_pattern(cli: Cli) -> None:
    result = cli("list", "cae-u*")
    assert result.exit_code == 0
    assert "cae-upsample" in result.stdout and "cae-strided" not in result.stdout
    none = cli("list", "zzz-*")
    assert none.exit_code == 0 and "cae-" not in none.stdout
    assert "zzz-*" in none.stdout  # says nothing matched


def test_list_components(cli: Cli) -> None:
    result = cli("list", "--components")
    assert result.exit_code == 0
    for name in ("pool", "strided", "upsample", "convtranspose", "bce", "mse"):
        assert name in result.stdout, name
    as_json = json.loads(cli("list", "--components", "--json").stdout)
    found = {(row["kind"], row["name"]) for row in as_json}
    assert {("encoder", "pool"), ("encoder", "strided"), ("decoder", "upsample"),
            ("decoder", "convtranspose"), ("loss", "bce"), ("loss", "mse")} <= found


def test_list_json(cli: Cli) -> None:
    result = cli("list", "--json")
    assert result.exit_code == 0
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert {"cae-upsample", "cae-strided"} <= set(rows)
    up = rows["cae-upsample"]
    assert (up["encoder"], up["decoder"], up["loss"], up["params"]) == (
        "pool", "upsample", "bce", 4385)
    assert up["input_shape"] == [1, 28, 28]
    assert up["dist"] == registry.find("variant", "cae-upsample").dist
    assert rows["cae-strided"]["params"] == aezoo.build("cae-strided").num_parameters()
    filtered = json.loads(cli("list", "cae-st*", "--json").stdout)
    assert [row["name"] for row in filtered] == ["cae-strided"]


def test_info_variant(cli: Cli) -> None:
    result = cli("info", "cae-upsample")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "1x28x28" in out and "8x4x4" in out and "4,385" in out
    for word in ("pool", "upsample", "bce", "channels", "kernel_size", "[16, 8, 8]",
                 "[8, 8, 16]", "glorot"):
        assert word in out, word
    # Every hyperparameter's description is shown.
    for kind in ("encoder", "decoder"):
        desc = getattr(registry, kind)(getattr(registry.variant("cae-upsample"), kind))
        for field in desc.params.model_fields.values():
            assert field.description.split()[0] in out


def test_info_json(cli: Cli) -> None:
    data = json.loads(cli("info", "cae-upsample", "--json").stdout)
    assert data["params"] == 4385
    assert data["input_shape"] == [1, 28, 28] and data["latent_shape"] == [8, 4, 4]
    assert data["output_shape"] == [1, 28, 28]


def test_info_component(cli: Cli) -> None:
    result = cli("info", "pool")
    assert result.exit_code == 0, result.output
    assert "encoder" in result.stdout and "channels" in result.stdout
    assert "kernel_size" in result.stdout and "[16, 8, 8]" in result.stdout


def test_info_unknown(cli: Cli) -> None:
    assert_one_error_line(cli("info", "cae-upsampel"), 2, "cae-upsampel", "did you mean")


# --- train -----------------------------------------------------------------------------


def test_train_tiny_run(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "tmp"
    result = cli("train", "cae-upsample", "--limit", "256", "--epochs", "1", "--device", "cpu",
                 "--out", str(out))
    assert result.exit_code == 0, result.output
    for name in ("model.safetensors", "metrics.jsonl", "run.json"):
        assert (out / name).is_file(), name
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1
    assert "model.safetensors" in result.stdout  # says where the model went
    assert not result.stderr
    spec = json.loads((out / "run.json").read_text())
    assert spec["data"]["limit"] == 256 and spec["train"]["epochs"] == 1
    assert aezoo.load(out / "model.safetensors").num_parameters() == 4385


def test_train_flags_and_set_reach_the_run(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = cli("train", "cae-strided", "--limit", "64", "--epochs", "1", "--batch-size", "32",
                 "--lr", "0.01", "--seed", "3", "--loss", "bce", "--device", "cpu",
                 "--set", "model.encoder.params.channels=[8,8,8]", "--set", "train.optimizer=sgd",
                 "--out", str(out))
    assert result.exit_code == 0, result.output
    spec = json.loads((out / "run.json").read_text())
    assert spec["train"]["batch_size"] == 32 and spec["train"]["lr"] == 0.01
    assert spec["train"]["seed"] == 3 and spec["train"]["optimizer"] == "sgd"
    assert spec["model"]["loss"]["name"] == "bce"
    assert spec["model"]["encoder"]["params"]["channels"] == [8, 8, 8]


def test_train_flag_table_covers_every_option_and_the_resumable_keys() -> None:
    from aezoo.cli.train import FLAGS
    from aezoo.run import RESUMABLE

    command = typer.main.get_command(app).commands["train"]  # type: ignore[attr-defined]
    options = {opt for p in command.params for opt in p.opts + p.secondary_opts}
    assert options == {"name"} | {f.flag for f in FLAGS if f.flag != "NAME"}
    for f in FLAGS:
        key = f.key
        if key is not None and key.startswith("train.") and key[6:] in RESUMABLE:
            assert f.resume, f.flag  # a resumable setting is passed on with --resume
        if f.resume:
            assert key is not None and key.startswith("train."), f.flag


@pytest.mark.parametrize(("args", "message"), [
    (["--seed", "1", "--data", "mnist"], "--seed, --data cannot be combined with --resume"),
    (["--scheduler", "cosine"], "scheduler cannot change when resuming"),
])
def test_resume_refuses_settings_it_cannot_change(cli: Cli, tmp_path: Path, args: list[str],
                                                  message: str) -> None:
    from aezoo.config import build_run_spec

    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(build_run_spec("cae-upsample").model_dump_json())
    assert_one_error_line(cli("train", "--resume", str(run), *args), 2, message)


def test_train_with_config_file(cli: Cli, tmp_path: Path) -> None:
    config = tmp_path / "run.toml"
    config.write_text('[model]\nvariant = "cae-upsample"\n[train]\nepochs = 1\nlr = 0.005\n'
                      'device = "cpu"\n[data]\nlimit = 64\n')
    out = tmp_path / "run"
    result = cli("train", "--config", str(config), "--lr", "0.002", "--out", str(out))
    assert result.exit_code == 0, result.output
    spec = json.loads((out / "run.json").read_text())
    assert spec["model"]["variant"] == "cae-upsample"
    assert spec["train"]["lr"] == 0.002 and spec["data"]["limit"] == 64


def test_existing_output_is_kept_without_force(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    saved = {"model.safetensors": b"precious weights", "metrics.jsonl": b'{"epoch": 1}\n',
             "run.json": b"{}\n"}
    for name, content in saved.items():
        (out / name).write_bytes(content)
    result = cli("train", "cae-upsample", "--limit", "64", "--epochs", "1", "--device", "cpu",
                 "--out", str(out))
    assert_one_error_line(result, 2, "already exists", "--force")
    for name, content in saved.items():
        assert (out / name).read_bytes() == content, name


def test_force_replaces_the_model(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "model.safetensors").write_bytes(b"old weights")
    result = cli("train", "cae-upsample", "--limit", "64", "--epochs", "1", "--device", "cpu",
                 "--out", str(out), "--force")
    assert result.exit_code == 0, result.output
    assert (out / "model.safetensors").read_bytes() != b"old weights"
    assert aezoo.load(out / "model.safetensors").spec.variant == "cae-upsample"


# --- every error of issue 2, item 8 ----------------------------------------------------


def _malformed_toml(d: Path) -> str:
    (d / "bad.toml").write_text("[train\nlr = 0.1\n")
    return str(d / "bad.toml")


def _malformed_yaml(d: Path) -> str:
    (d / "bad.yaml").write_text("train: [1, 2\n")
    return str(d / "bad.yaml")


def _not_a_mapping(d: Path) -> str:
    (d / "list.json").write_text("[1, 2]")
    return str(d / "list.json")


def _unreadable(d: Path) -> str:
    (d / "dir.json").mkdir()
    return str(d / "dir.json")


ERRORS: list[tuple[str, list[Any], int, list[str]]] = [
    ("unknown-variant", ["train", "cae-upsampel"], 2,
     ["unknown variant 'cae-upsampel'", "did you mean 'cae-upsample'"]),
    ("unknown-variant-no-match", ["train", "qqqq"], 2, ["unknown variant 'qqqq'", "aezoo list"]),
    ("unknown-loss", ["train", "cae-upsample", "--loss", "bcee"], 2,
     ["unknown loss 'bcee'", "did you mean 'bce'"]),
    ("unknown-encoder-set", ["train", "cae-upsample", "--set", "model.encoder.name=pol"], 2,
     ["unknown encoder 'pol'", "did you mean 'pool'"]),
    ("invalid-set-value", ["train", "cae-upsample", "--set", "train.lr=-1"], 2,
     ["train.lr", "-1"]),
    ("invalid-set-type", ["train", "cae-upsample", "--set", "train.epochs=many"], 2,
     ["train.epochs", "many"]),
    ("invalid-set-key", ["train", "cae-upsample", "--set", "model.encoder.params.chanels=[8]"],
     2, ["model.encoder.params.chanels", "unknown key"]),
    ("invalid-set-choice", ["train", "cae-upsample", "--set", "train.optimizer=adamx"], 2,
     ["train.optimizer"]),
    ("bad-set-syntax", ["train", "cae-upsample", "--set", "train.lr"], 2,
     ["--set 'train.lr'", "KEY=VALUE"]),
    ("invalid-flag-value", ["train", "cae-upsample", "--epochs", "0"], 2, ["train.epochs"]),
    ("missing-config", ["train", "cae-upsample", "--config", "nope.toml"], 2,
     ["nope.toml", "cannot read"]),
    ("unreadable-config", ["train", "cae-upsample", "--config", _unreadable], 2,
     ["dir.json", "cannot read"]),
    ("malformed-toml", ["train", "cae-upsample", "--config", _malformed_toml], 2,
     ["bad.toml", "not valid TOML"]),
    ("malformed-yaml", ["train", "cae-upsample", "--config", _malformed_yaml], 2,
     ["bad.yaml", "not valid YAML"]),
    ("config-not-mapping", ["train", "cae-upsample", "--config", _not_a_mapping], 2,
     ["list.json", "mapping"]),
    ("config-unknown-type", ["train", "cae-upsample", "--config", "run.ini"], 2,
     ["run.ini", ".toml"]),
    ("no-model", ["train"], 2, ["no model"]),
    ("conflicting-variants", ["train", "cae-upsample", "--set", "model.variant=cae-strided"], 2,
     ["conflicting variants"]),
    ("unknown-dataset", ["train", "cae-upsample", "--data", "mnist5kk", "--out", "out"], 2,
     ["unknown dataset 'mnist5kk'", "did you mean 'mnist5k'"]),
    ("bad-device-name", ["train", "cae-upsample", "--device", "gpu"], 2, ["train.device"]),
    ("diverged", ["train", "cae-upsample", "--limit", "64", "--batch-size", "32", "--epochs",
                  "1", "--device", "cpu", "--lr", "1e30", "--set", "train.optimizer=sgd",
                  "--out", "diverged"], 1,
     ["the loss became", "--lr"]),
]


@pytest.mark.parametrize(("args", "code", "words"), [e[1:] for e in ERRORS],
                         ids=[e[0] for e in ERRORS])
def test_errors_are_one_line_with_exit_code(cli: Cli, tmp_path: Path, args: list[Any],
                                            code: int, words: list[str]) -> None:
    argv = [a(tmp_path) if callable(a) else a for a in args]
    assert_one_error_line(cli(*argv), code, *words)
    for name in ("runs", "out"):  # nothing started, nothing written
        assert not (tmp_path / name).exists(), name


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_cuda_unavailable(cli: Cli, tmp_path: Path, device: str) -> None:
    result = cli("train", "cae-upsample", "--device", device, "--out", str(tmp_path / "run"))
    assert_one_error_line(result, 2, "CUDA is not available", "--device cpu")
    assert not (tmp_path / "run").exists()


def test_debug_shows_the_real_exception(cli: Cli) -> None:
    from aezoo.errors import UnknownNameError

    result = cli("train", "cae-upsampel", env={"AEZOO_DEBUG": "1"})
    assert result.exit_code != 0
    assert isinstance(result.exception, UnknownNameError)


def test_an_input_shape_set_explicitly_must_match_the_data(cli, tmp_path):
    """--set model.input_shape is kept, never silently replaced by the data's shape."""
    result = cli("train", "cae-upsample", "--set", "model.input_shape=[3,32,32]",
                 "--epochs", "1", "--limit", "64", "--out", str(tmp_path / "run"))
    assert result.exit_code == 2
    assert "model.input_shape is 3x32x32 but dataset mnist5k has 1x28x28" in result.stderr
    assert not (tmp_path / "run").exists()
    ok = cli("train", "cae-upsample", "--set", "model.input_shape=[1,28,28]", "--epochs", "1",
             "--limit", "64", "--no-images", "--out", str(tmp_path / "ok"))
    assert ok.exit_code == 0, ok.output
