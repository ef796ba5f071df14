"""The built-in dataset sources, registered in pyproject.toml under ``aezoo.datasets``
exactly as a plugin's would be. Descriptors only: each loader is a "module:function"
reference, imported when the dataset is loaded.

Checksums: SHA-256 of the files as the mirrors serve them (the same bytes whose MD5
the publishers list; MD5s kept for reference), cross-checked against independent
published lists. A mirror serving other bytes is rejected and the next one tried.
"""

from __future__ import annotations

from typing import Any

from aezoo.data.source import DatasetSource, RemoteFile


def _idx_source(files: tuple[tuple[int, str, str], ...], **fields: Any) -> DatasetSource:
    """An MNIST-family source: the same four IDX files (``files``: size, SHA-256 and MD5
    of each), 28x28 grey, the standard 60k/10k split."""
    names = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
    return DatasetSource(
        load="aezoo.data.formats:load_idx_dataset", shape=(1, 28, 28),
        counts={"train": 60_000, "test": 10_000}, **fields,
        files=tuple(RemoteFile(name, sha, size, md5)
                    for name, (size, sha, md5) in zip(names, files, strict=True)))

mnist5k = DatasetSource(
    name="mnist5k",
    description="5,000 MNIST digits (500 per class) shipped inside aezoo; the default",
    license="CC BY-SA 3.0 (Yann LeCun, Corinna Cortes)",
    load="aezoo.data.embedded:mnist5k_splits",
    shape=(1, 28, 28),
    counts={"train": 5_000},
    homepage="http://yann.lecun.com/exdb/mnist/",
    embedded=True,
)

mnist = _idx_source(
    name="mnist",
    description="MNIST handwritten digits, 28x28 grey, 10 classes",
    license="CC BY-SA 3.0 (Yann LeCun, Corinna Cortes)",
    files=(
        (9_912_422, "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
         "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        (28_881, "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
         "d53e105ee54ea40749a09fcbcd1e9432"),
        (1_648_877, "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
         "9fb629c4189551a2d022fa330f9573f3"),
        (4_542, "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
         "ec29112dd5afa0611ce80d1b7f02629c"),
    ),
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    homepage="http://yann.lecun.com/exdb/mnist/",
    citation="Y. LeCun, C. Cortes, C. J. C. Burges: The MNIST database of handwritten digits",
)

fashion_mnist = _idx_source(
    name="fashion-mnist",
    description="Zalando article images, 28x28 grey, 10 classes; a drop-in for MNIST",
    license="MIT (Zalando SE)",
    files=(
        (26_421_880, "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
         "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        (29_515, "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
         "25c81989df183df01b3e8a0aad5dffbe"),
        (4_422_102, "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
         "bef4ecab320f06d8554ea6380940ec79"),
        (5_148, "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
         "bb300cfdad3c16e7a12a480ee83cd310"),
    ),
    mirrors=(
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ),
    homepage="https://github.com/zalandoresearch/fashion-mnist",
    citation="H. Xiao, K. Rasul, R. Vollgraf: Fashion-MNIST, arXiv:1708.07747 (2017)",
)

kmnist = _idx_source(
    name="kmnist",
    description="Kuzushiji-MNIST: cursive Japanese hiragana, 28x28 grey, 10 classes",
    license="CC BY-SA 4.0 (CODH; from the Kuzushiji dataset by NIJL and others)",
    files=(
        (18_165_135, "51467d22d8cc72929e2a028a0428f2086b092bb31cfb79c69cc0a90ce135fde4",
         "bdb82020997e1d708af4cf47b453dcf7"),
        (29_497, "e38f9ebcd0f3ebcdec7fc8eabdcdaef93bb0df8ea12bee65224341c8183d8e17",
         "e144d726b3acfaa3e44228e80efcd344"),
        (3_041_136, "edd7a857845ad6bb1d0ba43fe7e794d164fe2dce499a1694695a792adfac43c5",
         "5c965bf0a639b31b8f53240b1b52f4d7"),
        (5_120, "20bb9a0ef54c7db3efc55a92eef5582c109615df22683c380526788f98e42a1c",
         "7320c461ea6c1c855c0b718fb2a4b134"),
    ),
    mirrors=(
        "https://codh.rois.ac.jp/kmnist/dataset/kmnist/",
        "http://codh.rois.ac.jp/kmnist/dataset/kmnist/",
    ),
    homepage="https://github.com/rois-codh/kmnist",
    citation="T. Clanuwat et al.: Deep Learning for Classical Japanese Literature, "
             "arXiv:1812.01718 (2018); doi:10.20676/00000341",
)

cifar10 = DatasetSource(
    name="cifar10",
    description="CIFAR-10: 32x32 colour photos, 10 classes (binary version)",
    license="none stated (cite Krizhevsky 2009)",
    load="aezoo.data.formats:load_cifar10",
    shape=(3, 32, 32),
    counts={"train": 50_000, "test": 10_000},
    files=(RemoteFile("cifar-10-binary.tar.gz",
                      "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
                      170_052_171, "c32a1d4ab5d03f1284b67883e8d87530"),),
    mirrors=("https://www.cs.toronto.edu/~kriz/", "http://www.cs.toronto.edu/~kriz/"),
    homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
    citation="A. Krizhevsky: Learning Multiple Layers of Features from Tiny Images (2009)",
)

folder = DatasetSource(
    name="folder",
    description="your images: PNG/JPEG/BMP/WebP under PATH, recursive; class subfolders "
                "become labels",
    license="yours",
    load="aezoo.data.stream_folder:load",  # in memory where it fits, else streamed
    takes_path=True,
)

npz = DatasetSource(
    name="npz",
    description="your arrays: 'images' (+ 'labels') or 'train'/'val'/'test' in an .npz",
    license="yours",
    load="aezoo.data.arrays:load_npz",
    takes_path=True,
)

npy = DatasetSource(
    name="npy",
    description="your array: one .npy of images, N,H,W / N,C,H,W / N,H,W,C",
    license="yours",
    load="aezoo.data.arrays:load_npy",
    takes_path=True,
)

packed = DatasetSource(
    name="packed",
    description="a packed store written by `aezoo data pack` (memory-mapped uint8, labels, "
                "class names)",
    license="that of its source",
    load="aezoo.data.packed:load_packed",
    takes_path=True,
)
