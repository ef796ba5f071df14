"""The batch inference API: layouts, dtypes, outputs, batching, shape errors, and the
tensor fast path of ``Autoencoder.encode`` left exactly as it was."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import aezoo
from aezoo.errors import ShapeError, UsageError
from aezoo.evaluation import evaluate
from aezoo.inference import layout_of


@pytest.fixture(scope="module")
def model() -> aezoo.Autoencoder:  # type: ignore[name-defined]
    torch.manual_seed(0)
    return aezoo.build("cae-upsample")


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (13, 1, 28, 28), dtype=np.uint8)


def test_tensor_fast_path_is_unchanged(model, images) -> None:
    x = torch.from_numpy(images).float() / 255
    x.requires_grad_(True)
    z = model.encode(x)
    assert z.requires_grad and z.shape == (13, 8, 4, 4)  # autograd, as training needs
    assert torch.equal(z, model.encode_parts(x)[0])
    z.sum().backward()
    assert x.grad is not None


def test_layouts_and_dtypes_agree(model, images) -> None:
    ref = model.encode(torch.from_numpy(images).float() / 255).detach().numpy()
    nhwc = images.transpose(0, 2, 3, 1).copy()
    for variant in (images, nhwc, images[:, 0], images.astype(np.float32) / 255,
                    nhwc.astype(np.float64) / 255, torch.from_numpy(nhwc)):
        z = model.encode(variant, batch_size=4)
        z = z.numpy() if isinstance(z, torch.Tensor) else z
        assert z.dtype == np.float32 and z.shape == (13, 8, 4, 4)
        np.testing.assert_allclose(z, ref, atol=1e-5)


def test_outputs_follow_the_input_or_the_request(model, images) -> None:
    assert isinstance(model.encode(images), np.ndarray)
    assert isinstance(model.encode(torch.from_numpy(images)), torch.Tensor)
    assert isinstance(model.encode(images, output="torch"), torch.Tensor)
    recon = model.reconstruct(images.transpose(0, 2, 3, 1))
    assert recon.shape == (13, 28, 28, 1) and 0 <= recon.min() and recon.max() <= 1
    assert model.reconstruct(images[:, 0]).shape == (13, 28, 28)
    for mode in (True, False):  # runs in eval mode, gives the model back as it was
        model.train(mode)
        model.reconstruct(images)
        assert model.training is mode


def test_batch_size_does_not_change_results(model, images) -> None:
    one = model.score(images, "mse", batch_size=1)
    all_ = model.score(images, "mse", batch_size=1000)
    np.testing.assert_allclose(one, all_, rtol=1e-6)
    assert one.dtype == np.float64 and one.shape == (13,)
    np.testing.assert_array_equal(model.score(images), model.score(images, "bce"))  # its loss


@pytest.mark.parametrize("metric,key", [("bce", "bce"), ("mse", "mse"), ("ssim", "ssim")])
def test_score_is_evals_per_image_metric(model, images, metric, key) -> None:
    scores = model.score(images, metric)
    whole = getattr(evaluate(model, torch.from_numpy(images)), key)
    mean = 1 - whole if metric == "ssim" else whole
    assert scores.mean() == pytest.approx(mean, rel=1e-6)
    single = getattr(evaluate(model, torch.from_numpy(images[4:5])), key)
    assert scores[4] == pytest.approx(1 - single if metric == "ssim" else single, rel=1e-6)


@pytest.mark.parametrize("bad,says", [
    (np.zeros((2, 3, 28, 28), np.uint8), r"takes \(N, 1, 28, 28\) or \(N, 28, 28, 1\)"),
    (np.zeros((2, 1, 32, 32), np.uint8), r"got \(2, 1, 32, 32\)"),
    (np.zeros((28, 28), np.uint8), r"got \(28, 28\)"),
    (torch.zeros(2, 2, 28, 28), r"takes \(N, 1, 28, 28\)"),  # a float tensor too
])
def test_wrong_shapes_name_the_spec_shape(model, bad, says) -> None:
    with pytest.raises(ShapeError, match=says):
        model.encode(bad)
    with pytest.raises(ShapeError, match=says):
        model.score(bad)


def test_explicit_layout_is_checked(model) -> None:
    with pytest.raises(ShapeError, match=r"takes \(N, 28, 28, 1\) images"):
        model.encode(np.zeros((2, 1, 28, 28), np.uint8), layout="nhwc")
    # C == H == W: NCHW unless told
    assert layout_of((5, 3, 3, 3), (3, 3, 3)) == "nchw"
    assert layout_of((5, 3, 3, 3), (3, 3, 3), "nhwc") == "nhwc"


@pytest.mark.parametrize("bad,says", [
    (np.zeros((2, 1, 28, 28), np.int64), "dtype int64"),
    (np.full((2, 1, 28, 28), 255.0), "floats from 255 to 255"),
    (np.full((2, 1, 28, 28), np.nan, np.float32), "floats must lie in"),
])
def test_bad_values_are_refused(model, bad, says) -> None:
    with pytest.raises(UsageError, match=says):
        model.reconstruct(bad)


def test_bad_options(model, images) -> None:
    for kwargs, says in [({"output": "list"}, "unknown output"), ({"layout": "hwc"}, "layout"),
                         ({"batch_size": 0}, "batch_size must be positive")]:
        with pytest.raises(UsageError, match=says):
            model.encode(images, **kwargs)
    with pytest.raises(UsageError, match="unknown metric"):
        model.score(images, "psnr")
    with pytest.raises(ShapeError, match=r"decodes \(N, 8, 4, 4\) codes"):
        model.decode(torch.zeros(2, 4, 4, 8))


def test_device_is_used(model, images) -> None:
    out = model.encode(images, device="cpu", output="torch")
    assert out.device.type == "cpu"
    from aezoo.errors import DeviceError

    if not torch.cuda.is_available():
        with pytest.raises(DeviceError):
            model.encode(images, device="cuda")
