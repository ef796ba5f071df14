"""Weight sets shipped in the wheel, one folder each (written by `aezoo push RUN --to`).

Each was trained on the embedded mnist5k with its variant's defaults, seed 0, in fp32
(`--precision 32`, so the recipe reproduces on any CPU); docs/pretrained.md has the
commands. Torch-free: `aezoo list --pretrained` reads this module. Each card is read when
its entry point is loaded (a module ``__getattr__``), so one damaged folder fails alone.
"""

from aezoo.weightset import WeightSet, packaged

_FOLDERS = {
    "cae_upsample_mnist5k": "cae-upsample.mnist5k",
    "cae_strided_mnist5k": "cae-strided.mnist5k",
    "cae_denoising_mnist5k": "cae-denoising.mnist5k",
    "cae_sparse_mnist5k": "cae-sparse.mnist5k",
    "cae_vae_mnist5k": "cae-vae.mnist5k",
    "cae_resnet_mnist5k": "cae-resnet.mnist5k",
}


def __getattr__(name: str) -> WeightSet:
    if name not in _FOLDERS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return packaged(__name__, _FOLDERS[name], default=True)
