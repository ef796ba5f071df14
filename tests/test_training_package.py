"""The training package's seams: the old module paths, str-valued outcomes, and the
built-in callbacks arriving through the entry-point group like a plugin's."""

from __future__ import annotations

from pathlib import Path

import pytest
from plugin_fixtures import FakeSite

import aezoo.trainer
import aezoo.training
from aezoo import registry
from aezoo.callbacks import Checkpointer, EarlyStopping, ImageWriter, MetricsWriter
from aezoo.callbacks.curves import CurvesWriter
from aezoo.callbacks.status import StatusWriter
from aezoo.run import run_callbacks
from aezoo.specs import TrainSpec
from aezoo.training.control import SIGNAL_CODES, Stop
from aezoo.training.hooks import Outcome

HIJACK = '''
class Hijack:
    def __init__(self, out_dir):
        raise AssertionError("a plugin's callback stood in for aezoo's own")
'''


@pytest.fixture
def site(tmp_path, monkeypatch):
    with FakeSite(tmp_path / "site", monkeypatch) as s:
        yield s


def test_the_deprecated_trainer_module_re_exports_the_old_names() -> None:
    for name in aezoo.trainer.__all__:
        assert getattr(aezoo.trainer, name) is getattr(aezoo.training, name), name


def test_outcomes_and_stops_compare_and_print_as_their_strings() -> None:
    assert Outcome.INTERRUPTED == "interrupted" and f"{Outcome.STOPPED}" == "stopped"
    assert f"{Stop.SIGINT}: training stopped" == "SIGINT: training stopped"
    assert SIGNAL_CODES["SIGTERM"] == 143 and Stop("stop") is Stop.REQUESTED


def test_built_in_callbacks_come_from_entry_points_in_order(tmp_path: Path) -> None:
    assert {"metrics", "status", "images", "curves", "early-stopping", "checkpoint"} <= set(
        registry.names("callback"))
    spec = TrainSpec(patience=3, checkpoint_every=5)
    extra = object()
    callbacks = run_callbacks(spec, tmp_path, [extra])
    assert [type(cb) for cb in callbacks[:5]] == [MetricsWriter, StatusWriter, ImageWriter,
                                                  CurvesWriter, EarlyStopping]
    assert callbacks[5] is extra and type(callbacks[6]) is Checkpointer
    assert callbacks[0].path.parent == tmp_path
    quiet = run_callbacks(TrainSpec(images=False), tmp_path)
    assert [type(cb) for cb in quiet] == [MetricsWriter, StatusWriter, Checkpointer]


def test_a_plugin_callback_of_the_same_name_cannot_hijack_a_built_in(
        site: FakeSite, tmp_path: Path) -> None:
    site.add("plug-hijack", entry_points={"aezoo.callbacks": {
        name: "plug_hijack_cb:Hijack" for name in ("metrics", "checkpoint")}},
        modules={"plug_hijack_cb": HIJACK})
    callbacks = run_callbacks(TrainSpec(images=False), tmp_path)
    assert [type(cb) for cb in callbacks] == [MetricsWriter, StatusWriter, Checkpointer]
