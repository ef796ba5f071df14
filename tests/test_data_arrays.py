"""npz:/npy: sources in every layout and dtype, the split, conversions and bad arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aezoo.data import declared_shape, load_dataset, split_indices
from aezoo.data.embedded import load_mnist5k
from aezoo.data.mapped import is_mapped
from aezoo.errors import DataError, UsageError
from aezoo.specs import DataSpec

RNG = np.random.default_rng(0)
NCHW = RNG.integers(0, 256, (20, 3, 6, 5), dtype=np.uint8)  # the truth: N, C, H, W
GREY = NCHW[:, :1]

LAYOUTS = {  # name -> (array as stored, expected uint8 N,C,H,W)
    "nhw": (GREY[:, 0], GREY),
    "n1hw": (GREY, GREY),
    "nhw1": (GREY.transpose(0, 2, 3, 1), GREY),
    "nchw": (NCHW, NCHW),
    "nhwc": (NCHW.transpose(0, 2, 3, 1), NCHW),
}
DTYPES = {  # name -> how the uint8 truth is stored
    "uint8": lambda a: a,
    "float32-unit": lambda a: a.astype(np.float32) / 255,
    "float64-unit": lambda a: a.astype(np.float64) / 255,
    "float32-0..255": lambda a: a.astype(np.float32),
    "int64": lambda a: a.astype(np.int64),
}


def everything(ds):
    """Train + val back in the stored order (the split is a permutation of the input)."""
    train_idx, val_idx = split_indices(len(ds.train) + len(ds.val), None, 0.1, 0)
    out = np.empty((len(train_idx) + len(val_idx), *ds.train.shape[1:]), np.uint8)
    out[train_idx], out[val_idx] = ds.train, ds.val
    return out


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["npy", "npz"])
def test_every_layout_and_dtype(tmp_path: Path, layout: str, dtype: str, kind: str) -> None:
    stored, expected = LAYOUTS[layout]
    array = DTYPES[dtype](stored)
    path = tmp_path / f"x.{kind}"
    if kind == "npy":
        np.save(path, array)
    else:
        np.savez(path, images=array)
    ds = load_dataset(DataSpec(name=f"{kind}:{path}"))
    train = np.asarray(ds.train)  # uint8 .npy: a MappedArray, read through the map
    assert train.dtype == np.uint8 and train.flags.c_contiguous and train.flags.writeable
    assert is_mapped(ds.train) == (kind == "npy" and dtype == "uint8")
    assert ds.shape == expected.shape[1:]
    assert (len(ds.train), len(ds.val)) == (18, 2)
    np.testing.assert_array_equal(everything(ds), expected)


def test_float_rounding_and_binary_images(tmp_path: Path) -> None:
    values = np.array([0.0, 0.5, 1 / 255, 0.999, 1.0], dtype=np.float32)
    np.save(tmp_path / "f.npy", np.tile(values, (4, 1, 1)))
    ds = load_dataset(DataSpec(name=f"npy:{tmp_path / 'f.npy'}"))
    assert ds.train[0, 0, 0].tolist() == [0, 128, 1, 255, 255]  # x * 255, rounded
    np.save(tmp_path / "b.npy", np.eye(4, dtype=bool)[None].repeat(3, 0))
    ds = load_dataset(DataSpec(name=f"npy:{tmp_path / 'b.npy'}"))
    assert set(np.unique(ds.train).tolist()) == {0, 255}


def test_npz_labels_give_a_stratified_split(tmp_path: Path) -> None:
    labels = np.repeat(np.arange(4), 10)
    images = RNG.integers(0, 256, (40, 8, 8), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", images=images, labels=labels)
    spec = DataSpec(name=f"npz:{tmp_path / 'd.npz'}", val_fraction=0.2, split_seed=3)
    ds = load_dataset(spec)
    assert np.bincount(ds.val_labels).tolist() == [2, 2, 2, 2]
    assert np.bincount(ds.train_labels).tolist() == [8, 8, 8, 8]
    for image, label in zip(ds.val, ds.val_labels, strict=True):  # labels follow images
        assert labels[np.flatnonzero((images == image[0]).all(axis=(1, 2)))[0]] == label
    again = load_dataset(spec)
    other = load_dataset(spec.model_copy(update={"split_seed": 4}))
    np.testing.assert_array_equal(again.val, ds.val)  # fixed by the seed
    assert not np.array_equal(other.val, ds.val)


def test_npz_splits_are_kept(tmp_path: Path) -> None:
    train = RNG.integers(0, 256, (12, 5, 6, 3), dtype=np.uint8)
    val = RNG.integers(0, 256, (3, 5, 6, 3), dtype=np.uint8)
    test = RNG.integers(0, 256, (5, 5, 6, 3), dtype=np.uint8)
    np.savez(tmp_path / "s.npz", train=train, val=val, test=test,
             train_labels=np.arange(12) % 2)
    ds = load_dataset(DataSpec(name=f"npz:{tmp_path / 's.npz'}", val_fraction=0.5))
    assert (len(ds.train), len(ds.val), len(ds.test)) == (12, 3, 5)  # val_fraction unused
    np.testing.assert_array_equal(ds.val, val.transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(ds.test, test.transpose(0, 3, 1, 2))
    assert sorted(map(bytes, ds.train)) == sorted(map(bytes, train.transpose(0, 3, 1, 2)))


def test_keras_style_npz(tmp_path: Path) -> None:
    np.savez(tmp_path / "k.npz", x_train=GREY[:, 0], y_train=np.arange(20) % 2,
             x_test=GREY[:4, 0], y_test=np.arange(4) % 2)
    ds = load_dataset(DataSpec(name=f"npz:{tmp_path / 'k.npz'}"))
    assert ds.splits() == {"train": 18, "val": 2, "test": 4}
    assert ds.test_labels is not None and ds.train_labels is not None


def test_channels_and_image_size(tmp_path: Path) -> None:
    np.save(tmp_path / "rgb.npy", NCHW)
    grey = load_dataset(DataSpec(name=f"npy:{tmp_path / 'rgb.npy'}", channels=1))
    pil = np.stack([np.asarray(Image.fromarray(im.transpose(1, 2, 0)).convert("L"))
                    for im in NCHW])[:, None]
    np.testing.assert_array_equal(everything(grey), pil)  # the same luma as Pillow's
    np.save(tmp_path / "grey.npy", GREY)
    rgb = load_dataset(DataSpec(name=f"npy:{tmp_path / 'grey.npy'}", channels=3,
                                image_size=(16, 12)))
    assert rgb.shape == (3, 16, 12)
    assert (rgb.train[:, 0] == rgb.train[:, 2]).all()
    rgba = np.concatenate([NCHW, np.full_like(NCHW[:, :1], 7)], axis=1)
    np.save(tmp_path / "rgba.npy", rgba)
    ds = load_dataset(DataSpec(name=f"npy:{tmp_path / 'rgba.npy'}", channels=3))
    np.testing.assert_array_equal(everything(ds), NCHW)  # alpha dropped
    assert load_dataset(DataSpec(name=f"npy:{tmp_path / 'rgba.npy'}")).shape == (4, 6, 5)


def test_limit_and_shapes_follow_the_data(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", NCHW)
    ds = load_dataset(DataSpec(name=f"npy:{tmp_path / 'x.npy'}", limit=5))
    assert (len(ds.train), len(ds.val)) == (5, 2)
    assert declared_shape(DataSpec(name=f"npy:{tmp_path / 'x.npy'}")) is None
    assert declared_shape(DataSpec(name="cifar10")) == (3, 32, 32)
    assert declared_shape(DataSpec(name="mnist", channels=3, image_size=32)) == (3, 32, 32)


def test_mnist5k_through_the_registry_is_the_embedded_split() -> None:
    ds, ref = load_dataset(DataSpec()), load_mnist5k()
    assert ds.splits() == {"train": 4500, "val": 500}
    np.testing.assert_array_equal(ds.train, ref.train)
    np.testing.assert_array_equal(ds.val, ref.val)
    np.testing.assert_array_equal(ds.val_labels, ref.val_labels)
    assert np.bincount(ds.val_labels).tolist() == [50] * 10


BAD_ARRAYS = {
    "rank 2": (np.zeros((4, 9), np.uint8), "rank 2"),
    "rank 5": (np.zeros((2, 1, 3, 4, 4), np.uint8), "rank 5"),
    "no channel axis": (np.zeros((2, 5, 6, 7), np.uint8), "channel axis"),
    "empty": (np.zeros((0, 8, 8), np.uint8), "is empty"),
    "floats above 1": (np.full((3, 4, 4), 1.5, np.float32), "floats must lie in [0, 1]"),
    "negative": (np.full((3, 4, 4), -0.5, np.float32), "floats must lie in [0, 1]"),
    "nan": (np.full((3, 4, 4), np.nan, np.float32), "NaN"),
    "uint16": (np.full((3, 4, 4), 4000, np.uint16), "outside 0..255"),
    "strings": (np.array([["a"]]).repeat(3, 0)[:, None], "not numbers"),
}


@pytest.mark.parametrize("case", BAD_ARRAYS)
def test_bad_arrays_are_one_line_errors(tmp_path: Path, case: str) -> None:
    array, expected = BAD_ARRAYS[case]
    np.save(tmp_path / "bad.npy", array)
    with pytest.raises(DataError) as err:
        load_dataset(DataSpec(name=f"npy:{tmp_path / 'bad.npy'}"))
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_bad_npz_files(tmp_path: Path) -> None:
    np.savez(tmp_path / "keys.npz", features=GREY, targets=np.arange(20))
    with pytest.raises(DataError, match=r"no image array under a known key \(found: "
                                        r"features, targets\)"):
        load_dataset(DataSpec(name=f"npz:{tmp_path / 'keys.npz'}"))
    np.savez(tmp_path / "labels.npz", images=GREY, labels=np.arange(3))
    with pytest.raises(DataError, match=r"expected \(20,\)"):
        load_dataset(DataSpec(name=f"npz:{tmp_path / 'labels.npz'}"))
    np.savez(tmp_path / "obj.npz", images=np.array([GREY, None], dtype=object))
    with pytest.raises(DataError, match="cannot read an array"):  # never unpickled
        load_dataset(DataSpec(name=f"npz:{tmp_path / 'obj.npz'}"))
    (tmp_path / "junk.npz").write_bytes(b"not a zip file at all")
    with pytest.raises(DataError, match="not a readable .npz file"):
        load_dataset(DataSpec(name=f"npz:{tmp_path / 'junk.npz'}"))


def test_wrong_source_for_the_file(tmp_path: Path) -> None:
    np.savez(tmp_path / "a.npz", images=GREY)
    np.save(tmp_path / "a.npy", GREY)
    with pytest.raises(UsageError, match="is an .npz archive: use npz:"):
        load_dataset(DataSpec(name=f"npy:{tmp_path / 'a.npz'}"))
    with pytest.raises(UsageError, match="is a single .npy array: use npy:"):
        load_dataset(DataSpec(name=f"npz:{tmp_path / 'a.npy'}"))
    with pytest.raises(UsageError, match="does not exist"):
        load_dataset(DataSpec(name=f"npz:{tmp_path / 'missing.npz'}"))
    with pytest.raises(UsageError, match="use folder:PATH"):
        load_dataset(DataSpec(name=f"npy:{tmp_path}"))


# --- npz/npy headers that lie: refused from the header, before any allocation ---------------

HUGE = (10**12, 28, 28)


def _npy_bytes(shape: tuple[int, ...], dtype: str = "|u1", data: bytes = b"\0" * 64) -> bytes:
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False,
                                               "shape": shape})
    return buf.getvalue() + data


def _refused(path: Path, prefix: str) -> str:
    import tracemalloc

    tracemalloc.start()
    try:
        with pytest.raises(DataError) as info:
            load_dataset(DataSpec(name=f"{prefix}:{path}"))
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak < 64 * 2**20, f"{peak / 2**20:.0f} MB allocated while refusing"
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


def test_npz_member_declaring_10_to_the_12_images_is_refused(tmp_path: Path) -> None:
    import zipfile

    path = tmp_path / "huge.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("images.npy", _npy_bytes(HUGE))
    message = _refused(path, "npz")
    assert f"declares shape {HUGE} uint8" in message and "64 bytes the member holds" in message


def test_npy_declaring_10_to_the_12_images_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "huge.npy"
    path.write_bytes(_npy_bytes(HUGE))
    message = _refused(path, "npy")
    assert f"declares shape {HUGE} uint8" in message and "its 64 bytes of data" in message


def test_npz_compression_bomb_is_refused(tmp_path: Path) -> None:
    """bzip2 makes 200 MB of zeros a few hundred bytes: far beyond any sane ratio."""
    import zipfile

    path = tmp_path / "bomb.npz"
    shape = (200_000, 1000)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_BZIP2) as zf, \
            zf.open("images.npy", "w", force_zip64=True) as f:
        f.write(_npy_bytes(shape, data=b""))
        chunk = b"\0" * (1 << 20)
        for _ in range(200_000_000 // len(chunk)):
            f.write(chunk)
        f.write(b"\0" * (200_000_000 % len(chunk)))
    assert path.stat().st_size < 100_000
    message = _refused(path, "npz")
    assert "beyond the limit of 1100x" in message, message


def test_npz_member_that_decompresses_beyond_its_declared_size_is_bounded(
        tmp_path: Path) -> None:
    """A member whose zip entry declares a small size but holds 50 MB of (deflated) zeros:
    never more than the declared size is read."""
    import struct
    import zipfile

    path = tmp_path / "liar.npz"
    shape = (50_000, 1000)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("images.npy", _npy_bytes(shape, data=b"\0" * 50_000_000))
    raw = bytearray(path.read_bytes())
    real = 50_000_000 + len(_npy_bytes(shape, data=b""))
    for at in (i for i in range(len(raw) - 4) if raw[i:i + 4] == struct.pack("<I", real)):
        raw[at:at + 4] = struct.pack("<I", 4096)  # local and central headers
    path.write_bytes(bytes(raw))
    message = _refused(path, "npz")
    assert f"declares shape {shape} uint8" in message or "cannot read" in message, message
