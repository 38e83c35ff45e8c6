import math

import pytest
import torch

from unetlab.eval.classifier import build_classifier
from unetlab.metrics import (
    PSNR_CAP,
    frechet_gaussian,
    gaussian_stats,
    image_metrics,
    mean_psnr,
    psnr_of_mean_mse,
    psnr_per_image,
    ssim,
    summarize,
)


def test_psnr_of_a_known_mse():
    a = torch.zeros(2, 3, 8, 8)
    b = torch.full((2, 3, 8, 8), 0.1)  # MSE 0.01 -> 20 dB
    assert mean_psnr(a, b) == pytest.approx(20.0, abs=1e-4)
    c = b.clone()
    c[1] = 0.2  # per-image PSNRs 20 and 10 log10(1/0.04) -> their mean
    assert mean_psnr(a, c) == pytest.approx((20.0 + 10 * math.log10(25)) / 2, abs=1e-4)
    with pytest.raises(ValueError, match="images"):
        mean_psnr(a, b[:1])


def test_the_three_psnr_statistics_with_one_identical_image_among_n():
    """Image 0 equals its reference, images 1..3 have MSE 0.01, 0.04 and 0.0025 (20, 13.98 and 26.02 dB)."""
    ref = torch.zeros(4, 1, 8, 8, dtype=torch.float64)
    mse = torch.tensor([0.0, 0.01, 0.04, 0.0025], dtype=torch.float64)
    images = ref + mse.sqrt().view(-1, 1, 1, 1)
    per_image = [math.inf] + [10 * math.log10(1 / m) for m in mse[1:].tolist()]
    # torchmetrics' arithmetic (the bench's figures) holds 10 / ln(10) in float32: 1e-7 relative
    assert psnr_per_image(images, ref).tolist() == pytest.approx(per_image, rel=1e-6)
    assert mean_psnr(images, ref) == pytest.approx((PSNR_CAP + sum(per_image[1:])) / 4, rel=1e-6)
    assert mean_psnr(images, ref, cap=50.0) == pytest.approx((50.0 + sum(per_image[1:])) / 4, rel=1e-6)
    assert psnr_of_mean_mse(images, ref) == pytest.approx(10 * math.log10(4 / float(mse.sum())), rel=1e-12)
    assert mean_psnr(ref, ref) == PSNR_CAP and psnr_of_mean_mse(ref, ref) == math.inf
    metrics = image_metrics(images, ref)  # the analysis tables: per image, then summarised as PSNR of the mean MSE
    assert metrics["psnr"].tolist() == pytest.approx(per_image, rel=1e-12)
    assert summarize(metrics)["psnr"] == pytest.approx(psnr_of_mean_mse(images, ref), rel=1e-12)


def test_ssim_identical_is_one_and_noise_lowers_it():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(2, 1, 16, 16, generator=g)
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-5)
    noisy = (a + 0.2 * torch.randn(a.shape, generator=g)).clamp(0, 1)
    assert ssim(a, noisy) < 0.9


def test_frechet_of_identical_sets_is_zero_and_symmetric():
    x = torch.randn(500, 6, generator=torch.Generator().manual_seed(1))
    y = torch.randn(500, 6, generator=torch.Generator().manual_seed(2)) * 2 + 1
    sx, sy = gaussian_stats(x), gaussian_stats(y)
    assert frechet_gaussian(*sx, *sx) == pytest.approx(0.0, abs=1e-8)
    assert frechet_gaussian(*sx, *sy) == pytest.approx(frechet_gaussian(*sy, *sx), rel=1e-8)


def test_frechet_matches_the_closed_form_for_gaussians():
    # diagonal covariances: d^2 = |mu1 - mu2|^2 + sum_i (s1_i - s2_i)^2, s = standard deviations
    mu1, mu2 = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 1.0, 0.0])
    s1, s2 = torch.tensor([1.0, 2.0, 0.5]), torch.tensor([3.0, 1.0, 0.5])
    expected = float((mu1 - mu2).pow(2).sum() + (s1 - s2).pow(2).sum())
    assert frechet_gaussian(mu1, torch.diag(s1**2), mu2, torch.diag(s2**2)) == pytest.approx(expected, rel=1e-10)
    # a full covariance, rotated identically on both sides, leaves the distance unchanged
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    c1, c2 = q @ torch.diag(s1.double() ** 2) @ q.T, q @ torch.diag(s2.double() ** 2) @ q.T
    assert frechet_gaussian(q @ mu1.double(), c1, q @ mu2.double(), c2) == pytest.approx(expected, rel=1e-8)
    with pytest.raises(ValueError, match="features"):
        gaussian_stats(torch.zeros(1, 3))


def test_classifier_shapes_and_input_check():
    net = build_classifier("shapes").eval()
    out = net(torch.rand(2, 3, 24, 24))
    assert {k: v.shape[-1] for k, v in out.items()} == {"shape": 3, "colour": 6, "position": 9, "background": 6}
    assert net.features(torch.rand(2, 3, 24, 24)).shape == (2, 128)
    with pytest.raises(ValueError, match="images"):
        net(torch.rand(2, 1, 24, 24))
    with pytest.raises(ValueError, match="classifier"):
        build_classifier("cifar")


def test_fid_without_torch_fidelity_gives_a_clear_message():
    import importlib.util

    from unetlab.metrics import fid

    if importlib.util.find_spec("torch_fidelity") is not None:
        pytest.skip("torch-fidelity is installed")
    with pytest.raises(RuntimeError, match=r"fid: needs torchmetrics\[image\] and its pretrained weights"):
        fid(torch.rand(4, 3, 16, 16), torch.rand(4, 3, 16, 16))
    with pytest.raises(ValueError, match="images"):
        from unetlab.metrics.extra import _uint8

        _uint8(torch.rand(4, 2, 8, 8))
