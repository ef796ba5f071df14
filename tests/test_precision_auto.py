"""precision=auto: bf16 only where it was measured faster (CPUs with AMX), fp32 elsewhere."""

from __future__ import annotations

import json

import pytest
import torch

from aezoo.specs import TrainSpec
from aezoo.training import Trainer, precision

CPU = torch.device("cpu")


def test_auto_is_the_default():
    assert TrainSpec().precision == "auto"


@pytest.mark.parametrize("native", [True, False])
def test_auto_picks_bf16_only_on_cpus_with_native_bf16(monkeypatch, native):
    monkeypatch.setattr(precision, "native_cpu_bf16", lambda: native)
    assert precision.resolve_precision("auto", CPU) == ("bf16" if native else "32")
    assert precision.autocast_dtype("auto", CPU) == (torch.bfloat16 if native else None)


@pytest.mark.parametrize(("flags", "bf16"), [
    ({"avx2", "fma"}, False),                              # AVX2 only: bf16 emulated
    ({"avx512f", "avx512_bf16", "avx512_fp16"}, False),    # measured 1.17x slower than fp32
    ({"avx512f", "avx512_bf16", "amx_tile", "amx_bf16"}, True),  # measured ~2.4x faster
])
def test_auto_picks_bf16_only_where_it_was_measured_faster(monkeypatch, flags, bf16):
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset(flags))
    assert precision.native_cpu_bf16() is bf16


def test_cpu_flags_are_read_from_the_os():
    flags = precision.cpu_flags()
    assert isinstance(flags, frozenset)
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        pytest.skip("no /proc/cpuinfo on this OS: auto stays fp32")
    line = next(ln for ln in text.splitlines() if ln.startswith("flags"))
    assert flags == frozenset(line.split(":", 1)[1].split())


@pytest.mark.parametrize("explicit", ["32", "bf16"])
def test_an_explicit_precision_is_kept(monkeypatch, explicit):
    monkeypatch.setattr(precision, "native_cpu_bf16", lambda: True)
    assert precision.resolve_precision(explicit, CPU) == explicit


def test_auto_never_picks_bf16_off_cpu(monkeypatch):
    monkeypatch.setattr(precision, "native_cpu_bf16", lambda: True)
    assert precision.resolve_precision("auto", torch.device("meta")) == "32"


def test_the_run_says_which_precision_it_trains_in(cli, tmp_path, monkeypatch):
    monkeypatch.setattr(precision, "native_cpu_bf16", lambda: False)
    result = cli("train", "cae-upsample", "--limit", "256", "--epochs", "1", "--no-images",
                 "--out", str(tmp_path / "run"))
    assert result.exit_code == 0, result.output
    assert "precision 32 (auto)" in result.output
    assert json.loads((tmp_path / "run" / "run.json").read_text())["train"]["precision"] == "auto"


def test_training_flushes_denormals_to_zero():
    """Denormals make x86 up to 4x slower; the trainer flushes them as TensorFlow does."""
    import aezoo
    from aezoo.data import load_dataset
    from aezoo.specs import DataSpec

    torch.set_flush_denormal(False)
    tiny = torch.tensor([1e-39], dtype=torch.float32)
    assert (tiny * 1.0).item() != 0.0  # a denormal survives by default
    data = load_dataset(DataSpec(limit=64))
    Trainer(aezoo.build("cae-upsample"), data, TrainSpec(epochs=1, device="cpu"))
    assert (tiny * 1.0).item() == 0.0
