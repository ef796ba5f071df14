"""Params for callbacks and datasets (declared by a pydantic model, set by --set and spec
files, shown by info and schema) and declared dependencies between parts, checked before
any data loads (issue 27, items 9 and 10). Earlier-API callbacks keep working."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from plugin_fixtures import FakeSite

from aezoo.config import run_spec_from
from aezoo.errors import SpecError

PARTS = '''
from pydantic import BaseModel, ConfigDict, Field

from aezoo.data.source import DatasetSource
from aezoo.protocols import (
    CallbackComponent,
    EncoderComponent,
    OptimizerComponent,
    RegularizerComponent,
    ScheduleComponent,
)


class EveryParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    every: int = Field(1, ge=1, description="write a line every N epochs")
    label: str = Field("tick", max_length=20, description="what each line starts with")


class Ticker:
    def __init__(self, params, run_dir):
        self.params, self.run_dir = params, run_dir

    def on_epoch_end(self, trainer, result):
        if result.epoch % self.params.every == 0:
            with open(self.run_dir / "ticks.txt", "a") as f:
                f.write(f"{self.params.label} {result.epoch}\\n")


ticker = CallbackComponent(EveryParams, Ticker, "writes a line every N epochs")
reset = CallbackComponent(EveryParams, Ticker, "belongs with l1",
                          requires=("regularizer:l1",))
reset_own = CallbackComponent(EveryParams, Ticker, "belongs with aezoo's own l1",
                              requires=("regularizer:aezoo:l1",))
reset_other = CallbackComponent(EveryParams, Ticker, "belongs with another plugin's l1",
                                requires=("regularizer:someone-else:l1",))


def old(run_dir):
    """An earlier-API callback: a plain factory of the run directory."""
    return Ticker(EveryParams(label="old"), run_dir)


class FlatParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n: int = Field(64, ge=8, le=4096, description="training images")
    value: int = Field(128, ge=0, le=255, description="every pixel's value")


def _flat(ctx):
    import numpy as np

    from aezoo.data.source import Splits

    images = np.full((ctx.params.n, 1, 28, 28), ctx.params.value, dtype=np.uint8)
    return Splits(train=images, val=images[:16])


def _boom(ctx):
    raise RuntimeError("the data loaded")


flat = DatasetSource("flat", "flat grey images", "CC0", _flat, shape=(1, 28, 28),
                     params=FlatParams)
boom = DatasetSource("boom", "fails to load", "CC0", _boom, shape=(1, 28, 28))


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _commit(params):
    from torch import nn

    class Commit(nn.Module):
        def forward(self, forward):
            return (forward.extras["z_e"] - forward.extras["z_q"]).pow(2).mean()

    return Commit()


commit = RegularizerComponent(NoParams, _commit, "a VQ commitment term", needs=("z_e", "z_q"))


def _vq(params, input_shape):
    import torch

    from aezoo import registry
    from aezoo.protocols import builder

    pool = registry.encoder("pool")
    inner = builder(pool)(pool.params(), input_shape)

    class VQ(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = inner
            self.input_shape, self.latent_shape = inner.input_shape, inner.latent_shape

        def forward(self, x):
            z = self.inner(x)
            return {"latent": z, "indices": z.flatten(2).argmax(2), "commit": z.pow(2).mean()}

    return VQ()


vq = EncoderComponent(NoParams, _vq, "pool, plus the index of each channel's largest cell")


class SlowParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    factor: float = Field(0.5, gt=0, le=1, description="the learning rate's share")


def _slow(params, parameters, train, fused):
    import torch

    return torch.optim.SGD(parameters, lr=train.lr * params.factor)


def _halved(params, train, steps_per_epoch):
    return lambda step: train.lr * params.factor


slow = OptimizerComponent(SlowParams, _slow, "SGD at a share of the learning rate")
halved = ScheduleComponent(SlowParams, _halved, "a constant share of the learning rate")
'''


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    with FakeSite(tmp_path / "site", monkeypatch) as fake:
        fake.add("aezoo-params-test", entry_points={
            "aezoo.callbacks": {"ticker": "pparts:ticker", "reset": "pparts:reset",
                                "old": "pparts:old", "reset-own": "pparts:reset_own",
                                "reset-other": "pparts:reset_other"},
            "aezoo.datasets": {"flat": "pparts:flat", "boom": "pparts:boom"},
            "aezoo.regularizers": {"commit": "pparts:commit"},
            "aezoo.encoders": {"vq": "pparts:vq"},
            "aezoo.optimizers": {"slow": "pparts:slow"},
            "aezoo.schedules": {"halved": "pparts:halved"}},
            modules={"pparts": PARTS})
        yield fake


def _spec(*sets: str, add: tuple[str, ...] = (), drop: tuple[str, ...] = ()) -> Any:
    base = ("train.epochs=2", "train.batch_size=32", "train.device=cpu", "train.images=false",
            "data.name=flat")
    return run_spec_from("cae-upsample", None, None, [*base, *sets], callbacks=(add, drop))


def test_callback_and_dataset_params_reach_them_validated_with_defaults(site: Any,
                                                                        tmp_path: Path) -> None:
    from aezoo.run import train

    spec = _spec("train.callback_params.ticker.every=2", "data.params.n=48", add=("ticker",))
    assert spec.train.callback_params == {"ticker": {"every": 2, "label": "tick"}}
    assert spec.data.params == {"n": 48, "value": 128}
    result = train(spec, tmp_path / "run")
    assert (tmp_path / "run" / "ticks.txt").read_text() == "tick 2\n"
    saved = json.loads((tmp_path / "run" / "run.json").read_text())
    assert saved["train"]["callback_params"]["ticker"]["every"] == 2
    assert saved["data"]["params"]["n"] == 48 and result.history  # 48 images trained
    # Dropping a callback drops its params; an earlier-API callback takes none and works.
    assert _spec("train.callback_params.ticker.every=2", add=("ticker",),
                 drop=("ticker",)).train.callback_params == {}
    again = _spec(add=("old",))
    assert again.train.callback_params == {}
    train(again, tmp_path / "old")
    assert (tmp_path / "old" / "ticks.txt").read_text() == "old 1\nold 2\n"


@pytest.mark.parametrize(("sets", "add", "message"), [
    (["train.callback_params.ticker.every=0"], ["ticker"],
     "invalid train.callback_params.ticker.every: Input should be greater than or equal to 1"),
    (["train.callback_params.ticker.evry=2"], ["ticker"],
     "invalid train.callback_params.ticker.evry: unknown key (did you mean 'every'?)"),
    (["train.callback_params.ticker.every=2"], [],
     "invalid train.callback_params.ticker: no callback 'ticker' is on (on: none)"),
    (["train.callback_params.old.every=2"], ["old"],
     "invalid train.callback_params.old: callback 'old' takes no params"),
    (["data.params.n=4"], [], "invalid data.params.n: Input should be greater than or equal"),
    (["data.name=mnist5k", "data.params.n=4"], [],
     "invalid data.params: dataset 'mnist5k' takes no params"),
])
def test_bad_params_are_one_line_naming_the_key(site: Any, sets: list[str], add: list[str],
                                                message: str) -> None:
    with pytest.raises(SpecError) as caught:
        _spec(*sets, add=tuple(add))
    assert caught.value.problem.startswith(message)


def test_params_from_a_spec_file(site: Any, tmp_path: Path) -> None:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({"model": {"variant": "cae-upsample"},
                                "train": {"callbacks": ["ticker"],
                                          "callback_params": {"ticker": {"label": "t"}}},
                                "data": {"name": "flat", "params": {"value": 7}}}))
    spec = run_spec_from(None, path)
    assert spec.train.callback_params == {"ticker": {"every": 1, "label": "t"}}
    assert spec.data.params == {"n": 64, "value": 7}


def test_info_and_schema_show_callback_and_dataset_params(site: Any, cli: Any) -> None:
    info = cli("info", "ticker")
    assert info.exit_code == 0, info.output
    assert "write a line every N epochs" in info.stdout
    assert "train.callback_params.ticker.PARAM=VALUE" in info.stdout
    flat = cli("info", "flat", "--json")
    assert json.loads(flat.stdout)["params"]["properties"]["n"]["default"] == 64
    doc = json.loads(cli("schema").stdout)
    defs = doc["$defs"]
    callback_params = defs["CallbackParams"]["properties"]
    assert callback_params["ticker"]["anyOf"][0]["$ref"] == "#/$defs/EveryParams"
    assert "FlatParams" in json.dumps(defs["DataSpec"]["properties"]["params"])
    regs = defs["ModelSpec"]["properties"]["regularizers"]["items"]["discriminator"]["mapping"]
    assert {"kl", "l1", "commit"} <= set(regs)
    assert "salt-pepper" in defs["TrainSpec"]["properties"]["corrupt"]["anyOf"][0][
        "discriminator"]["mapping"]


def test_a_callback_without_its_regulariser_is_refused_before_the_data_loads(
        site: Any, cli: Any) -> None:
    from aezoo.run import check_parts

    result = cli("train", "cae-upsample", "--callback", "reset", "--data", "boom")
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines() == [
        "error: callback 'reset' belongs with regularizer 'l1', which this run does not "
        "use: add {'name': 'l1'} to model.regularizers, or drop callback 'reset' "
        "(--no-callback reset)"]
    check_parts(_spec("model.regularizers=[{\"name\": \"l1\"}]", add=("reset",)))  # passes


def test_a_regularizers_missing_extras_are_refused_before_the_data_loads(site: Any,
                                                                         cli: Any) -> None:
    result = cli("train", "cae-upsample", "--data", "boom",
                 "--set", 'model.regularizers=[{"name": "commit"}]')
    assert result.exit_code == 2, result.output
    assert "the data loaded" not in result.output
    assert result.stderr.startswith("error: regularizer 'commit' needs the encoder to return "
                                    "z_e and z_q, which encoder 'pool' does not")


def test_info_of_a_variant_shows_its_regularizers(cli: Any) -> None:
    result = cli("info", "cae-vae")
    assert result.exit_code == 0, result.output
    assert "regularizer 0: kl, weight 0.00127551" in " ".join(result.stdout.split())


def test_the_kit_checks_callbacks_and_datasets_with_params(site: Any) -> None:
    from aezoo.testing import check_callback, check_dataset

    assert check_callback("ticker", params={"every": 3}).params.every == 3
    assert check_callback("old").params.label == "old"  # the earlier API
    data = check_dataset("flat", limit=32, params={"n": 40, "value": 9})
    assert data.train.shape[0] == 32 and int(data.train.max()) == 9


def test_a_dataset_packs_with_its_params(site: Any, tmp_path: Path) -> None:
    from aezoo.data import load_dataset
    from aezoo.data.pack import pack
    from aezoo.specs import DataSpec

    pack(DataSpec(name="flat", params={"n": 24, "value": 5}), tmp_path / "flat")
    data = load_dataset(DataSpec(name=f"packed:{tmp_path / 'flat'}"))
    assert len(data.train) == 24 and int(np.asarray(data.train[:24]).max()) == 5


def test_export_of_a_plugin_encoders_extras(site: Any, cli: Any, tmp_path: Path) -> None:
    import aezoo

    aezoo.save(aezoo.build("cae-upsample", encoder="vq"), tmp_path / "vq.safetensors")
    result = cli("export", str(tmp_path / "vq.safetensors"), "--part", "encoder",
                 "--format", "torchscript", "--out", str(tmp_path / "enc.pt"))
    assert result.exit_code == 0, result.output
    info = json.loads((tmp_path / "enc.pt.json").read_text())
    assert info["parts"]["encoder"]["outputs"] == {"latent": ["batch", 8, 4, 4],
                                                  "indices": ["batch", 8]}
    assert info["parts"]["encoder"]["dtypes"]["indices"] == "int64"
    assert info["extras_left_out"] == ["commit"]


def test_data_info_and_pack_take_and_show_a_sources_params(site: Any, cli: Any,
                                                           tmp_path: Path) -> None:
    info = cli("data", "info", "flat", "--set", "data.params.n=48", "--json")
    assert info.exit_code == 0, info.output
    doc = json.loads(info.stdout)
    assert doc["params"] == {"n": 48, "value": 128}  # given, and the default
    assert sum(s["images"] for s in doc["splits"].values()) == 48 + 16
    text = cli("data", "info", "flat", "--set", "data.params.value=9")
    assert text.exit_code == 0, text.output
    rows = [" ".join(line.split("│")).split() for line in text.stdout.splitlines()]
    assert ["value", "9", "128", "int", "every", "pixel's", "value"] in rows
    assert "set with --set data.params.KEY=VALUE" in text.stdout
    listed = json.loads(cli("data", "list", "--json").stdout)
    by_name = {r["name"]: r["params"] for r in listed}
    assert by_name["flat"] == [{"name": "n", "default": 64}, {"name": "value", "default": 128}]
    assert by_name["boom"] is None
    shown = cli("data", "list").stdout  # the column wraps at 80 columns
    assert "n=64," in shown and "value=128" in shown and "--set data.params.KEY=VALUE" in shown
    packed = cli("data", "pack", "flat", "--out", str(tmp_path / "p"),
                 "--set", "data.params.n=24", "--set", "data.params.value=5")
    assert packed.exit_code == 0, packed.output
    assert "24 train" in packed.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["--set", "data.params.n=4"], "error: invalid data.params.n: Input should be greater"),
    (["--set", "data.params.size=4"], "error: invalid data.params.size: unknown key"),
    (["--set", "train.lr=0.1"], "error: --set train.lr: aezoo data sets only data.KEY "
                                "values: e.g. --set data.params.KEY=VALUE"),
])
def test_data_commands_refuse_bad_params_in_one_line(site: Any, cli: Any, args: list[str],
                                                      message: str) -> None:
    result = cli("data", "info", "flat", *args)
    assert result.exit_code == 2, result.output
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith(message)


def test_requires_may_name_the_distribution_of_the_part(site: Any) -> None:
    from aezoo.run import check_parts

    l1 = "model.regularizers=[{\"name\": \"l1\"}]"
    check_parts(_spec(l1, add=("reset-own",)))  # aezoo's l1, named bare in the run
    check_parts(_spec("model.regularizers=[{\"name\": \"aezoo:l1\"}]", add=("reset-own",)))
    with pytest.raises(SpecError) as caught:  # an l1 is used, but not that distribution's
        check_parts(_spec(l1, add=("reset-other",)))
    assert caught.value.problem == ("callback 'reset-other' belongs with regularizer "
                                    "'someone-else:l1', which this run does not use")


@pytest.mark.parametrize("requires", [("regularizer",), ("regularizer:",), ("regulariser:l1",),
                                      ("regularizer:a:b:c",), ("regularizer::l1",), "l1",
                                      ("dataset:mnist5k",)])  # no run part: never met
def test_a_malformed_requires_is_a_broken_descriptor(requires: Any) -> None:
    from pydantic import BaseModel

    from aezoo.kinds import kind
    from aezoo.protocols import CallbackComponent

    row = kind("callback")
    assert row is not None and row.check is not None
    problem = row.check(CallbackComponent(BaseModel, lambda p, d: None, "x", requires=requires))
    assert problem is not None and problem.startswith("requires must be a tuple of 'KIND:NAME'")
    assert row.check(CallbackComponent(BaseModel, lambda p, d: None, "x",
                                       requires=("regularizer:aezoo:l1",))) is None


def test_every_kind_a_part_may_require_is_one_a_run_uses() -> None:
    from aezoo.config import build_run_spec
    from aezoo.kinds import REQUIRABLE
    from aezoo.objective import used_parts

    assert set(used_parts(build_run_spec("cae-upsample"))) == set(REQUIRABLE)


@pytest.mark.parametrize("variant", [None, "cae-upsample"])
def test_schema_types_optimizer_and_scheduler_params_by_the_chosen_part(
        site: Any, variant: str | None) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    from aezoo.schema import schema

    doc = schema(variant)
    assert "SlowParams" in json.dumps(doc["$defs"]["TrainSpec"]["properties"][
        "optimizer_params"])
    validator = jsonschema.Draft202012Validator({"$defs": doc["$defs"],
                                                "$ref": "#/$defs/TrainSpec"})

    def problems(train: dict[str, Any]) -> list[str]:
        return [e.message for e in validator.iter_errors(train)]

    assert problems({"optimizer": "slow", "optimizer_params": {"factor": 0.25},
                     "scheduler": "aezoo-params-test:halved",
                     "scheduler_params": {"factor": 1}}) == []
    assert problems({"optimizer": "slow", "optimizer_params": {"factor": 2}})  # > 1
    assert problems({"optimizer": "adam", "optimizer_params": {"factor": 0.5}})  # adam's: none
    assert problems({"optimizer_params": {"factor": 0.5}})  # the default optimiser's
    assert problems({"scheduler": "cosine", "scheduler_params": {"factor": 0.5}})
    assert problems({"optimizer": "sgd", "optimizer_params": {}}) == []
    # ...and the spec they stand for resolves (aezoo validates them the same way).
    spec = _spec("train.optimizer=slow", "train.optimizer_params.factor=0.25",
                 "train.scheduler=halved")
    assert spec.train.optimizer_params == {"factor": 0.25}
    assert spec.train.scheduler_params == {"factor": 0.5}


def test_callback_params_change_on_resume_like_other_resumable_settings(
        site: Any, cli: Any, tmp_path: Path) -> None:
    run, late = tmp_path / "run", tmp_path / "late"
    base = ["train", "cae-upsample", "--epochs", "2", "--batch-size", "32", "--device", "cpu",
            "--no-images", "--data", "flat"]
    first = cli(*base, "--callback", "ticker", "--out", str(run))
    assert first.exit_code == 0, first.output
    # One key changes, the others stay the run's own (merged, as --set merges).
    again = cli("train", "--resume", str(run), "--epochs", "4",
                "--set", "train.callback_params.ticker.label=t2",
                "--set", "train.callback_params.ticker.every=2")
    assert again.exit_code == 0, again.output
    assert (run / "ticks.txt").read_text() == "tick 1\ntick 2\nt2 4\n"
    saved = json.loads((run / "run.json").read_text())["train"]["callback_params"]
    assert saved == {"ticker": {"every": 2, "label": "t2"}}
    # A callback added on resume takes the params given with it, not only its defaults.
    assert cli(*base, "--epochs", "1", "--out", str(late)).exit_code == 0
    added = cli("train", "--resume", str(late), "--epochs", "2", "--callback", "ticker",
                "--set", "train.callback_params.ticker.label=late")
    assert added.exit_code == 0, added.output
    assert (late / "ticks.txt").read_text() == "late 2\n"


@pytest.mark.parametrize(("args", "message"), [
    (["--set", "train.callback_params.ticker.every=0"],
     "error: invalid train.callback_params.ticker.every: Input should be greater than or "
     "equal to 1"),
    (["--set", "train.callback_params.nope.every=2"],
     "error: invalid train.callback_params.nope: no callback 'nope' is on (on: ticker)"),
    (["--set", "train.batch_size=8"], "error: batch_size cannot change when resuming"),
    (["--set", "model.loss.name=mse"],
     "error: --set model.loss.name cannot be combined with --resume: a resumed run keeps"),
    (["--set", "train.callbacks=[]"],
     "error: --set train.callbacks cannot be combined with --resume: add or drop callbacks "
     "with --callback / --no-callback"),
])
def test_resume_refuses_bad_callback_params_and_fixed_keys(site: Any, cli: Any, tmp_path: Path,
                                                           args: list[str], message: str) -> None:
    from aezoo.config import build_run_spec

    run = tmp_path / "run"
    run.mkdir()
    spec = build_run_spec("cae-upsample", callbacks=(["ticker"], []))
    (run / "run.json").write_text(spec.model_dump_json())
    result = cli("train", "--resume", str(run), *args)
    assert result.exit_code == 2, result.output
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith(message)
