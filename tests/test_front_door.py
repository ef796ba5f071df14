"""Every command has a Python function of its name in ``aezoo`` (score, export, sample,
interpolate, runs, compare, bench), and the small defects a new user met stay fixed."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import aezoo

FAST = {"epochs": 1, "batch_size": 32, "device": "cpu", "verbose": 0, "limit": 128}


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    root = tmp_path_factory.mktemp("front") / "runs"
    plain = aezoo.fit("cae-upsample", out=root / "plain", **FAST)
    noisy = aezoo.fit("cae-denoising", out=root / "noisy", **FAST)
    return plain, noisy


def test_each_command_has_a_function_and_import_stays_cheap() -> None:
    code = ("import sys, aezoo\n"
            "names = ['score', 'export', 'sample', 'interpolate', 'runs', 'compare', 'bench',"
            " 'fit', 'evaluate', 'reconstruct', 'encode']\n"
            "assert all(callable(getattr(aezoo, n)) for n in ['score', 'sample', 'compare'])\n"
            "print('torch' in sys.modules, all(n in aezoo.__all__ for n in names))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.split() == ["False", "True"]
    # the functions own their names: the core modules are records, leaderboard, exporting
    for name in ("runs", "bench", "export"):
        assert getattr(aezoo, name) is getattr(aezoo.api, name)
    import aezoo.exporting as module
    from aezoo.records import list_runs

    assert hasattr(module, "export_run") and callable(list_runs)


def test_python_functions_match_the_commands_defaults() -> None:
    from aezoo.cli import app  # noqa: F401 - registers the commands
    from aezoo.cli.bench import bench_command
    from aezoo.cli.deploy import export_command, score_command
    from aezoo.cli.generate import interpolate_command, sample_command
    from aezoo.cli.runs import runs_command

    # writes happen only with out= in Python (as reconstruct): out is the one difference
    for command, function in ((score_command, aezoo.score), (export_command, aezoo.export),
                              (sample_command, aezoo.sample), (bench_command, aezoo.bench),
                              (interpolate_command, aezoo.interpolate),
                              (runs_command, aezoo.runs)):
        flags = inspect.signature(command).parameters
        params = inspect.signature(function).parameters
        for name, param in params.items():
            flag = {"filter": "pattern", "format": "format"}.get(name, name)
            if flag not in flags or name in ("out", "picture", "model", "verbose"):
                continue
            default = flags[flag].default
            default = getattr(default, "default", default)  # typer's OptionInfo
            if isinstance(default, list):
                default = tuple(default) or None
            ours = param.default
            ours = tuple(ours) or None if isinstance(ours, tuple) else ours
            if isinstance(default, Path):
                default = str(default)
            assert ours == default, f"{function.__name__}({name}=) {ours!r} != {default!r}"


def test_score_sample_interpolate_export_from_python(two_runs: tuple[Any, Any],
                                                     tmp_path: Path) -> None:
    plain, _ = two_runs
    scores = aezoo.score(plain, split="val", threshold_percentile=80, top=4,
                         picture=tmp_path / "worst.png")
    assert scores.flagged is not None and len(scores.flagged) > 1
    flagged = scores.scores[scores.flagged]
    assert (np.diff(flagged) <= 0).all()  # highest score first, as the table lists them
    assert scores.picture == tmp_path / "worst.png" and scores.picture.exists()
    assert not Path("scores.csv").exists()  # nothing written without out=
    strip = aezoo.interpolate(plain, from_=0, to=3, steps=5)
    assert strip.array.ndim in (2, 3) and "5 steps from image 0 to image 3" in repr(strip)
    with pytest.raises(aezoo.UsageError, match="not a variational model"):
        aezoo.sample(plain, n=4)
    exported = aezoo.export(plain, out=tmp_path / "cae.pt", part="encoder")
    assert exported.files["encoder"].exists()


def test_runs_and_compare_from_python(two_runs: tuple[Any, Any]) -> None:
    plain, noisy = two_runs
    root = plain.out_dir.parent
    infos = aezoo.runs(root, sort="name")
    assert [i.name for i in infos] == ["noisy", "plain"]
    assert {i.status for i in infos} == {"completed"}
    assert [i.name for i in aezoo.runs(root, filter="cae-den*")] == ["noisy"]
    both = aezoo.compare(plain, noisy)
    keys = [k for k, _ in both.diff]
    # turning denoising on is one change: one row, not one per parameter
    assert "train.corrupt" in keys and not any(k.startswith("train.corrupt.") for k in keys)
    assert both.picture is None
    assert any("corrupted inputs" in note and "noisy" in note for note in both.notes)


def test_compare_warns_in_the_table(two_runs: tuple[Any, Any], cli: Any) -> None:
    plain, noisy = two_runs
    result = cli("compare", str(plain.out_dir), str(noisy.out_dir), "--no-picture")
    assert result.exit_code == 0, result.output
    assert "note: val_loss of" in result.stdout and "corrupted inputs" in result.stdout
    assert result.stdout.split("note:")[0].count("train.corrupt") == 1


def test_bench_from_python(tmp_path: Path) -> None:
    board = aezoo.bench("cae-upsample", epochs=1, limit=64, batch_size=32, device="cpu",
                        out=tmp_path / "bench", verbose=0)
    assert [row["variant"] for row in board.summary] == ["cae-upsample"]
    assert board.picture is not None and board.picture.exists()


def test_score_lists_flagged_images_by_score(two_runs: tuple[Any, Any], cli: Any) -> None:
    plain, _ = two_runs
    result = cli("score", str(plain.out_dir), "--split", "val", "--threshold-percentile", "50")
    assert result.exit_code == 0, result.output
    table = result.stdout.split("highest score first", 1)[1]
    shown = [float(line.split("│")[-2]) for line in table.splitlines()
             if line.count("│") >= 4 and line.split("│")[-2].strip()[:1].isdigit()]
    assert len(shown) > 2 and shown == sorted(shown, reverse=True)


def test_resume_summary_says_it_covers_this_session(two_runs: tuple[Any, Any], cli: Any,
                                                    tmp_path: Path) -> None:
    import shutil

    run = tmp_path / "again"
    shutil.copytree(two_runs[0].out_dir, run)
    result = cli("train", "--resume", str(run), "--epochs", "2")
    assert result.exit_code == 0, result.output
    took = next(line for line in result.stdout.splitlines() if line.startswith("took "))
    assert "(this session: 1 epoch," in took and "2 epochs in all)" in took


def test_help_shows_words_not_python_types(cli: Any) -> None:
    for argv in (["--help"], ["train", "--help"], ["bench", "--help"], ["compare", "--help"],
                 ["eval", "--help"], ["score", "--help"], ["data", "pack", "--help"]):
        text = cli(*argv, env={"COLUMNS": "80"}).stdout
        for bad in ("<bool>", "<int", "<str>", "<path>", "<list[", "[[", "]...]", "{"):
            assert bad not in text, f"aezoo {' '.join(argv)}: {bad}"
    seed = cli("eval", "--help", env={"COLUMNS": "80"}).stdout
    assert "18446744073709551615" not in seed and "2^64-1" in seed
    train = cli("train", "--help", env={"COLUMNS": "80"}).stdout
    after = train.split("Examples:", 1)[1].splitlines()
    assert after[1].strip() == "" and after[2].strip(), "one blank line after Examples:"
    for scheme in ("packed:PATH", "wds:URL", "hf:REPO"):
        assert scheme in " ".join(train.split()), scheme
    bad = cli("eval", "x", "--seed", str(2**64))
    assert bad.exit_code == 2 and "2^64-1" in bad.output


def test_messages_that_misled(cli: Any) -> None:
    unknown = cli("train", "cae-upsample", "--set", "train.lrr=0.1")
    assert unknown.exit_code == 2
    assert "aezoo config VARIANT" in unknown.output and "docs/specs.md" in unknown.output
    spaced = cli("train", "--set", "train.lr", "0.1")
    assert spaced.exit_code == 2 and "--set train.lr=0.01" in spaced.output
    after_name = cli("train", "cae-upsample", "--set", "train.lr", "0.1")
    assert after_name.exit_code == 2 and "--set train.lr=VALUE" in after_name.output
    typo = cli("trian")
    assert "?: see" not in typo.output and "(see `aezoo --help`)" in typo.output


def test_info_prints_training_defaults_as_keys(cli: Any) -> None:
    result = cli("info", "cae-upsample", env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert "train.lr" in result.stdout and '{"' not in result.stdout
    assert "MaxPool" in result.stdout or "max" in result.stdout.lower()
    words = {w for line in result.stdout.splitlines() for w in line.split()}
    assert "MaxPoo" not in words


def test_a_busy_run_dir_says_wait_when_resuming(tmp_path: Path) -> None:
    from aezoo.rundir import RunLock

    assert "another --out" in RunLock(tmp_path).busy_fix
    assert "another --out" not in RunLock(tmp_path, resuming=True).busy_fix


def test_guide_lists_every_metrics_field() -> None:
    guide = (Path(__file__).parents[1] / "docs" / "guide.md").read_text()
    line = guide[guide.index("`metrics.jsonl` — one JSON line per epoch"):][:500]
    for field in ("`lr`", "`train_TERM`", "`val_TERM`"):
        assert field in line, field
    assert json  # json is used by helpers above


def test_latent_picture_projects_and_names_classes(two_runs: tuple[Any, Any],
                                                    tmp_path: Path, cli: Any) -> None:
    from PIL import Image

    from aezoo import latents

    rng = np.random.default_rng(0)
    codes = rng.normal(size=(60, 4, 2, 2)) * np.linspace(3, 0.1, 16).reshape(1, 4, 2, 2)
    proj = latents.project(codes)
    x = codes.reshape(60, -1) - codes.reshape(60, -1).mean(0)
    top = np.linalg.svd(x, full_matrices=False)[2][:2]
    assert np.allclose(np.abs(proj.points), np.abs(x @ top.T))
    assert proj.axes[0].startswith("PC1 (") and "% of variance" in proj.axes[0]
    labels = np.repeat(np.arange(3), 20)
    image = latents.picture(proj, labels, ["cat", "dog", "bird"], title="t")
    assert image.get_size_inches()[0] * image.dpi > 620  # the legend column
    legend = image.axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["cat (20)", "dog (20)", "bird (20)"]
    plain, _ = two_runs
    encoded = aezoo.encode(plain, split="val", plot=tmp_path / "space.png")
    assert tmp_path / "space.png" in encoded.files and (tmp_path / "space.png").exists()
    with Image.open(tmp_path / "space.png") as drawn:
        assert drawn.size[0] > 620 and drawn.size[1] == 480
    for missing, package in (("umap", "umap-learn"), ("tsne", "scikit-learn")):
        try:
            __import__({"umap": "umap", "tsne": "sklearn"}[missing])
        except ImportError:
            with pytest.raises(aezoo.UsageError, match=package):
                latents.project(codes, missing)
    result = cli("encode", str(plain.out_dir), "--split", "val", "--out", "z.npy", "--plot",
                 "z.png")
    assert result.exit_code == 0, result.output
    assert "wrote z.png (the codes projected to 2-D by pca" in result.stdout
    bad = cli("encode", str(plain.out_dir), "--plot", "z2.png", "--projection", "lda")
    assert bad.exit_code == 2 and "use pca, umap or tsne" in bad.output


def test_curves_put_terms_of_another_scale_in_their_own_panel() -> None:
    from aezoo import curves

    vae = [{"epoch": e, "train_loss": 200 / e + 90, "val_loss": 195 / e + 92,
            "train_recon": 190 / e + 80, "val_recon": 185 / e + 82, "train_kl": 3 + e * 0.4,
            "val_kl": 3.2 + e * 0.4, "lr": 1e-3 / e} for e in range(1, 11)]
    plain = [{k: v for k, v in r.items() if not k.endswith(("_recon", "_kl"))} for r in vae]
    one, two = curves.run_curves(plain), curves.run_curves(vae)

    def height(fig: Any) -> int:
        return int(fig.get_size_inches()[1] * fig.dpi)

    def panels(fig: Any) -> list[str]:
        return [ax.get_ylabel() for ax in fig.axes if ax.get_xlabel() == "epoch"]

    assert panels(one) == ["loss"] and height(one) < curves.HEIGHT + 40
    assert panels(two) == ["loss", "term"]  # kl (~5) apart from the loss (~100)
    assert height(two) > curves.HEIGHT * 3 // 2
    assert [ln.get_label() for ln in two.axes[1].lines] == ["train_kl", "val_kl"]
    same, other = curves.by_scale(vae, ["train_loss", "val_loss", "val_recon", "val_kl"])
    assert other == ["val_kl"] and len(same) == 3
