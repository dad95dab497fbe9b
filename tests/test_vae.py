"""Tests for animlib.vae: the ELBO's pieces against independent references, the source's layer
counts, learning on tiny data, and latent-difference video on synthetic faces."""

import pytest
import torch
from torch.distributions import Normal
from torch.distributions import kl_divergence as torch_kl

from animlib.data.faces import SyntheticFaces, face_clips, render_faces, sample_identity
from animlib.vae import (
    ConvVAE,
    ConvVAEConfig,
    VAEStep,
    beta_at,
    elbo_loss,
    encode_mean,
    interpolate,
    kl_divergence,
    kl_monte_carlo,
    latent_difference_video,
    layer_counts,
    reconstruction_bce,
    reparam_grad,
    reparameterize,
    score_function_grad,
    train_vae,
)

TINY = ConvVAEConfig(image_size=16, latent_dim=8, width=8, dec_width=8)


def test_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
    ref = torch_kl(Normal(mu, (0.5 * logvar).exp()), Normal(torch.zeros_like(mu), torch.ones_like(mu))).sum(-1)
    torch.testing.assert_close(kl_divergence(mu, logvar), ref)
    assert torch.all(kl_divergence(torch.zeros(3, 4), torch.zeros(3, 4)) == 0)


def test_kl_monte_carlo_agrees_with_closed_form():
    g = torch.Generator().manual_seed(1)
    mu, logvar = torch.randn(3, 4, generator=g) * 0.5, torch.randn(3, 4, generator=g) * 0.3
    mc = kl_monte_carlo(mu, logvar, 20000, generator=g)
    torch.testing.assert_close(mc, kl_divergence(mu, logvar), rtol=0.05, atol=0.03)


def test_reparameterize_mean_variance_and_gradients():
    mu = torch.tensor([1.0, -2.0, 0.5]).requires_grad_(True)
    logvar = torch.tensor([0.0, 1.0, -2.0]).requires_grad_(True)
    g = torch.Generator().manual_seed(0)
    z = reparameterize(mu.expand(40000, 3), logvar.expand(40000, 3), generator=g)
    torch.testing.assert_close(z.mean(0), mu.detach(), atol=0.03, rtol=0)
    torch.testing.assert_close(z.var(0), logvar.detach().exp(), rtol=0.03, atol=0)
    z.sum().backward()
    torch.testing.assert_close(mu.grad, torch.full((3,), 40000.0))  # dz/dmu = 1
    assert logvar.grad is not None and torch.all(logvar.grad.abs() > 0)
    with pytest.raises(ValueError, match="same shape"):
        reparameterize(torch.zeros(2, 3), torch.zeros(2, 4))


def test_reconstruction_bce_against_definition():
    x = torch.rand(2, 3, 4, 4)
    logits = torch.randn(2, 3, 4, 4)
    p = torch.sigmoid(logits)
    ref = -(x * p.log() + (1 - x) * (1 - p).log()).flatten(1).sum(1)
    torch.testing.assert_close(reconstruction_bce(logits, x), ref, rtol=1e-5, atol=1e-4)
    parts = elbo_loss(logits, x, torch.zeros(2, 5), torch.zeros(2, 5), beta=2.0)
    torch.testing.assert_close(parts["loss"], ref.mean())


def test_beta_warmup():
    assert beta_at(0, 0.5, 10) == 0.0
    assert beta_at(5, 0.5, 10) == 0.25
    assert beta_at(50, 0.5, 10) == 0.5
    assert beta_at(3, 0.7, 0) == 0.7


def test_source_layer_counts():
    """The source: '7 conv and 3 linear layers' (read as in total, see animlib.vae's docstring)."""
    vae = ConvVAE()  # the source's setting: 3x64x64, latent 200
    assert layer_counts(vae) == {"conv": 7, "linear": 3}
    assert layer_counts(vae.encoder) == {"conv": 4, "linear": 2}
    assert layer_counts(vae.decoder) == {"conv": 3, "linear": 1}
    assert vae.config.latent_dim == 200 and vae.config.image_size == 64
    assert layer_counts(ConvVAE(TINY)) == {"conv": 7, "linear": 3}


@pytest.mark.parametrize("size,latent", [(16, 4), (32, 12), (64, 200)])
def test_shapes_and_gradients(size, latent):
    vae = ConvVAE(ConvVAEConfig(image_size=size, latent_dim=latent, width=8, dec_width=8))
    x = torch.rand(2, 3, size, size)
    logits, mu, logvar, z = vae(x)
    assert logits.shape == x.shape and mu.shape == (2, latent) and z.shape == (2, latent)
    elbo_loss(logits, x, mu, logvar)["loss"].backward()
    assert all(p.grad is not None for p in vae.parameters())
    l2, _, _, z2 = vae(x, sample=False)
    torch.testing.assert_close(z2, mu)


def test_bad_input_raises():
    vae = ConvVAE(TINY)
    with pytest.raises(ValueError, match="expects images"):
        vae(torch.rand(2, 3, 32, 32))
    with pytest.raises(ValueError, match="multiple of 16"):
        ConvVAE(ConvVAEConfig(image_size=40))


def test_gradient_estimators_are_unbiased_and_reparam_has_lower_variance():
    mu, logvar = torch.tensor([[0.3, -0.5]]), torch.tensor([[-1.0, 0.0]])
    c = torch.tensor([1.0, 1.0])
    f = lambda z: ((z - c) ** 2).sum(1)  # noqa: E731  E f = |mu - c|^2 + sum sigma^2 -> grad 2(mu - c)
    g = torch.Generator().manual_seed(0)
    sf = score_function_grad(f, mu, logvar, 50000, g)
    rp = reparam_grad(f, mu, logvar, 50000, g)
    exact = 2 * (mu[0] - c)
    torch.testing.assert_close(rp.mean(0), exact, atol=0.02, rtol=0)
    torch.testing.assert_close(sf.mean(0), exact, atol=0.15, rtol=0)
    assert (sf.var(0) > 5 * rp.var(0)).all()


def test_elbo_decreases_on_tiny_data_and_beats_mean_image():
    torch.manual_seed(0)
    data = SyntheticFaces(128, 16, seed=0)
    loader = torch.utils.data.DataLoader(data, batch_size=32, shuffle=True)
    vae = ConvVAE(TINY)
    tr = train_vae(vae, loader, 120, lr=3e-3, beta=0.5, device="cpu", progress=False)
    losses = [h["loss"] for h in tr.history]
    # the BCE of a soft image has a floor (its own entropy): compare what lies above it
    floor = float(reconstruction_bce(torch.logit(data.images.clamp(1e-4, 1 - 1e-4)), data.images).mean())
    first, last = sum(losses[:10]) / 10 - floor, sum(losses[-10:]) / 10 - floor
    assert last < 0.7 * first, (first, last, floor)  # measured about 0.47
    x = data.images[:64]
    with torch.no_grad():
        logits, *_ = vae(x, sample=False)
    mean_img = data.images.mean(0, keepdim=True).expand_as(x).clamp(1e-4, 1 - 1e-4)
    rec = float(reconstruction_bce(logits, x).mean()) - floor
    mean = float(reconstruction_bce(torch.logit(mean_img), x).mean()) - floor
    assert rec < 0.8 * mean, (rec, mean, floor)  # measured about 0.64


def test_step_function_logs_beta():
    from animlib.engine import Trainer

    vae = ConvVAE(TINY)
    t = Trainer({"vae": vae}, {"vae": torch.optim.Adam(vae.parameters())}, VAEStep(1.0, 4), device="cpu",
                progress=False)
    hist = t.fit(lambda s: (torch.rand(4, 3, 16, 16),), 3)
    assert [h["beta"] for h in hist] == [0.0, 0.25, 0.5]




def test_latent_difference_video_algebra():
    vae = ConvVAE(TINY).eval()
    photo = torch.rand(3, 16, 16)
    drive = torch.rand(5, 3, 16, 16)
    frames, z = latent_difference_video(vae, photo, drive, return_latents=True)
    assert frames.shape == (5, 3, 16, 16)
    zp, zd = encode_mean(vae, photo[None]), encode_mean(vae, drive)
    torch.testing.assert_close(z[0], zp[0])
    for t in range(1, 5):  # z_t = z_{t-1} + enc(d_t) - enc(d_{t-1})
        torch.testing.assert_close(z[t], z[t - 1] + zd[t] - zd[t - 1], atol=1e-5, rtol=1e-5)
    batched = latent_difference_video(vae, photo[None].repeat(2, 1, 1, 1), drive[None].repeat(2, 1, 1, 1, 1))
    torch.testing.assert_close(batched[1], frames, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="driving_frames"):
        latent_difference_video(vae, photo, drive[0])
    assert interpolate(vae, photo, drive[0], steps=4).shape == (4, 3, 16, 16)


@pytest.mark.slow
def test_latent_difference_video_follows_the_driver_on_faces():
    """A VAE trained briefly on synthetic faces moves the photo's head in the driver's yaw direction."""
    torch.manual_seed(0)
    size = 16
    data = SyntheticFaces(3000, size, seed=0)
    loader = torch.utils.data.DataLoader(data, batch_size=64, shuffle=True, drop_last=True)
    vae = ConvVAE(ConvVAEConfig(image_size=size, latent_dim=16, width=16, dec_width=16))
    train_vae(vae, loader, 300, lr=3e-3, beta=0.25, warmup_steps=100, device="cpu", progress=False, amp="auto")
    clips = face_clips(8, frames=8, size=size, seed=1)
    photo = render_faces(sample_identity(8, 2), clips.motion[:, 0], size)
    video = latent_difference_video(vae, photo, clips.video)  # (8, T, 3, H, W)
    # horizontal position of the dark features (pupils, mouth) follows the driver's yaw
    xs = torch.arange(size).float()

    def centroid_x(v):
        dark = (1 - v.mean(-3)) ** 4  # (..., H, W)
        return (dark.sum(-2) * xs).sum(-1) / dark.sum((-2, -1))

    moved = centroid_x(video) - centroid_x(video[:, :1])  # (8, T)
    yaw = clips.motion[..., 0] - clips.motion[:, :1, 0]
    r = torch.corrcoef(torch.stack([moved.flatten(), yaw.flatten()]))[0, 1]
    assert r > 0.6, r


def test_full_profile_one_step():
    """The chapter's `full` profile models (3x64x64, latent 200) run one training step at batch 1."""
    from animlib.engine import Trainer

    vae = ConvVAE(ConvVAEConfig())
    t = Trainer({"vae": vae}, {"vae": torch.optim.Adam(vae.parameters(), 1e-3)}, VAEStep(1.0), device="cpu",
                progress=False)
    before = [p.detach().clone() for p in vae.parameters()]
    hist = t.fit(lambda s: torch.rand(1, 3, 64, 64), 1)
    assert torch.isfinite(torch.tensor(hist[-1]["loss"]))
    assert any(not torch.equal(a, b) for a, b in zip(before, vae.parameters()))


def test_exercise_checks_pass_on_solutions_and_fail_otherwise(capsys):
    from animlib.exercises import ch05

    assert ch05.check_kl(lambda mu, lv: -0.5 * (1 + lv - mu**2 - lv.exp()).sum(-1))
    assert not ch05.check_kl(lambda mu, lv: -0.5 * (1 + lv - mu**2 - lv.exp()).sum())  # summed over the batch too
    assert not ch05.check_kl(lambda mu, lv: None)
    assert ch05.check_reparameterize(lambda mu, lv, eps: mu + (0.5 * lv).exp() * eps)
    assert not ch05.check_reparameterize(lambda mu, lv, eps: mu + lv.exp() * eps)
    assert ch05.check_latent_path(lambda zp, zd: zp + zd - zd[0])
    assert not ch05.check_latent_path(lambda zp, zd: zp + zd)
    assert not ch05.check_latent_path(lambda zp, zd: 1 / 0)  # a raising attempt is reported, not raised
    out = capsys.readouterr().out
    assert "Not solved yet" in out and "ZeroDivisionError" in out and "Correct!" in out
