"""Tests for animlib.video_ae: shapes over options, the GRU against torch, causality, learning, scores."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from animlib.video_ae import (
    GRU,
    ClipLatentAutoencoder,
    GRUAEConfig,
    GRUAutoencoder,
    GRUCell,
    PerFrameAutoencoder,
    VideoAESettings,
    anomaly_auc,
    build_autoencoder,
    check_clips,
    clip_batches,
    clip_scores,
    copy_frame_codec,
    foreground_weights,
    frame_errors,
    frame_surprise,
    reconstruct_clips,
    reconstruction_loss,
    regularity_score,
    roc,
    train_autoencoder,
)

torch.set_num_threads(1)

TINY = dict(frames=4, image_size=16, widths=(8, 16), stem_stride=2, z_dim=8, gru_hidden=12)


def _clips(B=2, T=4, C=1, S=16, seed=0):
    return torch.rand(B, T, C, S, S, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.parametrize(
    "kind,stem,norm,init,impl,channels",
    [
        (k, s, n, i, impl, c)
        for (k, s, n, i, impl, c) in itertools.product(
            ["gru", "per_frame", "clip_latent"], [1, 2, 4], ["batch", "group", "none"], ["zeros", "learned"],
            ["animlib", "torch"], [1, 3])
        if (s, n, i, impl, c) in {(1, "batch", "zeros", "animlib", 1), (2, "group", "learned", "torch", 3),
                                  (4, "none", "zeros", "torch", 1), (2, "batch", "learned", "animlib", 3)}
    ],
)
def test_shapes_and_gradients_over_options(kind, stem, norm, init, impl, channels):
    cfg = GRUAEConfig(frames=4, channels=channels, image_size=16, widths=(4, 8), stem_stride=stem, norm=norm,
                      initial_state=init, gru_impl=impl, z_dim=6, gru_hidden=10)
    model = build_autoencoder(kind, cfg)
    x = _clips(3, 4, channels, 16)
    y = model(x)
    assert y.shape == x.shape
    assert y.min() >= -1 and y.max() <= 1  # tanh output
    y.pow(2).mean().backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if n != "missing"), "unused parameters"
    # Any clip length works (the config's frames only sets the clip-latent code size).
    assert model(_clips(1, 6, channels, 16)).shape == (1, 6, channels, 16, 16)


def test_reference_default_config_shapes():
    cfg = GRUAEConfig()  # the source's reference: T=16, 64x64 gray, z=64, GRU 100, widths 32..512
    model = GRUAutoencoder(cfg)
    z = model.encode_frames(torch.zeros(1, 16, 1, 64, 64))
    assert z.shape == (1, 16, 64) and cfg.feature_size == 4
    assert model.gru.cell.hidden_size == 100
    clip = ClipLatentAutoencoder(cfg)
    assert clip.encode_clip(torch.zeros(1, 16, 1, 64, 64)).shape == (1, 16 * 64)  # same values per clip


def test_gru_cell_matches_torch_grucell():
    torch.manual_seed(0)
    ours, ref = GRUCell(5, 7), torch.nn.GRUCell(5, 7)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(ours, name).copy_(getattr(ref, name))
    x, h = torch.randn(4, 5), torch.randn(4, 7)
    torch.testing.assert_close(ours(x, h), ref(x, h))


def test_gru_sequence_matches_torch_gru_and_fused_path():
    torch.manual_seed(1)
    ours = GRU(5, 7)
    ref = torch.nn.GRU(5, 7, batch_first=True)
    with torch.no_grad():
        for a, b in (("weight_ih", "weight_ih_l0"), ("weight_hh", "weight_hh_l0"), ("bias_ih", "bias_ih_l0"),
                     ("bias_hh", "bias_hh_l0")):
            getattr(ours.cell, a).copy_(getattr(ref, b))
    x = torch.randn(3, 6, 5)
    out, h = ours(x)
    out_ref, h_ref = ref(x)  # zero initial state, as ours
    torch.testing.assert_close(out, out_ref)
    torch.testing.assert_close(h, h_ref[0])
    ours.impl = "torch"
    fused = GRU(5, 7, impl="torch")
    fused.load_state_dict(ours.state_dict())
    torch.testing.assert_close(fused(x)[0], out_ref)


def test_deterministic_initial_state_and_learned_state():
    torch.manual_seed(0)
    model = GRUAutoencoder(GRUAEConfig(**TINY)).eval()
    x = _clips()
    torch.testing.assert_close(model(x), model(x), rtol=0, atol=0)  # no random h0 (unlike the reference)
    learned = GRUAutoencoder(GRUAEConfig(**TINY, initial_state="learned"))
    learned(x).mean().backward()
    assert learned.gru.h0.grad is not None and learned.gru.h0.grad.abs().sum() > 0


def test_causality_and_independence():
    """GRU-AE output t depends on frames <= t only; the per-frame AE's on frame t only; predictions on < t."""
    torch.manual_seed(0)
    x = _clips(1, 6)
    x2 = x.clone()
    x2[:, 3] = -x2[:, 3]  # change frame 3
    gru = GRUAutoencoder(GRUAEConfig(**{**TINY, "frames": 6})).eval()
    a, b = gru(x), gru(x2)
    torch.testing.assert_close(a[:, :3], b[:, :3])
    assert (a[:, 4:] - b[:, 4:]).abs().max() > 0  # ... and the future does see it
    pa, pb = gru.predict(x), gru.predict(x2)
    torch.testing.assert_close(pa[:, :4], pb[:, :4])  # the prediction of frame 3 never sees frame 3
    pf = PerFrameAutoencoder(GRUAEConfig(**{**TINY, "frames": 6})).eval()
    a, b = pf(x), pf(x2)
    torch.testing.assert_close(a[:, [0, 1, 2, 4, 5]], b[:, [0, 1, 2, 4, 5]])
    clip = ClipLatentAutoencoder(GRUAEConfig(**{**TINY, "frames": 6})).eval()
    a, b = clip(x), clip(x2)
    assert (a[:, 0] - b[:, 0]).abs().max() > 0  # one code: every frame depends on every frame


def test_latent_dropout_trains_prediction_only_in_training_mode():
    torch.manual_seed(0)
    model = GRUAutoencoder(GRUAEConfig(**TINY, latent_dropout=0.5))
    x = _clips()
    model.eval()
    torch.testing.assert_close(model(x), model(x), rtol=0, atol=0)
    model.train()
    torch.manual_seed(1)
    a = model(x)
    torch.manual_seed(2)
    b = model(x)
    assert (a - b).abs().max() > 0  # different frames were hidden


def _moving_square_clips(n, T=4, S=16, seed=0):
    """Easy normal data: a bright square moving right on a dark background; returned in [-1, 1]."""
    g = np.random.default_rng(seed)
    x = -np.ones((n, T, 1, S, S), np.float32)
    for i in range(n):
        r, c = g.integers(2, S - 8), g.integers(0, 3)
        for t in range(T):
            x[i, t, 0, r:r + 4, c + 2 * t:c + 2 * t + 4] = 1.0
    return torch.from_numpy(x)


def test_reconstruction_error_falls_and_beats_mean_frame_baseline():
    torch.manual_seed(0)
    train = _moving_square_clips(64)
    test = _moving_square_clips(32, seed=1)
    model = GRUAutoencoder(GRUAEConfig(**{**TINY, "z_dim": 16, "gru_hidden": 32}))
    before = frame_errors(model, test).mean().item()
    trainer = train_autoencoder(model, clip_batches(train, 16, seed=0), 200, lr=3e-3, device="cpu",
                                progress=False)
    after = frame_errors(model, test).mean().item()
    baseline = (test - train.mean(0, keepdim=True)).pow(2).mean().item()  # predict the mean clip
    assert after < 0.5 * before and after < baseline, (before, after, baseline)
    assert trainer.history[-1]["loss"] < trainer.history[0]["loss"]


def test_scores_rank_an_obvious_anomaly_above_normal_clips():
    torch.manual_seed(0)
    train = _moving_square_clips(64)
    model = PerFrameAutoencoder(GRUAEConfig(**{**TINY, "z_dim": 16}))
    train_autoencoder(model, clip_batches(train, 16, seed=0), 120, lr=3e-3, device="cpu", progress=False)
    normal = _moving_square_clips(16, seed=2)
    odd = normal[:4].clone()
    odd[:, 2:, :, 8:, :] = 1.0  # half the frame turns white from frame 2 on
    e_norm, e_odd = frame_errors(model, normal), frame_errors(model, odd)
    s_norm, s_odd = clip_scores(e_norm), clip_scores(e_odd)
    assert s_odd.min() > s_norm.max()
    assert anomaly_auc(s_norm, s_odd) == 1.0
    assert (e_odd[:, 2:].mean(1) > 3 * e_odd[:, :2].mean(1)).all()  # the per-frame error lights up at frame 2


def test_surprise_flags_a_teleport():
    torch.manual_seed(0)
    train = _moving_square_clips(96, T=6)
    cfg = GRUAEConfig(**{**TINY, "frames": 6, "z_dim": 16, "gru_hidden": 32}, latent_dropout=0.4)
    model = GRUAutoencoder(cfg)
    train_autoencoder(model, clip_batches(train, 16, seed=0), 250, lr=3e-3, device="cpu", progress=False)
    normal = _moving_square_clips(24, T=6, seed=3)
    jumpy = normal.clone()
    jumpy[:, 3:] = torch.roll(normal[:, 3:], shifts=-6, dims=-1)  # the square jumps back 6 px at frame 3
    s = frame_surprise(model, torch.cat([normal, jumpy]))
    assert (s[:, 0] == 0).all()
    auc = anomaly_auc(s[:24].amax(1), s[24:].amax(1))
    assert auc > 0.8, auc


def test_anomaly_auc_roc_and_regularity_known_answers():
    # pairs (anomalous > normal): 0.15>0.1 yes, 0.15>0.2 no, 0.3>0.1 yes, 0.3>0.2 yes -> 3/4
    assert anomaly_auc(torch.tensor([0.1, 0.2]), torch.tensor([0.15, 0.3])) == pytest.approx(0.75)
    assert anomaly_auc([0.5, 0.5], [0.5]) == pytest.approx(0.5)  # ties count one half
    fpr, tpr, _ = roc([0.1, 0.2], [0.15, 0.3])
    assert fpr[0] == 0 and tpr[-1] == 1 and np.all(np.diff(fpr) >= 0)
    e = torch.tensor([[1.0, 2.0, 4.0]])
    torch.testing.assert_close(regularity_score(e), torch.tensor([[1.0, 0.75, 0.25]]))  # 1 - (e - 1) / 4
    with pytest.raises(ValueError):
        anomaly_auc([], [1.0])


def test_clip_batches_are_deterministic_per_step_and_copy_codec():
    clips = _clips(5, 8)
    data = clip_batches(clips, batch_size=3, frames=4, seed=7)
    torch.testing.assert_close(data(11), data(11), rtol=0, atol=0)
    assert data(11).shape == (3, 4, 1, 16, 16) and not torch.equal(data(11), data(12))
    a, b = PerFrameAutoencoder(GRUAEConfig(**TINY)), GRUAutoencoder(GRUAEConfig(**TINY))
    copy_frame_codec(a, b)
    torch.testing.assert_close(a.encoder(clips[:, 0]), b.encoder(clips[:, 0]))



def test_clip_batches_with_labels_and_the_encoders_checkpoint_keys():
    clips = torch.arange(5.0)[:, None, None, None, None].expand(5, 8, 1, 4, 4)  # clip i holds the value i
    labels = torch.arange(5) * 10
    x, y = clip_batches(clips, 6, 4, seed=7, labels=labels)(11)
    assert torch.equal(x, clip_batches(clips, 6, 4, seed=7)(11))
    assert torch.equal(y, labels[x[:, 0, 0, 0, 0].long()])  # every clip comes with its own label
    with pytest.raises(ValueError, match="labels"):
        clip_batches(clips, labels=labels[:4])
    model = GRUAutoencoder(GRUAEConfig(**TINY))
    assert type(model.encoder).__name__ == "FrameVectorEncoder"
    assert [k for k in model.state_dict() if k.startswith("encoder.")] == [
        "encoder.convs.0.weight", "encoder.convs.1.weight", "encoder.convs.1.bias", "encoder.convs.1.running_mean",
        "encoder.convs.1.running_var", "encoder.convs.1.num_batches_tracked", "encoder.convs.3.weight",
        "encoder.convs.3.bias", "encoder.fc.weight", "encoder.fc.bias"]

def test_bad_input_raises_clear_errors():
    model = GRUAutoencoder(GRUAEConfig(**TINY))
    with pytest.raises(ValueError, match="unsqueeze"):
        model(torch.zeros(4, 1, 16, 16))
    with pytest.raises(ValueError, match="built for"):
        model(torch.zeros(1, 4, 1, 32, 32))
    with pytest.raises(TypeError, match="float"):
        check_clips(torch.zeros(1, 4, 1, 16, 16, dtype=torch.uint8), model.config)
    with pytest.raises(ValueError, match="divisible"):
        GRUAEConfig(image_size=60)
    with pytest.raises(ValueError, match="initial_state"):
        GRUAEConfig(initial_state="random")
    with pytest.raises(ValueError, match="kind"):
        build_autoencoder("lstm")
    with pytest.raises(ValueError, match="predict"):
        frame_errors(PerFrameAutoencoder(GRUAEConfig(**TINY)), _clips(), mode="predict")


def test_reconstruct_clips_defaults_to_reconstruction_in_eval_mode():
    model = PerFrameAutoencoder(GRUAEConfig(**TINY)).train()
    x = _clips(B=3)
    out = reconstruct_clips(model, x, batch_size=2)  # the default mode, in two batches
    with torch.no_grad():
        want = model.eval()(x)
    torch.testing.assert_close(out, want)
    assert out.shape == x.shape
    empty = reconstruct_clips(model, x[:0])
    assert empty.shape == x[:0].shape


def test_foreground_weights_and_weighted_loss():
    x = torch.full((1, 5, 1, 4, 4), -1.0)
    x[:, 2, :, 1, 1] = 1.0  # one pixel lights up in one frame: the clip's median there is still -1
    w = foreground_weights(x, 10.0)
    assert w.shape == x.shape and w[0, 2, 0, 1, 1] == pytest.approx(21.0) and (w.sum() - 21.0) == pytest.approx(79.0)
    assert torch.equal(foreground_weights(x, 0.0), torch.ones_like(x))
    model = PerFrameAutoencoder(GRUAEConfig(**{**TINY, "frames": 5, "image_size": 4, "widths": (4,)}))
    with torch.no_grad():
        plain, weighted = reconstruction_loss(model, x), reconstruction_loss(model, x, 10.0)
        y = model(x)
    torch.testing.assert_close(plain, ((y - x) ** 2).mean())
    torch.testing.assert_close(weighted, ((y - x) ** 2 * w).sum() / w.sum())
    with pytest.raises(ValueError, match="foreground_weight"):
        reconstruction_loss(model, x, -1.0)


def test_codec_lr_gives_the_copied_codec_its_own_learning_rate():
    model = GRUAutoencoder(GRUAEConfig(**TINY))
    x = _clips()
    trainer = train_autoencoder(model, lambda step: x, 1, lr=5e-3, codec_lr=1e-3, device="cpu", progress=False)
    groups = trainer.optimizers["model"].param_groups
    assert [g["lr"] for g in groups] == [1e-3, 5e-3]
    codec_ids = {id(p) for part in (model.encoder, model.decoder) for p in part.parameters()}
    assert {id(p) for p in groups[0]["params"]} == codec_ids
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    cos = train_autoencoder(GRUAutoencoder(GRUAEConfig(**TINY)), lambda step: x, 2, lr=5e-3, codec_lr=1e-3,
                            schedule="cosine", device="cpu", progress=False)
    assert len(cos.optimizers["model"].param_groups) == 2
    with pytest.raises(ValueError, match="encoder"):
        train_autoencoder(torch.nn.Conv3d(1, 1, 1), lambda step: x, 1, codec_lr=1e-3, device="cpu", progress=False)


def test_full_profile_one_step():
    """The chapter's full-profile models (the source's settings) take one training step at batch 1 on CPU."""
    settings = VideoAESettings.full()
    cfg = settings.model
    assert (cfg.frames, cfg.image_size, cfg.z_dim, cfg.gru_hidden) == (16, 64, 64, 100)
    assert settings.lr == 1e-4 and settings.weight_decay == 1e-5 and settings.batch == 16
    x = _clips(1, 16, 1, 64)
    for kind in ("gru", "per_frame", "clip_latent"):
        model = build_autoencoder(kind, cfg)
        trainer = train_autoencoder(model, lambda step: x, 1, lr=1e-4, weight_decay=1e-5, device="cpu",
                                    progress=False)
        assert np.isfinite(trainer.history[-1]["loss"])
    codec = build_autoencoder("per_frame", cfg)
    pre = train_autoencoder(codec, clip_batches(x, 1, settings.pretrain_frames, seed=0), 1, lr=settings.pretrain_lr,
                            foreground_weight=settings.foreground_weight, device="cpu", progress=False)
    gru = copy_frame_codec(codec, build_autoencoder("gru", cfg))
    fine = train_autoencoder(gru, lambda step: x, 1, lr=settings.lr, codec_lr=settings.codec_lr,
                             foreground_weight=settings.foreground_weight, device="cpu", progress=False)
    assert np.isfinite(pre.history[-1]["loss"]) and np.isfinite(fine.history[-1]["loss"])
    # the action classifier that judges the reconstructions, at its full size, one step
    from animlib.action_classifier import train_action_classifier

    judge = train_action_classifier(torch.cat([x, x.flip(-1)]), torch.tensor([0, 3]), 1, n_classes=10, batch_size=2,
                                    width=settings.classifier_width, lr=settings.classifier_lr, device="cpu",
                                    progress=False)
    assert np.isfinite(judge.history[-1]["loss"]) and judge.models["model"](x).shape == (1, 10)


# ----------------------------------------------------------------------------------------------
# Chapter 7 exercise checkers: they pass the worked solutions and fail wrong answers
# ----------------------------------------------------------------------------------------------
def test_exercise_checkers_pass_solutions_and_fail_mistakes(capsys):
    from animlib.exercises import ch07

    assert ch07.check_gru_step(ch07.solution_gru_step)
    assert not ch07.check_gru_step(lambda x, h, cell: None)

    def wrong_reset(x, h, cell):  # Cho's form: r applied before the matrix product
        gi = x @ cell.weight_ih.T + cell.bias_ih
        i_r, i_u, i_n = gi.chunk(3, 1)
        W_r, W_u, W_n = cell.weight_hh.chunk(3, 0)
        b_r, b_u, b_n = cell.bias_hh.chunk(3, 0)
        r = torch.sigmoid(i_r + h @ W_r.T + b_r)
        u = torch.sigmoid(i_u + h @ W_u.T + b_u)
        n = torch.tanh(i_n + (r * h) @ W_n.T + b_n)
        return (1 - u) * n + u * h

    assert not ch07.check_gru_step(wrong_reset)
    assert not ch07.check_gru_step(lambda x, h, cell: 1 / 0)  # raising code is reported, not re-raised

    assert ch07.check_auc_by_counting(ch07.solution_auc_by_counting)
    assert not ch07.check_auc_by_counting(lambda n, a: None)
    no_ties = lambda n, a: float((np.asarray(a)[:, None] > np.asarray(n)[None, :]).mean())  # noqa: E731
    assert not ch07.check_auc_by_counting(no_ties)

    assert ch07.check_conv3d_autoencoder(ch07.solution_conv3d_autoencoder())
    assert not ch07.check_conv3d_autoencoder(None)
    frame_only = torch.nn.Sequential(torch.nn.Conv3d(1, 1, (1, 3, 3), padding=(0, 1, 1)))

    class NoTime(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.c = frame_only

        def forward(self, x):
            return self.c(x.transpose(1, 2)).transpose(1, 2)

    assert not ch07.check_conv3d_autoencoder(NoTime())
    out = capsys.readouterr().out
    assert "Not solved yet" in out and "Correct!" in out

    class Zeros(torch.nn.Module):  # has a Conv3d and the right shape, but outputs nothing
        def __init__(self):
            super().__init__()
            self.c = torch.nn.Conv3d(1, 1, 3, padding=1)

        def forward(self, x):
            return self.c(x.transpose(1, 2)).transpose(1, 2) * 0

    assert not ch07.check_conv3d_autoencoder(Zeros())
    assert "same for every clip" in capsys.readouterr().out

    class Raises(NoTime):
        def forward(self, x):
            raise RuntimeError("boom")

    assert not ch07.check_conv3d_autoencoder(Raises())
    assert "RuntimeError" in capsys.readouterr().out

    class NearZero(torch.nn.Module):  # mixes time and varies with the clip, but its output is close to 0
        def __init__(self):
            super().__init__()
            self.ae = ch07.solution_conv3d_autoencoder()

        def forward(self, x):
            return 0.05 * self.ae(x)

    sigmoid_out = ch07.solution_conv3d_autoencoder()
    sigmoid_out.dec[-1] = torch.nn.Sigmoid()  # cannot reach the clips' negative half of [-1, 1]
    for wrong in (NearZero(), sigmoid_out):
        assert not ch07.check_conv3d_autoencoder(wrong)
        assert "does not learn to reconstruct" in capsys.readouterr().out
