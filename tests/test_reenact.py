"""Face reenactment (chapter 8): landmarks, AdaIN, the three networks, their step, relative transfer, real faces."""

import copy
import math

import pytest
import torch

from animlib import reenact as R
from animlib.data import faces
from animlib.data import landmarks as LM
from animlib.engine import Trainer
from animlib.exercises import ch08


def _tiny(driver="landmarks", size=16):
    return R.ReenactConfig(image_size=size, width=4, levels=1, n_res=1, embed_dim=8, driver=driver)


# ----------------------------------------------------------------------------------------------
# landmarks
# ----------------------------------------------------------------------------------------------
def test_face_landmarks_follow_the_renderer():
    ident = faces.sample_identity(6, 0)
    motion = faces.sample_motion(6, 1)
    pts = faces.face_landmarks(ident, motion)
    assert pts.shape == (6, 68, 2) and pts.abs().max() <= 1.0
    # a full blink puts the upper-lid points (37, 38) onto the lower lid (41, 40); open eyes keep them apart
    closed, opened = motion.clone(), motion.clone()
    closed[:, 3], opened[:, 3] = 1.0, 0.0
    pc, po = faces.face_landmarks(ident, closed), faces.face_landmarks(ident, opened)
    torch.testing.assert_close(pc[:, [37, 38], 1], pc[:, [41, 40], 1])
    assert (po[:, [41, 40], 1] - po[:, [37, 38], 1]).min() > 0.1
    # the inner mouth (between points 62 and 66) is drawn dark when the mouth is open
    wide = motion.clone()
    wide[:, 2] = 1.0
    img = faces.render_faces(ident, wide, 128)
    center = faces.face_landmarks(ident, wide)[:, [62, 66]].mean(1)
    px = LM.normalized_to_pixels(center, 128, 128).round().long()
    color = img[torch.arange(6), :, px[:, 1], px[:, 0]]  # (6, 3)
    torch.testing.assert_close(color, torch.tensor([0.35, 0.04, 0.07]).expand(6, 3), atol=0.02, rtol=0)


def test_rasterized_line_matches_the_gaussian_profile_of_the_distance():
    pts = torch.zeros(1, 68, 2)
    pts[0, :17, 0] = torch.linspace(-0.6, 0.6, 17)  # the jaw as one horizontal line at y = 0
    pts[0, :17, 1] = 0.0
    pts[0, 17:] = 5.0  # every other part far outside the image
    size, w = 64, 1.5
    img = LM.rasterize_landmarks(pts, size, width=w)
    assert img.shape == (1, len(LM.PARTS), size, size)
    assert img[0, 1:].max() < 1e-6  # the other channels are empty
    coords = (torch.arange(size) + 0.5) * 2 / size - 1
    d_px = coords.abs() / (2 / size)  # distance of each row to the line, in pixels
    expected = torch.exp(-0.5 * (d_px / w) ** 2)
    torch.testing.assert_close(img[0, 0, :, size // 2], expected.clamp(max=1), atol=0.03, rtol=0)
    assert img[0, 0, size // 2, :4].max() < 1e-3  # nothing beyond the line's ends


def test_pixel_coordinates_round_trip_and_bad_shapes_are_refused():
    xy = torch.rand(5, 2) * 100
    torch.testing.assert_close(LM.normalized_to_pixels(LM.pixels_to_normalized(xy, 120, 100), 120, 100), xy)
    with pytest.raises(ValueError, match=r"\(B, 68, 2\)"):
        LM.rasterize_landmarks(torch.zeros(2, 5, 2), 32)


# ----------------------------------------------------------------------------------------------
# the networks
# ----------------------------------------------------------------------------------------------
def test_adain_matches_a_hand_computation():
    h = torch.tensor([[[[1.0, 3.0], [5.0, 7.0]]]])  # one map: mean 4, biased variance 5
    out = R.adain(h, torch.tensor([[2.0]]), torch.tensor([[1.0]]), eps=0.0)
    expected = 2.0 * (h - 4.0) / math.sqrt(5.0) + 1.0
    torch.testing.assert_close(out, expected)
    with pytest.raises(ValueError, match="gamma, beta"):
        R.adain(h, torch.ones(1, 2), torch.ones(1, 2))


def test_embedder_average_is_permutation_invariant():
    torch.manual_seed(0)
    E = R.Embedder(_tiny())
    x, y = torch.rand(2, 5, 3, 16, 16), torch.rand(2, 5, len(LM.PARTS), 16, 16)
    perm = torch.tensor([3, 0, 4, 1, 2])
    torch.testing.assert_close(E(x, y), E(x[:, perm], y[:, perm]))
    torch.testing.assert_close(E(x, y), E.per_frame(x, y).mean(1))
    assert not torch.allclose(E(x, y), E(x[:, :1], y[:, :1]))


@pytest.mark.parametrize("driver", ["landmarks", "image"])
def test_generator_and_discriminator_shapes_and_gradients(driver):
    torch.manual_seed(0)
    cfg = _tiny(driver)
    E, G, D = R.Embedder(cfg), R.FaceGenerator(cfg), R.ProjectionDiscriminator(cfg, n_identities=3)
    src, src_lm = torch.rand(2, 2, 3, 16, 16), torch.rand(2, 2, len(LM.PARTS), 16, 16)
    tgt_lm, tgt = torch.rand(2, len(LM.PARTS), 16, 16), torch.rand(2, 3, 16, 16)
    e = E(src, src_lm)
    fake = G(tgt if driver == "image" else tgt_lm, e=e)
    assert fake.shape == (2, 3, 16, 16) and 0 <= fake.min() and fake.max() <= 1
    r, feats = D(fake, tgt_lm, i=torch.tensor([0, 2]))
    assert r.shape == (2,) and len(feats) == cfg.levels + 1
    (r.sum() + fake.mean()).backward()
    for name, m in (("E", E), ("G", G), ("D", D)):
        grads = [p.grad for p in m.parameters() if p.requires_grad]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), f"{name} got no gradient"
    assert D.W.weight.grad[1].abs().sum() == 0 and D.W.weight.grad[0].abs().sum() > 0  # only the batch's rows
    with pytest.raises(ValueError, match="exactly one"):
        G(tgt_lm if driver == "landmarks" else tgt)
    with pytest.raises(ValueError, match="needs"):
        G(torch.rand(2, 7, 16, 16), e=e)


def test_warp_generator_starts_as_the_identity_warp():
    torch.manual_seed(0)
    W = R.WarpGenerator(_tiny())
    src = torch.rand(2, 3, 16, 16)
    out = W(src, torch.rand(2, len(LM.PARTS), 16, 16), torch.rand(2, len(LM.PARTS), 16, 16))
    torch.testing.assert_close(out, src, atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------------------------
# the step: D and G updated with the right gradients
# ----------------------------------------------------------------------------------------------
def test_one_alternating_step_updates_d_then_g_with_their_own_losses():
    torch.manual_seed(0)
    cfg = _tiny()
    pool = R.FacePool(4, 3, 16, seed=0)
    batch = pool.batch(3, 2, torch.Generator().manual_seed(1))
    E, G, D = R.Embedder(cfg), R.FaceGenerator(cfg), R.ProjectionDiscriminator(cfg, n_identities=4)
    with torch.no_grad():
        D.W.weight.normal_()  # so that L_MCH is not zero
    ref = {k: copy.deepcopy(m) for k, m in (("e", E), ("g", G), ("d", D))}
    lr = 1e-2
    opt_g = torch.optim.SGD(list(E.parameters()) + list(G.parameters()), lr=lr)
    opt_d = torch.optim.SGD(D.parameters(), lr=lr)
    step = R.ReenactStep(cnt=10.0, adv=0.1, fm=1.0, mch=1.0)
    t = Trainer({"e": E, "g": G, "d": D}, {"g": opt_g, "d": opt_d}, step, device="cpu", progress=False)
    t.fit(lambda s: batch, 1)

    # the same step by hand, on the copies
    src, src_lm, tgt, tgt_lm, idx = batch
    e_ref = ref["e"](src, src_lm)
    fake = ref["g"](tgt_lm, e=e_ref)
    d_loss = torch.relu(1 - ref["d"](tgt, tgt_lm, i=idx)[0]).mean() + torch.relu(1 + ref["d"](fake.detach(), tgt_lm, i=idx)[0]).mean()
    d_grads = torch.autograd.grad(d_loss, list(ref["d"].parameters()), allow_unused=True)
    with torch.no_grad():
        for p, g in zip(ref["d"].parameters(), d_grads):
            if g is not None:
                p -= lr * g
    for p_t, p_r in zip(D.parameters(), ref["d"].parameters()):
        torch.testing.assert_close(p_t, p_r, atol=1e-6, rtol=1e-5)  # D moved by its own loss only

    _, f_real = ref["d"](tgt, tgt_lm, i=idx)
    # the feature-matching targets were taken before D's update in the step: recompute them from the old D
    old_d = copy.deepcopy(ref["d"])
    with torch.no_grad():
        for p, g in zip(old_d.parameters(), d_grads):
            if g is not None:
                p += lr * g
    _, f_real = old_d(tgt, tgt_lm, i=idx)
    r_gen, f_gen = ref["d"](fake, tgt_lm, i=idx)
    g_loss = (10.0 * R.multiscale_content_loss(fake, tgt) + 0.1 * (-r_gen.mean()) + R.feature_matching_loss(f_gen, f_real)
              + R.match_loss(ref["d"].W(idx), e_ref))
    params = list(ref["e"].parameters()) + list(ref["g"].parameters())
    grads = torch.autograd.grad(g_loss, params, allow_unused=True)
    with torch.no_grad():
        for p, g in zip(params, grads):
            if g is not None:
                p -= lr * g
    for p_t, p_r in zip(list(E.parameters()) + list(G.parameters()), params):
        torch.testing.assert_close(p_t, p_r, atol=1e-6, rtol=1e-5)
    assert t.history[0]["mch"] > 0 and torch.isfinite(torch.tensor(t.history[0]["loss"]))


@pytest.mark.slow
def test_the_identity_vector_carries_the_source_person():
    """After a short meta-learning run, G(landmarks, ê_A) looks more like A than G(landmarks, ê_B) does."""
    cfg = R.ReenactConfig(image_size=16, width=8, levels=1, n_res=1, embed_dim=16)
    pool = R.FacePool(24, 4, 16, seed=0)
    t = R.meta_train(pool, 250, config=cfg, batch_size=16, k=2, device="cpu", progress=False, seed=0)
    E, G = t.raw_models["e"], t.raw_models["g"]
    with torch.no_grad():
        e = E(pool.images[:, :2].float() / 255, pool.lm_images[:, :2].float() / 255)  # (24, E)
        tgt, lm = pool.images[:, 3].float() / 255, pool.lm_images[:, 3].float() / 255
        own = (G(lm, e=e) - tgt).abs().mean((1, 2, 3))
        other = (G(lm, e=e.roll(1, 0)) - tgt).abs().mean((1, 2, 3))
    assert own.mean() < 0.75 * other.mean(), (own.mean(), other.mean())
    assert (own < other).float().mean() > 0.8


def test_finetune_returns_free_adain_parameters_and_leaves_the_originals_alone():
    torch.manual_seed(0)
    cfg = _tiny()
    E, G, D = R.Embedder(cfg), R.FaceGenerator(cfg), R.ProjectionDiscriminator(cfg, n_identities=2)
    before = copy.deepcopy(G.state_dict())
    frames, lms = torch.rand(3, 3, 16, 16), torch.rand(3, len(LM.PARTS), 16, 16)
    with torch.no_grad():
        psi0 = G.adain_params(E(frames[None], lms[None]))
    G2, psi = R.finetune(E, G, D, frames, lms, steps=5, batch_size=2, device="cpu")
    assert psi.shape == psi0.shape and not torch.allclose(psi, psi0)
    for k, v in G.state_dict().items():
        torch.testing.assert_close(v, before[k])
    assert R.animate(G2, lms, psi=psi).shape == (3, 3, 16, 16)


# ----------------------------------------------------------------------------------------------
# relative motion transfer
# ----------------------------------------------------------------------------------------------
def test_relative_landmarks_against_hand_computed_points():
    src = torch.zeros(1, 68, 2)
    src[0, 36], src[0, 45] = torch.tensor([-0.2, 0.0]), torch.tensor([0.2, 0.0])  # eye distance 0.4
    init = torch.zeros(1, 68, 2)
    init[0, 36], init[0, 45] = torch.tensor([-0.4, 0.0]), torch.tensor([0.4, 0.0])  # eye distance 0.8
    drv = init.clone().unsqueeze(1).repeat(1, 2, 1, 1)
    drv[0, 1, 10] += torch.tensor([0.1, -0.2])  # frame 1 moves point 10
    out = R.relative_landmarks(src, drv, init)  # scale 0.4 / 0.8
    torch.testing.assert_close(out[0, 0], src[0])
    expected = src[0].clone()
    expected[10] += torch.tensor([0.05, -0.1])
    torch.testing.assert_close(out[0, 1], expected)
    out_abs = R.relative_landmarks(src, drv, init, adapt_scale=False)
    torch.testing.assert_close(out_abs[0, 1, 10], torch.tensor([0.1, -0.2]))
    with pytest.raises(ValueError, match="driving_initial"):
        R.relative_landmarks(src, drv, init[:, :10])


def test_face_pool_episodes_come_from_one_identity():
    pool = R.FacePool(5, 4, 16, seed=3)
    src, src_lm, tgt, tgt_lm, idx = pool.batch(6, 2, torch.Generator().manual_seed(0))
    assert src.shape == (6, 2, 3, 16, 16) and tgt_lm.shape == (6, len(LM.PARTS), 16, 16)
    for b in range(6):
        frames = pool.images[idx[b]].float() / 255  # (n_poses, 3, 16, 16)
        matches = [(frames - x).abs().amax((1, 2, 3)).min() < 1e-6 for x in (src[b, 0], src[b, 1], tgt[b])]
        assert all(matches)
    with pytest.raises(ValueError, match="n_poses"):
        pool.batch(2, 4, torch.Generator())


def test_landmark_warp_moves_a_dot_to_its_target():
    img = torch.zeros(3, 64, 64)
    img[:, 30:34, 20:24] = 1.0  # a bright square around pixel (21.5, 31.5)
    src = torch.zeros(68, 2)
    src[:] = torch.tensor([-2.0, -2.0])  # far away, except ...
    src[36], src[45] = torch.tensor([-0.3, 0.8]), torch.tensor([0.3, 0.8])  # (they set sigma; far from the dot)
    center = LM.pixels_to_normalized(torch.tensor([21.5, 31.5]), 64, 64)
    src[30] = center
    tgt = src.clone()
    tgt[30] = center + torch.tensor([0.25, 0.0])  # move the square 8 pixels right
    out = R.landmark_warp(img, src, tgt[None], sigma=0.1)[0]
    cols = out[0].sum(0)
    moved_to = (cols * torch.arange(64)).sum() / cols.sum()
    assert abs(float(moved_to) - 29.5) < 1.5, float(moved_to)
    torch.testing.assert_close(R.landmark_warp(img, src, src[None])[0], img, atol=1e-4, rtol=0)


# ----------------------------------------------------------------------------------------------
# real faces, offline
# ----------------------------------------------------------------------------------------------
def test_real_face_path_runs_offline_on_the_astronaut():
    skimage = pytest.importorskip("skimage")
    pytest.importorskip("dlib")
    from animlib.data.images import ASTRONAUT_HEAD

    photo = torch.from_numpy(skimage.data.astronaut()[ASTRONAUT_HEAD].copy()).permute(2, 0, 1).float() / 255
    found = LM.detect_landmarks(photo)
    left, top, right, bottom = found["box"].tolist()
    px = found["pixels"]
    assert (px[:, 0] > left - 10).all() and (px[:, 0] < right + 10).all()
    assert px[36, 0] < px[45, 0] and px[8, 1] > px[30, 1] > px[27, 1]  # eyes left to right, chin below the nose
    d = LM.face_descriptor(photo)
    assert d.shape == (128,)
    shifted = torch.roll(photo, shifts=(3, -2), dims=(1, 2))
    assert (LM.face_descriptor(shifted) - d).norm() < 0.3  # the same person
    with pytest.raises(ValueError, match="no face found"):
        LM.detect_landmarks(torch.zeros(3, 64, 64) + 0.5)


# ----------------------------------------------------------------------------------------------
# exercise checkers: the right answer, and the natural wrong ones
# ----------------------------------------------------------------------------------------------
def _boom(*args):
    raise RuntimeError("oops")


def test_relative_transfer_checker(capsys):
    assert ch08.check_relative_transfer(ch08.solution_relative_transfer)
    assert not ch08.check_relative_transfer(lambda s, d, i: d)  # absolute transfer
    assert not ch08.check_relative_transfer(lambda s, d, i: d - i)  # forgets the source
    assert not ch08.check_relative_transfer(lambda s, d, i: s - (d - i))  # sign
    assert not ch08.check_relative_transfer(lambda s, d, i: None)
    assert not ch08.check_relative_transfer(_boom)
    assert "raised RuntimeError" in capsys.readouterr().out


def test_hinge_checker():
    assert ch08.check_hinge_d_loss(ch08.solution_hinge_d_loss)
    assert not ch08.check_hinge_d_loss(lambda r, f: (1 - r).mean() + (1 + f).mean())  # no relu
    assert not ch08.check_hinge_d_loss(lambda r, f: torch.relu(1 + r).mean() + torch.relu(1 - f).mean())  # swapped
    assert not ch08.check_hinge_d_loss(lambda r, f: torch.relu(1 - r).sum() + torch.relu(1 + f).sum())  # sums
    assert not ch08.check_hinge_d_loss(_boom)


def test_match_loss_checker():
    assert ch08.check_match_loss(ch08.solution_match_loss)
    assert ch08.check_match_loss(lambda W, i, e: R.match_loss(W[i], e))  # the library agrees
    assert not ch08.check_match_loss(lambda W, i, e: (W[i] - e).pow(2).mean())  # L2
    assert not ch08.check_match_loss(lambda W, i, e: (W[: len(e)] - e).abs().mean())  # rows 0..B-1, not idx
    assert not ch08.check_match_loss(_boom)


def test_voxceleb_landmarks_feed_face_tracks_and_a_real_track_pool(tmp_path):
    """A prepared VoxCeleb-like folder (astronaut crops) -> voxceleb.py --landmarks -> face_tracks -> FacePool."""
    skimage = pytest.importorskip("skimage")
    pytest.importorskip("dlib")
    import importlib
    import sys
    from pathlib import Path

    import imageio.v3 as iio
    import numpy as np

    from animlib.data.download import write_prepared_marker
    from animlib.data.prepared import face_tracks

    photo = skimage.data.astronaut()[10:230, 110:330]  # the head, 220 px
    for clip, shift in (("clips/id1/a_00001", 0), ("clips/id2/b_00001", 4)):
        d = tmp_path / clip
        d.mkdir(parents=True)
        for t in range(3):
            iio.imwrite(d / f"{t:05d}.png", np.roll(photo, shift + 2 * t, axis=1))
    write_prepared_marker(tmp_path, {"dataset": "voxceleb"})
    with pytest.raises(FileNotFoundError, match="--landmarks"):
        face_tracks(tmp_path, n_poses=2, size=32)
    scripts = str(Path(__file__).resolve().parents[1] / "data_scripts")
    if scripts not in sys.path:
        sys.path.insert(0, scripts)
    vox = importlib.import_module("voxceleb")
    assert vox.add_landmarks(tmp_path) == 2 and vox.add_landmarks(tmp_path) == 0  # idempotent
    stored = np.load(tmp_path / "clips/id1/a_00001/landmarks68.npy")
    assert stored.shape == (3, 68, 2) and np.abs(stored).max() <= 1
    images, points = face_tracks(tmp_path, n_poses=3, size=32)
    assert images.shape == (2, 3, 3, 32, 32) and points.shape == (2, 3, 68, 2)
    assert points[1, 0, :, 0].mean() > points[0, 0, :, 0].mean()  # the second clip's face sits further right
    pool = R.FacePool.from_tracks(images, points)
    src, src_lm, tgt, tgt_lm, idx = pool.batch(4, 2, torch.Generator().manual_seed(0))
    assert src.shape == (4, 2, 3, 32, 32) and tgt_lm.shape == (4, len(LM.PARTS), 32, 32)
    assert torch.isnan(pool.identity).all()


@pytest.mark.slow
def test_full_profile_one_step():
    """The full profile's networks (128 px, K = 8, the perceptual VGG term) take one step of each run on the CPU."""
    from animlib.backbones import FeatureExtractor

    rs = R.ReenactSettings.full()
    assert (rs.size, rs.k_train, rs.n_res) == (128, 8, 4) and rs.vgg_weight > 0
    pool = R.FacePool(3, rs.k_train + 1, rs.size, seed=0)
    vgg = FeatureExtractor(("conv_1_2", "conv_2_2", "conv_3_3", "conv_4_3"), weights="random")
    step = R.ReenactStep(vgg=vgg, vgg_weight=rs.vgg_weight)
    for driver in ("landmarks", "image"):
        t = R.meta_train(pool, 1, config=rs.config(driver), batch_size=2, k=rs.k_train, lr_g=rs.lr_g, lr_d=rs.lr_d,
                         step=step, device="cpu", progress=False)
        assert all(math.isfinite(float(v)) for v in t.history[-1].values())
    R.train_warp(pool, 1, config=rs.config(), batch_size=2, device="cpu", progress=False)
    E, G, D = (t.raw_models[k] for k in "egd")
    frames, lms = pool.images[0, :2].float() / 255, pool.lm_images[0, :2].float() / 255
    G2, psi = R.finetune(E, G, D, frames, lms, 1, batch_size=2, step=step, device="cpu")
    assert R.animate(G2, frames, psi=psi).shape == (2, 3, rs.size, rs.size)  # the image-driven G of the last run


def test_a_pool_too_large_to_keep_renders_the_same_episodes_when_drawn():
    """The full profile's pool (26 GB as bytes) is rendered per episode; the pixels are the same."""
    kept = R.FacePool(6, 4, 32, seed=3, cache=True)
    drawn = R.FacePool(6, 4, 32, seed=3, cache=False)
    assert kept.cached and not drawn.cached and drawn.images is None and kept.nbytes == drawn.nbytes
    assert torch.equal(kept.landmarks, drawn.landmarks)
    a = kept.batch(5, 2, torch.Generator().manual_seed(1))
    b = drawn.batch(5, 2, torch.Generator().manual_seed(1))
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    idx = torch.tensor([0, 5, 23])
    assert torch.equal(kept.frames(idx), drawn.frames(idx))
    assert R.FacePool(2, 2, 16).cached  # small pools are kept by default
