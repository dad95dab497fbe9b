"""The VAE-GAN: the source's discriminator, the three-part loss and the training step."""

import math

import pytest
import torch

from animlib import vaegan as VG
from animlib.engine import Trainer
from animlib.vae import ConvVAE, ConvVAEConfig, kl_divergence, layer_counts, reconstruction_bce


def test_vaegan_discriminator_matches_source_layers_and_spectral_norm():
    D = VG.VAEGANDiscriminator()
    assert layer_counts(D) == {"conv": 4, "linear": 3}
    assert D(torch.rand(2, 3, 64, 64)).shape == (2,)
    Dsn = VG.VAEGANDiscriminator(VG.VAEGANDiscriminatorConfig(image_size=32, width=8, hidden=32, spectral_norm=True))
    for _ in range(30):  # power iterations converge during forward passes
        Dsn(torch.rand(2, 3, 32, 32))
    w = Dsn.fcs[1].weight  # the parametrised (normalised) weight
    assert torch.linalg.matrix_norm(w.detach(), ord=2).item() == pytest.approx(1.0, abs=0.05)
    with pytest.raises(ValueError, match="expects images"):
        D(torch.rand(2, 3, 32, 32))


def test_vaegan_three_part_loss():
    torch.manual_seed(0)
    x = torch.rand(3, 3, 16, 16)
    logits, mu, logvar = torch.randn(3, 3, 16, 16), torch.randn(3, 5), torch.randn(3, 5)
    fake_logits = torch.randn(3)
    w = VG.VAEGANWeights(kl=0.5, rec=2.0, adv=3.0)
    out = VG.vaegan_generator_loss(logits, x, mu, logvar, fake_logits, w)
    torch.testing.assert_close(out["kl"], 0.5 * kl_divergence(mu, logvar).mean())
    torch.testing.assert_close(out["rec"], 2.0 * reconstruction_bce(logits, x).mean())
    torch.testing.assert_close(out["adv"], 3.0 * torch.nn.functional.softplus(-fake_logits).mean())
    torch.testing.assert_close(out["loss"], out["kl"] + out["rec"] + out["adv"])


def test_vaegan_step_trains_both_networks():
    torch.manual_seed(0)
    vae = ConvVAE(ConvVAEConfig(image_size=16, latent_dim=4, width=4, dec_width=4))
    D = VG.VAEGANDiscriminator(VG.VAEGANDiscriminatorConfig(image_size=16, width=4, hidden=16))
    opts = {"vae": torch.optim.Adam(vae.parameters(), 1e-3), "d": torch.optim.Adam(D.parameters(), 1e-3)}
    t = Trainer({"vae": vae, "d": D}, opts, VG.VAEGANStep(label_smoothing=0.1), device="cpu", progress=False)
    v0, d0 = [p.detach().clone() for p in vae.parameters()], [p.detach().clone() for p in D.parameters()]
    hist = t.fit(lambda s: torch.rand(4, 3, 16, 16), 2)
    assert set(hist[-1]) >= {"d_loss", "g_loss", "kl", "rec", "g_adv", "d_real", "d_fake"}
    assert any(not torch.equal(a, b) for a, b in zip(v0, vae.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(d0, D.parameters()))


def test_full_profile_one_step():
    """The chapter's `full` VAE-GAN (3x64x64 VAE, latent 200, source discriminator): one step at batch 1."""
    vae, D = ConvVAE(ConvVAEConfig()), VG.VAEGANDiscriminator()
    opts = {"vae": torch.optim.Adam(vae.parameters(), 1e-4), "d": torch.optim.Adam(D.parameters(), 1e-4)}
    t = Trainer({"vae": vae, "d": D}, opts, VG.VAEGANStep(), device="cpu", progress=False)
    hist = t.fit(lambda s: torch.rand(1, 3, 64, 64), 1)
    assert all(math.isfinite(v) for v in hist[-1].values())
