"""Memory-mapped arrays and packed stores: `npy:` and `packed:` are read through the map,
`aezoo data pack` is resumable and atomic, class names travel to `data info` and `encode`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

import aezoo
from aezoo.cli.data import human_bytes
from aezoo.data import load_dataset
from aezoo.data import pack as pack_module
from aezoo.data.mapped import MappedArray, is_mapped
from aezoo.data.pack import pack
from aezoo.errors import DataError, OutputExistsError, RunDirBusyError
from aezoo.specs import DataSpec, TrainSpec
from aezoo.training import Trainer


def folder(root: Path, per_class: int = 12, colour_at: int | None = None) -> Path:
    rng = np.random.default_rng(0)
    for cls in ("cat", "dog", "emu"):
        for i in range(per_class):
            shape = (8, 6, 3) if colour_at == i and cls == "emu" else (8, 6)
            path = root / cls / f"{i:03d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(path)
    return root


def fit(data: Any, **settings: Any) -> Trainer:
    torch.manual_seed(0)
    spec = TrainSpec(device="cpu", epochs=1, batch_size=16, **settings)
    trainer = Trainer(aezoo.build("cae-upsample"), data, spec)
    trainer.fit()
    return trainer


def test_npy_trains_through_its_memory_map_exactly_like_memory(tmp_path: Path) -> None:
    images = np.random.default_rng(2).integers(0, 256, (120, 28, 28), dtype=np.uint8)
    np.save(tmp_path / "x.npy", images)
    data = load_dataset(DataSpec(name=f"npy:{tmp_path / 'x.npy'}"))
    assert isinstance(data.train, MappedArray) and is_mapped(data.train.base)
    assert isinstance(data.val, MappedArray)  # the carve is indices over the map
    mapped = fit(data, reader="mapped")
    assert mapped.reader.kind == "mapped"
    assert is_mapped(mapped.train_images.array.base)  # batches come from the map
    memory = fit(data)
    assert memory.reader.kind == "memory" and "fit the memory budget" in memory.reader.reason
    wa, wb = mapped.model.state_dict(), memory.model.state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert mapped.history[0].val_loss == memory.history[0].val_loss
    tight = fit(data, memory_budget=1e-6)  # over budget: mapped, and it says why
    assert tight.reader.kind == "mapped" and "over the memory budget" in tight.reader.reason


def test_pack_a_folder_keeps_labels_and_class_names(tmp_path: Path) -> None:
    src = folder(tmp_path / "imgs")
    done = pack(DataSpec(name=f"folder:{src}"), tmp_path / "store")
    assert done.counts == {"train": 36} and done.shape == (1, 8, 6)
    assert done.class_names == ["cat", "dog", "emu"]
    manifest = json.loads((tmp_path / "store" / "manifest.json").read_text())
    assert manifest["format"] == "aezoo-packed" and len(manifest["splits"]["train"]["sha256"]) == 64
    packed = load_dataset(DataSpec(name=f"packed:{tmp_path / 'store'}"))
    plain = load_dataset(DataSpec(name=f"folder:{src}"))
    assert packed.class_names == plain.class_names == ["cat", "dog", "emu"]
    assert isinstance(packed.train, MappedArray)
    assert np.array_equal(np.asarray(packed.train), plain.train)  # the same carve, images
    assert np.array_equal(packed.train_labels, plain.train_labels)
    # folder: pointed at a store reads the store
    again = load_dataset(DataSpec(name=f"folder:{tmp_path / 'store'}"))
    assert isinstance(again.train, MappedArray)
    with pytest.raises(OutputExistsError, match="already holds a packed store"):
        pack(DataSpec(name=f"folder:{src}"), tmp_path / "store")


def test_an_interrupted_pack_never_loads_and_a_rerun_finishes_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = folder(tmp_path / "imgs", per_class=20, colour_at=15)  # RGB from image 55 on
    whole = pack(DataSpec(name=f"folder:{src}"), tmp_path / "whole")
    monkeypatch.setattr(pack_module, "CHUNK", 8)
    monkeypatch.setattr(pack_module, "FLUSH_SECONDS", 0.0)
    calls = {"n": 0}
    real = pack_module.plan

    def plan(*args: Any) -> Any:
        parts, names, fingerprint = real(*args)
        read = parts["train"].read

        def crashing(begin: int, stop: int) -> np.ndarray:
            calls["n"] += 1
            if calls["n"] == 4:
                raise KeyboardInterrupt
            return read(begin, stop)

        parts["train"].read = crashing
        return parts, names, fingerprint

    monkeypatch.setattr(pack_module, "plan", plan)
    out = tmp_path / "store"
    with pytest.raises(KeyboardInterrupt):
        pack(DataSpec(name=f"folder:{src}"), out)
    assert not (out / "manifest.json").exists()
    with pytest.raises(DataError, match="is an unfinished pack"):
        load_dataset(DataSpec(name=f"packed:{out}"))
    done = pack(DataSpec(name=f"folder:{src}"), out)
    assert done.resumed == 24 and done.shape == (3, 8, 6) == whole.shape
    a = json.loads((out / "manifest.json").read_text())["splits"]["train"]["sha256"]
    b = json.loads((tmp_path / "whole" / "manifest.json").read_text())["splits"]["train"]["sha256"]
    assert a == b  # resumed, byte for byte what one uninterrupted pack writes
    assert not (out / ".pack-progress.json").exists()


def test_a_limited_folder_decodes_only_what_it_keeps(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from aezoo.data import images

    src = folder(tmp_path / "imgs", per_class=20)
    opened: list[Path] = []
    real = images._open

    def counting(path: Path, where: str, fix: str = images.FIX) -> Any:
        opened.append(path)
        return real(path, where, fix)

    monkeypatch.setattr(images, "_open", counting)
    data = load_dataset(DataSpec(name=f"folder:{src}", limit=5))
    assert data.splits() == {"train": 5, "val": 6}
    decoded = [p for p in opened if isinstance(p, Path)]  # a header read opens a file object
    assert len(decoded) == len(set(decoded)) == 11  # each kept image decoded once, no others
    assert len(opened) - len(decoded) <= 1  # at most the first image's header, for the size


def test_pack_train_encode_round_trip_names_the_classes(tmp_path: Path, cli: Any) -> None:
    src = folder(tmp_path / "imgs")
    store = tmp_path / "store"
    result = cli("data", "pack", f"folder:{src}", "--out", str(store), "--image-size", "16")
    assert result.exit_code == 0, result.output
    assert "packed 36 train images (1x16x16 uint8, 3 classes)" in result.output
    info = cli("data", "info", f"packed:{store}")
    assert info.exit_code == 0 and "classes: cat, dog, emu" in info.output
    run = tmp_path / "run"
    trained = cli("train", "cae-strided", "--data", f"packed:{store}", "--epochs", "1",
                  "--device", "cpu", "--out", str(run), "--no-images", "--reader", "mapped")
    assert trained.exit_code == 0, trained.output
    latents = tmp_path / "z.npz"
    encoded = cli("encode", str(run), "--out", str(latents), "--device", "cpu")
    assert encoded.exit_code == 0, encoded.output
    assert "classes 0=cat, 1=dog, 2=emu" in encoded.output
    with np.load(latents, allow_pickle=False) as z:
        assert z["class_names"].tolist() == ["cat", "dog", "emu"] and len(z["labels"]) == 3


def test_reading_a_mapped_split_whole_leaves_resident_memory_flat(tmp_path: Path) -> None:
    from aezoo.data import mapped
    from aezoo.training.batches import MappedImages

    n = 100_000  # 78 MB, sparse: made at once, read from the page cache
    store = np.lib.format.open_memmap(tmp_path / "big.npy", mode="w+", dtype=np.uint8,
                                      shape=(n, 1, 28, 28))
    store[::1000] = 7
    store.flush()
    del store
    data = load_dataset(DataSpec(name=f"npy:{tmp_path / 'big.npy'}"))
    view = MappedImages(data.train, torch.device("cpu"))
    before = mapped._shared_bytes()
    if before is None:
        pytest.skip("needs /proc/self/statm")
    order = torch.randperm(len(view), generator=torch.Generator().manual_seed(0))
    seen = 0
    for chunk in order.split(4096):  # every training image once, in a random order
        seen += int((view[chunk] == 7).sum())
    assert seen == len(range(0, n, 1000)) * 784 - int(
        (np.asarray(data.val.positions()) % 1000 == 0).sum()) * 784
    grown = mapped._shared_bytes() - before  # type: ignore[operator]
    assert grown < 16 * 2**20, f"file pages in this process grew by {grown / 2**20:.0f} MB"


def test_verify_reads_every_file_and_names_each_that_changed(tmp_path: Path, cli: Any) -> None:
    src = folder(tmp_path / "imgs")
    store = tmp_path / "store"
    assert cli("data", "pack", f"folder:{src}", "--out", str(store)).exit_code == 0
    ok = cli("data", "verify", f"packed:{store}")
    assert ok.exit_code == 0, ok.output
    size = (store / "train.npy").stat().st_size + (store / "train.labels.npy").stat().st_size
    assert (f"all 2 files match their SHA-256 (train.npy, train.labels.npy: "
            f"{human_bytes(size)} read)") in ok.output
    assert "verifying train.npy (" in ok.stderr  # the plain progress line, off a terminal
    with (store / "train.npy").open("r+b") as f:  # one pixel flipped: header and size agree
        f.seek(-1, 2)
        last = f.read(1)
        f.seek(-1, 2)
        f.write(bytes([last[0] ^ 1]))
    assert load_dataset(DataSpec(name=f"packed:{store}")).train.shape[1:] == (1, 8, 6)  # loads
    bad = cli("data", "verify", str(store))
    assert bad.exit_code == 1
    assert bad.stderr.strip().splitlines()[-1] == (
        f"error: {store}: train.npy differs from the manifest's SHA-256 (changed or damaged "
        "since packing): pack the source again with --force")
    missing = cli("data", "verify", str(tmp_path / "nowhere"))
    assert missing.exit_code == 2 and "does not exist" in missing.stderr
    unfinished = tmp_path / "empty"
    unfinished.mkdir()
    refused = cli("data", "verify", str(unfinished))
    assert refused.exit_code != 0 and "not a packed store" in refused.stderr


def test_a_second_pack_into_the_same_directory_is_refused_while_the_first_runs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = folder(tmp_path / "imgs")
    store = tmp_path / "store"
    real, seen = pack_module.plan, []

    def plan_then_race(*args: Any, **kwargs: Any) -> Any:
        with pytest.raises(RunDirBusyError, match=r"in use by another aezoo process \(pid"):
            pack(DataSpec(name=f"folder:{src}"), store)  # the same directory, meanwhile
        seen.append("refused")
        return real(*args, **kwargs)

    monkeypatch.setattr(pack_module, "plan", plan_then_race)
    done = pack(DataSpec(name=f"folder:{src}"), store)
    assert seen == ["refused"] and done.counts == {"train": 36}
    assert sorted(p.name for p in store.iterdir()) == ["manifest.json", "train.labels.npy",
                                                        "train.npy"]  # no lock file left


def test_a_forced_repack_replaces_the_store_only_once_the_new_one_is_whole(
        tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    src = folder(tmp_path / "imgs")
    store = tmp_path / "store"
    assert cli("data", "pack", f"folder:{src}", "--out", str(store)).exit_code == 0
    (store / "my-embeddings.npy").write_bytes(b"mine")  # not the store's: never touched
    before = {p.name: p.read_bytes() for p in store.iterdir() if p.is_file()}
    missing = cli("data", "pack", f"folder:{tmp_path / 'nowhere'}", "--out", str(store),
                  "--force")
    assert missing.exit_code == 2 and "Traceback" not in missing.output
    assert {p.name: p.read_bytes() for p in store.iterdir() if p.is_file()} == before
    # interrupted half-way: the old store still loads, unchanged
    monkeypatch.setattr(pack_module, "CHUNK", 8)
    monkeypatch.setattr(pack_module, "FLUSH_SECONDS", 0.0)
    real = pack_module.plan

    def plan(*args: Any) -> Any:
        parts, names, fingerprint = real(*args)
        read = parts["train"].read

        def crashing(begin: int, stop: int) -> np.ndarray:
            if begin >= 16:
                raise KeyboardInterrupt
            return read(begin, stop)

        parts["train"].read = crashing
        return parts, names, fingerprint

    monkeypatch.setattr(pack_module, "plan", plan)
    with pytest.raises(KeyboardInterrupt):
        pack(DataSpec(name=f"folder:{src}", image_size=(4, 4)), store, force=True)
    assert {p.name: p.read_bytes() for p in store.iterdir() if p.is_file()} == before
    assert load_dataset(DataSpec(name=f"packed:{store}")).train.shape[1:] == (1, 8, 6)
    monkeypatch.setattr(pack_module, "plan", real)
    done = pack(DataSpec(name=f"folder:{src}", image_size=(4, 4)), store, force=True)
    assert done.resumed == 16 and done.shape == (1, 4, 4)
    assert sorted(p.name for p in store.iterdir()) == [
        "manifest.json", "my-embeddings.npy", "train.labels.npy", "train.npy"]
    assert (store / "my-embeddings.npy").read_bytes() == b"mine"
    assert load_dataset(DataSpec(name=f"packed:{store}")).train.shape[1:] == (1, 4, 4)


def test_a_swap_interrupted_between_its_renames_is_finished_by_the_next_pack(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = folder(tmp_path / "imgs")
    store = tmp_path / "store"
    pack(DataSpec(name=f"folder:{src}"), store)
    real = pack_module.commit

    def dying(tmp: Path, path: Path) -> None:
        if path.name == "manifest.json" and tmp.parent.name == ".pack-new":
            raise KeyboardInterrupt  # the new data files moved, the manifest not yet
        real(tmp, path)

    monkeypatch.setattr(pack_module, "commit", dying)
    with pytest.raises(KeyboardInterrupt):
        pack(DataSpec(name=f"folder:{src}", image_size=(4, 4)), store, force=True)
    with pytest.raises(DataError, match="interrupted while its store was replaced"):
        load_dataset(DataSpec(name=f"packed:{store}"))
    monkeypatch.setattr(pack_module, "commit", real)
    with pytest.raises(OutputExistsError):  # finishes the swap, then refuses as ever
        pack(DataSpec(name=f"folder:{src}"), store)
    assert load_dataset(DataSpec(name=f"packed:{store}")).train.shape[1:] == (1, 4, 4)
    assert not (store / ".pack-new").exists()


def _interrupt_after(monkeypatch: pytest.MonkeyPatch, images: int) -> None:
    """The next pack stops (KeyboardInterrupt) once ``images`` images are on disk."""
    monkeypatch.setattr(pack_module, "CHUNK", 8)
    monkeypatch.setattr(pack_module, "FLUSH_SECONDS", 0.0)
    real = pack_module.plan

    def plan(*args: Any) -> Any:
        monkeypatch.setattr(pack_module, "plan", real)  # once
        parts, names, fingerprint = real(*args)
        read = parts["train"].read

        def crashing(begin: int, stop: int) -> np.ndarray:
            if begin >= images:
                raise KeyboardInterrupt
            return read(begin, stop)

        parts["train"].read = crashing
        return parts, names, fingerprint

    monkeypatch.setattr(pack_module, "plan", plan)


@pytest.mark.parametrize("kind", ["npy", "wds"])
def test_a_resumed_pack_starts_over_when_the_source_changed_in_content_alone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    import io
    import os
    import tarfile

    rng = np.random.default_rng(0)
    source = tmp_path / ("x.npy" if kind == "npy" else "s.tar")

    def write(seed: int) -> np.ndarray:
        images = np.random.default_rng(seed).integers(0, 256, (40, 8, 8), dtype=np.uint8)
        if kind == "npy":
            np.save(source, images)
        else:
            with tarfile.open(source, "w") as tar:
                for i, image in enumerate(images):
                    buf = io.BytesIO()
                    Image.fromarray(image).save(buf, format="png")
                    info = tarfile.TarInfo(f"{i:03d}.png")
                    info.size = len(buf.getvalue())
                    tar.addfile(info, io.BytesIO(buf.getvalue()))
        return images

    write(1)
    spec = DataSpec(name=f"{kind}:{source}")
    _interrupt_after(monkeypatch, 16)
    with pytest.raises(KeyboardInterrupt):
        pack(spec, tmp_path / "store")
    stat = source.stat()
    fresh = write(2)  # the same shape, the same size on disk: other images
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9 * int(rng.integers(1, 9))))
    done = pack(spec, tmp_path / "store")
    assert done.resumed == 0
    stored = np.asarray(load_dataset(DataSpec(name=f"packed:{tmp_path / 'store'}")).train)
    if kind == "npy":
        plain = load_dataset(DataSpec(name=f"npy:{source}"))
        assert np.array_equal(stored, np.asarray(plain.train))
        assert {bytes(im) for im in stored[:, 0]} <= {bytes(im) for im in fresh}
