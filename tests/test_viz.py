"""Tests for animlib.viz: frame conversion, animations, GIF/MP4 files, grids, storyboards, curves.

Expected values are computed independently of the module (by hand, with torchvision's make_grid,
by decoding the files and the embedded PNG frames), so every test can fail.
"""

from __future__ import annotations

import base64
import io
import sys

import imageio.v3 as iio
import imageio_ffmpeg
import numpy as np
import pytest
import torch
from PIL import Image

from animlib import viz

# Distinct, well-separated colours (uint8) used to build clips whose frames can be told apart.
PALETTE = np.array(
    [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [0, 255, 255], [255, 0, 255], [128, 128, 128]],
    dtype=np.uint8,
)


def solid_clip(colors: np.ndarray, h: int, w: int) -> torch.Tensor:
    """A (T, 3, H, W) float clip whose frame t is filled with colours[t] / 255."""
    c = torch.from_numpy(colors.astype(np.float32) / 255.0)  # (T, 3)
    return c[:, :, None, None].expand(-1, -1, h, w).contiguous()  # (T, 3, H, W)


def pattern_clip(t: int, h: int, w: int) -> np.ndarray:
    """A (T, H, W, 3) uint8 clip: a 2x2 colour quadrant pattern that rotates by one colour per frame."""
    out = np.zeros((t, h, w, 3), np.uint8)
    for k in range(t):
        quads = [PALETTE[(k + q) % len(PALETTE)] for q in range(4)]
        out[k, : h // 2, : w // 2] = quads[0]
        out[k, : h // 2, w // 2 :] = quads[1]
        out[k, h // 2 :, : w // 2] = quads[2]
        out[k, h // 2 :, w // 2 :] = quads[3]
    return out


def jshtml_frames(markup: str) -> list:
    """Decode every PNG frame embedded in a matplotlib jshtml player into a (H, W, 3) uint8 array."""
    frames = []
    marker = "data:image/png;base64,"
    start = markup.find(marker)
    while start != -1:
        start += len(marker)
        end = markup.find('"', start)
        data = base64.b64decode(markup[start:end].replace("\\\n", ""))
        frames.append(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
        start = markup.find(marker, end)
    return frames


@pytest.fixture(autouse=True)
def no_stray_figures():
    """Every viz call must leave pyplot with no open figures (no stray images in notebooks)."""
    import matplotlib.pyplot as plt

    before = set(plt.get_fignums())
    yield
    assert set(plt.get_fignums()) == before


# ----------------------------------------------------------------------------------------------
# to_uint8_frames
# ----------------------------------------------------------------------------------------------
def test_uint8_values_and_rounding():
    vals = np.array([0.0, 0.25, 0.6, 1.0, 1.4, -0.3], np.float32)
    frames = np.tile(vals[None, None, :], (2, 3, 1))  # (T=2, H=3, W=6)
    with pytest.warns(UserWarning, match="clipped"):  # 1.4 is far outside (0, 1)
        out = viz.to_uint8_frames(frames)
    expected = [0, 64, 153, 255, 255, 0]  # round(v*255), clipped: 63.75->64, 153.0
    assert out.shape == (2, 3, 6, 3) and out.dtype == np.uint8
    assert out[1, 2, :, 0].tolist() == expected
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 0] == out[..., 2]).all()  # gray -> RGB


def test_value_range_tanh():
    vals = torch.tensor([-1.0, -0.5, 0.5, 1.0])
    out = viz.to_uint8_frames(vals.view(1, 1, 1, 4), value_range=(-1, 1))  # (T, C, H, W)
    # independent: (v + 1) / 2 * 255 rounded half up; none of these are ties
    expected = [int(np.floor((v + 1) / 2 * 255 + 0.5)) for v in vals.tolist()]
    assert out[0, 0, :, 0].tolist() == expected == [0, 64, 191, 255]


def test_uint8_input_is_read_as_0_255():
    a = np.full((2, 4, 4, 3), 200, np.uint8)
    assert (viz.to_uint8_frames(a) == 200).all()
    assert (viz.to_uint8_frames(torch.from_numpy(a).permute(0, 3, 1, 2)) == 200).all()


@pytest.mark.parametrize(
    "make",
    [
        lambda x: torch.from_numpy(x).permute(0, 3, 1, 2),  # tensor (T, C, H, W)
        lambda x: x,  # array (T, H, W, C)
        lambda x: [torch.from_numpy(f).permute(2, 0, 1) for f in x],  # list of (C, H, W)
        lambda x: list(x),  # list of (H, W, C)
        lambda x: torch.from_numpy(x).permute(0, 3, 1, 2).numpy(),  # array (T, C, H, W): unambiguous
    ],
)
def test_rgb_layouts_agree(make):
    x = pattern_clip(4, 6, 10).astype(np.float32) / 255.0  # (T, H, W, 3)
    out = viz.to_uint8_frames(make(x))
    np.testing.assert_array_equal(out, pattern_clip(4, 6, 10))


@pytest.mark.parametrize(
    "make",
    [
        lambda g: torch.from_numpy(g),  # tensor (T, H, W)
        lambda g: torch.from_numpy(g)[:, None],  # tensor (T, 1, H, W)
        lambda g: g[..., None],  # array (T, H, W, 1)
        lambda g: [f for f in g],  # list of (H, W)
    ],
)
def test_gray_layouts_agree(make):
    g = np.linspace(0, 1, 4 * 5 * 7, dtype=np.float32).reshape(4, 5, 7)  # (T, H, W)
    out = viz.to_uint8_frames(make(g))
    expected = np.floor(g * 255 + 0.5).astype(np.uint8)
    assert out.shape == (4, 5, 7, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], expected)


def test_ambiguous_channel_axis_follows_type_convention():
    x = torch.rand(2, 3, 5, 3)  # both axis 1 and axis 3 could hold channels
    assert viz.to_uint8_frames(x).shape == (2, 5, 3, 3)  # tensor: channels-first (T, C, H, W)
    assert viz.to_uint8_frames(x.numpy()).shape == (2, 3, 5, 3)  # array: channels-last (T, H, W, C)
    frame = torch.rand(1, 4, 1)  # one list element, (C, H, W) vs (H, W, C)
    assert viz.to_uint8_frames([frame]).shape == (1, 4, 1, 3)
    assert viz.to_uint8_frames([frame.numpy()]).shape == (1, 1, 4, 3)


def test_mixed_gray_and_rgb_list_and_gradients_and_bf16():
    rgb = torch.rand(3, 4, 4, requires_grad=True)
    gray = torch.full((4, 4), 0.5, dtype=torch.bfloat16)
    out = viz.to_uint8_frames([rgb, gray])
    assert out.shape == (2, 4, 4, 3)
    assert (out[1] == 128).all()


@pytest.mark.parametrize(
    "bad, match",
    [
        (torch.rand(2, 4, 3, 8, 8), "5-D"),
        (torch.rand(8, 8), "one \\(H, W\\) image"),
        (torch.rand(4, 5, 8, 8), "no channel axis of size 1 or 3"),
        (np.random.rand(4, 8, 8, 4), "RGBA"),
        ([], "empty"),
        ([torch.rand(3, 8, 8), torch.rand(3, 8, 9)], "frames\\[1\\] is 8x9"),
        ([torch.rand(2, 3, 8, 8)], "animate_side_by_side"),
        ("not frames", "torch tensor"),
        (torch.full((2, 4, 4), float("nan")), "NaN"),
    ],
)
def test_bad_inputs_raise_helpful_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        viz.to_uint8_frames(bad)


@pytest.mark.parametrize("vr", [(1, 0), (0, 0), (0,), "ab"])
def test_bad_value_range(vr):
    with pytest.raises(ValueError, match="value_range"):
        viz.to_uint8_frames(torch.rand(2, 4, 4), value_range=vr)


def test_out_of_range_warns_with_hint():
    with pytest.warns(UserWarning, match="value_range=\\(-1, 1\\)"):
        viz.to_uint8_frames(torch.linspace(-1, 1, 16).view(1, 4, 4))


# ----------------------------------------------------------------------------------------------
# Animations
# ----------------------------------------------------------------------------------------------
def test_animate_embeds_every_frame_with_its_content():
    colors = PALETTE[:5]
    out = viz.animate(solid_clip(colors, 8, 8), fps=5, scale=4, alt="five colours")
    markup = out._repr_html_()
    frames = jshtml_frames(markup)
    assert len(frames) == 5
    for png, color in zip(frames, colors):
        h, w, _ = png.shape
        assert png[h // 2, w // 2].tolist() == color.tolist()  # centre of the panel is the frame colour
    assert "play_animation()" in markup and 'aria-label="Play"' in markup
    assert 'role="figure" aria-label="five colours"' in markup
    assert "font-awesome" not in markup and "http" not in markup.split("<script")[0]  # plays offline


def test_animate_default_alt_loop_mode_and_odd_gray():
    out = viz.animate(torch.rand(5, 7, 5), title="noise", loop=False)  # odd size, grayscale (T, H, W)
    markup = out.data
    assert len(jshtml_frames(markup)) == 5
    assert 'aria-label="Animation (clip, 5 frames at 8 fps): noise"' in markup
    assert 'value="once" id' in markup and "checked" in markup.split('value="once"')[1][:80]


def test_animate_rejects_a_list_of_clips():
    with pytest.raises(ValueError, match="animate_side_by_side"):
        viz.animate([torch.rand(4, 3, 8, 8), torch.rand(4, 3, 8, 8)])


def test_side_by_side_holds_short_clip_and_shows_both():
    still = solid_clip(PALETTE[[6]], 8, 8)  # (1, 3, 8, 8): an input still image
    moving = solid_clip(PALETTE[:3], 4, 4)  # (3, 3, 4, 4): smaller frames, shown at the same height
    out = viz.animate_side_by_side({"input": still, "generated": moving}, scale=4)
    frames = jshtml_frames(out.data)
    assert len(frames) == 3
    for k, png in enumerate(frames):
        h, w, _ = png.shape
        mid = h // 2 + 11  # below the title band, inside the panels
        row = png[mid]
        assert row[w // 4].tolist() == PALETTE[6].tolist()  # left panel holds the still
        assert row[3 * w // 4].tolist() == PALETTE[k].tolist()  # right panel moves
    assert "input, generated" in out.data


def test_side_by_side_argument_checks():
    with pytest.raises(ValueError, match="one title per clip"):
        viz.animate_side_by_side([torch.rand(2, 4, 4)] * 2, titles=["a"])
    with pytest.raises(ValueError, match="for one clip"):
        viz.animate_side_by_side(torch.rand(2, 4, 4))


def test_embed_limit_raises_instead_of_dropping_frames():
    with pytest.raises(ValueError, match="embed_limit_mb"):
        viz.animate(torch.rand(4, 3, 16, 16), embed_limit_mb=0.001)


# ----------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------
def test_gif_round_trip_rgb(tmp_path):
    clip = pattern_clip(5, 6, 10)  # (T, H, W, 3) uint8
    path = viz.save_gif(torch.from_numpy(clip).permute(0, 3, 1, 2), tmp_path / "sub" / "p.gif", fps=10)
    assert path == tmp_path / "sub" / "p.gif" and path.exists()
    back = iio.imread(path, index=None)
    assert back.shape[:4] == (5, 6, 10, 3)
    assert np.abs(back[..., :3].astype(int) - clip.astype(int)).max() <= 2
    meta = iio.immeta(path)
    assert meta["loop"] == 0 and meta["duration"] == 100
    assert sorted(p.name for p in path.parent.iterdir()) == ["p.gif"]  # no temp files left


def test_gif_gray_odd_size_and_scale(tmp_path):
    g = np.array([0, 51, 102, 153, 204, 255], np.float32) / 255.0
    clip = np.stack([np.roll(np.tile(g, (7, 1)), k, axis=1)[:, :5] for k in range(4)])  # (T, 7, 5)
    path = viz.save_gif(clip, tmp_path / "g.gif", scale=2)
    back = iio.imread(path, index=None)
    assert back.shape[:3] == (4, 14, 10)
    expected = np.repeat(np.repeat(np.rint(clip * 255), 2, axis=1), 2, axis=2)  # (T, 14, 10)
    got = back[..., 0] if back.ndim == 4 else back
    np.testing.assert_allclose(got, expected, atol=1)


def test_mp4_round_trip_odd_size(tmp_path):
    color = np.array([204, 51, 102])
    clip = solid_clip(np.repeat(color[None], 6, 0), 9, 15)  # (6, 3, 9, 15): odd H and W
    path = viz.save_mp4(clip, tmp_path / "c.mp4", fps=6)
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    frames = [np.frombuffer(b, np.uint8).reshape(meta["size"][1], meta["size"][0], 3) for b in reader]
    assert meta["size"] == (16, 10)  # (W, H) padded to even
    assert len(frames) == 6
    mean = np.mean(frames, axis=(0, 1, 2))
    assert np.abs(mean - color).max() < 8
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.mp4"]


def test_mp4_frames_in_order(tmp_path):
    clip = solid_clip(PALETTE[:4], 16, 16)
    path = viz.save_mp4(clip, tmp_path / "o.mp4", fps=4)
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    frames = [np.frombuffer(b, np.uint8).reshape(16, 16, 3) for b in reader]
    assert len(frames) == 4 and meta["fps"] == 4
    for f, color in zip(frames, PALETTE[:4]):
        assert np.abs(f.reshape(-1, 3).mean(0) - color).max() < 12


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(ValueError):
        viz.save_gif(torch.rand(2, 4, 4), tmp_path / "x.gif", scale=0)
    with pytest.raises(ValueError, match="fps"):
        viz.save_mp4(torch.rand(2, 4, 4), tmp_path / "x.mp4", fps=0)
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------------------------
# Still figures
# ----------------------------------------------------------------------------------------------
def test_make_grid_array_matches_torchvision():
    from torchvision.utils import make_grid

    imgs = torch.randint(0, 256, (5, 3, 6, 4)).float() / 255.0  # exact in uint8
    ours = viz.make_grid_array(imgs, nrow=3, padding=2, pad_value=1.0)
    ref = make_grid(imgs, nrow=3, padding=2, pad_value=1.0)  # (3, H', W')
    ref = (ref * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(ours, ref)


def test_image_grid_axes():
    imgs = torch.rand(5, 1, 8, 8)
    assert len(viz.image_grid(imgs, nrow=3).axes) == 1
    fig = viz.image_grid(imgs, nrow=3, titles=[f"#{i}" for i in range(5)])
    assert len(fig.axes) == 5
    assert [ax.get_title() for ax in fig.axes] == [f"#{i}" for i in range(5)]
    with pytest.raises(ValueError, match="one title per image"):
        viz.image_grid(imgs, titles=["a"])


def test_storyboard_axes_and_labels():
    inp, rec = torch.rand(4, 3, 8, 8), torch.rand(4, 3, 8, 8)
    fig = viz.storyboard([inp, rec], ["input", "reconstruction"], col_labels=["t=0", "t=1", "t=2", "t=3"])
    assert len(fig.axes) == 8
    labels = [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()]
    assert labels == ["input", "reconstruction"]
    assert [ax.get_title() for ax in fig.axes[:4]] == ["t=0", "t=1", "t=2", "t=3"]
    np.testing.assert_array_equal(fig.axes[5].images[0].get_array(), viz.to_uint8_frames(rec)[1])
    fig = viz.storyboard({"a": inp, "b": rec[:2]})  # dict: keys are labels; rows may be shorter
    assert len(fig.axes) == 6
    with pytest.raises(ValueError, match="one label per row"):
        viz.storyboard([inp, rec], ["only one"])


# ----------------------------------------------------------------------------------------------
# Training curves
# ----------------------------------------------------------------------------------------------
def test_ema_by_hand():
    # smooth=0.5 on [1, 2, 2]: m = 0.5, 1.25, 1.625; debiasing divides by 0.5, 0.75, 0.875
    np.testing.assert_allclose(viz.ema([1.0, 2.0, 2.0], 0.5), [1.0, 5.0 / 3.0, 13.0 / 7.0])
    # on [2, 0, 0]: m = 1, 0.5, 0.25
    np.testing.assert_allclose(viz.ema([2.0, 0.0, 0.0], 0.5), [2.0, 2.0 / 3.0, 2.0 / 7.0])
    np.testing.assert_allclose(viz.ema([3.0, 1.0], 0.0), [3.0, 1.0])
    with pytest.raises(ValueError, match="smooth"):
        viz.ema([1.0], 1.0)


def test_plot_history_list_of_dicts():
    hist = [{"step": 10 * i, "loss": 1.0 / (i + 1), "note": "x"} for i in range(6)]
    for i in range(0, 6, 2):
        hist[i]["val"] = torch.tensor(0.5 + i)  # evaluated every other step, as a 0-d tensor
    fig = viz.plot_history(hist)
    assert len(fig.axes) == 1
    lines = {ln.get_label(): ln for ln in fig.axes[0].get_lines()}
    assert set(lines) == {"loss", "val"}
    np.testing.assert_allclose(lines["val"].get_xdata(), [0, 20, 40])
    np.testing.assert_allclose(lines["val"].get_ydata(), [0.5, 2.5, 4.5])


def test_plot_history_dict_smooth_logy_separate():
    hist = {"step": [0, 1, 2, 3], "g_loss": [4.0, 2.0, 2.0, 1.0], "d_loss": [1.0, 1.0, 1.0, float("nan")]}
    fig = viz.plot_history(hist, keys="g_loss", smooth=0.5, logy=True)
    ax = fig.axes[0]
    smoothed = [ln for ln in ax.get_lines() if ln.get_label() == "g_loss"][0]
    m, expected = 0.0, []
    for t, v in enumerate([4.0, 2.0, 2.0, 1.0]):
        m = 0.5 * m + 0.5 * v
        expected.append(m / (1 - 0.5 ** (t + 1)))
    np.testing.assert_allclose(smoothed.get_ydata(), expected)
    assert len(ax.get_lines()) == 2 and ax.get_yscale() == "log"
    fig = viz.plot_history(hist, separate=True)
    assert len(fig.axes) == 2 and [a.get_ylabel() for a in fig.axes] == ["g_loss", "d_loss"]
    assert len(fig.axes[1].get_lines()[0].get_xdata()) == 3  # the NaN step is dropped
    with pytest.raises(ValueError, match="available keys"):
        viz.plot_history(hist, keys=["acc"])


def test_plot_history_into_given_axes():
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    try:
        out = viz.plot_history([{"loss": 1.0}, {"loss": 0.5}], ax=ax)
        assert out is fig and len(ax.get_lines()) == 1
        np.testing.assert_allclose(ax.get_lines()[0].get_xdata(), [0, 1])  # no "step": list index
    finally:
        plt.close(fig)


# ----------------------------------------------------------------------------------------------
# Scrub widget
# ----------------------------------------------------------------------------------------------
def _decode_png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def test_scrub_widget_slider_and_dropdown():
    pytest.importorskip("ipywidgets")
    gates = {"input gate": solid_clip(PALETTE[:3], 4, 4), "forget gate": solid_clip(PALETTE[3:5], 4, 4)}
    box = viz.scrub_widget(gates, scale=2)
    dropdown, image, slider = box.children
    assert slider.max == 2 and _decode_png(image.value).shape == (8, 8, 3)
    slider.value = 2
    assert _decode_png(image.value)[0, 0].tolist() == PALETTE[2].tolist()
    dropdown.value = "forget gate"  # shorter sequence: slider clamps to its last frame
    assert slider.max == 1 and slider.value == 1
    assert _decode_png(image.value)[0, 0].tolist() == PALETTE[4].tolist()


def test_scrub_widget_falls_back_to_static_player(monkeypatch):
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # import ipywidgets -> ImportError
    out = viz.scrub_widget(solid_clip(PALETTE[:3], 4, 4))
    assert len(jshtml_frames(out._repr_html_())) == 3


def test_a_three_by_h_by_w_tensor_is_refused_as_ambiguous():
    # An RGB still (3, H, W) passed where a clip is expected used to play as three gray frames.
    with pytest.raises(ValueError, match=r"x\[None\] for one image"):
        viz.to_uint8_frames(torch.rand(3, 16, 16))
    assert viz.to_uint8_frames(torch.rand(3, 16, 16)[None]).shape == (1, 16, 16, 3)  # one RGB image
    assert viz.to_uint8_frames(torch.rand(3, 16, 16)[:, None]).shape == (3, 16, 16, 3)  # three gray frames
    assert viz.to_uint8_frames([torch.rand(3, 16, 16)]).shape == (1, 16, 16, 3)  # a list of one frame
