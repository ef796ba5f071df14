"""The conformance check of a declared weight set (``aezoo.weights`` entry points)."""

from __future__ import annotations

import math
from typing import Any

from aezoo.weightset import WeightSet

# The metrics a weight set declares, compared with what its file measures now. The same
# weights on another CPU differ in the last bits of a sum over thousands of pixels.
_COMPARED = ("mse", "bce", "psnr", "ssim", "loss")
REL_TOLERANCE = 1e-4


def check_weight_set(name: str, data: str | None = None, *, limit: int | None = None,
                     rel: float = REL_TOLERANCE) -> dict[str, Any]:
    """``name`` (``VARIANT.TAG``) loads, its file has the declared SHA-256, the model is the
    declared variant, and on ``data`` (default: its recipe's dataset) it measures what it
    declares within ``rel``. ``limit`` (a quick check on the first N images) skips the
    metric comparison, which holds for the declared split only. Returns the measured
    metrics (as ``aezoo eval --json``)."""
    from aezoo.evaluation import evaluate, load_split
    from aezoo.pretrained import weight_set

    ws: WeightSet = weight_set(name)  # raises when it declares another name
    split = ws.metrics.get("split")
    loaded = load_split(name, data, split if isinstance(split, str) else None, limit, "cpu")
    variant = loaded.model.spec.variant
    assert variant == ws.variant, f"{name}: the file holds a {variant}, not a {ws.variant}"
    measured = {"data": loaded.data_name, "split": loaded.split,
                **evaluate(loaded.model, loaded.images, 1024, loaded.memory_format).as_dict()}
    if limit is None and (data is None or data == ws.dataset):
        wrong = []
        for key in _COMPARED:
            want, got = ws.metrics.get(key), measured.get(key)
            if want is None and got is None:
                continue
            if want is None or got is None or not math.isclose(got, want, rel_tol=rel):
                wrong.append(f"{key} {got} (declared {want})")
        assert not wrong, f"{name} does not measure what it declares: {'; '.join(wrong)}"
    return measured
