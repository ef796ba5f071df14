"""What a new user found the CLI saying that was not quite so: an empty components table,
names cut at 80 columns, help squeezed to 20 characters, and their input edges."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from plugin_fixtures import FakeSite, variant_source
from typer.testing import CliRunner

Cli = Callable[..., Any]

LONG = {"encoder": "an-encoder-with-a-really-quite-long-public-name",
        "decoder": "a-decoder-with-a-really-quite-long-public-name",
        "loss": "a-loss-with-a-long-public-name"}
LONG_VARIANT = "cae-strided-with-a-rather-long-variant-name"
LONG_DIST = "aezoo-plugin-with-a-long-distribution-name"


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSite]:
    with FakeSite(tmp_path / "site", monkeypatch) as s:
        yield s


@pytest.fixture
def narrow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    """``aezoo ARGS`` at 80 columns, piped (CliRunner's streams are not a terminal)."""
    from aezoo.cli import app

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TERMINAL_WIDTH", raising=False)

    def invoke(*args: str) -> Any:
        return CliRunner().invoke(app, list(args), env={"COLUMNS": "80"}, terminal_width=80)

    return invoke


def _long_plugin(site: FakeSite) -> None:
    site.add_components(LONG_DIST, "long_parts", LONG)
    site.add(LONG_DIST + "-variants", entry_points={
        "aezoo.variants": {LONG_VARIANT: "long_variant:variant"}},
        modules={"long_variant": variant_source(LONG["encoder"], LONG["decoder"],
                                                LONG["loss"], input_shape=(1, 8, 8),
                                                param_count=123456789)})


def _whole(word: str, text: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text) is not None


# --- 1. `aezoo list PATTERN --components` -------------------------------------------


def test_list_components_with_a_variant_pattern_shows_those_variants_parts(cli: Cli) -> None:
    result = cli("list", "cae-*", "--components", "--json")
    assert result.exit_code == 0, result.output
    rows = {(r["kind"], r["name"]) for r in json.loads(result.stdout)}
    # cae-upsample: pool/upsample/bce; cae-strided: strided/convtranspose/bce; all adam;
    # the family adds its encoders, decoder, regularisers and the denoiser's transform.
    assert rows == {("encoder", "pool"), ("encoder", "strided"), ("decoder", "upsample"),
                    ("decoder", "convtranspose"), ("loss", "bce"),
                    ("optimizer", "adam"), ("encoder", "gaussian-pool"), ("encoder", "resnet"),
                    ("decoder", "resnet"), ("regularizer", "kl"), ("regularizer", "l1"),
                    ("transform", "gaussian")}
    only = json.loads(cli("list", "cae-upsample", "-c", "--json").stdout)
    assert {r["name"] for r in only} == {"pool", "upsample", "bce", "adam"}
    by_name = json.loads(cli("list", "m*", "-c", "--json").stdout)
    assert {r["name"] for r in by_name} == {"mse", "mask"}  # a part's own name matches too
    table = cli("list", "cae-*", "--components")
    assert "pool" in table.stdout and "convtranspose" in table.stdout
    none = cli("list", "nothing-*", "--components")
    assert none.exit_code == 0 and "no component matches 'nothing-*'" in none.stdout


# --- 2. tables never cut identifiers or numbers -------------------------------------


@pytest.mark.parametrize(("args", "names"), [
    (("list",), [LONG_VARIANT, *LONG.values(), "123,456,789"]),
    (("list", "--components"), [*LONG.values(), LONG_DIST]),
    (("list", LONG_VARIANT, "--components"), [*LONG.values()]),
    (("info", LONG_VARIANT), [LONG_VARIANT, LONG["encoder"], LONG["decoder"]]),
    (("info", LONG["encoder"]), [LONG["encoder"]]),
    (("plugins",), [LONG_DIST, LONG_DIST + "-variants"])])
def test_tables_never_cut_names_at_80_columns(site: FakeSite, narrow: Cli,
                                              args: tuple[str, ...], names: list[str]) -> None:
    _long_plugin(site)
    result = narrow(*args)
    assert result.exit_code == 0, result.output
    assert "…" not in result.stdout
    for name in names:
        assert _whole(name, result.stdout), (name, result.stdout)


@pytest.mark.parametrize(("args", "words"), [
    (("list",), ["cae-strided", "cae-upsample", "16,537", "4,385", "convtranspose"]),
    (("list", "cae-*", "--components"), ["convtranspose", "upsample", "strided"]),
    (("info", "cae-strided"), ["kernel_size", "[16, 32, 8]", "list[int]"]),
    (("data", "list"), ["fashion-mnist", "mnist5k", "folder:PATH"]),
    (("data", "info", "mnist5k"), ["mnist5k", "4,500"]),
    (("plugins",), ["aezoo"])])
def test_first_party_tables_fit_80_columns_uncut(narrow: Cli, args: tuple[str, ...],
                                                 words: list[str]) -> None:
    result = narrow(*args)
    assert result.exit_code == 0, result.output
    assert "…" not in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    for word in words:
        assert _whole(word, result.stdout), word


def test_a_table_wider_than_the_terminal_keeps_numbers_whole() -> None:
    import io

    from rich.console import Console

    from aezoo.cli import tables

    table = tables.table([("metric", tables.ID), ("value", tables.NUMBER),
                           ("note", tables.TEXT)])
    number = f"{int('1' * 70):,}"
    table.add_row("images/s", number, "a long note " * 10)
    out = io.StringIO()
    tables.show(table, Console(file=out, width=80))
    assert number in out.getvalue() and "…" not in out.getvalue()
    assert "a long note" in out.getvalue()


# --- 7. `aezoo train --help` at 80 columns ------------------------------------------


def test_train_help_reads_like_a_manual_at_80_columns(narrow: Cli) -> None:
    from aezoo.cli import app

    result = narrow("train", "--help")
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "…" not in text
    command = typer.main.get_command(app).commands["train"]  # type: ignore[attr-defined]
    for param in command.params:
        for opt in param.opts + param.secondary_opts:
            if opt.startswith("-"):
                assert _whole(opt, text), opt
    precision = text[text.index("--precision"):text.index("--compile")]
    assert "auto" in precision and "bf16" in precision
    assert "<bool>" not in text
    assert "RUN_DIR/state.safetensors" in text
    flat = " ".join(text.replace("│", " ").split())
    assert flat.count("[default: the variant's]") >= 3  # epochs, batch size, lr, loss
    # descriptions get a real column, not ~20 characters
    widths = [len(m.group(1).rstrip()) for m in re.finditer(r"│ --\S+\s+\S*\s+(.*)│", text)]
    assert max(widths) >= 30, widths


def test_train_refuses_both_channels_last_switches(cli: Cli) -> None:
    result = cli("train", "cae-upsample", "--channels-last", "--no-channels-last")
    assert result.exit_code == 2
    assert "contradict each other" in result.stderr




# --- 3. "$schema" in a spec file ----------------------------------------------------


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_a_spec_file_may_point_at_its_schema(cli: Cli, tmp_path: Path, suffix: str) -> None:
    from aezoo.config import run_spec_from

    spec = {"$schema": "./aezoo-schema.json", "model": {"variant": "cae-upsample"},
            "train": {"epochs": 1, "batch_size": 64, "device": "cpu", "images": False},
            "data": {"limit": 128}}
    path = tmp_path / f"run{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps(spec))
    else:
        import yaml

        path.write_text(yaml.safe_dump(spec))
    assert run_spec_from(None, path).train.epochs == 1
    assert cli("config", "--config", str(path)).exit_code == 0
    if suffix == ".json":
        result = cli("train", "--config", str(path), "--out", "run")
        assert result.exit_code == 0, result.output
        assert "$schema" not in (tmp_path / "run" / "run.json").read_text()
    schema = json.loads(cli("schema").stdout)
    assert schema["properties"]["$schema"]["type"] == "string"  # editors accept the key


# --- 4. `aezoo config` (TOML) shows every key ---------------------------------------


def test_toml_config_shows_every_null_key_as_a_comment(cli: Cli, tmp_path: Path) -> None:
    result = cli("config", "cae-upsample")
    assert result.exit_code == 0, result.output
    for key in ("patience", "grad_clip", "checkpoint_every", "limit", "image_size",
                "channels_last", "channels"):
        assert f"# {key} = null  (unset)" in result.stdout, key
    (tmp_path / "run.toml").write_text(result.stdout)
    again = cli("config", "--config", "run.toml")
    assert again.exit_code == 0 and again.stdout == result.stdout  # the round trip holds
    from aezoo.config import build_run_spec
    from aezoo.schema import spec_text

    spec = build_run_spec("cae-upsample", [{"train": {"patience": 3}}])
    assert "patience = 3" in spec_text(spec, "toml")


# --- 8. config files: line and column, and which file -------------------------------


@pytest.mark.parametrize(("name", "text", "where"), [
    ("run.yaml", "model:\n  variant: cae-upsample\ntrain:\n  lr: [1, 2\n  epochs: 3\n",
     "(line 5, column 9)"),
    ("run.json", '{"model": {"variant": "cae-upsample"},\n "train": {"lr": 1,}}',
     "(line 2, column 20)"),
    ("run.toml", "[train\n", "(at line 1, column 7)"),
])
def test_syntax_errors_give_line_and_column(cli: Cli, tmp_path: Path, name: str, text: str,
                                            where: str) -> None:
    from test_cli import assert_one_error_line

    (tmp_path / name).write_text(text)
    assert_one_error_line(cli("train", "--config", name), 2, f"config file {name} is not "
                          "valid", where)


@pytest.mark.parametrize(("text", "words"), [
    ('[model]\nvariant = "cae-upsample"\n[train]\nlrr = 1\n',
     ["invalid train.lrr in run.toml: unknown key (did you mean 'lr'?)"]),
    ('[model]\nvariant = "cae-upsample"\n[training]\nlr = 1\n',
     ["invalid training in run.toml: unknown key (did you mean 'train'?)"]),
    ('[model]\nvariant = "cae-upsample"\n[train]\nlr = -1\n',
     ["invalid train.lr in run.toml: Input should be greater than 0"]),
    ('[model]\nvariant = "cae-upsample"\n[model.encoder.params]\nchanels = [1]\n',
     ["invalid model.encoder.params.chanels in run.toml: unknown key"]),
])
def test_invalid_config_content_names_the_file(cli: Cli, tmp_path: Path, text: str,
                                               words: list[str]) -> None:
    from test_cli import assert_one_error_line

    (tmp_path / "run.toml").write_text(text)
    line = assert_one_error_line(cli("train", "--config", "run.toml"), 2, *words)
    assert "Value error" not in line


def test_a_bad_value_from_a_flag_does_not_blame_the_file(cli: Cli, tmp_path: Path) -> None:
    from test_cli import assert_one_error_line

    (tmp_path / "run.toml").write_text('[model]\nvariant = "cae-upsample"\n[train]\nlr = 1\n')
    line = assert_one_error_line(cli("train", "--config", "run.toml", "--set",
                                     "train.lr=-1"), 2, "invalid train.lr:")
    assert "run.toml" not in line


# --- 9. `--set` with a 5,000-digit integer ------------------------------------------


@pytest.mark.parametrize(("key", "bound"), [("train.seed", "18446744073709551615"),
                                            ("train.epochs", str(2**62)),
                                            ("data.image_size", str(2**20))])
def test_set_with_a_huge_integer_is_a_spec_error(cli: Cli, key: str, bound: str) -> None:
    from test_cli import assert_one_error_line

    line = assert_one_error_line(cli("train", "cae-upsample", "--set", f"{key}=1{'0' * 5000}"),
                                 2, f"invalid {key}", bound, "about 5000 digits")
    assert "unexpected" not in line
    from aezoo.config import parse_assignment

    assert parse_assignment("train.seed=-1" + "0" * 5000)["train"]["seed"] < -10**4990
    assert parse_assignment("train.seed=12")["train"]["seed"] == 12


# --- 5. encode / reconstruct honour --out's extension -------------------------------
# --- 6. a missing path on the command line is a usage error (2) ---------------------
# --- 10. relative data paths work from any directory --------------------------------


@pytest.fixture(scope="module")
def npz_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny run trained from ``first/`` on ``npz:data.npz`` (relative), with labels."""
    import os

    import numpy as np

    from aezoo.cli import app

    root = tmp_path_factory.mktemp("rel")
    first = root / "first"
    first.mkdir()
    rng = np.random.default_rng(0)
    np.savez(first / "data.npz", images=rng.integers(0, 256, (40, 1, 28, 28), dtype=np.uint8),
             labels=np.arange(40) % 4)
    cwd = os.getcwd()
    os.chdir(first)
    try:
        result = CliRunner().invoke(app, ["train", "cae-upsample", "--data", "npz:data.npz",
                                          "--epochs", "1", "--batch-size", "16", "--device",
                                          "cpu", "--no-images", "--out", "run"])
    finally:
        os.chdir(cwd)
    assert result.exit_code == 0, result.output
    return first / "run"


def test_relative_data_paths_are_stored_absolute(npz_run: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from aezoo.cli import app

    stored = json.loads((npz_run / "run.json").read_text())["data"]["name"]
    assert stored == f"npz:{npz_run.parent / 'data.npz'}"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    run = CliRunner().invoke
    report = run(app, ["eval", str(npz_run), "--device", "cpu", "--json"])
    assert report.exit_code == 0, report.output
    assert json.loads(report.stdout)["images"] == 4  # the val split of data.npz
    assert run(app, ["encode", str(npz_run), "--out", "z.npz"]).exit_code == 0
    assert run(app, ["reconstruct", str(npz_run), "--n", "2", "--out", "r.png"]).exit_code == 0
    resumed = run(app, ["train", "--resume", str(npz_run), "--epochs", "2"])
    assert resumed.exit_code == 0, resumed.output


def test_data_paths_in_a_config_file_are_relative_to_the_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from aezoo.config import run_spec_from

    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "run.toml").write_text(
        '[model]\nvariant = "cae-upsample"\n[data]\nname = "folder:imgs"\n')
    monkeypatch.chdir(tmp_path)
    spec = run_spec_from(None, "conf/run.toml")
    assert spec.data.name == f"folder:{tmp_path / 'conf' / 'imgs'}"
    flag = run_spec_from("cae-upsample", None, {"data": {"name": "npy:x.npy"}})
    assert flag.data.name == f"npy:{tmp_path / 'x.npy'}"
    assert run_spec_from("cae-upsample", None, {"data": {"name": "npz:/abs/d.npz"}}
                         ).data.name == "npz:/abs/d.npz"
    assert run_spec_from("cae-upsample").data.name == "mnist5k"


def test_encode_writes_the_format_its_name_says(npz_run: Path, cli: Cli, tmp_path: Path) -> None:
    import numpy as np
    from test_cli import assert_one_error_line

    result = cli("encode", str(npz_run), "--out", "z.npz", "--split", "val")
    assert result.exit_code == 0, result.output
    with np.load(tmp_path / "z.npz", allow_pickle=False) as archive:
        assert sorted(archive.files) == ["labels", "latents"]
        assert archive["latents"].shape[0] == archive["labels"].shape[0] == 4
    assert not (tmp_path / "z.npz.labels.npy").exists()
    assert cli("encode", str(npz_run), "--out", "z.npy").exit_code == 0
    assert np.load(tmp_path / "z.npy").dtype == np.float32
    assert (tmp_path / "z.labels.npy").exists()
    for bad in ("z.txt", "z", "z.npy.gz"):
        assert_one_error_line(cli("encode", str(npz_run), "--out", bad), 2,
                              f"cannot write latents to {bad}", ".npy", ".npz")
        assert not (tmp_path / bad).exists()


def test_reconstruct_writes_png_only(npz_run: Path, cli: Cli, tmp_path: Path) -> None:
    from test_cli import assert_one_error_line

    for bad in ("r.jpg", "r.JPEG", "r"):
        assert_one_error_line(cli("reconstruct", str(npz_run), "--out", bad), 2,
                              f"cannot write a reconstruction grid to {bad}", "NAME.png")
        assert not (tmp_path / bad).exists()
    assert cli("reconstruct", str(npz_run), "--n", "2", "--out", "r.PNG").exit_code == 0
    assert (tmp_path / "r.PNG").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("command", [["eval"], ["reconstruct"], ["encode"],
                                     ["train", "--resume"]])
def test_a_missing_path_on_the_command_line_exits_2(cli: Cli, tmp_path: Path,
                                                    command: list[str]) -> None:
    from test_cli import assert_one_error_line

    assert_one_error_line(cli(*command, "runs/nothere"), 2, "runs/nothere")
    (tmp_path / "empty").mkdir()
    assert_one_error_line(cli(*command, "empty"), 2, "empty")
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    if command[0] != "train":  # a file that is there but broken: a runtime problem (1)
        assert_one_error_line(cli(*command, "junk.safetensors"), 1, "junk.safetensors")


# --- 11. `aezoo new-plugin` refuses names that collide ------------------------------


@pytest.mark.parametrize(("name", "collision"), [
    ("aezoo-cae", "package aezoo_cae, which aezoo itself ships"),
    ("torch", "'torch' is already an installed distribution (torch "),
    ("json", "package json, which is a Python standard-library module"),
    ("site", "package site, which is a Python standard-library module"),
    ("typing-extensions", "already an installed distribution"),
    ("yaml", "package yaml, which is already importable"),  # PyYAML's module, not its name
])
def test_new_plugin_refuses_names_that_collide(cli: Cli, tmp_path: Path, name: str,
                                               collision: str) -> None:
    from test_cli import assert_one_error_line

    assert_one_error_line(cli("new-plugin", name, "--dir", str(tmp_path / "out")), 2,
                          collision)
    assert not (tmp_path / "out").exists()


def test_new_plugin_names_live_in_the_core() -> None:
    from aezoo.scaffold import first_party_packages, names_for

    assert {"aezoo", "aezoo_cae", "aezoo_datasets"} <= first_party_packages()
    assert names_for("aezoo-resnet")["package"] == "aezoo_resnet"


# --- 12. warnings for a batch larger than the data, a warm-up longer than the run ---


def test_training_warnings_from_the_core() -> None:
    from aezoo.doctor import training_warnings
    from aezoo.specs import TrainSpec

    assert training_warnings(TrainSpec(batch_size=64, warmup=10), 1000, 16) == []
    big, = training_warnings(TrainSpec(batch_size=512), 100, 1)
    assert big == ("--batch-size 512 is larger than the training split (100 images): each "
                   "epoch is one step of 100 images")
    long, = training_warnings(TrainSpec(epochs=2, warmup=1000), 1000, 4)
    assert long == ("--warmup 1,000 steps is longer than the whole run (8 steps: 2 epochs "
                    "of 4): the learning rate never reaches --lr")
    assert training_warnings(TrainSpec(epochs=2, warmup=8), 1000, 4) == []  # exactly the run


def test_train_prints_both_warnings(cli: Cli, tmp_path: Path) -> None:
    result = cli("train", "cae-upsample", "--limit", "64", "--batch-size", "512", "--epochs",
                 "1", "--warmup", "1000", "--device", "cpu", "--no-images", "--out", "run")
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2, result.stderr
    assert "--batch-size 512 is larger than the training split" in warnings[0]
    assert "--warmup 1,000 steps is longer than the whole run (1 step: 1 epoch of 1)" \
        in warnings[1]
    quiet = cli("train", "cae-upsample", "--limit", "64", "--batch-size", "16", "--epochs", "1",
                "--device", "cpu", "--no-images", "--out", "quiet")
    assert quiet.exit_code == 0 and "warning:" not in quiet.stderr
