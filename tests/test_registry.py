"""The entry-point registry: discovery, lazy loading, conflicts, broken plugins, filters."""

from __future__ import annotations

import sys
from importlib import metadata

import pytest
from plugin_fixtures import FakeSite, variant_source

import aezoo
from aezoo import doctor, registry
from aezoo.config import build_run_spec
from aezoo.errors import PluginError, UnknownNameError, UsageError

VARIANTS = "aezoo.variants"


@pytest.fixture
def site(tmp_path, monkeypatch):
    with FakeSite(tmp_path / "site", monkeypatch) as s:
        yield s


def test_first_party_plugins_come_from_entry_points_with_their_version():
    entry = registry.find("variant", "cae-upsample")
    assert (entry.dist, entry.version) == ("aezoo", metadata.version("aezoo"))
    assert entry.value == "aezoo_cae.variants:cae_upsample"
    assert {"pool", "strided"} <= set(registry.names("encoder"))
    assert registry.names("variant", "cae-*") == ["cae-denoising", "cae-resnet", "cae-sparse",
                                                  "cae-strided", "cae-upsample", "cae-vae"]


def test_listing_reads_metadata_only(site):
    site.add("plug-lazy", entry_points={VARIANTS: {"lazy": "plug_lazy_mod:variant"}},
             modules={"plug_lazy_mod": "raise RuntimeError('imported!')\n"})
    assert "lazy" in registry.names("variant")
    assert registry.find("variant", "lazy").dist == "plug-lazy"
    assert "plug_lazy_mod" not in sys.modules
    assert registry.failures() == []


def _twins(site, first="plug-a", second="plug-b"):
    for dist in (first, second):
        mod = f"{dist.replace('-', '_')}_twin"
        site.add(dist, entry_points={VARIANTS: {"twin": f"{mod}:variant"}},
                 modules={mod: variant_source("pool", "upsample", "bce",
                                              description=f"from {dist}")})


def test_a_conflict_keeps_both_and_needs_a_qualified_name(site):
    _twins(site)
    assert registry.names("variant").count("twin") == 1
    assert [e.dist for e in registry.conflicts("variant")["twin"]] == ["plug-a", "plug-b"]
    assert registry.load("variant", "plug-b:twin").description == "from plug-b"
    assert registry.load("variant", "Plug_A:twin").description == "from plug-a"
    with pytest.raises(UsageError) as err:
        registry.find("variant", "twin")
    assert "provided by 2 distributions" in str(err.value)
    assert "plug-a:twin, plug-b:twin" in str(err.value)
    with pytest.raises(UnknownNameError, match="plug-a:twin, plug-b:twin"):
        registry.find("variant", "plug-c:twin")


def test_conflicts_do_not_depend_on_sys_path_order(tmp_path, monkeypatch):
    outcomes = []
    for order in (("one", "two"), ("two", "one")):
        with monkeypatch.context() as mp:
            sites = {}
            for name in order:  # prepending: the last added comes first on sys.path
                sites[name] = FakeSite(tmp_path / f"{order[0]}-{name}", mp).__enter__()
            _twins(sites["one"], "plug-a", "plug-x")
            _twins(sites["two"], "plug-b", "plug-y")
            with pytest.raises(UsageError) as err:
                registry.find("variant", "twin")
            outcomes.append((registry.entries("variant"), str(err.value)))
            for s in sites.values():
                s.__exit__()
    assert outcomes[0] == outcomes[1]


def test_a_distribution_visible_twice_counts_once(tmp_path, monkeypatch):
    with FakeSite(tmp_path / "a", monkeypatch) as a, FakeSite(tmp_path / "b", monkeypatch) as b:
        for s in (a, b):
            s.add("plug-dup", entry_points={VARIANTS: {"dup": "plug_dup_mod:variant"}})
        assert len([e for e in registry.entries("variant") if e.name == "dup"]) == 1
        registry.find("variant", "dup")


def test_import_errors_are_recorded_once_and_name_the_plugin(site):
    site.add("plug-broken", version="2.1",
             entry_points={VARIANTS: {"broken": "plug_broken_mod:variant"}},
             modules={"plug_broken_mod": "import not_a_module_anywhere\n"})
    for _ in range(2):
        with pytest.raises(PluginError) as err:
            registry.load("variant", "broken")
    assert "plug-broken 2.1" in str(err.value) and "not_a_module_anywhere" in str(err.value)
    [failure] = registry.failures()
    assert failure.reason == "import" and failure.entry.dist == "plug-broken"
    assert failure.message.startswith("ModuleNotFoundError")
    # Other plugins keep working.
    assert registry.variant("cae-upsample").encoder == "pool"


@pytest.mark.parametrize(("source", "reason", "phrase"), [
    ("variant = 42\n", "type", "is a int, not a Variant"),
    (variant_source("pool", "upsample", "bce", input_shape=(1, 28)), "protocol", "input_shape"),
    (variant_source("pool", "", "bce"), "protocol", "decoder must be a component name"),
    (variant_source("pool", "upsample", "bce", param_count=-3), "protocol", "param_count"),
    ("import sys\nsys.exit(3)\n", "import", "SystemExit"),
])
def test_wrong_objects_and_protocol_violations_are_failures(site, source, reason, phrase):
    site.add("plug-bad", entry_points={VARIANTS: {"bad": "plug_bad_mod:variant"}},
             modules={"plug_bad_mod": source})
    with pytest.raises(PluginError, match="plug-bad"):
        registry.load("variant", "bad")
    [failure] = registry.failures()
    assert failure.reason == reason and phrase in failure.message


def test_a_component_with_a_non_pydantic_params_is_a_protocol_violation(site):
    site.add("plug-enc", entry_points={"aezoo.encoders": {"odd": "plug_enc_mod:enc"}},
             modules={"plug_enc_mod": "from aezoo.protocols import EncoderComponent\n"
                                      "enc = EncoderComponent(params=dict, build=print)\n"})
    with pytest.raises(PluginError, match="not a pydantic BaseModel"):
        registry.load("encoder", "odd")


def test_a_plugin_printing_on_import_does_not_touch_stdout(site, capsys):
    site.add("plug-chatty", entry_points={VARIANTS: {"chatty": "plug_chatty_mod:variant"}},
             modules={"plug_chatty_mod": "print('hello from a plugin')\n"
                      + variant_source("pool", "upsample", "bce")})
    registry.load("variant", "chatty")
    out, err = capsys.readouterr()
    assert out == "" and "hello from a plugin" in err


def test_aezoo_plugins_selects_distributions(site, monkeypatch):
    _twins(site)
    monkeypatch.setenv("AEZOO_PLUGINS", "plug-b, not-installed")
    registry.clear_cache()
    assert registry.find("variant", "twin").dist == "plug-b"  # no conflict left
    assert "cae-upsample" in registry.names("variant")  # first party always loads
    assert registry.unknown_allowed() == ["not-installed"]
    with pytest.raises(UnknownNameError, match="plug-a.*AEZOO_PLUGINS"):
        registry.find("variant", "plug-a:twin")
    monkeypatch.setenv("AEZOO_PLUGINS", "")
    registry.clear_cache()
    assert {e.dist for e in registry.entries("variant")} == {"aezoo"}
    dists = {d.name: d for d in registry.distributions()}
    assert dists["aezoo"].enabled and not dists["plug-a"].enabled
    assert dists["plug-a"].provides == {VARIANTS: ("twin",)}


def test_strict_mode_reads_the_environment(monkeypatch):
    monkeypatch.setenv("AEZOO_STRICT_PLUGINS", "1")
    assert registry.strict()
    monkeypatch.setenv("AEZOO_STRICT_PLUGINS", "0")
    assert not registry.strict()


def test_groups_include_every_aezoo_prefixed_group(site):
    site.add("plug-extra", entry_points={"aezoo.exporters": {"onnx": "x:y"},
                                         "other.group": {"skip": "x:y"}})
    assert "aezoo.exporters" in registry.groups()
    assert registry.groups()[:6] == ["aezoo.encoders", "aezoo.decoders", "aezoo.losses",
                                     "aezoo.variants", "aezoo.regularizers",
                                     "aezoo.transforms"]  # the order of aezoo/kinds.py
    [dist] = [d for d in registry.distributions() if d.name == "plug-extra"]
    assert dist.provides == {"aezoo.exporters": ("onnx",)}


def test_a_variant_means_its_own_components_when_names_collide(site):
    site.add_components("plug-own", "plug_own_parts", {"loss": "bce", "encoder": "mine"})
    site.add("plug-own-v", entry_points={VARIANTS: {"own": "plug_own_v:variant"}},
             modules={"plug_own_v": variant_source("mine", "upsample", "bce")})
    # The same distribution provides the variant and its parts:
    site.add("plug-both", entry_points={
        VARIANTS: {"both": "plug_both_v:variant"},
        "aezoo.losses": {"bce": "plug_own_parts:loss"}},
        modules={"plug_both_v": variant_source("pool", "upsample", "bce")})
    # First-party cae-upsample keeps aezoo's bce although two plugins add a 'bce'.
    assert registry.variant("cae-upsample").loss == "aezoo:bce"
    spec = build_run_spec("cae-upsample")
    assert spec.model.loss.name == "aezoo:bce"
    assert registry.variant("both").loss == "plug-both:bce"
    # plug-own-v uses 'bce' from elsewhere: ambiguous, so an error listing the choices.
    with pytest.raises(UsageError, match="aezoo:bce, plug-both:bce, plug-own:bce"):
        build_run_spec("own")


def test_check_all_reports_presets_that_do_not_resolve(site):
    site.add("plug-preset", entry_points={VARIANTS: {
        "typo": "plug_preset_a:variant", "ghost": "plug_preset_b:variant"}},
        modules={"plug_preset_a": variant_source("pool", "upsample", "bce",
                                                 encoder_params={"chanels": [4]}),
                 "plug_preset_b": variant_source("nowhere", "upsample", "bce")})
    failures = {f.entry.name: f for f in doctor.check_plugins()}
    assert set(failures) == {"typo", "ghost"}
    assert failures["typo"].reason == "spec" and "chanels" in failures["typo"].message
    assert "unknown encoder 'nowhere'" in failures["ghost"].message


def test_clear_cache_sees_new_installs(site):
    assert "late" not in registry.names("variant")
    site.add("plug-late", entry_points={VARIANTS: {"late": "plug_late_mod:variant"}},
             modules={"plug_late_mod": variant_source("pool", "upsample", "bce")})
    assert "late" in aezoo.list_variants()


def test_a_saved_model_still_loads_after_another_plugin_takes_its_component_names(
        site, tmp_path):
    """The header says which distribution provided each part: a later same-named part
    from another plugin neither breaks nor hijacks the load."""
    model = aezoo.build("cae-upsample")
    path = aezoo.save(model, tmp_path / "m.safetensors")
    site.add_components("plug-clash", "plug_clash_parts",
                        {"encoder": "pool", "decoder": "upsample", "loss": "bce"})
    with pytest.raises(UsageError, match="pick one"):
        registry.find("encoder", "pool")
    loaded = aezoo.load(path)
    assert loaded.spec.encoder.name == "aezoo:pool"
    for key, tensor in model.state_dict().items():
        assert loaded.state_dict()[key].equal(tensor)
