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

from aezoo import registry

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
    # cae-upsample: pool/upsample/bce; cae-strided: strided/convtranspose/mse
    assert rows == {("encoder", "pool"), ("encoder", "strided"), ("decoder", "upsample"),
                    ("decoder", "convtranspose"), ("loss", "bce"), ("loss", "mse")}
    only = json.loads(cli("list", "cae-upsample", "-c", "--json").stdout)
    assert {r["name"] for r in only} == {"pool", "upsample", "bce"}
    by_name = json.loads(cli("list", "m*", "-c", "--json").stdout)
    assert {r["name"] for r in by_name} == {"mse"}  # a component's own name matches too
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

    from aezoo.cli import _tables

    table = _tables.table([("metric", _tables.ID), ("value", _tables.NUMBER),
                           ("note", _tables.TEXT)])
    number = f"{int('1' * 70):,}"
    table.add_row("images/s", number, "a long note " * 10)
    out = io.StringIO()
    _tables.show(table, Console(file=out, width=80))
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


