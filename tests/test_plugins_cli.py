"""`aezoo plugins`, and how list/info/train behave around broken and conflicting plugins."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from plugin_fixtures import FakeSite, variant_source

import aezoo
from aezoo import registry

VARIANTS = "aezoo.variants"


@pytest.fixture
def site(tmp_path, monkeypatch):
    with FakeSite(tmp_path / "site", monkeypatch) as s:
        yield s


def _broken(site: FakeSite) -> None:
    """One plugin that raises on import, one with a wrong object, one protocol violation."""
    site.add("plug-raises", version="0.3",
             entry_points={VARIANTS: {"boom": "plug_raises_mod:variant"},
                           "aezoo.datasets": {"boomdata": "plug_raises_data:source"}},
             modules={"plug_raises_mod": "raise RuntimeError('the plugin is broken')\n",
                      "plug_raises_data": "raise ImportError('no data for you')\n"})
    site.add("plug-wrong", entry_points={"aezoo.encoders": {"wrong": "plug_wrong_mod:thing"}},
             modules={"plug_wrong_mod": "thing = object()\n"})
    site.add("plug-shape", entry_points={VARIANTS: {"flat": "plug_shape_mod:variant"}},
             modules={"plug_shape_mod": variant_source("pool", "upsample", "bce",
                                                       input_shape=(28, 28))})


def _twins(site: FakeSite) -> None:
    """Two distributions that both provide variant 'twin' and encoder 'tiny'."""
    for dist in ("plug-a", "plug-b"):
        mod = dist.replace("-", "_")
        site.add_components(dist, f"{mod}_parts", {"encoder": "tiny", "decoder": f"{mod}-dec",
                                                   "loss": f"{mod}-loss"})
        with open(site.root / f"{mod}_v.py", "w") as f:
            f.write(variant_source("tiny", f"{mod}-dec", f"{mod}-loss", input_shape=(1, 8, 8),
                                   description=f"twin from {dist}"))
        site.modules.append(f"{mod}_v")
        info = next(site.root.glob(f"{mod}-*.dist-info"))
        with open(info / "entry_points.txt", "a") as f:
            f.write(f"\n[{VARIANTS}]\ntwin = {mod}_v:variant\n")
    registry.clear_cache()


def test_plugins_lists_distributions_groups_and_every_failure(site, cli):
    _broken(site)
    result = cli("plugins", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    dists = {d["name"]: d for d in data["distributions"]}
    assert dists["aezoo"]["version"] == aezoo.__version__
    assert set(dists["aezoo"]["provides"]["aezoo.variants"]) >= {"cae-upsample", "cae-strided"}
    assert dists["aezoo"]["failures"] == []
    raises = dists["plug-raises"]
    assert raises["version"] == "0.3"
    assert raises["provides"] == {VARIANTS: ["boom"], "aezoo.datasets": ["boomdata"]}
    problems = {f["name"]: f for f in raises["failures"]}
    assert problems["boom"]["reason"] == "import"
    assert problems["boom"]["message"] == "RuntimeError: the plugin is broken"
    assert problems["boomdata"]["message"] == "ImportError: no data for you"
    [wrong] = dists["plug-wrong"]["failures"]
    assert (wrong["reason"], wrong["group"]) == ("type", "aezoo.encoders")
    assert "is a object, not a EncoderComponent" in wrong["message"]
    [shape] = dists["plug-shape"]["failures"]
    assert shape["reason"] == "protocol" and "input_shape" in shape["message"]
    assert data["failures"] == 4 and data["strict"] is False


def test_plugins_table_shows_failures_and_conflicts(site, cli):
    _broken(site)
    _twins(site)
    result = cli("plugins")
    assert result.exit_code == 0, result.output
    out = result.stdout
    for text in ("plug-raises", "0.3", "2 failures", "RuntimeError", "variants: boom",
                 "boomdata", "ok", "failures"):  # table cells may wrap: short phrases
        assert text in out, text
    assert "conflict: variants 'twin' is provided by 2 distributions; use one of " \
           "plug-a:twin, plug-b:twin" in out
    assert "conflict: encoders 'tiny'" in out


def test_strict_mode_makes_failures_fatal(site, cli, monkeypatch):
    _broken(site)
    monkeypatch.setenv("AEZOO_STRICT_PLUGINS", "1")
    result = cli("plugins")
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: 4 plugin failures")
    result = cli("list")
    assert result.exit_code == 1
    [line] = result.stderr.strip().splitlines()
    assert "plug-raises 0.3 failed to load variant 'boom'" in line
    assert "Traceback" not in result.output


def test_a_broken_plugin_never_breaks_list_info_or_plugins(site, cli):
    _broken(site)
    result = cli("list")
    assert result.exit_code == 0, result.output
    assert "cae-upsample" in result.stdout and "boom" not in result.stdout
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2  # boom and flat, once each
    assert sum("'boom'" in w for w in warnings) == 1
    assert "see `aezoo plugins`" in warnings[0]
    result = cli("info", "cae-upsample")
    assert result.exit_code == 0 and "warning" not in result.stderr
    assert cli("plugins").exit_code == 0


def test_aezoo_plugins_env_limits_what_loads(site, cli, monkeypatch):
    _broken(site)
    _twins(site)
    monkeypatch.setenv("AEZOO_PLUGINS", "")
    registry.clear_cache()
    result = cli("list", "--json")
    assert {r["dist"] for r in json.loads(result.stdout)} == {"aezoo"}
    assert "warning" not in result.stderr
    monkeypatch.setenv("AEZOO_PLUGINS", "plug-b,plug-nope")
    registry.clear_cache()
    rows = json.loads(cli("list", "--json").stdout)
    assert [r["name"] for r in rows if r["dist"] == "plug-b"] == ["twin"]  # unambiguous now
    result = cli("plugins", "--json")
    data = json.loads(result.stdout)
    states = {d["name"]: d["enabled"] for d in data["distributions"]}
    assert states == {"aezoo": True, "plug-a": False, "plug-b": True, "plug-raises": False,
                      "plug-shape": False, "plug-wrong": False}
    assert data["failures"] == 0 and data["unknown_in_only"] == ["plug-nope"]
    assert "AEZOO_PLUGINS names 'plug-nope'" in result.stderr


def test_conflicting_names_are_listed_qualified_and_bare_use_errors(site, cli):
    _twins(site)
    rows = json.loads(cli("list", "--json").stdout)
    twins = {r["name"]: r["description"] for r in rows if r["name"].endswith("twin")}
    assert twins == {"plug-a:twin": "twin from plug-a", "plug-b:twin": "twin from plug-b"}
    result = cli("list", "--components", "--json")
    names = {r["name"] for r in json.loads(result.stdout)}
    assert {"plug-a:tiny", "plug-b:tiny", "pool", "plug_a-dec"} <= names
    result = cli("train", "twin", "--epochs", "1")
    assert result.exit_code == 2
    assert "variant 'twin' is provided by 2 distributions: pick one with DIST:NAME " \
           "(plug-a:twin, plug-b:twin)" in result.stderr
    result = cli("info", "tiny")
    assert result.exit_code == 2 and "plug-a:tiny, plug-b:tiny" in result.stderr
    assert cli("info", "plug-b:tiny").exit_code == 0


def test_train_a_qualified_variant_beside_a_broken_plugin_then_load_it(site, cli, tmp_path):
    _broken(site)
    _twins(site)
    out = tmp_path / "run"
    result = cli("train", "plug-b:twin", "--epochs", "1", "--limit", "64", "--batch-size",
                 "32", "--device", "cpu", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "warning" not in result.stderr  # train never touched the broken plugins
    model = aezoo.load(out / "model.safetensors")
    assert model.spec.variant == "plug-b:twin"
    # Bare component names of plug-b's variant were qualified to plug-b's own parts.
    assert model.spec.encoder.name == "plug-b:tiny"
    header = json.loads(aezoo.checkpoint.read_metadata(out / "model.safetensors")
                        ["aezoo.plugins"])
    assert {v["dist"] for v in header.values()} == {"plug-b"}


def test_list_stays_torch_free_and_warns_once_in_a_real_process(site):
    _broken(site)
    code = ("import sys\nfrom aezoo.cli import app\n"
            "try:\n    app(['list'])\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules)\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=site.env(COLUMNS="200"), timeout=120)
    assert run.stdout.strip().splitlines()[-1] == "False"
    assert run.stderr.count("'boom' is unavailable") == 1


def test_plugins_json_survives_a_plugin_that_prints(site):
    site.add("plug-chatty", entry_points={VARIANTS: {"chatty": "plug_chatty_mod:variant"}},
             modules={"plug_chatty_mod": "print('hello')\n"
                      + variant_source("pool", "upsample", "bce")})
    run = subprocess.run([sys.executable, "-m", "aezoo", "plugins", "--json"],
                         capture_output=True, text=True, env=site.env(), timeout=120)
    assert run.returncode == 0, run.stderr
    data = json.loads(run.stdout)
    assert "plug-chatty" in {d["name"] for d in data["distributions"]}
    assert "hello" in run.stderr


def _clean_start(probe: str) -> subprocess.CompletedProcess[str]:
    """Runs ``probe`` in a fresh interpreter; it must exit 0 with no command left out."""
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert "unavailable" not in result.stderr, result.stderr
    return result


def test_a_command_plugin_imported_first_still_registers_whole() -> None:
    """A command module that imports aezoo.cli helpers at its top (the first-party sweep
    plugin does) may be imported before the app exists: the app is made on first use,
    so the plugin's module is never loaded half-way through."""
    probe = ("import aezoo_sweep.cli\n"
             "import typer.main\n"
             "from aezoo.cli import app\n"
             "print(sorted(typer.main.get_command(app).commands))\n")
    result = _clean_start(probe)
    assert "'sweep'" in result.stdout and "'train'" in result.stdout


def test_a_register_that_reads_the_app_gets_the_one_being_built() -> None:
    """A plugin's register(app) that reads ``aezoo.cli.app`` itself gets the app being
    built (as before the app was made lazily), not a second, nested build."""
    probe = ("from aezoo import registry\n"
             "real = registry.load_all\n"
             "calls = []\n"
             "def register(app):\n"
             "    import aezoo.cli\n"
             "    calls.append(aezoo.cli.app is app)\n"
             "    aezoo.cli.app.command('extra')(lambda: None)\n"
             "def load_all(kind):\n"
             "    found = real(kind)\n"
             "    return [*found, (found[0][0], register)] if kind == 'command' else found\n"
             "registry.load_all = load_all\n"
             "import typer.main\n"
             "from aezoo.cli import app\n"
             "print(calls, 'extra' in typer.main.get_command(app).commands)\n")
    result = _clean_start(probe)
    assert result.stdout.split() == ["[True]", "True"], result.stdout
