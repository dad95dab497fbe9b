"""Tests for animlib.data.actions: determinism, shapes, labels that match the motion, anomalies."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from animlib.data.actions import (
    ACTIONS,
    ANOMALY_TYPES,
    make_action_clips,
    make_anomaly_benchmark,
    make_anomaly_clips,
    to_model_range,
    weizmann_dataset,
)

torch.set_num_threads(1)


def _figure_mask(clip: torch.Tensor) -> torch.Tensor:
    """Pixels of the figure, found from the pixels alone: much brighter than the frame's median."""
    x = clip[:, 0]  # (T, H, W)
    med = x.flatten(1).median(dim=1).values[:, None, None]  # the background dominates every frame
    return (x - med) > 0.25  # (T, H, W)


def _centroid_x(mask: torch.Tensor) -> np.ndarray:
    xs = torch.arange(mask.shape[-1], dtype=torch.float32)
    w = mask.float()
    return ((w * xs).sum((-1, -2)) / w.sum((-1, -2)).clamp_min(1)).numpy()


def test_deterministic_per_seed_and_shapes():
    a = make_action_clips(6, frames=5, size=32, seed=3)
    b = make_action_clips(6, frames=5, size=32, seed=3)
    c = make_action_clips(6, frames=5, size=32, seed=4)
    assert a.clips.shape == (6, 5, 1, 32, 32) and a.clips.dtype == torch.float32
    torch.testing.assert_close(a.clips, b.clips, rtol=0, atol=0)
    assert torch.equal(a.labels, b.labels)
    assert not torch.equal(a.clips, c.clips)
    assert 0.0 <= a.clips.min() and a.clips.max() <= 1.0
    m = make_action_clips(6, frames=5, size=32, seed=3, value_range=(-1, 1))
    torch.testing.assert_close(m.clips, to_model_range(a.clips))
    for kind in ANOMALY_TYPES:
        x = make_anomaly_clips(3, kind, frames=8, size=32, seed=1)
        y = make_anomaly_clips(3, kind, frames=8, size=32, seed=1)
        assert torch.equal(x.clips, y.clips) and torch.equal(x.frame_anomaly, y.frame_anomaly)


def test_every_action_is_drawn_and_labels_are_consistent():
    a = make_action_clips(60, frames=4, size=32, seed=0)
    assert set(a.labels.tolist()) == set(range(len(ACTIONS)))
    assert a.action_names[0] == ACTIONS[int(a.labels[0])]
    only = make_action_clips(8, frames=4, size=32, seed=0, actions=("wave2",))
    assert set(only.action_names) == {"wave2"}


@pytest.mark.parametrize("action", ["walk", "run", "jump", "skip", "side"])
def test_travelling_actions_move_towards_their_direction(action):
    a = make_action_clips(6, frames=16, size=64, seed=2, actions=(action,))
    for i in range(len(a)):
        cx = _centroid_x(_figure_mask(a.clips[i]))
        moved = cx[-1] - cx[0]
        assert abs(moved) > 12, f"{action} clip {i} barely moved ({moved:.1f} px)"
        assert np.sign(moved) == np.sign(a.params["velocity"][i])
        if action != "side":  # seen from the front, "side" has no facing
            assert np.sign(moved) == a.params["facing"][i]


@pytest.mark.parametrize("action", ["bend", "jack", "pjump", "wave1", "wave2"])
def test_actions_in_place_stay_in_place(action):
    a = make_action_clips(6, frames=16, size=64, seed=2, actions=(action,))
    for i in range(len(a)):
        m = _figure_mask(a.clips[i])  # (T, H, W)
        feet = []
        for t in range(m.shape[0]):  # the feet: the lowest rows of the figure
            rows = torch.nonzero(m[t].any(-1)).flatten()
            low = m[t].clone()
            low[: rows.max() - 3] = False
            feet.append(_centroid_x(low[None])[0])
        drift = max(feet) - min(feet)
        assert drift < 8, f"{action} clip {i}: feet moved {drift:.1f} px"


def test_poses_match_their_actions_in_pixels():
    """Bending shrinks the figure's height; a jumping jack widens it; waving raises the hands above the head."""

    def extents(clip):
        m = _figure_mask(clip)
        rows, cols = m.any(-1), m.any(-2)  # (T, H), (T, W)
        idx = torch.arange(m.shape[-1])
        h = [(idx[r].max() - idx[r].min()).item() if r.any() else 0 for r in rows]
        w = [(idx[c].max() - idx[c].min()).item() if c.any() else 0 for c in cols]
        top = [idx[r].min().item() if r.any() else 0 for r in rows]
        return np.array(h), np.array(w), np.array(top)

    bend = make_action_clips(4, frames=20, size=64, seed=5, actions=("bend",), speed=(1.0, 1.0))
    for clip in bend.clips:
        h, _, _ = extents(clip)
        assert h.min() < 0.8 * h.max()
    jack = make_action_clips(4, frames=20, size=64, seed=5, actions=("jack",))
    for clip in jack.clips:
        _, w, _ = extents(clip)
        assert w.max() > 1.8 * w.min()
    # Hands above the head: the figure's top is higher for wave2 than for a walker of the same body height.
    w2 = make_action_clips(8, frames=8, size=64, seed=6, actions=("wave2",))
    wk = make_action_clips(8, frames=8, size=64, seed=6, actions=("walk",))
    for a, b in zip(w2.clips, wk.clips):
        assert extents(a)[2].min() < extents(b)[2].min() - 3


def test_anomaly_ground_truth():
    T = 12
    tp = make_anomaly_clips(5, "teleport", frames=T, size=64, seed=0)
    for i in range(5):
        k = int(tp.anomaly_start[i])
        assert tp.frame_anomaly[i, k:].all() and not tp.frame_anomaly[i, :k].any()
        cx = _centroid_x(_figure_mask(tp.clips[i]))
        steps = np.abs(np.diff(cx))
        assert np.argmax(steps) == k - 1 and steps.max() > 10
    bw = make_anomaly_clips(5, "backwards", frames=T, size=64, seed=0)
    for i in range(5):
        k = int(bw.anomaly_start[i])
        vx = np.diff(bw.pelvis[i, :, 0])
        assert np.all(np.sign(vx[: k - 1]) == bw.params["facing"][i])  # forwards before k
        assert np.all(np.sign(vx[k:]) == -bw.params["facing"][i])  # backwards after
    ob = make_anomaly_clips(5, "object", frames=T, size=64, seed=0)
    for i in range(5):
        n_bright = _figure_mask(ob.clips[i]).sum((-1, -2)).float()
        flagged = ob.frame_anomaly[i]
        assert flagged.any() and not flagged[: int(ob.anomaly_start[i])].any()
        assert n_bright[flagged].mean() > n_bright[~flagged].mean() + 20
    fa = make_anomaly_clips(5, "unseen_action", frames=T, size=64, seed=0)
    for i in range(5):
        k = int(fa.anomaly_start[i])
        m = _figure_mask(fa.clips[i])
        h = m.any(-1).float().sum(-1)  # rows covered by the figure
        assert h[-1] < 0.6 * h[0], "the figure should be lying down at the end"


def test_benchmark_parts_and_unseen_weizmann_action():
    b = make_anomaly_benchmark(4, 3, frames=6, size=32, seed=1)
    assert set(b) == {"normal", *ANOMALY_TYPES}
    assert all(v.clips.shape == (4 if k == "normal" else 3, 6, 1, 32, 32) for k, v in b.items())
    assert not b["normal"].frame_anomaly.any()
    jack = make_anomaly_clips(3, "unseen_action", frames=6, size=32, unseen_action="jack")
    assert jack.action_names == ["jack"] * 3 and jack.frame_anomaly.all()


def test_bad_arguments_raise_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown actions"):
        make_action_clips(2, actions=("dance",))
    with pytest.raises(ValueError, match="size"):
        make_action_clips(2, size=8)
    with pytest.raises(ValueError, match="anomaly kind"):
        make_anomaly_clips(2, "explode")
    with pytest.raises(FileNotFoundError, match="weizmann.py"):
        weizmann_dataset(tmp_path / "nothing_here")


def _fake_weizmann(root, names, frames):
    """A prepared Weizmann folder in weizmann.py's layout (40×40 gray frames), one clip folder per name."""
    from animlib.data.fake_prepared import write_fake_weizmann

    return write_fake_weizmann(root, names=names, frames=frames, size=40)


def test_weizmann_benchmark_on_a_fake_prepared_folder(tmp_path):
    from animlib.data.actions import weizmann_benchmark

    _fake_weizmann(tmp_path, ["daria_walk", "daria_jack", "denis_run", "eli_bend", "ido_wave1", "lena_skip",
                              "moshe_side"], frames=20)
    train, val, test, flags = weizmann_benchmark(tmp_path, frames=8, size=32, seed=0)
    assert train.shape[1:] == (8, 1, 32, 32) and val.shape[1:] == (8, 1, 32, 32)
    assert set(test) == {"normal", "unseen_action", "backwards", "teleport", "object"}
    assert flags["unseen_action"].all() and not flags["normal"].any()
    assert -1.0 <= float(train.min()) and float(train.max()) <= 1.0
    assert len(test["unseen_action"]) == 4  # daria_jack: 20 frames, windows of 8 every 4 -> starts 0, 4, 8, 12
    assert test["backwards"].shape == test["normal"].shape


def test_weizmann_labels_come_from_the_clip_names(tmp_path):
    from animlib.data.actions import ACTIONS, weizmann_action, weizmann_benchmark

    assert weizmann_action("lena_walk2") == ACTIONS.index("walk")
    assert weizmann_action("clips/daria_wave1") == ACTIONS.index("wave1")
    assert weizmann_action("denis_pjump") == ACTIONS.index("pjump")
    with pytest.raises(ValueError, match="no Weizmann action"):
        weizmann_action("someone_dances")
    names = ["daria_walk", "daria_jack", "denis_run", "eli_bend", "ido_wave1", "lena_skip", "moshe_side", "lena_walk2"]
    _fake_weizmann(tmp_path, names, frames=12)
    train, val, test, flags, labels = weizmann_benchmark(tmp_path, frames=8, size=32, seed=0, with_labels=True)
    assert len(labels["train"]) == len(train) and len(labels["val"]) == len(val)
    assert len(labels["normal"]) == len(test["normal"])
    assert ACTIONS.index("jack") not in set(labels["train"].tolist())  # the unseen action is never trained on
    plain = weizmann_benchmark(tmp_path, frames=8, size=32, seed=0)
    assert len(plain) == 4 and torch.equal(plain[0], train)
