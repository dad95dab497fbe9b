"""Tests for animlib.data.scenes: the synthetic cinemagraph scenes and their ground truth."""

import numpy as np
import pytest
import torch

from animlib.data.prepared import CinemagraphClips
from animlib.data.scenes import (
    DIRECTIONS,
    TEXTURES,
    SceneConfig,
    SceneStream,
    make_scenes,
    motion_mask_from_clip,
    opposite_class,
    real_textures,
)

torch.set_num_threads(1)


def test_shapes_range_and_determinism():
    s = make_scenes(6, seed=3)
    assert s.frames.shape == (6, 8, 3, 32, 32) and s.mask.shape == (6, 1, 32, 32)
    assert s.label.shape == (6,) and s.velocity.shape == (6, 2)
    assert 0 <= s.frames.min() and s.frames.max() <= 1
    s2 = make_scenes(6, seed=3)
    torch.testing.assert_close(s.frames, s2.frames)
    assert not torch.equal(s.frames, make_scenes(6, seed=4).frames)
    state = torch.get_rng_state()
    make_scenes(2, seed=0)
    assert torch.equal(state, torch.get_rng_state())  # the global RNG is untouched


@pytest.mark.parametrize("background", ["noise", "texture"])
def test_background_is_static_and_band_moves(background):
    s = make_scenes(16, seed=0, background=background)
    diff = (s.frames[:, 1:] - s.frames[:, :-1]).abs().amax(2, keepdim=True)  # (N, T-1, 1, H, W)
    outside = diff * (1 - s.mask[:, None])
    assert outside.max() == 0
    inside = (diff * s.mask[:, None]).sum() / (s.mask.sum() * 7)
    assert inside > 0.05


@pytest.mark.parametrize("num_classes,background", [(4, "noise"), (8, "noise"), (8, "texture")])
def test_motion_matches_label_shift_and_loops(num_classes, background):
    cfg = SceneConfig(num_classes=num_classes, background=background)
    s = make_scenes(12, cfg, seed=1, labels=torch.arange(12) % num_classes)
    T = cfg.frames
    for k in range(12):
        dx, dy = (int(v) for v in s.velocity[k])
        d = DIRECTIONS[int(s.label[k]) % 4]
        speed = 1 + int(s.label[k]) // 4
        assert (dx, dy) == (d[0] * speed, d[1] * speed)
        m = s.mask[k, 0].bool()
        f0, f1 = s.frames[k, 0], s.frames[k, 1]
        # frame 1 is frame 0 translated by the velocity, inside the band (away from the wrap)
        shifted = torch.roll(f0, shifts=(dy, dx), dims=(1, 2))
        inner = m.clone()
        inner[:, :3] = inner[:, -3:] = inner[:3, :] = inner[-3:, :] = False
        torch.testing.assert_close(f1[:, inner], shifted[:, inner], atol=1e-5, rtol=0)
        # the loop closes: frame T-1 moved by one more step is frame 0 again
        last = torch.roll(s.frames[k, T - 1], shifts=(dy, dx), dims=(1, 2))
        torch.testing.assert_close(last[:, inner], f0[:, inner], atol=1e-5, rtol=0)


@pytest.mark.parametrize("background", ["noise", "texture"])
def test_class_is_visible_in_the_still(background):
    # a nearest-centroid classifier on band colour + orientation statistics of frame 0 is ~perfect
    s = make_scenes(400, seed=2, background=background)
    x = s.still
    m = s.mask.bool()
    feats = []
    for k in range(len(s)):
        band = x[k][:, m[k, 0]]  # (3, P)
        img = x[k] * s.mask[k]
        gx = (img[:, :, 1:] - img[:, :, :-1]).abs().mean()
        gy = (img[:, 1:] - img[:, :-1]).abs().mean()
        feats.append(torch.cat([band.mean(1) / band.mean(), torch.stack([gx - gy])]))
    f = torch.stack(feats)
    cent = torch.stack([f[s.label == c].mean(0) for c in range(4)])
    pred = torch.cdist(f, cent).argmin(1)
    assert (pred == s.label).float().mean() > 0.95


@pytest.mark.parametrize("background", ["noise", "texture"])
def test_reversing_scenes_move_by_their_step_labels_and_loop(background):
    s = make_scenes(16, seed=3, reverse=0.5, background=background)
    T = s.frames.shape[1]
    assert 0 < int(s.reverses.sum()) < 16
    assert torch.equal(s.step_label[:, 0], s.label)
    for k in range(16):
        m = s.mask[k, 0].bool()
        inner = m.clone()
        inner[:, :3] = inner[:, -3:] = inner[:3, :] = inner[-3:, :] = False
        for t in range(T):  # step t takes frame t to frame t + 1 (the last one back to frame 0)
            d = DIRECTIONS[int(s.step_label[k, t]) % 4]
            moved = torch.roll(s.frames[k, t], shifts=(d[1], d[0]), dims=(1, 2))
            torch.testing.assert_close(s.frames[k, (t + 1) % T][:, inner], moved[:, inner], atol=1e-5, rtol=0)
        if s.reverses[k]:  # the second half runs the other way
            assert torch.equal(s.step_label[k, T // 2 :], opposite_class(s.label[k : k + 1]).expand(T // 2))
    # a reversing scene has its own hue, so the still tells it apart from the one-way scene of its class
    band_color = lambda i: s.still[i][:, s.mask[i, 0].bool()].mean(1)  # noqa: E731
    rev, one = int(s.reverses.nonzero()[0]), int((~s.reverses).nonzero()[0])
    assert not torch.allclose(band_color(rev), band_color(one), atol=0.05)
    assert torch.equal(make_scenes(4, seed=3).step_label, make_scenes(4, seed=3).label[:, None].expand(4, T))
    with pytest.raises(ValueError, match="even"):
        make_scenes(2, frames=5, period=5, reverse=0.5)


def test_texture_backgrounds_are_the_real_photographs():
    tex = real_textures()
    assert tex.shape == (len(TEXTURES), 512, 512)
    torch.testing.assert_close(tex.mean((1, 2)), torch.full((3,), 0.5), atol=0.02, rtol=0)  # normalised exposure
    s = make_scenes(64, seed=4, background="texture")
    bg = s.still * (1 - s.mask)
    # photographed texture has fine detail: neighbouring pixels differ far more often than in 4-px noise blocks
    noise = make_scenes(64, seed=4).still * (1 - s.mask)
    frac = lambda x: float(((x[..., 1:] - x[..., :-1]).abs() > 1e-4).float().mean())  # noqa: E731
    assert frac(bg) > 2 * frac(noise)
    outside = s.still.permute(1, 0, 2, 3)[:, ~s.mask[:, 0].bool()]  # (3, pixels) of the backgrounds
    assert 0.15 <= float(outside.min()) and float(outside.max()) <= 0.75  # the noise background's range
    assert not torch.equal(s.frames, make_scenes(64, seed=5, background="texture").frames)
    torch.testing.assert_close(s.frames, make_scenes(64, seed=4, background="texture").frames)


def test_extras_join_the_mask_and_loop():
    s = make_scenes(4, seed=5, extras=("flame", "branch"), size=48)
    plain = make_scenes(4, seed=5, size=48)
    assert s.mask.sum() > plain.mask.sum()
    diff = (s.frames[:, 1:] - s.frames[:, :-1]).abs().amax(2, keepdim=True)
    assert (diff * (1 - s.mask[:, None])).max() < 1e-6


def test_config_validation():
    with pytest.raises(ValueError, match="loop"):
        make_scenes(2, period=3)
    with pytest.raises(ValueError, match="background must be one of"):
        make_scenes(2, background="photo")
    with pytest.raises(ValueError, match="extras"):
        make_scenes(2, extras=("volcano",))
    with pytest.raises(ValueError, match="labels"):
        make_scenes(2, labels=[0, 9])
    with pytest.raises(ValueError, match="n must"):
        make_scenes(0)


def test_scene_stream_is_deterministic_per_step():
    st = SceneStream(4, seed=1)
    a, b = st(7), st(7)
    torch.testing.assert_close(a["frames"], b["frames"])
    assert not torch.equal(st(8)["frames"], a["frames"])
    assert a["frames"].shape == (4, 8, 3, 32, 32)


def test_scenes_render_on_the_requested_device():
    # "meta" tensors have shapes but no data: every tensor of the scene must have been made there
    # (a CPU-only step would fail or return a CPU tensor), as it must on a GPU.
    s = make_scenes(3, seed=2, extras=("flame", "branch"), device="meta")
    assert {t.device.type for t in s.as_dict().values()} == {"meta"}
    assert s.frames.shape == (3, 8, 3, 32, 32)
    # the random draws stay on the CPU's seeded generator: the same scenes wherever they render
    a, b = make_scenes(3, seed=2, extras=("flame", "branch")), make_scenes(3, seed=2, extras=("flame", "branch"),
                                                                            device="cpu")
    assert torch.equal(a.frames, b.frames) and torch.equal(a.mask, b.mask)
    assert SceneStream(2, seed=0, device="meta")(0)["frames"].device.type == "meta"


def test_full_profile_size():
    s = make_scenes(2, seed=0, size=128, frames=16, num_classes=8, block=8)
    assert s.frames.shape == (2, 16, 3, 128, 128)


def test_real_clip_folder(tmp_path):
    import imageio.v3 as iio

    s = make_scenes(2, seed=0)
    for k in range(2):
        d = tmp_path / f"clip{k}"
        d.mkdir()
        for t in range(8):
            iio.imwrite(d / f"{t:05d}.png", (s.frames[k, t].permute(1, 2, 0).numpy() * 255).astype(np.uint8))
    ds = CinemagraphClips(tmp_path, frames=8, size=32)
    assert len(ds) == 2
    item = ds[0]
    assert item["frames"].shape == (8, 3, 32, 32) and item["label"].item() == -1
    # the estimated mask finds the band
    agree = (item["mask"] == s.mask[0]).float().mean()
    assert agree > 0.9
    with pytest.raises(FileNotFoundError, match="clip"):
        CinemagraphClips(tmp_path / "missing")
    assert motion_mask_from_clip(torch.zeros(3, 1, 4, 4)).sum() == 0
