"""Tests for animlib.gan: losses against hand-computed values, the alternating step's gradient
isolation, the toy GAN on the ring of Gaussians and the exercise checkers."""

import math

import pytest
import torch

from animlib import gan
from animlib.data import rings
from animlib.engine import Trainer
from animlib.metrics import laplacian_energy


def test_losses_against_hand_computed_values():
    r, f = torch.tensor([0.0, 2.0]), torch.tensor([0.0, -1.0])
    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    d_bce = (-math.log(sig(0)) - math.log(sig(2))) / 2 + (-math.log(1 - sig(0)) - math.log(1 - sig(-1))) / 2
    assert gan.d_loss_bce(r, f).item() == pytest.approx(d_bce, rel=1e-5)
    d_smooth = (-(0.9 * math.log(sig(0)) + 0.1 * math.log(1 - sig(0)))
                - (0.9 * math.log(sig(2)) + 0.1 * math.log(1 - sig(2)))) / 2 + \
        (-math.log(1 - sig(0)) - math.log(1 - sig(-1))) / 2
    assert gan.d_loss_bce(r, f, label_smoothing=0.1).item() == pytest.approx(d_smooth, rel=1e-5)
    assert gan.g_loss_nonsaturating(f).item() == pytest.approx((-math.log(sig(0)) - math.log(sig(-1))) / 2, rel=1e-5)
    assert gan.g_loss_minimax(f).item() == pytest.approx((math.log(1 - sig(0)) + math.log(1 - sig(-1))) / 2, rel=1e-5)
    assert gan.d_loss_hinge(r, f).item() == pytest.approx((1 + 0) / 2 + (1 + 0) / 2)
    assert gan.g_loss_hinge(f).item() == pytest.approx(0.5)
    assert gan.d_loss_lsgan(r, f).item() == pytest.approx(0.5 * (1 + 1) / 2 + 0.5 * (0 + 1) / 2)
    assert gan.g_loss_lsgan(f).item() == pytest.approx(0.5 * (1 + 4) / 2)


def test_minimax_saturates_where_nonsaturating_does_not():
    f = torch.tensor([-6.0], requires_grad=True)  # D confidently rejects the fake
    (g1,) = torch.autograd.grad(gan.g_loss_minimax(f), f)
    (g2,) = torch.autograd.grad(gan.g_loss_nonsaturating(f), f)
    assert abs(g1.item()) < 0.01 and abs(g2.item()) > 0.99


def _toy_trainer():
    torch.manual_seed(0)
    G, D = gan.ToyGenerator(4, 16, 2), gan.ToyDiscriminator(16, 2)
    opts = {"g": torch.optim.SGD(G.parameters(), lr=0.1), "d": torch.optim.SGD(D.parameters(), lr=0.1)}
    return Trainer({"g": G, "d": D}, opts, lambda t, b: {}, device="cpu", progress=False), G, D


def test_alternating_step_updates_each_player_with_its_own_gradients():
    t, G, D = _toy_trainer()
    real = rings.ring_mixture(32, generator=torch.Generator().manual_seed(0))
    z = torch.randn(32, 4)
    g0 = [p.detach().clone() for p in G.parameters()]
    d0 = [p.detach().clone() for p in D.parameters()]

    # expected D update: SGD on the D loss with G fixed
    D_ref = gan.ToyDiscriminator(16, 2)
    D_ref.load_state_dict(D.state_dict())
    with torch.no_grad():
        fake = G(z)
    loss = gan.d_loss_bce(D_ref(real), D_ref(fake))
    grads = torch.autograd.grad(loss, list(D_ref.parameters()))
    d_expected = [p.detach() - 0.1 * gr for p, gr in zip(D_ref.parameters(), grads)]

    # expected G update: SGD on the G loss through the *updated* D
    G_ref = gan.ToyGenerator(4, 16, 2)
    G_ref.load_state_dict(G.state_dict())
    D_new = gan.ToyDiscriminator(16, 2)
    with torch.no_grad():
        for p, v in zip(D_new.parameters(), d_expected):
            p.copy_(v)
    g_grads = torch.autograd.grad(gan.g_loss_nonsaturating(D_new(G_ref(z))), list(G_ref.parameters()))
    g_expected = [p.detach() - 0.1 * gr for p, gr in zip(G_ref.parameters(), g_grads)]

    out = gan.alternating_step(t, real, lambda: (G(z), {}))
    for p, e in zip(D.parameters(), d_expected):
        torch.testing.assert_close(p.detach(), e)
    for p, e in zip(G.parameters(), g_expected):
        torch.testing.assert_close(p.detach(), e)
    assert any(not torch.equal(a, b) for a, b in zip(d0, D.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(g0, G.parameters()))
    assert set(out) >= {"d_loss", "g_loss", "g_adv", "d_real", "d_fake"}


def test_d_step_leaves_g_unchanged_and_g_step_leaves_d_unchanged():
    t, G, D = _toy_trainer()
    real = rings.ring_mixture(16, generator=torch.Generator().manual_seed(1))
    z = torch.randn(16, 4)
    # a G step alone (lr 0 for D): D must not move even though gradients flow through it
    t.optimizers["d"].param_groups[0]["lr"] = 0.0
    d0 = [p.detach().clone() for p in D.parameters()]
    gan.alternating_step(t, real, lambda: (G(z), {}))
    assert all(torch.equal(a, b) for a, b in zip(d0, D.parameters()))
    # a D step alone (lr 0 for G): G must not move
    t.optimizers["d"].param_groups[0]["lr"] = 0.1
    t.optimizers["g"].param_groups[0]["lr"] = 0.0
    g0 = [p.detach().clone() for p in G.parameters()]
    gan.alternating_step(t, real, lambda: (G(z), {}))
    assert all(torch.equal(a, b) for a, b in zip(g0, G.parameters()))


def test_toy_mixture_and_mode_counting():
    c = rings.ring_centers(8, 2.0)
    assert c.shape == (8, 2)
    torch.testing.assert_close(c.norm(dim=1), torch.full((8,), 2.0))
    x = rings.ring_mixture(4000, 8, 2.0, 0.05, generator=torch.Generator().manual_seed(0))
    res = rings.modes_covered(x, c, 0.05)
    assert res["covered"] == 8 and res["high_quality"] > 0.97
    collapsed = c[3] + 0.05 * torch.randn(1000, 2)
    assert rings.modes_covered(collapsed, c, 0.05)["covered"] == 1
    with pytest.raises(ValueError, match="multiple of pack"):
        gan.ToyDiscriminator(pack=2)(torch.randn(3, 2))


@pytest.mark.slow
def test_toy_gan_learns_to_reach_the_ring():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    G, D = gan.ToyGenerator(8, 64, 2), gan.ToyDiscriminator(64, 2, pack=2)
    opts = {"g": torch.optim.Adam(G.parameters(), 1e-3, betas=(0.5, 0.9)),
            "d": torch.optim.Adam(D.parameters(), 1e-3, betas=(0.5, 0.9))}
    t = Trainer({"g": G, "d": D}, opts, gan.ToyGANStep(128, generator=g), device="cpu", progress=False)
    x0 = G.sample(1000, g).detach()
    t.fit(lambda s: rings.ring_mixture(128, generator=g), 600)
    x1 = G.sample(1000, g).detach()
    # the generated radius approaches the ring's
    assert (x1.norm(dim=1) - 2).abs().mean() < 0.5 * (x0.norm(dim=1) - 2).abs().mean()


def test_exercise_checks_pass_on_solutions_and_fail_otherwise(capsys):
    import torch.nn.functional as F

    from animlib.exercises import ch06

    assert ch06.check_d_loss(lambda r, f: F.softplus(-r).mean() + F.softplus(f).mean())
    assert not ch06.check_d_loss(lambda r, f: F.softplus(-r).mean() + F.softplus(-f).mean())
    assert not ch06.check_d_loss(lambda r, f: None)
    assert ch06.check_generator_gradients(lambda f: (-torch.sigmoid(f), torch.sigmoid(f) - 1))
    assert not ch06.check_generator_gradients(lambda f: (torch.sigmoid(f), torch.sigmoid(f) - 1))
    assert not ch06.check_generator_gradients(lambda f: None)
    assert ch06.check_sharpness(laplacian_energy)
    assert not ch06.check_sharpness(lambda x: laplacian_energy(x) * 2)
    assert "Not solved yet" in capsys.readouterr().out


def test_minibatch_std_lets_d_see_a_collapsed_batch():
    torch.manual_seed(0)
    D = gan.ToyDiscriminator(16, 2, minibatch_std=True)
    spread = torch.randn(8, 2)
    same = spread[:1].expand(8, 2)
    assert D(spread).shape == (8,)
    # the same point scores differently when the rest of its batch is (or is not) identical to it
    assert not torch.allclose(D(spread)[:1], D(same)[:1])
    plain = gan.ToyDiscriminator(16, 2)
    torch.testing.assert_close(plain(spread)[:1], plain(torch.cat([spread[:1], same[1:]]))[:1])
