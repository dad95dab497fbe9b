"""Tests for animlib.data.faces (the synthetic face generator) and animlib.face_regressor."""

import pytest
import torch

from animlib.data.faces import (
    IDENTITY_NAMES,
    MOTION_NAMES,
    SyntheticFaces,
    face_clips,
    motion_to_unit,
    random_blur,
    render_faces,
    sample_identity,
    sample_motion,
    unit_to_motion,
)
from animlib.data.prepared import FaceVideos, RealFaces
from animlib.face_regressor import FaceParamRegressor, FaceRegressorConfig, train_face_regressor


def test_render_shapes_range_and_determinism():
    ident, mot = sample_identity(5, 0), sample_motion(5, 1)
    for size in (16, 32, 48):
        img = render_faces(ident, mot, size)
        assert img.shape == (5, 3, size, size)
        assert img.min() >= 0 and img.max() <= 1
    torch.testing.assert_close(render_faces(ident, mot, 32), render_faces(ident.clone(), mot.clone(), 32))
    a, b = SyntheticFaces(8, 32, seed=3), SyntheticFaces(8, 32, seed=3)
    torch.testing.assert_close(a.images, b.images)
    assert not torch.equal(a.images, SyntheticFaces(8, 32, seed=4).images)


def test_bad_parameters_raise_clear_errors():
    with pytest.raises(ValueError, match="identity must have shape"):
        render_faces(torch.rand(2, 3), sample_motion(2))
    with pytest.raises(ValueError, match="motion must have shape"):
        render_faces(sample_identity(2), torch.rand(2, 2))
    with pytest.raises(ValueError, match="rows"):
        render_faces(sample_identity(2), sample_motion(3))


def test_antialiased_edges_have_intermediate_values():
    img = render_faces(sample_identity(1, 0), sample_motion(1, 0), 32)
    levels = torch.unique((img * 255).round())
    assert levels.numel() > 40  # hard edges would give only a handful of flat colours


def _eye_region(img, size):
    # rows around the eyes (features at the centre when yaw = pitch = 0)
    y0, y1 = int(size * 0.30), int(size * 0.52)
    return img[:, :, y0:y1]


def test_motion_parameters_change_the_right_places():
    size = 48
    ident = sample_identity(1, 2).expand(2, -1)
    base = torch.tensor([[0.0, 0.0, 0.2, 0.0, 0.0]]).expand(2, -1).clone()
    # blink: the eyes change, the lower face does not
    m = base.clone()
    m[1, 3] = 1.0
    img = render_faces(ident, m, size)
    diff = (img[0] - img[1]).abs().sum(0)
    assert diff[int(size * 0.3) : int(size * 0.52)].sum() > 20 * diff[int(size * 0.75) :].sum() + 1e-6
    # mouth: the lower face changes, the eyes do not
    m = base.clone()
    m[1, 2] = 1.0
    diff = (render_faces(ident, m, size)[0] - render_faces(ident, m, size)[1]).abs().sum(0)
    assert diff[int(size * 0.65) :].sum() > 20 * diff[: int(size * 0.5)].sum() + 1e-6
    # the open mouth is dark: mean luminance of the lower face drops
    lower = render_faces(ident, m, size)[:, :, int(size * 0.65) :].mean((1, 2, 3))
    assert lower[1] < lower[0] - 0.02
    # yaw moves the features to the right: the dark centroid shifts right
    m = base.clone()
    m[0, 0], m[1, 0] = -1.0, 1.0
    img = render_faces(ident, m, size)
    dark = (1 - img.mean(1)) ** 4  # (2, H, W) emphasises pupils, mouth
    xs = torch.arange(size).float()
    cx = (dark.sum(1) * xs).sum(1) / dark.sum((1, 2))
    assert cx[1] > cx[0] + 2


def test_identity_changes_appearance_not_motion():
    mot = sample_motion(1, 5).expand(2, -1)
    ident = sample_identity(2, 6)
    img = render_faces(ident, mot, 32)
    assert (img[0] - img[1]).abs().mean() > 0.05


def test_clips_keep_identity_and_move_smoothly():
    clips = face_clips(3, frames=12, size=32, seed=0)
    assert clips.video.shape == (3, 12, 3, 32, 32)
    assert clips.identity.shape == (3, len(IDENTITY_NAMES))
    assert clips.motion.shape == (3, 12, len(MOTION_NAMES))
    step = (clips.motion[:, 1:] - clips.motion[:, :-1]).abs()
    assert step[..., [0, 1, 4]].max() < 0.8  # smooth head motion
    assert clips.motion[..., 3].amax(1).min() > 0.5  # every clip blinks at least once
    again = face_clips(3, frames=12, size=32, seed=0)
    torch.testing.assert_close(clips.video, again.video)


def test_unit_conversion_roundtrip():
    m = sample_motion(10, 0)
    u = motion_to_unit(m)
    assert u.min() >= 0 and u.max() <= 1
    torch.testing.assert_close(unit_to_motion(u), m)


def test_random_blur_keeps_mean_and_smooths():
    x = SyntheticFaces(4, 32, seed=0).images
    y = random_blur(x, max_sigma=1.5, generator=torch.Generator().manual_seed(0))
    assert y.shape == x.shape
    torch.testing.assert_close(y.mean(), x.mean(), atol=5e-3, rtol=0)
    tv = lambda t: (t[..., 1:] - t[..., :-1]).abs().mean()  # noqa: E731
    assert tv(y) < tv(x)


def test_regressor_shapes_and_errors():
    reg = FaceParamRegressor(FaceRegressorConfig(image_size=32))
    i, m = reg(torch.rand(2, 3, 32, 32))
    assert i.shape == (2, 8) and m.shape == (2, 5)
    with pytest.raises(ValueError, match="expected images"):
        reg(torch.rand(2, 3, 64, 64))


@pytest.mark.slow
def test_regressor_learns_motion_better_than_mean():
    torch.manual_seed(0)
    reg = train_face_regressor(size=32, steps=250, batch_size=32, seed=0, device="cpu", progress=False,
                               config=FaceRegressorConfig(image_size=32, width=16, hidden=64)).raw_models["model"]
    test = SyntheticFaces(256, 32, seed=9)
    with torch.no_grad():
        _, pm = reg(test.images)
    u = motion_to_unit(test.motion)
    err = (pm - u).pow(2).mean(0)
    base = (u - u.mean(0)).pow(2).mean(0)
    # yaw, pitch and mouth are easy (measured ratios about 0.05, 0.09, 0.29 at 250 steps on every CPU kind)
    assert (err[[0, 1, 2]] < 0.5 * base[[0, 1, 2]]).all(), (err, base)


def test_real_faces_without_data_name_the_script(tmp_path):
    with pytest.raises(FileNotFoundError, match="imdb_wiki.py"):
        RealFaces(None)
    with pytest.raises(FileNotFoundError, match="voxceleb.py"):
        FaceVideos(tmp_path / "missing")


def test_uint8_storage_matches_float():
    a, b = SyntheticFaces(6, 32, seed=2), SyntheticFaces(6, 32, seed=2, uint8=True)
    assert b.images.dtype == torch.uint8
    img, ident, mot = b[3]
    assert img.dtype == torch.float32
    torch.testing.assert_close(img, a[3][0], atol=1 / 255, rtol=0)
    torch.testing.assert_close(ident, a.identity[3])


def test_regressor_read_handles_clip_shapes():
    reg = FaceParamRegressor(FaceRegressorConfig(image_size=16, width=8, hidden=16))
    ident, mot = reg.read(torch.rand(2, 3, 3, 16, 16), batch_size=4)
    assert ident.shape == (2, 3, 8) and mot.shape == (2, 3, 5)
    assert reg.training  # read() restores the mode


def test_motion_correlations_match_numpy_per_parameter():
    import numpy as np

    from animlib.data import faces
    from animlib.face_regressor import motion_correlations

    g = torch.Generator().manual_seed(0)
    true = torch.rand(6, 4, 5, generator=g)  # (N, T, 5): videos
    noise = torch.rand(6, 4, 5, generator=g)
    read = true + torch.tensor([0.0, 0.1, 0.5, 1.0, 3.0]) * noise  # worse and worse readings
    r = motion_correlations(read, true)
    assert list(r) == list(faces.MOTION_NAMES)
    expected = [np.corrcoef(read[..., i].flatten().numpy(), true[..., i].flatten().numpy())[0, 1] for i in range(5)]
    assert np.allclose(list(r.values()), expected, atol=1e-5)
    assert r[faces.MOTION_NAMES[0]] > 0.999 and r[faces.MOTION_NAMES[4]] < r[faces.MOTION_NAMES[1]]
    with pytest.raises(ValueError, match="same shape"):
        motion_correlations(read[:, :2], true)
