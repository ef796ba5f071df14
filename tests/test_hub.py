"""``hf://`` models, ``aezoo push`` and ``aezoo pull`` through the real ``huggingface_hub``
client against a server on 127.0.0.1 that speaks the Hub's protocol (tests/hub_server.py).

What is exercised here: the client's downloads (resolve, ETag, commit hash, cache, offline
mode, revisions, errors) and its uploads of small files (create repo, branch, preupload,
commit). Not exercised: LFS/Xet uploads of large files and the real Hub's authentication.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("huggingface_hub")

from hub_server import FakeHub  # noqa: E402

import aezoo  # noqa: E402
from aezoo.hub import parse  # noqa: E402
from aezoo.pretrained import weight_set, weights_file  # noqa: E402

SHIPPED = "cae-upsample.mnist5k"


def run(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aezoo", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture
def hub(tmp_path):
    with FakeHub() as server:
        server.env = {**{k: v for k, v in os.environ.items() if not k.startswith("HF_")},
                      "HF_ENDPOINT": server.url, "HF_HOME": str(tmp_path / "hf"),
                      "HF_HUB_DISABLE_TELEMETRY": "1", "AEZOO_HUB_TIMEOUT": "2"}
        yield server


def shipped_folder() -> dict[str, bytes]:
    root = weights_file(weight_set(SHIPPED)).parent
    return {p.name: p.read_bytes() for p in root.iterdir() if p.is_file()}


def one_line_error(done: subprocess.CompletedProcess, *words: str) -> None:
    assert done.returncode != 0, done.stdout
    lines = [ln for ln in done.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_pull_then_load_offline_from_the_hub_cache(hub):
    hub.add("org/cae", shipped_folder())
    pulled = run(hub.env, "pull", "hf://org/cae")
    assert pulled.returncode == 0, pulled.stderr
    assert f"pulled hf://org/cae: {SHIPPED}" in pulled.stdout
    requests = len(hub.requests)
    offline = {**hub.env, "HF_HUB_OFFLINE": "1"}
    done = run(offline, "eval", "hf://org/cae", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["data"] == "mnist5k"  # the card says what it was trained on
    assert report["bce"] == pytest.approx(weight_set(SHIPPED).metrics["bce"], rel=1e-4)
    assert len(hub.requests) == requests  # nothing asked of the server
    hub.stall = True  # the server is gone: the cached copy still loads
    code = "import aezoo; print(aezoo.load('hf://org/cae').num_parameters())"
    done = subprocess.run([sys.executable, "-c", code], env=offline, capture_output=True,
                          text=True, timeout=60)
    assert done.stdout.strip() == "4385", done.stderr


def test_a_new_revision_is_pulled_by_name_and_the_old_one_stays(hub):
    files = shipped_folder()
    first = hub.add("org/cae", files)
    other = aezoo.build("cae-upsample")  # fresh weights: a different file
    path = Path(hub.env["HF_HOME"]).parent / "other.safetensors"
    aezoo.save(other, path)
    hub.add("org/cae", {"model.safetensors": path.read_bytes()}, branch="v2")
    code = ("import aezoo, sys, torch\n"
            "a = aezoo.load('hf://org/cae').state_dict()\n"
            f"b = aezoo.load('hf://org/cae@{first}').state_dict()\n"
            "c = aezoo.load('hf://org/cae@v2').state_dict()\n"
            "print(all(torch.equal(a[k], b[k]) for k in a), "
            "all(torch.equal(a[k], c[k]) for k in a))\n")
    done = subprocess.run([sys.executable, "-c", code], env=hub.env, capture_output=True,
                          text=True, timeout=120)
    assert done.stdout.strip() == "True False", done.stderr


def test_push_uploads_the_folder_and_it_pulls_back_bit_exact(hub, tmp_path):
    run_dir = tmp_path / "run"
    done = run(hub.env, "train", "cae-upsample", "--epochs", "1", "--limit", "256",
               "--precision", "32", "--out", str(run_dir))
    assert done.returncode == 0, done.stderr
    anonymous = run(hub.env, "push", str(run_dir), "hf://alice/tiny")
    one_line_error(anonymous, "refused", "HF_TOKEN")
    env = {**hub.env, "HF_TOKEN": FakeHub.TOKEN}
    pushed = run(env, "push", str(run_dir), "hf://alice/tiny", "--tag", "tiny", "--private",
                 "--revision", "exp1")
    assert pushed.returncode == 0, pushed.stderr
    repo = hub.repos["alice/tiny"]
    assert repo.private and set(repo.refs) == {"main", "exp1"}
    files = repo.commits[repo.refs["exp1"]]
    assert {"model.safetensors", "config.json", "recipe.json", "README.md",
            "images/reconstructions.png"} <= set(files)
    assert files["model.safetensors"] == (run_dir / "model.safetensors").read_bytes()
    assert "hf://alice/tiny@exp1" in files["README.md"].decode()  # how to load it
    private = run(hub.env, "pull", "hf://alice/tiny@exp1")  # no token: not found
    one_line_error(private, "not found, or is private", "HF_TOKEN")
    pulled = run(env, "pull", "hf://alice/tiny@exp1")
    assert pulled.returncode == 0 and "cae-upsample.tiny" in pulled.stdout, pulled.stderr


def test_a_repo_with_only_pickles_is_refused(hub):
    hub.add("org/pickled", {"pytorch_model.bin": b"\x80\x04pickle", "config.json": b"{}"})
    one_line_error(run(hub.env, "eval", "hf://org/pickled"), "has no model.safetensors",
                   "never .bin/.pt pickles")
    assert not any("pytorch_model.bin" in r for r in hub.requests)  # never downloaded


@pytest.mark.parametrize(("ref", "words"), [
    ("hf://org/missing", ("was not found, or is private",)),
    ("hf://org/cae@nope", ("has no revision 'nope'",)),
    ("hf://org", ("not a valid Hub reference",)),
    ("hf://org/../etc", ("not a valid Hub reference",)),
])
def test_hub_mistakes_are_one_line_errors(hub, ref, words):
    hub.add("org/cae", shipped_folder())
    one_line_error(run(hub.env, "pull", ref), *words)


def test_offline_with_an_empty_cache_and_no_network_are_clear(hub, tmp_path):
    hub.add("org/cae", shipped_folder())
    one_line_error(run({**hub.env, "HF_HUB_OFFLINE": "1"}, "pull", "hf://org/cae"),
                   "HF_HUB_OFFLINE")
    closed = {**hub.env, "HF_ENDPOINT": "http://127.0.0.1:9"}  # nothing listens there
    one_line_error(run(closed, "eval", "hf://org/cae"), "cannot pull hf://org/cae")


def test_a_stalled_server_times_out(hub):
    hub.add("org/cae", shipped_folder())
    hub.stall = True
    started = time.monotonic()
    done = run(hub.env, "pull", "hf://org/cae", timeout=60)
    one_line_error(done, "hf://org/cae")
    assert time.monotonic() - started < 45  # AEZOO_HUB_TIMEOUT=2 per request, not forever


def test_fine_tune_from_the_hub(hub, tmp_path):
    hub.add("org/cae", shipped_folder())
    out = tmp_path / "ft"
    done = run(hub.env, "train", "cae-upsample", "--init", "hf://org/cae", "--epochs", "1",
               "--limit", "256", "--no-images", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "run.json").read_text())["train"]["init"] == "hf://org/cae"


def test_references_parse():
    assert str(parse("hf://a/b@v1")) == "hf://a/b@v1" and parse("hf://a/b").revision is None


def test_another_librarys_repo_is_refused_as_not_an_aezoo_model(hub, tmp_path):
    import torch
    from safetensors.torch import save

    weights = save({"bert.weight": torch.zeros(2, 2)})  # no aezoo spec in the header
    hub.add("org/bert", {"model.safetensors": weights, "config.json": b'{"model_type": "bert"}'})
    one_line_error(run(hub.env, "eval", "hf://org/bert"), "is not an aezoo model")
