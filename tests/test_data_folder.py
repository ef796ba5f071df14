"""folder:PATH on generated images: layouts, labels, splits, conversions, bad folders."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aezoo.data import load_dataset
from aezoo.errors import DataError, UsageError
from aezoo.specs import DataSpec

RNG = np.random.default_rng(0)


def grey(h: int = 8, w: int = 6) -> np.ndarray:
    return RNG.integers(0, 256, (h, w), dtype=np.uint8)


def rgb(h: int = 8, w: int = 6) -> np.ndarray:
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


def write(path: Path, array: np.ndarray, **save: object) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **save)
    return array


def load(root: Path, **spec: object):
    return load_dataset(DataSpec(name=f"folder:{root}", **spec))


def all_images(ds) -> list[bytes]:
    return sorted(map(bytes, np.concatenate([ds.train, ds.val])))


def test_class_subfolders_become_labels(tmp_path: Path) -> None:
    truth = {}
    for cls in ("cat", "dog", "emu"):
        for i in range(10):
            truth[(cls, i)] = write(tmp_path / cls / f"{i}.png", grey())
    (tmp_path / "README.txt").write_text("not an image")
    write(tmp_path / ".hidden" / "x.png", grey())  # hidden: skipped
    ds = load(tmp_path)
    assert ds.shape == (1, 8, 6) and ds.splits() == {"train": 27, "val": 3}
    assert np.bincount(ds.val_labels).tolist() == [1, 1, 1]  # stratified, sorted classes
    assert all_images(ds) == sorted(bytes(a[None]) for a in truth.values())
    for image, label in zip(ds.train, ds.train_labels, strict=True):
        cls = ("cat", "dog", "emu")[label]
        assert any(np.array_equal(image[0], truth[(cls, i)]) for i in range(10))


def test_flat_folder_has_no_labels_and_is_recursive(tmp_path: Path) -> None:
    arrays = [write(tmp_path / f"{i}.png", grey()) for i in range(6)]
    arrays += [write(tmp_path / "deep" / "er" / f"{i}.PNG", grey()) for i in range(4)]
    ds = load(tmp_path, val_fraction=0.2)
    assert ds.train_labels is None and ds.splits() == {"train": 8, "val": 2}
    assert all_images(ds) == sorted(bytes(a[None]) for a in arrays)


def test_split_folders(tmp_path: Path) -> None:
    for split, n in (("train", 6), ("val", 2), ("test", 3)):
        for cls in ("a", "b"):
            for i in range(n):
                write(tmp_path / split / cls / f"{i}.png", rgb())
    ds = load(tmp_path)
    assert ds.splits() == {"train": 12, "val": 4, "test": 6}
    assert ds.shape == (3, 8, 6)
    assert sorted(ds.test_labels.tolist()) == [0, 0, 0, 1, 1, 1]


def test_colour_grey_mixed_and_conversions(tmp_path: Path) -> None:
    colour = write(tmp_path / "c.png", rgb())
    write(tmp_path / "g.png", grey())
    jpeg = write(tmp_path / "j.jpg", rgb(), quality=95)
    ds = load(tmp_path)
    assert ds.shape == (3, 8, 6)  # any colour image makes the folder RGB
    assert bytes(colour.transpose(2, 0, 1)) in all_images(ds)
    decoded = np.asarray(Image.open(tmp_path / "j.jpg")).transpose(2, 0, 1)
    assert bytes(decoded) in all_images(ds) and decoded.shape == jpeg.transpose(2, 0, 1).shape
    as_grey = load(tmp_path, channels=1)
    luma = np.asarray(Image.fromarray(colour).convert("L"))[None]
    assert as_grey.shape == (1, 8, 6) and bytes(luma) in all_images(as_grey)


def test_image_size_resizes_mixed_sizes(tmp_path: Path) -> None:
    write(tmp_path / "small.png", grey(8, 6))
    write(tmp_path / "big.png", grey(20, 30))
    with pytest.raises(DataError) as err:
        load(tmp_path)
    message = str(err.value)
    assert "differ in size" in message and "--image-size" in message and "\n" not in message
    assert "big.png" in message and "small.png" in message
    ds = load(tmp_path, image_size="12x10")
    assert ds.shape == (1, 12, 10)


def test_sixteen_bit_and_exif_rotation(tmp_path: Path) -> None:
    deep = (np.arange(48, dtype=np.uint16).reshape(8, 6) * 1365)
    Image.fromarray(deep).save(tmp_path / "deep.png")  # 16-bit grey PNG
    write(tmp_path / "plain.png", grey())
    ds = load(tmp_path)
    expected = np.rint(deep / 65535 * 255).astype(np.uint8)[None]
    assert bytes(expected) in all_images(ds)

    rotated = tmp_path / "rot"
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": stored 8x6 shows as 6x8
    write(rotated / "a.jpg", rgb(8, 6), exif=exif)
    write(rotated / "b.jpg", rgb(6, 8))
    assert load(rotated).shape == (3, 6, 8)


def test_empty_and_missing_folders(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no images"):
        load(tmp_path / "empty")
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "a.txt").write_text("hi")
    with pytest.raises(DataError, match="holds no images"):
        load(tmp_path / "texts")
    with pytest.raises(UsageError, match="does not exist"):
        load(tmp_path / "nope")
    (tmp_path / "file.png").write_bytes(b"x")
    with pytest.raises(UsageError, match="is not a folder"):
        load(tmp_path / "file.png")


def test_unreadable_images_are_named(tmp_path: Path) -> None:
    write(tmp_path / "good.png", grey())
    (tmp_path / "junk.png").write_bytes(b"this is not a png")
    with pytest.raises(DataError) as err:
        load(tmp_path)
    assert "cannot read image" in str(err.value) and "junk.png" in str(err.value)
    assert "\n" not in str(err.value)

    truncated = tmp_path / "cut"
    write(truncated / "ok.png", grey(64, 64))
    data = (truncated / "ok.png").read_bytes()
    write(truncated / "bad.png", grey(64, 64))
    (truncated / "bad.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="cannot read image .*bad.png"):
        load(truncated)


def test_progress_reports_decoding(tmp_path: Path) -> None:
    for i in range(5):
        write(tmp_path / f"{i}.png", grey())
    seen = []
    load_dataset(DataSpec(name=f"folder:{tmp_path}"),
                 progress=lambda *a: seen.append(a))
    assert seen[0] == ("decoding images", 0, 5, "images")
    assert seen[-1] == ("decoding images", 5, 5, "images")


# --- links and special files: each real image once, nothing that is not a file opened -----

_COUNT = """
import sys
from aezoo.data import load_dataset
from aezoo.specs import DataSpec
ds = load_dataset(DataSpec(name=f"folder:{sys.argv[1]}"))
print(sum(ds.splits().values()))
"""


def _count_in_subprocess(root: Path) -> int:
    """Load ``root`` in a child (the timeout only guards against a hang)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _COUNT, str(root)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip().splitlines()[-1])


def test_a_symlink_cycle_counts_each_image_once(tmp_path: Path) -> None:
    arrays = [write(tmp_path / f"{i}.png", grey()) for i in range(2)]
    os.symlink(".", tmp_path / "loop")  # ln -s . imgs/loop: 2 images loaded as 82 before
    ds = load(tmp_path, val_fraction=0.5)
    assert ds.splits() == {"train": 1, "val": 1}
    assert all_images(ds) == sorted(bytes(a[None]) for a in arrays)  # no copies in val


def test_two_symlink_cycles_finish_with_each_image_once(tmp_path: Path) -> None:
    for i in range(3):
        write(tmp_path / "sub" / f"{i}.png", grey())
    os.symlink(".", tmp_path / "loop")
    os.symlink("..", tmp_path / "sub" / "up")
    os.symlink(str(tmp_path / "sub"), tmp_path / "again")  # the same directory twice
    os.symlink(str(tmp_path / "sub" / "0.png"), tmp_path / "link.png")  # the same file
    assert _count_in_subprocess(tmp_path) == 3


def test_a_fifo_in_an_image_folder_is_skipped_not_opened(tmp_path: Path) -> None:
    for i in range(3):
        write(tmp_path / f"{i}.png", grey())
    os.mkfifo(tmp_path / "fifo.png")  # opening it would block forever
    assert _count_in_subprocess(tmp_path) == 3
