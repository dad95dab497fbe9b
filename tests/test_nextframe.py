"""Chapter 0's toy task: moving blobs and the next-frame network."""

import pytest
import torch
import torch.nn.functional as F

from animlib.data.blobs import moving_blobs
from animlib.engine import SupervisedStep, Trainer
from animlib.nextframe import NextFrameConfig, NextFrameNet, next_frame_pairs, rollout
from animlib.runtime import seed_everything


def test_blobs_deterministic_and_ground_truth_matches_pixels():
    a, b = moving_blobs(6, 5, 16, seed=3), moving_blobs(6, 5, 16, seed=3)
    assert torch.equal(a.frames, b.frames)
    assert not torch.equal(a.frames, moving_blobs(6, 5, 16, seed=4).frames)
    assert a.frames.shape == (6, 5, 1, 16, 16) and 0 <= a.frames.min() and a.frames.max() <= 1
    # the brightest pixel sits at the recorded position (rounded)
    flat = a.frames[:, :, 0].flatten(2).argmax(-1)  # (N, T)
    rows, cols = flat // 16, flat % 16
    assert (rows - a.positions[..., 0].round()).abs().max() <= 1
    assert (cols - a.positions[..., 1].round()).abs().max() <= 1
    # away from the walls the blob moves by its velocity per frame
    step = a.positions[:, 1] - a.positions[:, 0]
    inside = (a.positions[:, :2] > 3.5).all(-1).all(-1) & (a.positions[:, :2] < 11.5).all(-1).all(-1)
    assert torch.allclose(step[inside], a.velocity[inside])
    with pytest.raises(ValueError):
        moving_blobs(0)


def test_pairs_and_rollout_shapes():
    clips = moving_blobs(3, 6, 16).frames
    x, y = next_frame_pairs(clips)
    assert x.shape == (12, 2, 16, 16) and y.shape == (12, 1, 16, 16)
    torch.testing.assert_close(x[1, 0], clips[0, 1, 0])
    torch.testing.assert_close(y[1, 0], clips[0, 3, 0])
    net = NextFrameNet()
    out = rollout(net, clips[:, :2, 0], 4)
    assert out.shape == (3, 4, 1, 16, 16)
    with pytest.raises(ValueError, match="expected frames of shape"):
        net(clips[:, :3, 0])


def test_learns_better_than_copying_the_last_frame():
    seed_everything(0)
    torch.set_num_threads(1)
    x, y = next_frame_pairs(moving_blobs(256, 6, 16, seed=1).frames)
    xt, yt = next_frame_pairs(moving_blobs(64, 6, 16, seed=2).frames)
    net = NextFrameNet(NextFrameConfig(width=12, depth=2))

    def data(step):
        idx = torch.randint(0, len(x), (64,), generator=torch.Generator().manual_seed(step))
        return x[idx], y[idx]

    Trainer(net, torch.optim.Adam(net.parameters(), 3e-3), SupervisedStep(lambda m, b: F.mse_loss(m(b[0]), b[1])),
            progress=False).fit(data, 150)
    with torch.no_grad():
        assert F.mse_loss(net(xt), yt) < 0.6 * F.mse_loss(xt[:, -1:], yt)


def test_full_profile_one_step():
    clips = moving_blobs(1, 8, 32, seed=0).frames  # the full profile's frame size
    x, y = next_frame_pairs(clips)
    net = NextFrameNet(NextFrameConfig())
    before = [p.detach().clone() for p in net.parameters()]
    Trainer(net, torch.optim.Adam(net.parameters(), 3e-3), SupervisedStep(lambda m, b: F.mse_loss(m(b[0]), b[1])),
            progress=False, device="cpu").fit(lambda s: (x[:1], y[:1]), 1)
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters()))
