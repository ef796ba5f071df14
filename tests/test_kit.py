"""The conformance kit's checks of metrics, regularisers, datasets, commands, callbacks and
exact resume, run on aezoo's own parts (and shown to fail on broken ones)."""

from __future__ import annotations

import pytest

from aezoo.testing import (
    check_callback,
    check_command,
    check_dataset,
    check_metric,
    check_regularizer,
    check_resume,
)


@pytest.mark.parametrize("name", ["l1", "kl", "orthogonal"])
def test_first_party_regularizers_conform(name):
    check_regularizer(name)


def test_first_party_dataset_command_and_callbacks_conform():
    data = check_dataset("mnist5k", limit=32)
    assert data.shape == (1, 28, 28)
    check_command("zoo")
    for name in ("metrics", "status", "early-stopping"):
        check_callback(name)


def test_a_metric_with_its_direction_backwards_is_caught(monkeypatch):
    import torch

    from aezoo import registry
    from aezoo.protocols import MetricComponent

    def mean_error(recon, target):
        return (recon - target).abs().flatten(1).mean(1)

    good = MetricComponent(mean_error, "mean absolute error")
    wrong = MetricComponent(mean_error, "claims higher is better", higher_is_better=True)
    scalar_list = MetricComponent(lambda r, t: [1.0] * len(r), "not a tensor")
    for desc, ok in ((good, True), (wrong, False), (scalar_list, False)):
        monkeypatch.setattr(registry, "load", lambda kind, name, d=desc: d)
        monkeypatch.setattr("aezoo.testing.kit.check_torch_free", lambda refs: None)
        if ok:
            check_metric("mae", torch_free=False)
        else:
            with pytest.raises(AssertionError):
                check_metric("mae", torch_free=False)
    assert torch.is_tensor(mean_error(torch.zeros(2, 1, 2, 2), torch.ones(2, 1, 2, 2)))


@pytest.mark.parametrize("variant", ["cae-upsample", "cae-vae"])
def test_first_party_variants_resume_exactly(variant, tmp_path):
    check_resume(variant, tmp_path, limit=64)


def test_plugins_md_names_every_kind_check_torch_free_takes():
    import re
    from pathlib import Path

    from aezoo.kinds import KINDS

    text = (Path(__file__).parents[1] / "docs" / "plugins.md").read_text()
    listed = re.search(r"`check_torch_free` takes `\(KIND, NAME\)` pairs, KIND one of the "
                       r"entry-point\s+kinds: (.*?)\.", text, re.S)
    assert listed is not None
    assert re.findall(r"`(\w+)`", listed.group(1)) == [k.name for k in KINDS]
