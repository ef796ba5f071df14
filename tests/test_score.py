"""``aezoo score``: per-image scores equal ``aezoo eval``'s per-image losses; the percentile
threshold flags the expected count; the AUC is the rank statistic; outputs and picture."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import aezoo
from aezoo.cli import app
from aezoo.errors import UsageError
from aezoo.evaluation import evaluate
from aezoo.scoring import roc_auc, score_split

runner = CliRunner()


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("score") / "model.safetensors"
    aezoo.save(aezoo.build("cae-upsample"), path)
    return path


def _invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_scores_are_evals_per_image_losses(model_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "s.json"
    code, stdout, stderr = _invoke("score", str(model_file), "--split", "val", "--limit", "40",
                                   "--out", str(out), "--device", "cpu")
    assert code == 0, stderr
    report = json.loads(out.read_text())
    scores = np.array([r["score"] for r in report["rows"]])
    assert report["metric"] == "bce" and len(scores) == 40  # cae-upsample trains with BCE
    code, stdout, stderr = _invoke("eval", str(model_file), "--split", "val", "--limit", "40",
                                   "--json", "--device", "cpu")
    evaluated = json.loads(stdout)
    assert scores.mean() == pytest.approx(evaluated["bce"], rel=1e-6)
    assert scores.mean() == pytest.approx(evaluated["loss"], rel=1e-5)  # pure-BCE objective
    model = aezoo.load(model_file)
    from aezoo.data import load_dataset
    from aezoo.specs import DataSpec

    val = torch.from_numpy(load_dataset(DataSpec()).val[:40].copy())
    for i in (0, 17, 39):  # each score is eval of a one-image dataset
        assert scores[i] == pytest.approx(evaluate(model, val[i:i + 1]).bce, rel=1e-6)
    assert [r["label"] for r in report["rows"]][:3] == list(load_dataset(DataSpec())
                                                            .val_labels[:3])


def test_percentile_threshold_flags_the_expected_count(model_file: Path) -> None:
    result = score_split(model_file, split="val", metric="mse", device="cpu", percentile=90)
    assert len(result.scores) == 500
    assert result.threshold == pytest.approx(float(np.percentile(result.scores, 90)))
    assert len(result.flagged) == 50  # 10% of the val split scores above its 90th percentile
    assert (result.scores[result.flagged] > result.threshold).all()


def test_csv_npy_picture_and_auc(model_file: Path, tmp_path: Path) -> None:
    out, pic = tmp_path / "s.csv", tmp_path / "worst.png"
    code, stdout, stderr = _invoke("score", str(model_file), "--split", "val", "--out",
                                   str(out), "--threshold-percentile", "99", "--top", "4",
                                   "--picture", str(pic), "--outlier-label", "9",
                                   "--device", "cpu")
    assert code == 0, stderr
    rows = list(csv.DictReader(out.read_text().splitlines()))
    assert list(rows[0]) == ["index", "label", "score", "flagged"] and len(rows) == 500
    assert sum(r["flagged"] == "True" for r in rows) == 5
    assert "5 flagged" in stdout and "ROC AUC" in stdout
    assert pic.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(pic.read_bytes()[16:20], "big"), int.from_bytes(
        pic.read_bytes()[20:24], "big")
    assert width >= 4 * 56 and height >= 3 * 56  # 4 images, 3 rows (image/recon/error), x2
    npy = tmp_path / "s.npy"
    assert _invoke("score", str(model_file), "--split", "val", "--out", str(npy))[0] == 0
    np.testing.assert_allclose(np.load(npy), [float(r["score"]) for r in rows], rtol=1e-12)


def test_roc_auc_is_the_pairwise_rank_statistic() -> None:
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 6, 60).astype(float)  # many ties
    positive = rng.random(60) < 0.3
    pos, neg = scores[positive], scores[~positive]
    pairs = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    assert roc_auc(scores, positive) == pytest.approx(pairs)
    assert roc_auc(np.arange(4.0), np.array([0, 0, 1, 1], bool)) == 1.0
    with pytest.raises(UsageError, match="needs outliers and inliers"):
        roc_auc(np.arange(4.0), np.zeros(4, bool))


@pytest.mark.parametrize("args,says", [
    (["--out", "s.txt"], "cannot write scores to"),
    (["--metric", "psnr"], "unknown metric"),
    (["--threshold-percentile", "101"], "between 0 and 100"),
    (["--picture", "w.png"], "--picture needs --top"),
    (["--outlier-label", "42", "--split", "val"], "needs outliers and inliers"),
])
def test_bad_score_flags(model_file: Path, tmp_path: Path, monkeypatch, args, says) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, stderr = _invoke("score", str(model_file), *args)
    assert code in (1, 2) and says in stderr and len(stderr.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())  # nothing written
